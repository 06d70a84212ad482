//! `esm3 fold`: sequences → structures (structure tokens generated, then decoded).

use std::path::PathBuf;

use anyhow::{Context, Result};
use esm3_generate::batching::length_batches;
use esm3_generate::design::fold_prompt;
use esm3_generate::prompt::Prompt;
use esm3_generate::GenerationConfig;
use esm3_protein::fasta::read_fasta_file;

use super::design::{file_stem, write_design, Designer, RelaxArgs, SamplingArgs, StructureFormat};
use super::model::ModelArgs;
use super::progress::bar;
use super::report::{ReportArgs, RunReport};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// FASTA file with one or many sequences (plain or .gz; `-` for standard input).
    input: PathBuf,
    /// Output folder: <record id>.pdb (pLDDT as B-factor), <record id>.json and <record id>.png
    /// (pLDDT and PAE), and report.html listing them all.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "pdb")]
    format: StructureFormat,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Records folded together (one forward per decoding step for the batch). Records are
    /// grouped by length; the result of each equals folding it alone.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    #[command(flatten)]
    relax: RelaxArgs,
    #[command(flatten)]
    report: ReportArgs,
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
    let config = args.sampling.apply(GenerationConfig::folding());
    config.validate().map_err(anyhow::Error::msg)?;
    let prompts: Vec<Prompt> = records
        .iter()
        .map(|r| {
            fold_prompt(&r.id, &r.sequence, &config)
                .map_err(|e| anyhow::anyhow!("{}: record `{}`: {e}", args.input.display(), r.id))
        })
        .collect::<Result<_>>()?;
    // Records of similar length share a batch; outputs do not depend on the grouping.
    let lengths: Vec<usize> = records.iter().map(|r| r.sequence.chars().count()).collect();
    let mut report = RunReport::new(args.report, &args.output, esm3_report::PAGE)?;
    let pb = bar(records.len() as u64, "folding");
    for chunk in &length_batches(&lengths, args.batch_size as usize) {
        let prompts: Vec<Prompt> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let results = if prompts.len() == 1 {
            vec![designer.run(&prompts[0], args.seed, records.len() == 1)]
        } else {
            designer.run_batch(&prompts, &vec![args.seed; prompts.len()])?
        };
        for (&i, result) in chunk.iter().zip(results) {
            let r = &records[i];
            let (protein, _) =
                result.with_context(|| format!("{}: record `{}`", args.input.display(), r.id))?;
            let summary = write_design(
                &args.output,
                &file_stem(&r.id),
                &protein,
                args.format,
                args.relax,
                &[],
                serde_json::json!({
                    "seed": args.seed, "model": designer.model_path.display().to_string(), "config": config,
                }),
            )?;
            report.add_design(i, &summary, &protein)?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    report.finish(&format!(
        "esm3 fold: {} ({} sequences)",
        args.input.display(),
        records.len()
    ))?;
    eprintln!(
        "folded {} sequences -> {}",
        records.len(),
        args.output.display()
    );
    Ok(())
}
