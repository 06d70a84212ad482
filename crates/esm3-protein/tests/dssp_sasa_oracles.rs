//! DSSP and SASA on the real structures of `shared/data` against mkdssp, biotite and FreeSASA.

mod oracle;

/// Every `step`-th file of the oracle table: (agreeing residues, compared residues, files).
fn dssp_over(step: usize) -> (usize, usize, usize) {
    let table = oracle::per_residue_table();
    let (mut agree, mut total, mut files) = (0, 0, 0);
    let mut confusion = std::collections::BTreeMap::new();
    for (file, rows) in table.iter().step_by(step) {
        if let Some((a, t, diffs)) = oracle::dssp_agreement(file, rows) {
            agree += a;
            total += t;
            files += 1;
            if t > 0 && (a as f64) < 0.97 * t as f64 {
                eprintln!("{file}: {a}/{t}");
            }
            for d in diffs {
                *confusion.entry(d).or_insert(0usize) += 1;
            }
        }
    }
    eprintln!("mkdssp→ours confusion: {confusion:?}");
    (agree, total, files)
}

#[test]
fn dssp_agrees_with_mkdssp_on_all_structures() {
    // All 578 files take a few seconds, so CI runs the full set.
    let (agree, total, files) = dssp_over(1);
    let rate = agree as f64 / total as f64;
    eprintln!(
        "DSSP: {agree}/{total} residues agree ({:.3}%) over {files} files",
        100.0 * rate
    );
    assert!(total > 160_000, "only {total} residues compared");
    assert!(rate >= 0.999, "agreement {rate}");
}

/// Whether two chains of a structure touch: some Cα pair across them within 8 Å.
fn chains_in_contact(chains: &[esm3_protein::ProteinChain]) -> bool {
    let ca = |c: &esm3_protein::ProteinChain| -> Vec<[f32; 3]> {
        c.atom37
            .iter()
            .map(|r| r[1])
            .filter(|p| p[0].is_finite())
            .collect()
    };
    let cas: Vec<Vec<[f32; 3]>> = chains.iter().map(ca).collect();
    for i in 0..cas.len() {
        for j in i + 1..cas.len() {
            for a in &cas[i] {
                for b in &cas[j] {
                    let d2: f32 = (0..3).map(|k| (a[k] - b[k]).powi(2)).sum();
                    if d2 < 64.0 {
                        return true;
                    }
                }
            }
        }
    }
    false
}

#[test]
fn dssp_over_complexes_agrees_with_mkdssp() {
    // The shared files with two or more protein chains in contact: mkdssp ran on the whole
    // file, so H-bonds and sheets across chains are in its answer.
    let table = oracle::per_residue_table();
    let (mut agree, mut total, mut files) = (0, 0, 0);
    for (file, rows) in &table {
        let path = oracle::data_dir().join("structures").join(file);
        let Ok(structure) = esm3_protein::read_structure(&path) else {
            continue;
        };
        let chains = structure.chains();
        if chains.len() < 2 || !chains_in_contact(chains) {
            continue;
        }
        if let Some((a, t, _)) = oracle::dssp_agreement(file, rows) {
            agree += a;
            total += t;
            files += 1;
        }
    }
    let rate = agree as f64 / total as f64;
    eprintln!(
        "DSSP over complexes: {agree}/{total} residues ({:.3}%) in {files} files",
        100.0 * rate
    );
    assert!(
        files >= 35 && total > 30_000,
        "{files} files, {total} residues"
    );
    assert!(rate >= 0.999, "agreement {rate}");
}

#[test]
fn a_beta_sheet_across_chains_is_found_as_mkdssp_finds_it() {
    // 2BEG, Aβ(17-42) fibril: five chains, one β-sheet made only of inter-chain H-bonds.
    // Golden: mkdssp 4.2.2 on model 1 (tools/make_dssp_complex_oracle.sh).
    let root = esm3_test_support::repo_root();
    let golden =
        std::fs::read_to_string(root.join("fixtures/dssp/2BEG_model1_mkdssp.tsv")).unwrap();
    let path = oracle::data_dir().join("structures/format_pairs/biopython/2BEG.pdb.gz");
    let structure = esm3_protein::read_structure(&path).unwrap();
    let chains: Vec<&esm3_protein::ProteinChain> = structure.chains().iter().collect();
    assert_eq!(chains.len(), 5);
    let together = esm3_protein::dssp::assign_chains(&chains);
    let mut compared = 0;
    for line in golden.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let k = chains.iter().position(|c| c.chain_id == f[0]).unwrap();
        let i = chains[k]
            .residue_index
            .iter()
            .position(|&r| r.to_string() == f[1])
            .unwrap();
        let ours = together[k].as_bytes()[i] as char;
        let theirs = f[3].chars().next().unwrap();
        let ours = if ours == '-' { 'C' } else { ours };
        assert_eq!(ours, theirs, "chain {} residue {}", f[0], f[1]);
        compared += 1;
    }
    assert_eq!(compared, 130);
    assert!(
        together.iter().all(|s| s.matches('E').count() == 20),
        "{together:?}"
    );
    // Each chain alone has no partner strand: no sheet at all.
    for c in &chains {
        assert!(!esm3_protein::dssp::assign_chains(&[c])[0].contains('E'));
    }
}

/// (ours, reference) per-residue SASA over the biotite fixture chains.
fn sasa_vs_biotite() -> Vec<(f64, f64)> {
    let path = esm3_test_support::reference_fixtures().join("geometry/sasa_biotite.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    type Rows = Vec<(i32, char, f64)>;
    let mut by_chain: std::collections::BTreeMap<(String, String), Rows> = Default::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        by_chain
            .entry((f[0].into(), f[1].into()))
            .or_default()
            .push((
                f[2].parse().unwrap(),
                f[3].chars().next().unwrap_or(' '),
                f[4].parse().unwrap(),
            ));
    }
    let mut pairs = Vec::new();
    let mut compared = 0;
    for ((file, chain_id), rows) in by_chain {
        let path = oracle::data_dir().join("structures").join(&file);
        let chain = esm3_protein::read_chain(&path, Some(&chain_id)).unwrap();
        let ours = &esm3_protein::sasa::chains_sasa(&[&chain])[0];
        // Where the readers disagree on the residues (the reference splits microheterogeneity
        // into two residues) the atoms differ, so the chain is not comparable.
        let same = chain.len() == rows.len()
            && rows
                .iter()
                .enumerate()
                .all(|(k, r)| chain.residue_index[k] == r.0);
        if !same {
            eprintln!("{file} {chain_id}: residues differ from the reference reader; skipped");
            continue;
        }
        compared += 1;
        for (k, (_, _, reference)) in rows.into_iter().enumerate() {
            pairs.push((ours[k], reference));
        }
    }
    assert!(compared >= 20, "only {compared} chains comparable");
    pairs
}

#[test]
fn sasa_agrees_with_biotite_as_the_reference_calls_it() {
    let pairs = sasa_vs_biotite();
    let exposed: Vec<_> = pairs.iter().filter(|p| p.1 > 1.0).collect();
    let mean_rel =
        exposed.iter().map(|(o, r)| (o - r).abs() / r).sum::<f64>() / exposed.len() as f64;
    let max_abs = pairs.iter().map(|(o, r)| (o - r).abs()).fold(0.0, f64::max);
    eprintln!(
        "SASA vs biotite: {} residues, mean |Δ|/ref {:.5}% (residues > 1 Å²), max |Δ| {:.4} Å²",
        pairs.len(),
        100.0 * mean_rel,
        max_abs
    );
    assert!(pairs.len() > 2000);
    assert!(mean_rel <= 0.01, "mean relative difference {mean_rel}");
}

/// Mean |ours − FreeSASA| / FreeSASA over residues with FreeSASA > 1 Å², for every
/// `step`-th file (all protein chains of a file together, as FreeSASA ran).
fn sasa_vs_freesasa(step: usize) -> (f64, usize) {
    let table = oracle::per_residue_table();
    let (mut sum, mut n) = (0.0, 0usize);
    for (file, rows) in table.iter().step_by(step) {
        let Ok(structure) =
            esm3_protein::read_structure(&oracle::data_dir().join("structures").join(file))
        else {
            continue;
        };
        let chains: Vec<_> = structure.chains().iter().collect();
        let sasa = esm3_protein::sasa::chains_sasa(&chains);
        let mut ours = std::collections::HashMap::new();
        for (c, s) in chains.iter().zip(&sasa) {
            let id = if c.chain_id.trim().is_empty() {
                "A".to_string()
            } else {
                c.chain_id.clone()
            };
            for ((n, i), v) in c.residue_index.iter().zip(&c.insertion_code).zip(s) {
                ours.insert((id.clone(), *n, *i), *v);
            }
        }
        for r in rows {
            if let (Some(theirs), Some(mine)) =
                (r.freesasa, ours.get(&(r.chain.clone(), r.resnum, r.icode)))
            {
                if theirs > 1.0 {
                    sum += (mine - theirs).abs() / theirs;
                    n += 1;
                }
            }
        }
    }
    (sum / n as f64, n)
}

// FreeSASA is Lee–Richards with its own ProtOr classifier, so only closeness is expected; the
// bound catches gross errors (wrong radii or probe give tens of percent).
#[test]
fn sasa_is_reported_against_freesasa() {
    let (rel, n) = sasa_vs_freesasa(25);
    eprintln!(
        "SASA vs FreeSASA (every 25th file): mean |Δ|/FreeSASA {:.2}% over {n} residues",
        100.0 * rel
    );
    assert!(n > 3000);
    assert!(rel < 0.05, "{rel}");
}

#[test]
#[ignore = "every structure file; about a minute in release (cargo test --release -- --ignored)"]
fn sasa_is_reported_against_freesasa_on_all_structures() {
    let (rel, n) = sasa_vs_freesasa(1);
    eprintln!(
        "SASA vs FreeSASA (all files): mean |Δ|/FreeSASA {:.2}% over {n} residues",
        100.0 * rel
    );
    assert!(rel < 0.05, "{rel}");
}
