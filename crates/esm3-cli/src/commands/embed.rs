//! `esm3 embed`: per-residue and mean embeddings of FASTA sequences.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use esm3_generate::embed::embed_sequences;
use esm3_protein::fasta::read_fasta_file;
use npyz::WriterBuilder;

use super::design::file_stem;
use super::model::ModelArgs;
use super::progress::bar;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One safetensors file: `<id>.per_residue` [L, d] and `<id>.mean` [d].
    Safetensors,
    /// A directory of `<id>.per_residue.npy` and `<id>.mean.npy` files.
    Npy,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// FASTA file (plain or .gz; `-` for standard input).
    input: PathBuf,
    /// Output: a .safetensors file, or a directory for --format npy.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "safetensors")]
    format: Format,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Accepted for symmetry with the other commands: embeddings are deterministic.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    model: ModelArgs,
}

fn write_npy(path: &std::path::Path, t: &Tensor) -> Result<()> {
    let shape: Vec<u64> = t.dims().iter().map(|&d| d as u64).collect();
    let data = t.flatten_all()?.to_vec1::<f32>()?;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()?;
    w.extend(data)?;
    w.finish()?;
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let records = read_fasta_file(&args.input)?;
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        if !seen.insert(r.id.as_str()) {
            bail!(
                "{}: record id `{}` appears twice; ids name the outputs",
                args.input.display(),
                r.id
            );
        }
    }
    let (_, model) = args.model.load()?;
    let pb = bar(records.len() as u64, "embedding");
    let sequences: Vec<&str> = records.iter().map(|r| r.sequence.as_str()).collect();
    let embeddings = embed_sequences(&model, &sequences, args.batch_size, |n| pb.inc(n as u64))
        .map_err(|e| match e {
            esm3_generate::GenerationError::Prompt { prompt, message } => {
                anyhow::anyhow!(
                    "{}: record `{}`: {message}",
                    args.input.display(),
                    records[prompt].id
                )
            }
            other => other.into(),
        })?;
    pb.finish_and_clear();
    match args.format {
        Format::Safetensors => {
            let mut map = HashMap::new();
            for (r, e) in records.iter().zip(&embeddings) {
                map.insert(format!("{}.per_residue", r.id), e.per_residue.clone());
                map.insert(format!("{}.mean", r.id), e.mean.clone());
            }
            candle_core::safetensors::save(&map, &args.output)
                .with_context(|| format!("writing {}", args.output.display()))?;
        }
        Format::Npy => {
            std::fs::create_dir_all(&args.output)
                .with_context(|| format!("creating {}", args.output.display()))?;
            for (r, e) in records.iter().zip(&embeddings) {
                let safe = file_stem(&r.id);
                write_npy(
                    &args.output.join(format!("{safe}.per_residue.npy")),
                    &e.per_residue,
                )?;
                write_npy(&args.output.join(format!("{safe}.mean.npy")), &e.mean)?;
            }
        }
    }
    eprintln!(
        "embedded {} sequences -> {}",
        records.len(),
        args.output.display()
    );
    Ok(())
}
