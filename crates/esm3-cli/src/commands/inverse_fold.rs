//! `esm3 inverse-fold`: structures → sequences.

use std::path::PathBuf;

use anyhow::{Context, Result};
use esm3_generate::batching::length_batches;
use esm3_generate::design::InverseFoldingInput;
use esm3_generate::prompt::Prompt;
use esm3_generate::GenerationConfig;
use esm3_protein::fasta::{write_fasta, FastaRecord};

use super::design::{Designer, SamplingArgs};
use super::model::ModelArgs;
use super::progress::bar;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// PDB/mmCIF files (plain or .gz).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Chain to design (default: the first protein chain of each file). Several (`A,B`) are
    /// designed as one complex, joined by the chain-break token: `AAA|BBB` in the output.
    #[arg(long, value_delimiter = ',')]
    chain: Vec<String>,
    /// Chains of the complex whose native sequence is kept (the partner of a binder): only the
    /// other chains are designed, in the context of these.
    #[arg(long, value_delimiter = ',')]
    fix: Vec<String>,
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
    let config = args.sampling.apply(GenerationConfig::inverse_folding());
    config.validate().map_err(anyhow::Error::msg)?;
    // Every (structure, output) pair is one job; seeds are seed + output index as before.
    struct Job {
        structure: usize,
        output: usize,
    }
    let mut structures = Vec::new();
    for path in &args.inputs {
        let complex = read_complex(path, &args.chain, &args.fix)?;
        let stem = path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let stem = stem.split('.').next().unwrap_or("structure").to_string();
        let prompt = Prompt {
            name: format!("{stem}_{}", complex.ids.concat()),
            protein: complex.prompt.clone(),
            motifs: Vec::new(),
            plan: vec![config.clone()],
        };
        structures.push((path, complex, prompt));
    }
    let jobs: Vec<Job> = (0..structures.len())
        .flat_map(|structure| (0..args.num_outputs).map(move |output| Job { structure, output }))
        .collect();
    let output_order: Vec<(usize, usize)> = jobs.iter().map(|j| (j.structure, j.output)).collect();
    let lengths: Vec<usize> = jobs
        .iter()
        .map(|j| structures[j.structure].1.designed.len())
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
            let (path, complex, prompt) = &structures[job.structure];
            let (protein, _) = result
                .with_context(|| format!("{}: chain {}", path.display(), complex.ids.join(",")))?;
            let sequence = protein.sequence.unwrap_or_default();
            // Over the designed residues only (not fixed chains, not chain breaks).
            let recovery = complex.recovery(&sequence);
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

/// The chains of `path` to inverse-fold, errors naming the file.
fn read_complex(
    path: &std::path::Path,
    ids: &[String],
    fix: &[String],
) -> Result<InverseFoldingInput> {
    let structure = esm3_protein::read_structure(path)?;
    InverseFoldingInput::new(structure.chains(), ids, fix)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
