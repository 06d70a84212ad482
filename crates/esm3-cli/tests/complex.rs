//! Complexes end to end: `AAA|BBB` in, chains out; inverse folding one chain with its partner
//! fixed; clear errors for misplaced chain breaks.

mod common;

use common::{esm3, ok, s, structures};
use esm3_protein::read_structure;

fn model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/random-bundle-d64")
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
