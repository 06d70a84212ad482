//! `esm3 inverse-fold`: structures → sequences.

use std::path::PathBuf;

use anyhow::{Context, Result};
use esm3_generate::batching::length_batches;
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
    /// Designs generated together (one forward per decoding step for the batch). Structures are
    /// grouped by length; each design equals generating it alone with its seed.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
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
    // Every (structure, output) pair is one job; seeds are seed + output index as before.
    struct Job {
        structure: usize,
        output: usize,
    }
    let mut structures = Vec::new();
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
        structures.push((path, chain, prompt));
    }
    let jobs: Vec<Job> = (0..structures.len())
        .flat_map(|structure| (0..args.num_outputs).map(move |output| Job { structure, output }))
        .collect();
    let output_order: Vec<(usize, usize)> = jobs.iter().map(|j| (j.structure, j.output)).collect();
    let lengths: Vec<usize> = jobs
        .iter()
        .map(|j| structures[j.structure].1.len())
        .collect();
    let pb = bar(jobs.len() as u64, "inverse folding");
    let mut designed: std::collections::HashMap<(usize, usize), FastaRecord> =
        std::collections::HashMap::new();
    for batch in &length_batches(&lengths, args.batch_size as usize) {
        let chunk: Vec<&Job> = batch.iter().map(|&i| &jobs[i]).collect();
        let prompts: Vec<Prompt> = chunk
            .iter()
            .map(|j| structures[j.structure].2.clone())
            .collect();
        let seeds: Vec<u64> = chunk.iter().map(|j| args.seed + j.output as u64).collect();
        let results = if prompts.len() == 1 {
            vec![designer.run(&prompts[0], seeds[0], false)]
        } else {
            designer.run_batch(&prompts, &seeds)?
        };
        for ((job, result), &seed) in chunk.iter().zip(results).zip(&seeds) {
            let (path, chain, prompt) = &structures[job.structure];
            let (protein, _) =
                result.with_context(|| format!("{}: chain {}", path.display(), chain.chain_id))?;
            let sequence = protein.sequence.unwrap_or_default();
            let recovery = sequence
                .chars()
                .zip(chain.sequence.chars())
                .filter(|(a, b)| a == b)
                .count() as f64
                / chain.sequence.chars().count().max(1) as f64;
            designed.insert(
                (job.structure, job.output),
                FastaRecord {
                    id: if args.num_outputs == 1 {
                        prompt.name.clone()
                    } else {
                        format!("{}_{}", prompt.name, job.output)
                    },
                    description: format!(
                        "seed={seed} recovery={recovery:.3} source={}",
                        path.display()
                    ),
                    sequence,
                },
            );
            pb.inc(1);
        }
    }
    let records: Vec<FastaRecord> = output_order
        .iter()
        .map(|k| designed.remove(k).expect("every job ran"))
        .collect();
    pb.finish_and_clear();
    let mut buf = Vec::new();
    write_fasta(&mut buf, &records)?;
    match &args.output {
        Some(p) => std::fs::write(p, buf).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{}", String::from_utf8_lossy(&buf)),
    }
    Ok(())
}
