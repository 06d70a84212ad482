//! TM-align search and TM-scores against the `tm-align` (20190822) oracle pairs of shared/data.

mod oracle;

use esm3_protein::metrics::tmscore::tm_align;
use esm3_protein::residue_constants::CA;
use esm3_protein::Vec3;

/// CA trace of a chain as TM-align reads it: residues with a CA atom, in file order, ATOM
/// records only (TM-align skips HETATM residues such as MSE or modified residues, which our
/// reader keeps).
pub fn ca_trace(file: &str, chain: &str) -> Vec<Vec3> {
    indexed_ca_trace(file, chain)
        .into_iter()
        .map(|t| t.1)
        .collect()
}

/// [`ca_trace`] with each residue's position in the chain as read (hetero residues counted).
fn indexed_ca_trace(file: &str, chain: &str) -> Vec<(usize, Vec3)> {
    let path = oracle::data_dir().join("structures").join(file);
    let chain = esm3_protein::read_chain(&path, (!chain.is_empty()).then_some(chain))
        .unwrap_or_else(|e| panic!("{e}"));
    let hetero = oracle::pdb_hetero_residues(file);
    (0..chain.len())
        .filter(|&k| {
            !hetero.contains(&(
                chain.chain_id.clone(),
                chain.residue_index[k],
                chain.insertion_code[k],
            ))
        })
        .map(|k| (k, chain.atom37[k][CA]))
        .filter(|p| p.1.iter().all(|v| v.is_finite()))
        .collect()
}

#[test]
fn tm_align_matches_the_oracle_pairs() {
    let mut worst: f64 = 0.0;
    let mut n = 0;
    for row in oracle::pairs_table() {
        let (model, reference) = (
            ca_trace(&row.model_file, &row.model_chain),
            ca_trace(&row.ref_file, &row.ref_chain),
        );
        let r = tm_align(&model, &reference).unwrap();
        let d1 = (r.tm_norm_chain1 - row.tm_norm_model).abs();
        let d2 = (r.tm_norm_chain2 - row.tm_norm_ref).abs();
        eprintln!(
            "{} {} / {} {} [{}]: ours {:.5} {:.5} (L_ali {}), TM-align {:.5} {:.5} (L_ali {})",
            row.model_file,
            row.model_chain,
            row.ref_file,
            row.ref_chain,
            row.kind,
            r.tm_norm_chain1,
            r.tm_norm_chain2,
            r.aligned_length,
            row.tm_norm_model,
            row.tm_norm_ref,
            row.aligned_length
        );
        worst = worst.max(d1).max(d2);
        n += 1;
    }
    eprintln!("TM-align agreement over {n} pairs: max |Δ TM| = {worst:.5}");
    assert!(n >= 40);
    assert!(worst <= 0.01, "max deviation {worst}");
}

/// Same-sequence pairs: the oracle renumbered each chain's amino-acid residues 1..N (hetero
/// ones included, though only MSE was then written) and let the TMscore program and
/// OpenStructure's `lddt -c` pair them by number, i.e. the k-th residue with the k-th. Our
/// fixed-correspondence TM-score and CA-LDDT on that pairing must agree.
#[test]
fn fixed_pairing_scores_match_tmscore_and_openstructure_lddt() {
    use esm3_protein::metrics::{lddt, tmscore::tm_score, LDDT_CUTOFF};
    let (mut worst_tm, mut worst_lddt, mut n): (f64, f64, usize) = (0.0, 0.0, 0);
    for row in oracle::pairs_table()
        .iter()
        .filter(|r| r.kind == "same_sequence")
    {
        let model: std::collections::HashMap<usize, Vec3> =
            indexed_ca_trace(&row.model_file, &row.model_chain)
                .into_iter()
                .collect();
        let reference = indexed_ca_trace(&row.ref_file, &row.ref_chain);
        let paired: Vec<(Vec3, Vec3)> = reference
            .iter()
            .filter_map(|(k, r)| model.get(k).map(|m| (*m, *r)))
            .collect();
        let (pm, pr): (Vec<Vec3>, Vec<Vec3>) = paired.into_iter().unzip();
        let tm = tm_score(&pm, &pr, None, reference.len());
        // OpenStructure scores every reference CA; a reference residue without a model partner
        // keeps its pairs but loses them all, which a far-away placeholder reproduces.
        let predicted: Vec<Vec3> = reference
            .iter()
            .map(|(k, _)| model.get(k).copied().unwrap_or([1e6; 3]))
            .collect();
        let truth: Vec<Vec3> = reference.iter().map(|t| t.1).collect();
        let l = lddt(&predicted, &truth, &vec![true; truth.len()], LDDT_CUTOFF).global;
        eprintln!(
            "{} / {}: TM {tm:.4} vs TMscore {:.4}; CA-LDDT {l:.4} vs OST {:.4}",
            row.model_file, row.ref_file, row.tmscore_tm, row.lddt_ca
        );
        worst_tm = worst_tm.max((tm - row.tmscore_tm).abs());
        worst_lddt = worst_lddt.max((l - row.lddt_ca).abs());
        n += 1;
    }
    eprintln!("{n} same-sequence pairs: max |d TM| {worst_tm:.5}, max |d CA-LDDT| {worst_lddt:.5}");
    assert!(n >= 20);
    assert!(worst_tm <= 0.01, "{worst_tm}");
    assert!(worst_lddt <= 0.01, "{worst_lddt}");
}
