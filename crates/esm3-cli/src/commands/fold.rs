//! `esm3 fold`: sequences → structures (structure tokens generated, then decoded).

use std::path::PathBuf;

use anyhow::{Context, Result};
use esm3_generate::prompt::{Prompt, MAX_LENGTH};
use esm3_generate::{EsmProtein, GenerationConfig, Strategy, Track};
use esm3_protein::fasta::read_fasta_file;

use super::design::{file_stem, write_design, Designer, SamplingArgs, StructureFormat};
use super::model::ModelArgs;
use super::progress::bar;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// FASTA file with one or many sequences (plain or .gz; `-` for standard input).
    input: PathBuf,
    /// Output folder: <record id>.pdb (pLDDT as B-factor) and <record id>.json.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "pdb")]
    format: StructureFormat,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Defaults for folding: entropy strategy, temperature 0 (deterministic).
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let records = read_fasta_file(&args.input)?;
    let designer = Designer::load(&args.model)?;
    if designer.pipeline.decoder.is_none() {
        anyhow::bail!(
            "{}: folding needs a structure decoder (structure_decoder/ in the model directory)",
            designer.model_path.display()
        );
    }
    let mut config = GenerationConfig::new(Track::Structure);
    config.strategy = Strategy::Entropy;
    config.temperature = 0.0;
    config.temperature_annealing = false;
    let config = args.sampling.apply(config);
    config.validate().map_err(anyhow::Error::msg)?;
    let pb = bar(records.len() as u64, "folding");
    for r in &records {
        let n = r.sequence.chars().count();
        if n > MAX_LENGTH {
            anyhow::bail!(
                "{}: record `{}` has {n} residues, beyond the model's limit of {MAX_LENGTH}",
                args.input.display(),
                r.id
            );
        }
        let prompt = Prompt {
            name: r.id.clone(),
            protein: EsmProtein {
                sequence: Some(r.sequence.clone()),
                ..Default::default()
            },
            motifs: Vec::new(),
            plan: vec![config.clone()],
        };
        let (protein, _) = designer
            .run(&prompt, args.seed, records.len() == 1)
            .with_context(|| format!("{}: record `{}`", args.input.display(), r.id))?;
        let safe = file_stem(&r.id);
        write_design(
            &args.output,
            &safe,
            &protein,
            args.format,
            serde_json::json!({
                "seed": args.seed, "model": designer.model_path.display().to_string(), "config": config,
            }),
        )?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    eprintln!(
        "folded {} sequences -> {}",
        records.len(),
        args.output.display()
    );
    Ok(())
}
