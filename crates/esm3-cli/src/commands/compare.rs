//! `esm3 compare`: structural similarity of two protein chains (TM-score with TM-align's
//! search, and RMSD, CA-LDDT and GDT-TS over the aligned residues).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use esm3_protein::metrics::{self, tmscore};
use esm3_protein::residue_constants::CA;
use esm3_protein::{ProteinChain, Vec3};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model (mobile) structure file.
    a: PathBuf,
    /// The reference structure file; TM-score is normalised by its length.
    b: PathBuf,
    /// Chain of A (default: its first protein chain).
    #[arg(long)]
    chain_a: Option<String>,
    /// Chain of B (default: its first protein chain).
    #[arg(long)]
    chain_b: Option<String>,
    /// Pair residues by author number (and insertion code) instead of aligning structurally,
    /// as the TMscore program and LDDT tools do for models of one sequence.
    #[arg(long)]
    by_residue: bool,
}

/// CA atoms with their residue keys.
fn ca_trace(chain: &ProteinChain) -> Vec<((i32, char), Vec3)> {
    (0..chain.len())
        .filter(|&k| chain.atom37[k][CA].iter().all(|v| v.is_finite()))
        .map(|k| {
            (
                (chain.residue_index[k], chain.insertion_code[k]),
                chain.atom37[k][CA],
            )
        })
        .collect()
}

pub fn run(args: Args) -> Result<()> {
    let a = esm3_protein::read_chain(&args.a, args.chain_a.as_deref())?;
    let b = esm3_protein::read_chain(&args.b, args.chain_b.as_deref())?;
    let (ta, tb) = (ca_trace(&a), ca_trace(&b));
    let xa: Vec<Vec3> = ta.iter().map(|t| t.1).collect();
    let xb: Vec<Vec3> = tb.iter().map(|t| t.1).collect();

    // Residue pairs (index into A's trace, index into B's trace).
    let (pairs, tm_align) = if args.by_residue {
        let index: std::collections::HashMap<_, _> =
            tb.iter().enumerate().map(|(j, t)| (t.0, j)).collect();
        let pairs: Vec<(usize, usize)> = ta
            .iter()
            .enumerate()
            .filter_map(|(i, t)| index.get(&t.0).map(|&j| (i, j)))
            .collect();
        (pairs, None)
    } else {
        let r = tmscore::tm_align(&xa, &xb).context("TM-align")?;
        let pairs = r
            .alignment
            .iter()
            .enumerate()
            .filter_map(|(j, i)| i.map(|i| (i, j)))
            .collect();
        (pairs, Some(r))
    };
    if pairs.len() < 3 {
        bail!(
            "only {} residue pairs between {} and {}; need at least 3",
            pairs.len(),
            args.a.display(),
            args.b.display()
        );
    }
    let pa: Vec<Vec3> = pairs.iter().map(|&(i, _)| xa[i]).collect();
    let pb: Vec<Vec3> = pairs.iter().map(|&(_, j)| xb[j]).collect();
    let (rmsd, _) = metrics::superposed_rmsd(&pa, &pb, None).expect("pairs exist");
    let gdt = metrics::gdt_ts(&pa, &pb, None).expect("pairs exist");
    let lddt = metrics::lddt(&pa, &pb, &vec![true; pa.len()], metrics::LDDT_CUTOFF).global;
    let (tm_b, tm_a) = match &tm_align {
        Some(r) => (r.tm_norm_chain2, r.tm_norm_chain1),
        None => (
            tmscore::tm_score(&pa, &pb, None, xb.len()),
            tmscore::tm_score(&pa, &pb, None, xa.len()),
        ),
    };
    let value = serde_json::json!({
        "a": {"file": args.a.display().to_string(), "chain": a.chain_id, "length": xa.len()},
        "b": {"file": args.b.display().to_string(), "chain": b.chain_id, "length": xb.len()},
        "pairing": if args.by_residue { "residue_number" } else { "tm_align" },
        "paired_residues": pairs.len(),
        "tm_score": tm_b,
        "tm_score_norm_a": tm_a,
        "tm_align_aligned_length": tm_align.as_ref().map(|r| r.aligned_length),
        "tm_align_rmsd": tm_align.as_ref().map(|r| r.rmsd),
        "rmsd": rmsd,
        // The reference's compute_affine_and_rmsd divides by 3·N (per-coordinate RMS).
        "rmsd_reference_convention": rmsd / 3f64.sqrt(),
        "lddt_ca": lddt,
        "gdt_ts": gdt,
    });
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
