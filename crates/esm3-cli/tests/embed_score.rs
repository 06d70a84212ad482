//! `esm3 embed` and `esm3 score` end to end on the fixture models.

mod common;
use common::*;

fn scoring() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("scoring/expected.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn embed_writes_safetensors_and_npy() {
    let tmp = tempfile::tempdir().unwrap();
    let fasta = tmp.path().join("in.fa");
    std::fs::write(&fasta, ">one first\nMKTAYIAKQR\n>two\nGSHMLE|DKK\n").unwrap();
    let model = fixtures().join("esmc_d64/model");
    let out = tmp.path().join("e.safetensors");
    let o = esm3(&["embed", s(&fasta), "-o", s(&out), "--model-dir", s(&model)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t["one.per_residue"].dims(), &[10, 64]);
    assert_eq!(
        t["two.per_residue"].dims(),
        &[10, 64],
        "chain break rows are kept"
    );
    assert_eq!(t["one.mean"].dims(), &[64]);
    let dir = tmp.path().join("npy");
    let o = esm3(&[
        "embed",
        s(&fasta),
        "-o",
        s(&dir),
        "--format",
        "npy",
        "--model-dir",
        s(&fixtures().join("esm3_d64/model")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(dir.join("two.per_residue.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[10, 64]);
    assert_eq!(npy.into_vec::<f32>().unwrap().len(), 640);
}

#[test]
fn score_reports_the_reference_pll_and_mutation_effects() {
    let expected = scoring();
    let tmp = tempfile::tempdir().unwrap();
    let fasta = tmp.path().join("in.fa");
    std::fs::write(
        &fasta,
        format!(">p\n{}\n", expected["sequence"].as_str().unwrap()),
    )
    .unwrap();
    let model = fixtures().join("esm3_d64/model");
    let o = esm3(&["score", s(&fasta), "--model-dir", s(&model)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split('\t').collect();
    let pll: f64 = row[2].parse().unwrap();
    assert!(
        (pll - expected["esm3_d64"]["pll"].as_f64().unwrap()).abs() < 1e-3,
        "{text}"
    );
    let variants: Vec<&str> = expected["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let o = esm3(&[
        "score",
        s(&fasta),
        "--model-dir",
        s(&model),
        "--mutations",
        &variants.join(","),
    ]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for (line, want) in text
        .lines()
        .skip(1)
        .zip(expected["esm3_d64"]["masked_marginals"].as_array().unwrap())
    {
        let got: f64 = line.split('\t').nth(2).unwrap().parse().unwrap();
        assert!(
            (got - want.as_f64().unwrap()).abs() < 1e-3,
            "{line} vs {want}"
        );
    }
    let o = esm3(&[
        "score",
        s(&fasta),
        "--model-dir",
        s(&model),
        "--scan",
        "-o",
        s(&tmp.path().join("scan.tsv")),
    ]);
    assert!(o.status.success());
    let scan = std::fs::read_to_string(tmp.path().join("scan.tsv")).unwrap();
    assert_eq!(scan.lines().count(), 1 + 19 * 40);
}

#[test]
fn bad_sequences_and_mutations_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let fasta = tmp.path().join("in.fa");
    std::fs::write(&fasta, ">good\nMKT\n>bad\nMKJT\n").unwrap();
    let model = fixtures().join("esmc_d64/model");
    let o = esm3(&["score", s(&fasta), "--model-dir", s(&model)]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("record `bad`") && e.contains("'J' at position 3"),
        "{e}"
    );
    let o = esm3(&[
        "embed",
        s(&fasta),
        "-o",
        s(&tmp.path().join("x.st")),
        "--model-dir",
        s(&model),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("record `bad`"), "{e}");
    std::fs::write(&fasta, ">good\nMKT\n").unwrap();
    let o = esm3(&[
        "score",
        s(&fasta),
        "--model-dir",
        s(&model),
        "--mutations",
        "A2V",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("the sequence has K at position 2, not A"), "{e}");
    let missing = fixtures().join("no-such-model");
    let o = esm3(&["score", s(&fasta), "--model-dir", s(&missing)]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("no-such-model") && e.contains("config.json"),
        "{e}"
    );
}
