//! The readers against real files in `shared/data/structures` (beside the project root).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use esm3_protein::io::{
    parse_structure, read_structure, write_mmcif, write_pdb, Format, Structure,
};
use esm3_protein::ProteinChain;

/// `shared/data` beside the project root, or `$ESM3_SHARED_DATA`.
fn structures_dir() -> PathBuf {
    esm3_test_support::shared_data().join("structures")
}

fn structure_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (shared/data must sit beside the project)",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            structure_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "gz") {
            out.push(path);
        }
    }
}

/// Every file loads or fails with a message naming it; none panics; at least 95% load.
#[test]
fn every_structure_file_loads_or_fails_clearly() {
    let mut files = Vec::new();
    structure_files(&structures_dir(), &mut files);
    assert!(
        files.len() >= 580,
        "expected the 589 structure files, found {}",
        files.len()
    );
    let (mut loaded, mut failed, mut panicked) = (0, Vec::new(), Vec::new());
    for file in &files {
        match std::panic::catch_unwind(|| read_structure(file)) {
            Ok(Ok(s)) => {
                assert!(!s.chains().is_empty());
                for chain in s.chains() {
                    chain.check_shape().unwrap();
                }
                loaded += 1;
            }
            Ok(Err(e)) => {
                let message = e.to_string();
                let name = file.file_name().unwrap().to_string_lossy();
                assert!(
                    message.contains(name.as_ref()),
                    "error does not name the file: {message}"
                );
                failed.push(message);
            }
            Err(_) => panicked.push(file.display().to_string()),
        }
    }
    println!(
        "{} files: {loaded} loaded, {} failed, {} panicked",
        files.len(),
        failed.len(),
        panicked.len()
    );
    for message in &failed {
        println!("  {message}");
    }
    assert!(panicked.is_empty(), "panicked on {panicked:?}");
    assert!(
        loaded * 100 >= files.len() * 95,
        "only {loaded} of {} loaded",
        files.len()
    );
}

/// `CHAINS.tsv` rows: (file, chain) → observed sequence.
fn chains_tsv() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(structures_dir().join("CHAINS.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[2].to_owned(), f[7].to_owned())
        })
        .collect()
}

/// Whether two sequences agree where ours is not `X` (we read modified residues as `X`; the
/// data set's scan wrote their parent residue).
fn same_up_to_x(ours: &str, theirs: &str) -> bool {
    ours.len() == theirs.len()
        && ours
            .chars()
            .zip(theirs.chars())
            .all(|(a, b)| a == 'X' || a == b)
}

/// The sequences the data set's own scan observed in ATOM records (an independent reader).
/// Known differences: residues with two names in alternate locations (the scan lists both),
/// and free amino acids outside the polymer (the scan keeps them).
#[test]
fn sequences_match_the_manifest_of_observed_chains() {
    let rows = chains_tsv();
    let mut cache: HashMap<String, Structure> = HashMap::new();
    let (mut same, mut differ, mut missing) = (0, Vec::new(), Vec::new());
    for (file, chain, expected) in &rows {
        let structure = cache
            .entry(file.clone())
            .or_insert_with(|| read_structure(&structures_dir().join(file)).unwrap());
        match structure.chain(chain) {
            None => missing.push(format!("{file} {chain}")),
            Some(c) if same_up_to_x(&c.sequence, expected) => same += 1,
            Some(c) => differ.push(format!(
                "{file} {chain}\n  ours {}\n  tsv  {expected}",
                c.sequence
            )),
        }
    }
    println!(
        "{} chains: {same} identical (up to X), {} differ, {} missing",
        rows.len(),
        differ.len(),
        missing.len()
    );
    for d in differ.iter().chain(&missing) {
        println!("{d}");
    }
    assert!(
        same * 100 >= rows.len() * 95,
        "only {same} of {} identical",
        rows.len()
    );
}

fn assert_same_chain(a: &ProteinChain, b: &ProteinChain, tolerance: f32, what: &str) {
    assert_eq!(a.chain_id, b.chain_id, "{what}");
    assert_eq!(a.sequence, b.sequence, "{what} chain {}", a.chain_id);
    assert_eq!(
        a.residue_index, b.residue_index,
        "{what} chain {}",
        a.chain_id
    );
    assert_eq!(
        a.insertion_code, b.insertion_code,
        "{what} chain {}",
        a.chain_id
    );
    for (i, (ra, rb)) in a.atom37.iter().zip(&b.atom37).enumerate() {
        for (slot, (pa, pb)) in ra.iter().zip(rb).enumerate() {
            for k in 0..3 {
                let ok = (pa[k].is_nan() && pb[k].is_nan()) || (pa[k] - pb[k]).abs() <= tolerance;
                assert!(
                    ok,
                    "{what} chain {} residue {i} atom {slot}: {pa:?} vs {pb:?}",
                    a.chain_id
                );
            }
        }
    }
}

/// `MANIFEST.tsv` rows: file → (pdb id, format).
fn manifest() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(structures_dir().join("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[5].to_owned(), f[11].to_owned())
        })
        .collect()
}

/// The PDB and mmCIF releases of the same entry read to the same chains.
#[test]
fn pdb_and_mmcif_versions_of_an_entry_agree() {
    let rows = manifest();
    let mut compared = 0;
    for (file, pdb_id, _) in rows.iter().filter(|r| r.0.starts_with("format_pairs/")) {
        let Some((cif, _, _)) = rows.iter().find(|r| r.1 == *pdb_id && r.2 == "mmcif") else {
            println!("{file}: no mmCIF twin");
            continue;
        };
        let pdb = read_structure(&structures_dir().join(file)).unwrap();
        let mmcif = read_structure(&structures_dir().join(cif)).unwrap();
        assert_eq!(pdb.chains().len(), mmcif.chains().len(), "{file} vs {cif}");
        for (a, b) in pdb.chains().iter().zip(mmcif.chains()) {
            assert_same_chain(a, b, 1e-3, &format!("{file} vs {cif}"));
        }
        compared += 1;
    }
    println!("{compared} PDB/mmCIF pairs identical");
    assert!(compared >= 9, "only {compared} pairs found");
}

/// Residues that a file can represent: those with at least one atom.
fn written_part(chain: &ProteinChain) -> ProteinChain {
    let keep: Vec<usize> = (0..chain.len())
        .filter(|&i| chain.atom37[i].iter().any(|p| p[0].is_finite()))
        .collect();
    let letters: Vec<char> = chain.sequence.chars().collect();
    ProteinChain::new(
        chain.id.clone(),
        chain.chain_id.clone(),
        keep.iter().map(|&i| letters[i]).collect::<String>(),
        keep.iter().map(|&i| chain.atom37[i]).collect(),
        keep.iter().map(|&i| chain.residue_index[i]).collect(),
        keep.iter().map(|&i| chain.insertion_code[i]).collect(),
        keep.iter().map(|&i| chain.b_factor[i]).collect(),
    )
    .unwrap()
}

/// Read → write (PDB and mmCIF, pLDDT in the B column) → read keeps coordinates to 1e-3 Å
/// and pLDDT to 0.01, on every chain of every file that the format can hold.
#[test]
fn written_files_read_back_the_same() {
    let mut files = Vec::new();
    structure_files(&structures_dir(), &mut files);
    let (mut pdb_chains, mut cif_chains, mut refused) = (0, 0, 0);
    for file in &files {
        for chain in read_structure(file).unwrap().chains() {
            let expected = written_part(chain);
            if expected.is_empty() {
                continue;
            }
            // A deterministic pLDDT pattern covering 0–100 with two decimals.
            let plddt: Vec<f32> = (0..chain.len())
                .map(|i| ((i * 3779) % 10001) as f32 / 100.0)
                .collect();
            let expected_plddt: Vec<f32> = (0..chain.len())
                .filter(|&i| chain.atom37[i].iter().any(|p| p[0].is_finite()))
                .map(|i| plddt[i])
                .collect();
            for format in [Format::Pdb, Format::Mmcif] {
                let mut text = Vec::new();
                let written = match format {
                    Format::Pdb => write_pdb(chain, Some(&plddt), &mut text),
                    Format::Mmcif => write_mmcif(chain, Some(&plddt), &mut text),
                };
                if let Err(e) = written {
                    // Only the PDB format's fixed columns may refuse a chain.
                    assert_eq!(format, Format::Pdb, "{}: {e}", file.display());
                    refused += 1;
                    continue;
                }
                let back = parse_structure(&text, &chain.id, Some(format))
                    .unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
                assert_eq!(back.chains().len(), 1);
                let what = format!("{} as {format:?}", file.display());
                assert_same_chain(&expected, &back.chains()[0], 1e-3, &what);
                for (a, b) in expected_plddt.iter().zip(&back.chains()[0].b_factor) {
                    assert!(
                        (a - b).abs() <= 0.0051,
                        "{what}: pLDDT {a} read back as {b}"
                    );
                }
                match format {
                    Format::Pdb => pdb_chains += 1,
                    Format::Mmcif => cif_chains += 1,
                }
            }
        }
    }
    println!("round trips: {pdb_chains} chains via PDB, {cif_chains} via mmCIF, {refused} refused by PDB");
    assert!(pdb_chains > 700 && cif_chains > 700);
}
