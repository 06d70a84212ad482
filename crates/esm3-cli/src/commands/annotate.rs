//! `esm3 annotate`: per-residue SS8 (DSSP) and SASA of the protein chains of a structure file,
//! the two structure-derived tracks ESM3 conditions on.

use std::path::PathBuf;

use std::io::Write;

use anyhow::{bail, Result};
use esm3_protein::{dssp, sasa, ProteinChain};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per chain and line.
    #[default]
    Json,
    /// One row per residue with a header.
    Tsv,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// PDB or mmCIF file (optionally gzipped).
    file: PathBuf,
    /// Author chain id; every protein chain of the first model when omitted.
    #[arg(long)]
    chain: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

/// Annotations of one chain. Each chain is computed alone, as the reference's
/// `ProteinChain.dssp()` / `.sasa()` see one chain, so contacts with other chains do not count.
struct Annotation<'a> {
    chain: &'a ProteinChain,
    ss8: String,
    /// Å² per residue; `None` for a residue without any atom (the reference would give 0).
    sasa: Vec<Option<f64>>,
    /// SASA track ids per residue (no BOS/EOS); the mask id 0 where `sasa` is `None`.
    sasa_tokens: Vec<u32>,
}

fn annotate(chain: &ProteinChain) -> Annotation<'_> {
    let ss8 = dssp::assign_chains(&[chain]).remove(0);
    let per_residue = sasa::chains_sasa(&[chain]).remove(0);
    let sasa: Vec<Option<f64>> = chain
        .atom37
        .iter()
        .zip(per_residue)
        .map(|(atoms, s)| {
            atoms
                .iter()
                .any(|p| p.iter().all(|v| v.is_finite()))
                .then_some(s)
        })
        .collect();
    let sasa_tokens = sasa
        .iter()
        .map(|s| s.map_or(esm3_tokens::sasa::PAD, |v| esm3_tokens::sasa::bin(v as f32)))
        .collect();
    Annotation {
        chain,
        ss8,
        sasa,
        sasa_tokens,
    }
}

pub fn run(args: Args) -> Result<()> {
    let chains: Vec<ProteinChain> = match &args.chain {
        Some(id) => vec![esm3_protein::read_chain(&args.file, Some(id))?],
        None => esm3_protein::read_structure(&args.file)?.into_chains(),
    };
    if chains.is_empty() {
        bail!("{}: no protein chain", args.file.display());
    }
    let annotations: Vec<Annotation> = chains.iter().map(annotate).collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => {
            for a in &annotations {
                // Keys in the documented order (serde_json's map would sort them).
                let record = ChainRecord {
                    chain: &a.chain.chain_id,
                    sequence: &a.chain.sequence,
                    ss8: &a.ss8,
                    sasa: &a.sasa,
                    sasa_tokens: &a.sasa_tokens,
                };
                writeln!(out, "{}", serde_json::to_string(&record)?)?;
            }
        }
        Format::Tsv => {
            writeln!(
                out,
                "chain\tresidue_index\tinsertion_code\taa\tss8\tsasa\tsasa_token"
            )?;
            for a in &annotations {
                let c = a.chain;
                for (k, aa) in c.sequence.chars().enumerate() {
                    let sasa = a.sasa[k].map_or(String::new(), |v| format!("{v:.3}"));
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{aa}\t{}\t{sasa}\t{}",
                        c.chain_id,
                        c.residue_index[k],
                        c.insertion_code[k].to_string().trim(),
                        &a.ss8[k..k + 1],
                        a.sasa_tokens[k],
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

#[derive(serde::Serialize)]
struct ChainRecord<'a> {
    chain: &'a str,
    sequence: &'a str,
    ss8: &'a str,
    sasa: &'a [Option<f64>],
    sasa_tokens: &'a [u32],
}
