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
    /// Compare every protein chain of A with every chain of B as complexes: chains are mapped
    /// one to one (highest TM-score first), then scored per chain and as one complex (all
    /// mapped pairs under one superposition, TM-score normalised by B's total length).
    #[arg(long, conflicts_with_all = ["chain_a", "chain_b"])]
    complex: bool,
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
    if args.complex {
        return run_complex(&args);
    }
    let a = esm3_protein::read_chain(&args.a, args.chain_a.as_deref())?;
    let b = esm3_protein::read_chain(&args.b, args.chain_b.as_deref())?;
    let (ta, tb) = (ca_trace(&a), ca_trace(&b));
    let xa: Vec<Vec3> = ta.iter().map(|t| t.1).collect();
    let xb: Vec<Vec3> = tb.iter().map(|t| t.1).collect();

    let (pairs, tm_align) = pair_residues(&ta, &tb, args.by_residue)?;
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

/// Residue pairs (index into A's trace, index into B's trace) and TM-align's result, if it ran.
type Pairing = (Vec<(usize, usize)>, Option<tmscore::TmAlign>);

/// Residue pairs (index into A's trace, index into B's trace) of two chains, by TM-align or
/// by residue number, with TM-align's result when it ran.
fn pair_residues(
    ta: &[((i32, char), Vec3)],
    tb: &[((i32, char), Vec3)],
    by_residue: bool,
) -> Result<Pairing> {
    if by_residue {
        let index: std::collections::HashMap<_, _> =
            tb.iter().enumerate().map(|(j, t)| (t.0, j)).collect();
        let pairs = ta
            .iter()
            .enumerate()
            .filter_map(|(i, t)| index.get(&t.0).map(|&j| (i, j)))
            .collect();
        return Ok((pairs, None));
    }
    let xa: Vec<Vec3> = ta.iter().map(|t| t.1).collect();
    let xb: Vec<Vec3> = tb.iter().map(|t| t.1).collect();
    let r = tmscore::tm_align(&xa, &xb).context("TM-align")?;
    let pairs = r
        .alignment
        .iter()
        .enumerate()
        .filter_map(|(j, i)| i.map(|i| (i, j)))
        .collect();
    Ok((pairs, Some(r)))
}

/// `compare --complex`: chain mapping, per-chain scores and the whole-complex score.
fn run_complex(args: &Args) -> Result<()> {
    let read = |p: &PathBuf| -> Result<Vec<ProteinChain>> {
        let chains = esm3_protein::read_structure(p)?.into_chains();
        if chains.is_empty() {
            bail!("{}: no protein chain", p.display());
        }
        Ok(chains)
    };
    let (ca, cb) = (read(&args.a)?, read(&args.b)?);
    let ta: Vec<_> = ca.iter().map(ca_trace).collect();
    let tb: Vec<_> = cb.iter().map(ca_trace).collect();
    // Every chain pair scored (normalised by B's chain), then mapped greedily, best first. For
    // distinct partners that is the mapping; copies of a homo-oligomer that are nearly alike
    // may be paired otherwise than the best whole-complex superposition would pair them (the
    // per-chain scores in the output show it).
    let mut scored = Vec::new();
    for (i, x) in ta.iter().enumerate() {
        for (j, y) in tb.iter().enumerate() {
            if x.len() < tmscore::MIN_LENGTH || y.len() < tmscore::MIN_LENGTH {
                continue;
            }
            let (pairs, r) = pair_residues(x, y, args.by_residue)?;
            let tm = match &r {
                Some(r) => r.tm_norm_chain2,
                None => {
                    let pa: Vec<Vec3> = pairs.iter().map(|&(k, _)| x[k].1).collect();
                    let pb: Vec<Vec3> = pairs.iter().map(|&(_, k)| y[k].1).collect();
                    tmscore::tm_score(&pa, &pb, None, y.len())
                }
            };
            scored.push((tm, i, j, pairs));
        }
    }
    scored.sort_by(|p, q| q.0.total_cmp(&p.0));
    let (mut used_a, mut used_b) = (vec![false; ca.len()], vec![false; cb.len()]);
    let mut mapping = Vec::new();
    for (tm, i, j, pairs) in scored {
        if used_a[i] || used_b[j] || pairs.len() < 3 {
            continue;
        }
        used_a[i] = true;
        used_b[j] = true;
        mapping.push((tm, i, j, pairs));
    }
    if mapping.is_empty() {
        bail!(
            "no chain of {} could be paired with a chain of {}",
            args.a.display(),
            args.b.display()
        );
    }
    mapping.sort_by_key(|m| m.2);
    let (mut all_a, mut all_b) = (Vec::new(), Vec::new());
    let mut per_chain = Vec::new();
    for (tm, i, j, pairs) in &mapping {
        let pa: Vec<Vec3> = pairs.iter().map(|&(k, _)| ta[*i][k].1).collect();
        let pb: Vec<Vec3> = pairs.iter().map(|&(_, k)| tb[*j][k].1).collect();
        let (rmsd, _) = metrics::superposed_rmsd(&pa, &pb, None).expect("pairs exist");
        per_chain.push(serde_json::json!({
            "chain_a": ca[*i].chain_id,
            "chain_b": cb[*j].chain_id,
            "paired_residues": pairs.len(),
            "tm_score": tm,
            "rmsd": rmsd,
        }));
        all_a.extend(pa);
        all_b.extend(pb);
    }
    let total_b: usize = tb.iter().map(Vec::len).sum();
    let total_a: usize = ta.iter().map(Vec::len).sum();
    let (rmsd, _) = metrics::superposed_rmsd(&all_a, &all_b, None).expect("pairs exist");
    let value = serde_json::json!({
        "a": {"file": args.a.display().to_string(), "chains": ca.iter().map(|c| c.chain_id.clone()).collect::<Vec<_>>(), "length": total_a},
        "b": {"file": args.b.display().to_string(), "chains": cb.iter().map(|c| c.chain_id.clone()).collect::<Vec<_>>(), "length": total_b},
        "pairing": if args.by_residue { "residue_number" } else { "tm_align" },
        "chain_mapping": per_chain,
        "unmapped_a": ca.iter().zip(&used_a).filter(|(_, &u)| !u).map(|(c, _)| c.chain_id.clone()).collect::<Vec<_>>(),
        "unmapped_b": cb.iter().zip(&used_b).filter(|(_, &u)| !u).map(|(c, _)| c.chain_id.clone()).collect::<Vec<_>>(),
        "paired_residues": all_a.len(),
        // One superposition for the whole complex: chains placed wrongly against each other
        // lower it even when each chain alone is right.
        "tm_score": tmscore::tm_score(&all_a, &all_b, None, total_b),
        "tm_score_norm_a": tmscore::tm_score(&all_a, &all_b, None, total_a),
        "rmsd": rmsd,
        "lddt_ca": metrics::lddt(&all_a, &all_b, &vec![true; all_a.len()], metrics::LDDT_CUTOFF).global,
    });
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
