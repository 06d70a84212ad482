//! Complexes end to end: `AAA|BBB` in, chains out; inverse folding one chain with its partner
//! fixed; clear errors for misplaced chain breaks.

mod common;

use common::{esm3, ok, s, structures};
use esm3_protein::read_structure;

fn model() -> std::path::PathBuf {
    esm3_test_support::repo_root().join("fixtures/random-bundle-d64")
}

#[test]
fn a_folded_complex_is_written_with_its_chains() {
    let tmp = tempfile::tempdir().unwrap();
    let fasta = tmp.path().join("c.fa");
    let (a, b) = ("MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVDAFQ");
    std::fs::write(&fasta, format!(">cplx\n{a}|{b}\n")).unwrap();
    let out = tmp.path().join("out");
    ok(&esm3(&[
        "fold",
        s(&fasta),
        "-o",
        s(&out),
        "--model-dir",
        s(&model()),
    ]));
    let structure = read_structure(&out.join("cplx.pdb")).unwrap();
    let chains = structure.chains();
    assert_eq!(chains.len(), 2);
    assert_eq!(
        (chains[0].chain_id.as_str(), chains[0].sequence.as_str()),
        ("A", a)
    );
    assert_eq!(
        (chains[1].chain_id.as_str(), chains[1].sequence.as_str()),
        ("B", b)
    );
    assert_eq!(
        chains[1].residue_index.first(),
        Some(&1),
        "each chain numbered from 1"
    );
    let text = std::fs::read_to_string(out.join("cplx.pdb")).unwrap();
    assert_eq!(text.matches("\nTER ").count(), 2);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cplx.json")).unwrap()).unwrap();
    assert_eq!(summary["sequence"], format!("{a}|{b}"));
    assert_eq!(summary["chains"][1]["start"], a.len() + 2);
    assert_eq!(summary["chains"][1]["length"], b.len());
    // Relaxed chain by chain: every bond of each chain is physical, nothing bonds across.
    for chain in ["A", "B"] {
        assert_eq!(
            summary["relax"][chain]["written_geometry"]["valid"], true,
            "{summary}"
        );
    }
    // mmCIF carries the same chains.
    let cif = tmp.path().join("cif");
    ok(&esm3(&[
        "fold",
        s(&fasta),
        "-o",
        s(&cif),
        "--format",
        "cif",
        "--model-dir",
        s(&model()),
    ]));
    let again = read_structure(&cif.join("cplx.cif")).unwrap();
    let ids: Vec<&str> = again.chains().iter().map(|c| c.chain_id.as_str()).collect();
    assert_eq!(ids, ["A", "B"]);
}

#[test]
fn misplaced_chain_breaks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (seq, needle) in [
        ("MKV|", "position 4 ends the sequence"),
        ("|MKV", "position 1"),
        ("MK||V", "positions 3-4"),
    ] {
        let fasta = tmp.path().join("bad.fa");
        std::fs::write(&fasta, format!(">bad\n{seq}\n")).unwrap();
        let o = esm3(&[
            "fold",
            s(&fasta),
            "-o",
            s(tmp.path()),
            "--model-dir",
            s(&model()),
        ]);
        assert!(!o.status.success(), "{seq}");
        let err = common::stderr(&o);
        assert!(
            err.contains("record `bad`") && err.contains(needle),
            "{seq}: {err}"
        );
    }
}

#[test]
fn inverse_folding_designs_one_chain_with_its_partner_fixed() {
    let file = structures().join("emboss-test/2hhb.ent.gz");
    let native = read_structure(&file).unwrap();
    let (a, b) = (&native.chains()[0], &native.chains()[1]);
    let o = esm3(&[
        "inverse-fold",
        s(&file),
        "--chain",
        "A,B",
        "--fix",
        "B",
        "--model-dir",
        s(&model()),
    ]);
    ok(&o);
    let text = String::from_utf8(o.stdout).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with(">2hhb_AB "), "{header}");
    let sequence: String = lines.collect();
    let (designed, fixed) = sequence
        .split_once('|')
        .expect("a chain break between the chains");
    assert_eq!(designed.chars().count(), a.len());
    assert_eq!(
        fixed, b.sequence,
        "the fixed partner keeps its native sequence"
    );
    assert!(!designed.contains('_'));
    let o = esm3(&[
        "inverse-fold",
        s(&file),
        "--chain",
        "A,Z",
        "--model-dir",
        s(&model()),
    ]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("no protein chain 'Z'"),
        "{}",
        common::stderr(&o)
    );
    let o = esm3(&[
        "inverse-fold",
        s(&file),
        "--chain",
        "A",
        "--fix",
        "A",
        "--model-dir",
        s(&model()),
    ]);
    assert!(
        common::stderr(&o).contains("nothing to design"),
        "{}",
        common::stderr(&o)
    );
}

fn write_complex(chains: &[esm3_protein::ProteinChain], path: &std::path::Path) {
    let parts: Vec<(&esm3_protein::ProteinChain, Option<&[f32]>)> =
        chains.iter().map(|c| (c, None)).collect();
    let mut buf = Vec::new();
    esm3_protein::io::write_pdb_chains(&parts, &mut buf).unwrap();
    std::fs::write(path, buf).unwrap();
}

#[test]
fn complexes_are_compared_with_their_chains_mapped() {
    let file = structures().join("emboss-test/2hhb.ent.gz");
    let tmp = tempfile::tempdir().unwrap();
    // The same tetramer turned 90° about z, shifted, with chains relabelled A→W, B→X, C→Y, D→Z
    // and written in the order Z, Y, X, W.
    let mut chains = read_structure(&file).unwrap().into_chains();
    for (c, id) in chains.iter_mut().zip(["W", "X", "Y", "Z"]) {
        c.chain_id = id.to_string();
        for atoms in c.atom37.iter_mut() {
            for p in atoms.iter_mut() {
                *p = [-p[1] + 10.0, p[0] - 5.0, p[2] + 2.0];
            }
        }
    }
    chains.reverse();
    let moved = tmp.path().join("moved.pdb");
    write_complex(&chains, &moved);
    let o = esm3(&["compare", s(&moved), s(&file), "--complex"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pairs: Vec<(String, String)> = v["chain_mapping"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["chain_a"].as_str().unwrap().into(),
                m["chain_b"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [("W", "A"), ("X", "B"), ("Y", "C"), ("Z", "D")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(pairs, want, "{v}");
    assert!(v["tm_score"].as_f64().unwrap() > 0.9999, "{v}");
    assert!(v["rmsd"].as_f64().unwrap() < 1e-2, "{v}");
    assert_eq!(v["paired_residues"], 574);
    // Each chain's score is the single-chain command's (whose TM-align is checked against the
    // TM-align program in annotate.rs).
    let single = esm3(&[
        "compare",
        s(&moved),
        s(&file),
        "--chain-a",
        "X",
        "--chain-b",
        "B",
    ]);
    ok(&single);
    let single: serde_json::Value = serde_json::from_slice(&single.stdout).unwrap();
    assert_eq!(v["chain_mapping"][1]["tm_score"], single["tm_score"]);
    // One chain displaced against the others: every chain is still perfect alone, the complex
    // is not.
    let mut shifted = chains.clone();
    for atoms in shifted[0].atom37.iter_mut() {
        for p in atoms.iter_mut() {
            p[0] += 15.0;
        }
    }
    write_complex(&shifted, &moved);
    let o = esm3(&["compare", s(&moved), s(&file), "--complex"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["chain_mapping"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["tm_score"].as_f64().unwrap() > 0.9999),
        "{v}"
    );
    assert!(v["tm_score"].as_f64().unwrap() < 0.9, "{v}");
}

#[test]
fn a_structure_roundtrip_keeps_chain_ids_and_numbering() {
    // 1TII chains C and D (numbered from their author numbers, not from 1).
    let file = structures().join("pymol-data/1tii.pdb.gz");
    let native = read_structure(&file).unwrap();
    let pick = |id: &str| {
        native
            .chains()
            .iter()
            .find(|c| c.chain_id == id)
            .unwrap()
            .clone()
    };
    let (c, d) = (pick("C"), pick("D"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rt.pdb");
    let o = esm3(&[
        "structure",
        "roundtrip",
        s(&file),
        "--chain",
        "C,D",
        "-o",
        s(&out),
        "--model-dir",
        s(&model()),
    ]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["chain"], "C,D");
    assert_eq!(v["length"], c.len() + d.len());
    assert!(
        v["relax"]["C"].is_object() && v["relax"]["D"].is_object(),
        "{v}"
    );
    let back = read_structure(&out).unwrap();
    let chains = back.chains();
    assert_eq!(chains.len(), 2);
    for (written, given) in chains.iter().zip([&c, &d]) {
        assert_eq!(written.chain_id, given.chain_id);
        assert_eq!(written.sequence, given.sequence);
        assert_eq!(written.residue_index, given.residue_index);
    }
}
