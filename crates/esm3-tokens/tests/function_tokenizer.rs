//! The function tokenizer against the reference (`tools/reference/make_function_fixtures.py`):
//! real Swiss-Prot annotation sets, the real keyword/InterPro tables, generated hyperplanes.
//!
//! Needs the wheel's data files: `tools/fetch-function-data.sh` (CI runs it before the tests).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use esm3_tokens::function::{
    FunctionAnnotation, FunctionData, FunctionError, FunctionTokenizer, Hyperplanes, DEPTH,
    LSH_OFFSET, UNK,
};
use proptest::prelude::*;
use serde::Deserialize;

fn repo() -> PathBuf {
    esm3_test_support::repo_root()
}

fn data_dir() -> PathBuf {
    let dir = repo().join("data/function");
    assert!(
        dir.join(esm3_tokens::function::data::INTERPRO_KEYWORDS_FILE)
            .is_file(),
        "\n\n*** function data missing in {}: run tools/fetch-function-data.sh first ***\n",
        dir.display()
    );
    dir
}

fn data() -> &'static FunctionData {
    static DATA: OnceLock<FunctionData> = OnceLock::new();
    DATA.get_or_init(|| FunctionData::load(&data_dir()).unwrap())
}

fn fixtures() -> PathBuf {
    repo().join("fixtures/reference/function_tokenizer")
}

/// The generated hyperplanes, rebuilt from the columns the fixture kept (zeros elsewhere: those
/// columns only ever multiply zero TF-IDF entries).
fn hyperplanes() -> Hyperplanes {
    let bytes = std::fs::read(fixtures().join("hyperplanes_subset.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let cols: Vec<usize> = st
        .tensor("columns")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect();
    let sub: Vec<f64> = st
        .tensor("hyperplanes")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let dim = data().keywords.len();
    let mut full = vec![0.0; 64 * dim];
    for row in 0..64 {
        for (k, &c) in cols.iter().enumerate() {
            full[row * dim + c] = sub[row * cols.len() + k];
        }
    }
    Hyperplanes::new(dim, full).unwrap()
}

fn tokenizer() -> &'static FunctionTokenizer {
    static TOK: OnceLock<FunctionTokenizer> = OnceLock::new();
    TOK.get_or_init(|| FunctionTokenizer::new(data().clone(), hyperplanes()).unwrap())
}

#[derive(Deserialize)]
struct Case {
    name: String,
    length: usize,
    annotations: Vec<(String, usize, usize)>,
    rows: Vec<[u16; DEPTH]>,
    index: Vec<usize>,
}

fn annotations(c: &Case) -> Vec<FunctionAnnotation> {
    c.annotations
        .iter()
        .map(|(l, s, e)| FunctionAnnotation::new(l.clone(), *s, *e))
        .collect()
}

#[test]
fn tokens_identical_to_the_reference_on_real_annotation_sets() {
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    assert!(cases.len() > 200, "{}", cases.len());
    let mut residues = 0;
    for c in &cases {
        let ours = tokenizer().encode(&annotations(c), c.length).unwrap();
        assert_eq!(ours.len(), c.index.len(), "{}", c.name);
        for (pos, (got, &row)) in ours.iter().zip(&c.index).enumerate() {
            assert_eq!(got, &c.rows[row], "case {} position {pos}", c.name);
        }
        residues += c.length;
    }
    eprintln!("{} cases, {residues} residues identical", cases.len());
}

#[test]
fn the_data_tables_match_the_wheel() {
    let d = data();
    assert_eq!(d.keywords.len(), 58641);
    assert_eq!(d.idf.len(), 58641);
    assert_eq!(d.entries.len(), 29026);
    assert!(d.keywords.windows(2).all(|w| w[0] < w[1]));
    let e = d.entry("IPR006563").unwrap();
    assert!(e.keywords.is_empty());
    assert_eq!(e.name, "POX domain");
    assert_eq!(d.entry("IPR000001").unwrap().name, "Kringle");
    assert_eq!(
        d.entry("IPR014705").unwrap().parent.as_deref(),
        Some("IPR000008")
    );
    let families = d.entries.iter().filter(|e| e.kind == "Family").count();
    assert_eq!(families, 14521);
}

#[test]
fn cache_loads_faster_than_parsing_and_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(data_dir()).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e != "postcard") {
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    let t = Instant::now();
    let parsed = FunctionData::load(dir.path()).unwrap();
    let parse = t.elapsed();
    let t = Instant::now();
    let cached = FunctionData::load(dir.path()).unwrap();
    let cache = t.elapsed();
    eprintln!("function data: parse {parse:?}, cached load {cache:?}");
    assert_eq!(parsed, cached);
    assert_eq!(cached.keyword_index("zinc"), parsed.keyword_index("zinc"));
    // A changed source file invalidates the cache.
    let vocab = dir
        .path()
        .join(esm3_tokens::function::data::INTERPRO_ENTRIES_FILE);
    let mut text = std::fs::read_to_string(&vocab).unwrap();
    text = text.replace("\tKringle\n", "\tKringle domain\n");
    std::fs::write(&vocab, text).unwrap();
    let changed = FunctionData::load(dir.path()).unwrap();
    assert_eq!(changed.entry("IPR000001").unwrap().name, "Kringle domain");
}

#[test]
fn ipr006563_has_no_keywords_and_gives_unk() {
    let t = tokenizer();
    let rows = t
        .tokenize(&[FunctionAnnotation::new("IPR006563", 2, 3)], 4)
        .unwrap();
    assert_eq!(rows[1], [UNK; DEPTH]);
    assert_eq!(rows[0], [esm3_tokens::function::NONE; DEPTH]);
}

#[test]
fn unknown_labels_and_bad_ranges_are_named() {
    let t = tokenizer();
    let unknown: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("unknown_interpro_ids.json")).unwrap(),
    )
    .unwrap();
    assert!(!unknown.is_empty());
    for id in &unknown {
        let e = t
            .tokenize(&[FunctionAnnotation::new(id.clone(), 1, 1)], 3)
            .unwrap_err();
        assert!(matches!(e, FunctionError::UnknownLabel { .. }), "{e}");
        assert!(e.to_string().contains(id.as_str()), "{e}");
    }
    let e = t
        .tokenize(&[FunctionAnnotation::new("not a keyword at all", 1, 1)], 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"not a keyword at all\""), "{e}");
    for (s, e) in [(0, 2), (3, 2), (2, 4)] {
        let err = t
            .tokenize(&[FunctionAnnotation::new("zinc", s, e)], 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{s}..{e}")) && err.contains("length 3") && err.contains("zinc"),
            "{err}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any set of vocabulary labels over any ranges: every row is 8 specials or 8 LSH ids,
    /// uncovered residues are <none>, and the TF-IDF behind a covered residue has unit norm.
    #[test]
    fn tokens_are_in_range_and_tfidf_is_unit_norm(
        length in 1usize..40,
        picks in prop::collection::vec((0usize..58641, 0usize..29026, any::<bool>(), 0usize..40, 0usize..40), 1..6),
    ) {
        let d = data();
        let t = tokenizer();
        let mut anns = Vec::new();
        let mut covered = HashSet::new();
        for (kw, ipr, use_kw, a, b) in picks {
            let (s, e) = (a.min(b) % length + 1, (a.max(b) % length + 1).max(a.min(b) % length + 1));
            let label = if use_kw { d.keywords[kw].clone() } else { d.entries[ipr].id.clone() };
            if use_kw {
                let v = esm3_tokens::function::tfidf::tfidf(&[kw as u32, kw as u32], &d.idf);
                prop_assert!((v.norm() - 1.0).abs() < 1e-12);
            } else if !d.entries[ipr].keywords.is_empty() {
                let v = esm3_tokens::function::tfidf::tfidf(&d.entries[ipr].keywords, &d.idf);
                prop_assert!((v.norm() - 1.0).abs() < 1e-12);
            }
            covered.extend(s..=e);
            anns.push(FunctionAnnotation::new(label, s, e));
        }
        let rows = t.tokenize(&anns, length).unwrap();
        prop_assert_eq!(rows.len(), length);
        for (i, row) in rows.iter().enumerate() {
            if covered.contains(&(i + 1)) {
                let lsh = row.iter().all(|&x| (LSH_OFFSET..260).contains(&x));
                prop_assert!(lsh || *row == [UNK; DEPTH], "{:?}", row);
            } else {
                prop_assert_eq!(*row, [esm3_tokens::function::NONE; DEPTH]);
            }
        }
    }
}
