//! `esm3 function encode/decode` and the hyperplane import, end to end on the real binary,
//! checked against the reference fixtures of `tools/reference/make_function_fixtures.py`.
//!
//! Needs the function data (`tools/fetch-function-data.sh`; CI runs it before the tests).

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use esm3_tokens::function::Hyperplanes;
use serde_json::Value;

fn repo() -> PathBuf {
    esm3_test_support::repo_root()
}

fn data_dir() -> PathBuf {
    let dir = repo().join("data/function");
    assert!(
        dir.join("interpro_29026_to_keywords_58641.csv").is_file(),
        "\n\n*** function data missing in {}: run tools/fetch-function-data.sh first ***\n",
        dir.display()
    );
    dir
}

/// `esm3 ARGS --data <function data>`.
fn esm3(args: &[&str]) -> Output {
    let data = data_dir();
    let data = data.to_str().expect("a UTF-8 path");
    common::esm3(&[args, &["--data", data]].concat())
}

/// Commands that take no `--data`.
use common::esm3 as raw;

fn ok(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "esm3 failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn err(o: &Output) -> String {
    assert!(!o.status.success(), "esm3 should have failed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tokenizer_fixtures() -> PathBuf {
    repo().join("fixtures/reference/function_tokenizer")
}

fn decoder_fixture() -> PathBuf {
    repo().join("fixtures/reference/esm3_function_decoder_d32")
}

fn read_f64(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The fixture's generated hyperplanes as a full 58641-wide file (zeros in the columns no case
/// reaches: they only multiply zero TF-IDF entries).
fn write_fixture_hyperplanes(path: &Path) {
    let bytes = std::fs::read(tokenizer_fixtures().join("hyperplanes_subset.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let cols: Vec<usize> = st
        .tensor("columns")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect();
    let sub = read_f64(st.tensor("hyperplanes").unwrap().data());
    let dim = 58641;
    let mut full = vec![0.0; 64 * dim];
    for row in 0..64 {
        for (k, &c) in cols.iter().enumerate() {
            full[row * dim + c] = sub[row * cols.len() + k];
        }
    }
    Hyperplanes::new(dim, full)
        .unwrap()
        .write_safetensors(path)
        .unwrap();
}

struct Case {
    length: usize,
    annotations: Vec<(String, usize, usize)>,
    tokens: Vec<Vec<i64>>,
}

fn fixture_case(name: &str) -> Case {
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(tokenizer_fixtures().join("cases.json")).unwrap(),
    )
    .unwrap();
    let c = cases.iter().find(|c| c["name"] == name).unwrap();
    let rows: Vec<Vec<i64>> = serde_json::from_value(c["rows"].clone()).unwrap();
    let index: Vec<usize> = serde_json::from_value(c["index"].clone()).unwrap();
    Case {
        length: c["length"].as_u64().unwrap() as usize,
        annotations: serde_json::from_value(c["annotations"].clone()).unwrap(),
        tokens: index.iter().map(|&i| rows[i].clone()).collect(),
    }
}

fn write_tsv(path: &Path, annotations: &[(String, usize, usize)]) {
    let mut text = String::from("# label\tstart\tend\n");
    for (l, s, e) in annotations {
        text += &format!("{l}\t{s}\t{e}\n");
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn encode_matches_the_reference_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("hyperplanes.safetensors");
    write_fixture_hyperplanes(&h);
    for name in [
        "CRU4_ARATH/staggered",
        "keywords_only",
        "name_with_id",
        "IPR006563_with_keyword",
    ] {
        let case = fixture_case(name);
        let tsv = tmp.path().join("a.tsv");
        write_tsv(&tsv, &case.annotations);
        let out = ok(&esm3(&[
            "function",
            "encode",
            "--length",
            &case.length.to_string(),
            "--annotations",
            s(&tsv),
            "--hyperplanes",
            s(&h),
        ]));
        let got: Vec<Vec<i64>> = serde_json::from_value(out["function_tokens"].clone()).unwrap();
        assert_eq!(got, case.tokens, "{name}");
    }
}

#[test]
fn encode_errors_name_the_file_line_and_label() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("h.safetensors");
    ok_status(&raw(&[
        "function",
        "hyperplanes",
        "--seed",
        "3",
        "--dim",
        "58641",
        "--out",
        s(&h),
    ]));
    let tsv = tmp.path().join("a.tsv");
    let run = |lines: &str| {
        std::fs::write(&tsv, lines).unwrap();
        esm3(&[
            "function",
            "encode",
            "--length",
            "50",
            "--annotations",
            s(&tsv),
            "--hyperplanes",
            s(&h),
        ])
    };
    let e = err(&run("IPR000001\t1\t10\nIPR999999\t2\t5\n"));
    assert!(e.contains("a.tsv:2") && e.contains("IPR999999"), "{e}");
    let e = err(&run("zinc\t1\t10\nnot-a-keyword\t2\t5\n"));
    assert!(e.contains("a.tsv:2") && e.contains("not-a-keyword"), "{e}");
    let e = err(&run("zinc\t45\t51\n"));
    assert!(
        e.contains("a.tsv:1") && e.contains("45..51") && e.contains("length 50"),
        "{e}"
    );
    let e = err(&run("zinc\t0\t3\n"));
    assert!(e.contains("0..3"), "{e}");
    let e = err(&run("zinc\tfirst\t3\n"));
    assert!(e.contains("a.tsv:1") && e.contains("\"first\""), "{e}");
    let e = err(&run("zinc 1 3\n"));
    assert!(
        e.contains("a.tsv:1") && e.contains("3 tab-separated"),
        "{e}"
    );
    // IPR006563 has no keywords (the reference crashes on it): <unk> over its span.
    let out = ok(&run("IPR006563\t2\t3\n"));
    let rows: Vec<Vec<i64>> = serde_json::from_value(out["function_tokens"].clone()).unwrap();
    assert_eq!(rows.len(), 52);
    assert_eq!(rows[0], vec![0; 8]);
    assert_eq!(rows[1], vec![3; 8]);
    assert_eq!(rows[2], vec![2; 8]);
    assert_eq!(rows[3], vec![2; 8]);
    assert_eq!(rows[4], vec![3; 8]);
    let e = err(&esm3(&[
        "function",
        "encode",
        "--length",
        "5",
        "--annotations",
        s(&tsv),
        "--hyperplanes",
        s(&tmp.path().join("missing.safetensors")),
    ]));
    assert!(e.contains("missing.safetensors"), "{e}");
}

fn ok_status(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A copy of the fixture decoder with its small vocabulary beside the weights.
fn decoder_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("decoder");
    std::fs::create_dir_all(&dir).unwrap();
    let f = decoder_fixture();
    for (from, to) in [
        ("model/config.json", "config.json"),
        ("model/model.safetensors", "model.safetensors"),
        ("vocab/keywords.txt", "keywords.txt"),
        ("vocab/entries.tsv", "entries.tsv"),
    ] {
        std::fs::copy(f.join(from), dir.join(to)).unwrap();
    }
    dir
}

#[test]
fn decode_matches_the_reference_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = decoder_dir(tmp.path());
    for case in ["decode_runs", "decode_random"] {
        let cdir = decoder_fixture().join("cases").join(case);
        let input = candle_core::safetensors::load(
            cdir.join("input.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let rows = input["token_ids"].to_vec2::<i64>().unwrap();
        let tokens = tmp.path().join("tokens.json");
        std::fs::write(
            &tokens,
            serde_json::json!({ "function_tokens": rows }).to_string(),
        )
        .unwrap();
        let out = ok(&esm3(&[
            "function",
            "decode",
            s(&tokens),
            "--model",
            s(&dir),
        ]));
        let got: Vec<(String, usize, usize)> = out["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["label"].as_str().unwrap().to_string(),
                    a["start"].as_u64().unwrap() as usize,
                    a["end"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(cdir.join("decoded.json")).unwrap())
                .unwrap();
        let want: Vec<(String, usize, usize)> =
            serde_json::from_value(want["annotations"].clone()).unwrap();
        assert!(!want.is_empty());
        assert_eq!(got, want, "{case}");
    }
    // Without its own vocabulary the small decoder does not fit the official one.
    for f in ["keywords.txt", "entries.tsv"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let tokens = tmp.path().join("tokens.json");
    let e = err(&esm3(&[
        "function",
        "decode",
        s(&tokens),
        "--model",
        s(&dir),
    ]));
    assert!(e.contains("40 keyword") && e.contains("58641"), "{e}");
    std::fs::write(&tokens, "[[4,5,6]]").unwrap();
    let e = err(&esm3(&[
        "function",
        "decode",
        s(&tokens),
        "--model",
        s(&dir),
    ]));
    assert!(e.contains("tokens.json") && e.contains("rows of 8"), "{e}");
}

#[test]
fn import_converts_the_official_npz_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = decoder_dir(tmp.path());
    let npz = decoder_fixture().join("hyperplanes_40.npz");
    let o = raw(&["import", s(&npz), "--out", s(&dir)]);
    ok_status(&o);
    let ours = Hyperplanes::read(&dir).unwrap();
    let bytes = std::fs::read(decoder_fixture().join("hyperplanes_40.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want = read_f64(st.tensor("hyperplanes").unwrap().data());
    assert_eq!(ours.dim(), 40);
    assert_eq!(ours.values(), want.as_slice());
    // A decoder with another keyword count refuses these hyperplanes.
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "\"keyword_vocabulary_size\": 40",
        "\"keyword_vocabulary_size\": 41",
    );
    std::fs::write(&cfg, text).unwrap();
    let o = raw(&["import", s(&npz), "--out", s(&dir)]);
    let e = err(&o);
    assert!(
        e.contains("hyperplanes_40.npz") && e.contains("dim 40") && e.contains("41"),
        "{e}"
    );
}

#[test]
fn residue_annotations_reach_their_track_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("h.safetensors");
    ok_status(&raw(&[
        "function",
        "hyperplanes",
        "--seed",
        "5",
        "--dim",
        "58641",
        "--out",
        s(&h),
    ]));
    let fixture = repo().join("fixtures/reference/residue_annotations");
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    let annotations: Vec<(String, usize, usize)> =
        serde_json::from_value(want["annotations"].clone()).unwrap();
    let tsv = tmp.path().join("a.tsv");
    write_tsv(&tsv, &annotations);
    let length = want["length"].as_u64().unwrap().to_string();
    let csv = fixture.join("residue_annotations.csv");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "function",
            "encode",
            "--length",
            &length,
            "--annotations",
            s(&tsv),
            "--hyperplanes",
            s(&h),
            "--residue-vocabulary",
            s(&csv),
        ];
        args.extend_from_slice(extra);
        ok(&esm3(&args))
    };
    // As the reference SDK: all <pad>.
    let out = run(&[]);
    let sdk: Vec<Vec<u32>> = serde_json::from_value(want["sdk_encoded"].clone()).unwrap();
    let got: Vec<Vec<u32>> =
        serde_json::from_value(out["residue_annotation_tokens"].clone()).unwrap();
    assert_eq!(got, sdk);
    // Encoded: the reference tokenizer's ids for a complete record.
    let out = run(&["--encode-residue-annotations"]);
    let sets: Vec<Vec<u32>> = serde_json::from_value(want["encoded_sets"].clone()).unwrap();
    let got: Vec<Vec<u32>> =
        serde_json::from_value(out["residue_annotation_tokens"].clone()).unwrap();
    assert_eq!(got.len(), sets.len());
    for (row, set) in got.iter().zip(&sets) {
        let mut ids: Vec<u32> = row.iter().copied().filter(|&x| x != 0).collect();
        ids.sort_unstable();
        assert_eq!(&ids, set);
    }
    // "zinc" is also a keyword: it reaches the function track; "site q" only the residue track.
    let rows: Vec<Vec<i64>> = serde_json::from_value(out["function_tokens"].clone()).unwrap();
    assert!(rows[2].iter().all(|&x| x >= 4), "{:?}", rows[2]);
    assert_eq!(rows[20], vec![3; 8]);
}
