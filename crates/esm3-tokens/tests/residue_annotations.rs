//! The residue-annotation tokenizer against the reference (`make_function_fixtures.py`): the
//! vocabulary order from a CSV, the ids of a complete record, and the SDK path's all-<pad>.

use std::path::PathBuf;

use esm3_tokens::function::FunctionAnnotation;
use esm3_tokens::residue::{ResidueMode, ResidueVocabulary, LABEL_OFFSET, SLOTS};
use serde::Deserialize;

fn fixture() -> PathBuf {
    esm3_test_support::reference_fixtures().join("residue_annotations")
}

#[derive(Deserialize)]
struct Expected {
    vocabulary: Vec<String>,
    length: usize,
    annotations: Vec<(String, usize, usize)>,
    encoded_sets: Vec<Vec<u32>>,
    sdk_encoded: Vec<[u32; SLOTS]>,
}

fn expected() -> Expected {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
        .unwrap()
}

#[test]
fn vocabulary_order_matches_the_reference() {
    let v = ResidueVocabulary::from_csv(&fixture().join("residue_annotations.csv")).unwrap();
    let want = expected().vocabulary;
    assert_eq!(v.len(), want.len() - LABEL_OFFSET as usize);
    for (id, label) in want.iter().enumerate().skip(LABEL_OFFSET as usize) {
        assert_eq!(v.label(id as u32), Some(label.as_str()), "id {id}");
    }
}

#[test]
fn both_modes_match_the_reference() {
    let v = ResidueVocabulary::from_csv(&fixture().join("residue_annotations.csv")).unwrap();
    let e = expected();
    let anns: Vec<FunctionAnnotation> = e
        .annotations
        .iter()
        .map(|(l, s, t)| FunctionAnnotation::new(l.clone(), *s, *t))
        .collect();
    // Encode mode = the reference tokenizer given a complete record (ids compared as sets: the
    // reference orders a residue's ids by Python set iteration, we ascending).
    let rows = v.tokenize(&anns, e.length, ResidueMode::Encode).unwrap();
    assert_eq!(rows.len() + 2, e.encoded_sets.len());
    for (i, row) in rows.iter().enumerate() {
        let mut ids: Vec<u32> = row.iter().copied().filter(|&x| x != 0).collect();
        ids.sort_unstable();
        assert_eq!(ids, e.encoded_sets[i + 1], "residue {}", i + 1);
    }
    // Reference mode = the SDK's encode path: <pad> everywhere.
    let rows = v.tokenize(&anns, e.length, ResidueMode::Reference).unwrap();
    assert_eq!(rows.as_slice(), &e.sdk_encoded[1..e.sdk_encoded.len() - 1]);
    // Decoding the encoded track gives back the spans of at least 5 residues.
    let mut full = vec![[0u32; SLOTS]];
    full.extend(v.tokenize(&anns, e.length, ResidueMode::Encode).unwrap());
    full.push([0; SLOTS]);
    // Labels come in first-seen order of the reference's slot-major scan: residue 2's slot 0
    // holds zinc before heme appears at residue 4. `site q` covers 1 residue and is dropped.
    let decoded = v.decode(&full);
    assert_eq!(
        decoded,
        vec![
            FunctionAnnotation::new("zinc", 2, 6),
            FunctionAnnotation::new("zinc", 25, 30),
            FunctionAnnotation::new("heme", 4, 9),
        ]
    );
}
