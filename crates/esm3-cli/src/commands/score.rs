//! `esm3 score`: pseudo-log-likelihood per sequence, or masked-marginal scores of mutations.

use std::path::PathBuf;

use anyhow::{Context, Result};
use esm3_generate::score::{all_single_mutants, masked_marginals, pseudo_log_likelihood, Variant};
use esm3_protein::fasta::read_fasta_file;

use super::model::ModelArgs;
use super::progress::bar;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// FASTA file (plain or .gz; `-` for standard input).
    input: PathBuf,
    /// Score these variants of each sequence instead of its PLL, e.g. `A23V,G45D:K46R`
    /// (`:` joins mutations scored together; positions are 1-based).
    #[arg(long, value_delimiter = ',')]
    mutations: Vec<String>,
    /// Score every single mutant (deep mutational scan).
    #[arg(long, conflicts_with = "mutations")]
    scan: bool,
    /// Masked copies per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Output TSV (default: standard output).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Accepted for symmetry with the other commands: scores are deterministic.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let records = read_fasta_file(&args.input)?;
    let variants: Vec<Variant> = args
        .mutations
        .iter()
        .map(|m| Variant::parse(m).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let (dir, model) = args.model.load()?;
    let mut out = String::new();
    let pb = bar(records.len() as u64, "scoring");
    if variants.is_empty() && !args.scan {
        out.push_str("id\tlength\tpll\tmean_log_prob\tpseudo_perplexity\n");
        for r in &records {
            let s = pseudo_log_likelihood(&model, &r.sequence, args.batch_size)
                .with_context(|| format!("{}: record `{}`", args.input.display(), r.id))?;
            out.push_str(&format!(
                "{}\t{}\t{:.4}\t{:.4}\t{:.4}\n",
                r.id,
                s.per_residue.len(),
                s.pll,
                s.mean(),
                s.pseudo_perplexity()
            ));
            pb.inc(1);
        }
    } else {
        out.push_str("id\tvariant\tmasked_marginal\n");
        for r in &records {
            let vs = if args.scan {
                all_single_mutants(&r.sequence)
            } else {
                variants.clone()
            };
            let scores = masked_marginals(&model, &r.sequence, &vs, args.batch_size)
                .with_context(|| format!("{}: record `{}`", args.input.display(), r.id))?;
            for (v, s) in vs.iter().zip(scores) {
                out.push_str(&format!("{}\t{}\t{:.4}\n", r.id, v.text, s));
            }
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    match &args.output {
        Some(path) => {
            std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{out}"),
    }
    tracing::info!(model = %dir.path.display(), "scored {} records", records.len());
    Ok(())
}
