//! Multi-chain proteins against the reference's `ProteinComplex` path on the same random
//! weights (fixtures/reference/complex, made by tools/reference/make_complex_fixtures.py):
//! `AAA|BBB` with NaN coordinates at the break → encode (tokens) → logits → decode.

use std::path::PathBuf;

use serde_json::Value;

use esm3_generate::{batch_logits, Esm3Pipeline, EsmProtein, PaddingAttention};
use esm3_models::LoadOptions;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn float(v: &Value) -> f32 {
    match v {
        Value::Number(n) => n.as_f64().unwrap() as f32,
        Value::String(s) if s == "inf" => f32::INFINITY,
        Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
        Value::String(s) if s == "nan" => f32::NAN,
        other => panic!("not a float: {other}"),
    }
}

fn coords(v: &Value) -> Vec<[[f32; 3]; 37]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut row = [[0.0; 3]; 37];
            for (a, atom) in r.as_array().unwrap().iter().enumerate() {
                for k in 0..3 {
                    row[a][k] = float(&atom[k]);
                }
            }
            row
        })
        .collect()
}

fn same(x: f32, y: f32) -> bool {
    if x.is_finite() && y.is_finite() {
        (x - y).abs() <= 1e-4
    } else {
        x == y || (x.is_nan() && y.is_nan())
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn complexes_match_the_reference_protein_complex_path() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/reference/complex/cases.json")).unwrap(),
    )
    .unwrap();
    let pipeline = Esm3Pipeline::load(
        &root().join("fixtures/random-bundle-d64"),
        &LoadOptions::default(),
    )
    .unwrap();
    let cases = fixture["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 3);
    for (name, case) in cases {
        let p = &case["protein"];
        let protein = EsmProtein {
            sequence: Some(p["sequence"].as_str().unwrap().to_string()),
            coordinates: Some(coords(&p["coordinates"])),
            ..Default::default()
        };
        assert!(protein.sequence.as_ref().unwrap().contains('|'));
        let tensor = pipeline.encode(&protein).unwrap();
        let t = &case["tensor"];
        assert_eq!(
            tensor.sequence.as_ref().unwrap(),
            &ids(&t["sequence"]),
            "{name}: sequence ids"
        );
        assert_eq!(
            tensor.structure.as_ref().unwrap(),
            &ids(&t["structure"]),
            "{name}: structure ids"
        );
        // Normalised coordinates: the same atoms present, at the same places up to the frame.
        // The frame of the mean backbone is ill-conditioned in float32 (see esm3-protein's
        // normalization_matches_the_reference: the reference is itself up to ~3e-3 Å from
        // float64), so the geometry is compared after superposition, to 1e-4 Å.
        let (ours, theirs) = (
            tensor.coordinates.as_ref().unwrap(),
            coords(&t["coordinates"]),
        );
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, (x, y)) in ours.iter().zip(&theirs).enumerate() {
            for k in 0..37 {
                for c in 0..3 {
                    assert_eq!(
                        x[k][c].is_finite(),
                        y[k][c].is_finite(),
                        "{name}: coordinates[{i}][{k}]"
                    );
                    assert_eq!(
                        x[k][c].is_nan(),
                        y[k][c].is_nan(),
                        "{name}: coordinates[{i}][{k}]"
                    );
                }
                if x[k][0].is_finite() {
                    a.push(x[k]);
                    b.push(y[k]);
                }
            }
        }
        let (rmsd, _) = esm3_protein::metrics::superposed_rmsd(&a, &b, None).unwrap();
        assert!(
            rmsd <= 1e-4,
            "{name}: coordinates {rmsd} Å RMSD after superposition"
        );
        let frame_shift = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (0..3).map(|c| (x[c] - y[c]).abs()).fold(0f32, f32::max))
            .fold(0f32, f32::max);
        assert!(
            frame_shift < 1e-2,
            "{name}: {frame_shift} Å before superposition"
        );
        let out = batch_logits(
            &pipeline.esm3,
            std::slice::from_ref(&tensor),
            PaddingAttention::Masked,
        )
        .unwrap();
        let seq = out
            .sequence_logits
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let structure = out
            .structure_logits
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let emb = out.embeddings.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        let l = &case["logits"];
        let check = |what: &str, ours: &[Vec<f32>], theirs: &Value, width: usize| {
            let rows = theirs.as_array().unwrap();
            assert_eq!(ours.len(), rows.len(), "{name}: {what}");
            for (i, (a, b)) in ours.iter().zip(rows).enumerate() {
                for (k, y) in b.as_array().unwrap().iter().take(width).enumerate() {
                    assert!(
                        same(a[k], float(y)),
                        "{name}: {what}[{i}][{k}] {} vs {}",
                        a[k],
                        float(y)
                    );
                }
            }
        };
        check("sequence logits", &seq, &l["sequence"], 64);
        check("structure logits", &structure, &l["structure_first8"], 8);
        check("embeddings", &emb, &l["embeddings"], usize::MAX);
        // Decoding the tokens: per-residue pLDDT and pTM as the reference's.
        let decoded = pipeline.decode(&tensor).unwrap();
        let d = &case["decoded"];
        assert_eq!(
            decoded.sequence.as_deref(),
            d["sequence"].as_str(),
            "{name}"
        );
        let plddt: Vec<f32> = d["plddt"].as_array().unwrap().iter().map(float).collect();
        for (i, (a, b)) in decoded
            .plddt
            .as_ref()
            .unwrap()
            .iter()
            .zip(&plddt)
            .enumerate()
        {
            assert!(same(*a, *b), "{name}: plddt[{i}] {a} vs {b}");
        }
        assert!(
            same(decoded.ptm.unwrap(), float(&d["ptm"][0])),
            "{name}: ptm"
        );
    }
}
