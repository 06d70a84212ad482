//! End-to-end tests of `esm3 annotate` and `esm3 compare` on real structures, checked against
//! mkdssp (oracle table), the reference's biotite SASA (fixture) and TM-align (oracle table).

use std::io::Read;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

mod common;
use common::esm3;

fn root() -> PathBuf {
    esm3_test_support::repo_root()
}

fn structure(rel: &str) -> String {
    root()
        .join("../shared/data/structures")
        .join(rel)
        .to_str()
        .unwrap()
        .to_string()
}

fn stdout_json_lines(o: &Output) -> Vec<Value> {
    assert!(
        o.status.success(),
        "esm3 failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// ((resnum, icode), dssp letter) rows of one file and chain from the mkdssp oracle table.
fn mkdssp_rows(file: &str, chain: &str) -> Vec<((i32, String), char)> {
    let raw = std::fs::read(root().join("../shared/data/oracles/per_residue_dssp_freesasa.tsv.gz"))
        .unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0] == file && f[1] == chain && !f[5].is_empty()).then(|| {
                let c = f[5].chars().next().unwrap();
                (
                    (f[2].parse().unwrap(), f[3].to_string()),
                    if c == 'P' || c == '-' { 'C' } else { c },
                )
            })
        })
        .collect()
}

const FILE: &str = "theseus-examples/1ABI_H.pdb.gz";

#[test]
fn annotate_json_agrees_with_mkdssp_and_biotite() {
    let out = stdout_json_lines(&esm3(&["annotate", &structure(FILE), "--chain", "H"]));
    assert_eq!(out.len(), 1);
    let rec = &out[0];
    assert_eq!(rec["chain"], "H");
    let seq = rec["sequence"].as_str().unwrap();
    let ss8 = rec["ss8"].as_str().unwrap();
    let sasa: Vec<f64> = rec["sasa"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let tokens: Vec<u64> = rec["sasa_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ss8.len(), seq.len());
    assert_eq!(sasa.len(), seq.len());
    assert!(ss8.chars().all(|c| "GHITEBSC-".contains(c)), "{ss8}");

    // SS8 against mkdssp: this file's residues are numbered 16.. in file order, one chain.
    let rows = mkdssp_rows(FILE, "H");
    let tsv = esm3(&["annotate", &structure(FILE), "--format", "tsv"]);
    let tsv = String::from_utf8(tsv.stdout).unwrap();
    let keys: Vec<(i32, String)> = tsv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1].parse().unwrap(), f[2].to_string())
        })
        .collect();
    assert_eq!(keys.len(), seq.len(), "tsv has one row per residue");
    let numbers: Vec<i32> = keys.iter().map(|k| k.0).collect();
    let ours: std::collections::HashMap<(i32, String), char> =
        keys.iter().cloned().zip(ss8.chars()).collect();
    let agree = rows.iter().filter(|(n, c)| ours.get(n) == Some(c)).count();
    assert!(rows.len() > 200);
    assert!(
        agree as f64 >= 0.99 * rows.len() as f64,
        "{agree}/{}",
        rows.len()
    );

    // SASA against the reference (biotite through ProteinChain.sasa()).
    let fixture =
        std::fs::read_to_string(root().join("fixtures/reference/geometry/sasa_biotite.tsv"))
            .unwrap();
    let reference: Vec<(i32, f64)> = fixture
        .lines()
        .filter(|l| l.starts_with(FILE))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[2].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect();
    assert_eq!(reference.len(), seq.len());
    for ((n, r), (m, s)) in reference.iter().zip(numbers.iter().zip(&sasa)) {
        assert_eq!(n, m);
        assert!((r - s).abs() < 1e-3, "residue {n}: ours {s} reference {r}");
    }
    // Tokens are the reference bins of the printed values.
    for (s, t) in sasa.iter().zip(&tokens) {
        assert_eq!(*t as u32, esm3_tokens::sasa::bin(*s as f32));
    }
}

#[test]
fn annotate_without_chain_gives_every_chain() {
    let out = stdout_json_lines(&esm3(&["annotate", &structure("emboss-test/2hhb.ent.gz")]));
    let chains: Vec<&str> = out.iter().map(|r| r["chain"].as_str().unwrap()).collect();
    assert_eq!(chains, ["A", "B", "C", "D"]);
}

#[test]
fn annotate_sees_the_complex_unless_asked_per_chain() {
    // 2BEG: five Aβ chains whose only β-sheet is between chains. mkdssp 4.2.2 on model 1 gives
    // `-EEEEEEEEES--SEEEEEEEEEEE-` for every chain (fixtures/dssp/2BEG_model1_mkdssp.tsv).
    let file = structure("format_pairs/biopython/2BEG.pdb.gz");
    let together = stdout_json_lines(&esm3(&["annotate", &file]));
    assert_eq!(together.len(), 5);
    for r in &together {
        assert_eq!(r["ss8"], "CEEEEEEEEESCCSEEEEEEEEEEEC", "{}", r["chain"]);
    }
    let alone = stdout_json_lines(&esm3(&["annotate", &file, "--per-chain", "--chain", "B,D"]));
    let ids: Vec<&str> = alone.iter().map(|r| r["chain"].as_str().unwrap()).collect();
    assert_eq!(ids, ["B", "D"]);
    assert!(alone
        .iter()
        .all(|r| !r["ss8"].as_str().unwrap().contains('E')));
    // SASA: a chain buried in the fibril has less surface in the complex than alone.
    let total = |args: &[&str]| -> f64 {
        let out = stdout_json_lines(&esm3(
            &[&["annotate", &file, "--chain", "C"], args].concat(),
        ));
        out[0]["sasa"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum()
    };
    let (complex, isolated) = (total(&[]), total(&["--sasa", "isolated"]));
    assert!(
        complex < 0.8 * isolated,
        "complex {complex} Å², isolated {isolated} Å²"
    );
    assert_eq!(total(&["--per-chain"]), isolated);
    assert_eq!(total(&["--per-chain", "--sasa", "complex"]), complex);
}

#[test]
fn annotate_reports_a_missing_chain_and_file() {
    let o = esm3(&["annotate", &structure(FILE), "--chain", "Q"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1ABI_H.pdb.gz") && err.contains("'Q'") && err.contains("'H'"),
        "{err}"
    );
    let o = esm3(&["annotate", "/nonexistent/x.pdb"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.pdb"));
}

fn compare(args: &[&str]) -> Value {
    let o = esm3(&[&["compare"], args].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn compare_matches_tm_align_on_homologues() {
    // TM-align 20190822 on this LDH pair (oracle table): 0.85722 by model, 0.83052 by reference.
    let v = compare(&[
        &structure("theseus-examples/1ldn_G.pdb.gz"),
        &structure("theseus-examples/1bdm_B.pdb.gz"),
    ]);
    assert!(
        (v["tm_score"].as_f64().unwrap() - 0.83052).abs() <= 0.01,
        "{v}"
    );
    assert!(
        (v["tm_score_norm_a"].as_f64().unwrap() - 0.85722).abs() <= 0.01,
        "{v}"
    );
    assert_eq!(v["tm_align_aligned_length"], 304);
}

#[test]
fn compare_a_structure_with_itself_is_perfect() {
    let f = structure("emboss-test/2hhb.ent.gz");
    for extra in [&[][..], &["--by-residue"][..]] {
        let v = compare(&[&[f.as_str(), f.as_str()][..], extra].concat());
        assert!(v["rmsd"].as_f64().unwrap() < 1e-3, "{v}");
        for key in ["tm_score", "lddt_ca", "gdt_ts"] {
            assert!((v[key].as_f64().unwrap() - 1.0).abs() < 1e-6, "{key}: {v}");
        }
    }
}
