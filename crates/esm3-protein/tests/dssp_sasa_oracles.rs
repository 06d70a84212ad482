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
    assert!(rate >= 0.99, "agreement {rate}");
}

/// (ours, reference) per-residue SASA over the biotite fixture chains.
fn sasa_vs_biotite() -> Vec<(f64, f64)> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/reference/geometry/sasa_biotite.tsv");
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
