//! `esm3 inverse-fold`: structures → sequences.

use std::path::PathBuf;

use anyhow::{Context, Result};
use esm3_generate::prompt::Prompt;
use esm3_generate::{EsmProtein, GenerationConfig, Track};
use esm3_protein::fasta::{write_fasta, FastaRecord};
use esm3_protein::read_chain;

use super::design::{Designer, SamplingArgs};
use super::model::ModelArgs;
use super::progress::bar;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// PDB/mmCIF files (plain or .gz).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Chain to design (default: the first protein chain of each file).
    #[arg(long)]
    chain: Option<String>,
    /// Output FASTA (default: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Sequences per structure.
    #[arg(short = 'n', long, default_value_t = 1)]
    num_outputs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Defaults for inverse folding: temperature 0.1, no annealing.
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let designer = Designer::load(&args.model)?;
    let mut config = GenerationConfig::new(Track::Sequence);
    config.temperature = 0.1;
    config.temperature_annealing = false;
    let config = args.sampling.apply(config);
    config.validate().map_err(anyhow::Error::msg)?;
    let mut records = Vec::new();
    let pb = bar(
        (args.inputs.len() * args.num_outputs) as u64,
        "inverse folding",
    );
    for path in &args.inputs {
        let chain = read_chain(path, args.chain.as_deref())?;
        let stem = path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let stem = stem.split('.').next().unwrap_or("structure").to_string();
        let prompt = Prompt {
            name: format!("{stem}_{}", chain.chain_id),
            protein: EsmProtein {
                coordinates: Some(chain.atom37.clone()),
                ..EsmProtein::default()
            },
            motifs: Vec::new(),
            plan: vec![config.clone()],
        };
        for i in 0..args.num_outputs {
            let seed = args.seed + i as u64;
            let (protein, _) = designer
                .run(&prompt, seed, false)
                .with_context(|| format!("{}: chain {}", path.display(), chain.chain_id))?;
            let designed = protein.sequence.unwrap_or_default();
            let recovery = designed
                .chars()
                .zip(chain.sequence.chars())
                .filter(|(a, b)| a == b)
                .count() as f64
                / chain.sequence.chars().count().max(1) as f64;
            records.push(FastaRecord {
                id: if args.num_outputs == 1 {
                    prompt.name.clone()
                } else {
                    format!("{}_{i}", prompt.name)
                },
                description: format!(
                    "seed={seed} recovery={recovery:.3} source={}",
                    path.display()
                ),
                sequence: designed,
            });
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    let mut buf = Vec::new();
    write_fasta(&mut buf, &records)?;
    match &args.output {
        Some(p) => std::fs::write(p, buf).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{}", String::from_utf8_lossy(&buf)),
    }
    Ok(())
}
