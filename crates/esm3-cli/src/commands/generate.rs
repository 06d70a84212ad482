//! `esm3 generate`: design proteins from a prompt file or from nothing but a length.

use std::path::PathBuf;

use anyhow::{bail, Result};
use esm3_generate::prompt::Prompt;
use esm3_generate::{GenerationConfig, Track};

use super::design::{write_design, Designer, SamplingArgs, StructureFormat};
use super::model::ModelArgs;

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
    for i in 0..args.num_outputs {
        let seed = args.seed + i as u64;
        let name = if args.num_outputs == 1 {
            prompt.name.clone()
        } else {
            format!("{}_{i}", prompt.name)
        };
        let (protein, motif_rmsd) = designer.run(&prompt, seed, true)?;
        let summary = write_design(
            &args.output,
            &name,
            &protein,
            args.format,
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
    }
    Ok(())
}
