//! `esm3 annotate`: per-residue SS8 (DSSP) and SASA of the protein chains of a structure file,
//! the two structure-derived tracks ESM3 conditions on. By default both are computed over the
//! whole first model, as mkdssp and FreeSASA do; `--per-chain` gives the reference's
//! convention (`esm/utils/structure/protein_chain.py`: `ProteinChain.dssp()` and `.sasa()` see
//! one chain), which is how the SS8 and SASA tracks of its training data were made.

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

/// Which atoms a chain's SASA sees.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SasaContext {
    /// With every protein chain of the model present: the chain's surface in its complex.
    Complex,
    /// The chain alone, as the reference's `ProteinChain.sasa()` computes it.
    Isolated,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// PDB or mmCIF file (optionally gzipped).
    file: PathBuf,
    /// Author chain ids to report (`A` or `A,B`); every protein chain of the first model when
    /// omitted. The others still count as the chains' surroundings unless --per-chain.
    #[arg(long, value_delimiter = ',')]
    chain: Vec<String>,
    /// DSSP of each chain alone, as the reference's `ProteinChain.dssp()` (and so the SS8 its
    /// model was given) sees it. By default DSSP runs over all protein chains of the first
    /// model together, as mkdssp does: β-sheets and H-bonds across chains count.
    #[arg(long)]
    per_chain: bool,
    /// SASA in the complex or of each chain alone. Default: complex, isolated with --per-chain.
    #[arg(long, value_enum)]
    sasa: Option<SasaContext>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

/// Annotations of one chain.
struct Annotation<'a> {
    chain: &'a ProteinChain,
    ss8: String,
    /// Å² per residue; `None` for a residue without any atom (the reference would give 0).
    sasa: Vec<Option<f64>>,
    /// SASA track ids per residue (no BOS/EOS); the mask id 0 where `sasa` is `None`.
    sasa_tokens: Vec<u32>,
}

fn annotation<'a>(chain: &'a ProteinChain, ss8: String, per_residue: Vec<f64>) -> Annotation<'a> {
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

/// DSSP and SASA of every chain, over the assembly or chain by chain.
fn annotate_all(
    chains: &[ProteinChain],
    per_chain: bool,
    sasa: SasaContext,
) -> Vec<Annotation<'_>> {
    let all: Vec<&ProteinChain> = chains.iter().collect();
    let ss8 = if per_chain {
        all.iter()
            .map(|c| dssp::assign_chains(&[c]).remove(0))
            .collect()
    } else {
        dssp::assign_chains(&all)
    };
    let areas = match sasa {
        SasaContext::Complex => sasa::chains_sasa(&all),
        SasaContext::Isolated => all
            .iter()
            .map(|c| sasa::chains_sasa(&[c]).remove(0))
            .collect(),
    };
    chains
        .iter()
        .zip(ss8)
        .zip(areas)
        .map(|((c, s), a)| annotation(c, s, a))
        .collect()
}

pub fn run(args: Args) -> Result<()> {
    let chains: Vec<ProteinChain> = esm3_protein::read_structure(&args.file)?.into_chains();
    if chains.is_empty() {
        bail!("{}: no protein chain", args.file.display());
    }
    for id in &args.chain {
        if !chains.iter().any(|c| &c.chain_id == id) {
            let known: Vec<String> = chains.iter().map(|c| format!("'{}'", c.chain_id)).collect();
            bail!(
                "{}: no protein chain '{id}' in the first model (chains: {})",
                args.file.display(),
                known.join(", ")
            );
        }
    }
    let context = args.sasa.unwrap_or(if args.per_chain {
        SasaContext::Isolated
    } else {
        SasaContext::Complex
    });
    let annotations: Vec<Annotation> = annotate_all(&chains, args.per_chain, context)
        .into_iter()
        .filter(|a| args.chain.is_empty() || args.chain.contains(&a.chain.chain_id))
        .collect();
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
