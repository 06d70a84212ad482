//! `esm3 generate`: design proteins from a prompt file or from nothing but a length.

use std::path::PathBuf;

use anyhow::{bail, Result};
use esm3_generate::prompt::Prompt;
use esm3_generate::{EsmProtein, GenerationConfig, Track};

use super::design::{write_design, Designer, RelaxArgs, SamplingArgs, StructureFormat};
use super::model::ModelArgs;
use super::progress::bar;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Prompt file (TOML or JSON; see the README for the format).
    #[arg(long, conflicts_with = "length")]
    prompt: Option<PathBuf>,
    /// Unconditional design of this many residues.
    #[arg(long)]
    length: Option<usize>,
    /// Tracks to generate, in order (without a prompt file). Default: sequence then structure.
    #[arg(long, value_delimiter = ',', value_parser = ["sequence", "structure", "secondary_structure", "sasa", "function"])]
    track: Vec<String>,
    /// How many designs.
    #[arg(short = 'n', long, default_value_t = 1)]
    num_outputs: usize,
    /// Output folder: <name>.fasta, <name>.pdb, <name>.json per design.
    #[arg(short, long, default_value = "designs")]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "pdb")]
    format: StructureFormat,
    /// Seed of the first design; design i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Designs generated together (one forward per decoding step for the batch); each design
    /// equals generating it alone with its seed. Prompts with motifs run one at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    #[command(flatten)]
    relax: RelaxArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let mut prompt = match (&args.prompt, args.length) {
        (Some(p), _) => Prompt::read(p).map_err(anyhow::Error::msg)?,
        (None, Some(n)) => {
            let tracks: Vec<Track> = if args.track.is_empty() {
                vec![Track::Sequence, Track::Structure]
            } else {
                args.track
                    .iter()
                    .map(|t| Track::from_name(t).expect("validated by clap"))
                    .collect()
            };
            let plan = tracks.into_iter().map(GenerationConfig::new).collect();
            Prompt::unconditional("design", n, plan).map_err(anyhow::Error::msg)?
        }
        (None, None) => bail!("give --length N or --prompt FILE"),
    };
    if args.prompt.is_some() && !args.track.is_empty() {
        bail!(
            "--track applies without a prompt file; a prompt file says its tracks in [[generate]]"
        );
    }
    for c in prompt.plan.iter_mut() {
        *c = args.sampling.apply(c.clone());
        c.validate().map_err(anyhow::Error::msg)?;
    }
    let designer = Designer::load(&args.model)?;
    let indices: Vec<usize> = (0..args.num_outputs).collect();
    let batch_bar = bar(args.num_outputs as u64, "designing");
    if indices.len() <= 1 {
        // One design: its own progress bar over the decoding steps instead.
        batch_bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    for chunk in indices.chunks(args.batch_size as usize) {
        let seeds: Vec<u64> = chunk.iter().map(|&i| args.seed + i as u64).collect();
        let designs = if chunk.len() == 1 {
            vec![designer.run(&prompt, seeds[0], args.num_outputs == 1)]
        } else {
            designer.run_batch(&vec![prompt.clone(); chunk.len()], &seeds)?
        };
        for ((&i, &seed), design) in chunk.iter().zip(&seeds).zip(designs) {
            let name = if args.num_outputs == 1 {
                prompt.name.clone()
            } else {
                format!("{}_{i}", prompt.name)
            };
            let (protein, motif_rmsd) = design?;
            write_one(&args, &designer, &prompt, &name, seed, &protein, motif_rmsd)?;
            batch_bar.inc(1);
        }
    }
    batch_bar.finish_and_clear();
    Ok(())
}

/// Writes one design's files and prints its summary line.
fn write_one(
    args: &Args,
    designer: &Designer,
    prompt: &Prompt,
    name: &str,
    seed: u64,
    protein: &EsmProtein,
    motif_rmsd: Vec<Option<f64>>,
) -> Result<()> {
    let summary = write_design(
        &args.output,
        name,
        protein,
        args.format,
        args.relax,
        &prompt
            .motifs
            .iter()
            .flat_map(|m| m.positions.iter().copied())
            .collect::<Vec<_>>(),
        serde_json::json!({
            "seed": seed,
            "model": designer.model_path.display().to_string(),
            "plan": prompt.plan,
            "motif_backbone_rmsd": motif_rmsd,
        }),
    )?;
    println!(
        "{name}\tlength {}\tmean pLDDT {}\tpTM {}",
        summary["length"],
        summary["mean_plddt"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.3}")),
        summary["ptm"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.3}")),
    );
    Ok(())
}
