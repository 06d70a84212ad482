//! `forward_and_sample` against the reference package's `ESM3.forward_and_sample` on the same
//! random weights (fixtures/reference/forward_and_sample, made by
//! tools/reference/make_forward_and_sample_fixtures.py): tokens, per-position log-probability
//! and entropy, top-k, embeddings, within 1e-4.

use std::path::PathBuf;

use serde_json::{json, Value};

use esm3_generate::Esm3Pipeline;
use esm3_models::LoadOptions;
use esm3_serve::engine::{run_one, Model};
use esm3_serve::requests::esm3_job;
use esm3_serve::{INF_MARKER, NAN_MARKER, NEG_INF_MARKER};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A float from either side: numbers, the fixture's "inf"/"-inf"/"nan", our markers.
fn float(v: &Value) -> f32 {
    match v {
        Value::Number(n) => n.as_f64().unwrap() as f32,
        Value::String(s) if s == "inf" || s == INF_MARKER => f32::INFINITY,
        Value::String(s) if s == "-inf" || s == NEG_INF_MARKER => f32::NEG_INFINITY,
        Value::String(s) if s == "nan" || s == NAN_MARKER => f32::NAN,
        other => panic!("not a float: {other}"),
    }
}

fn flat(v: &Value, out: &mut Vec<f32>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        x => out.push(float(x)),
    }
}

fn close(what: &str, ours: &Value, reference: &Value) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flat(ours, &mut a);
    flat(reference, &mut b);
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: {} values vs {}",
        a.len(),
        b.len()
    );
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = if x.is_finite() && y.is_finite() {
            (x - y).abs() <= 1e-4
        } else {
            x == y || (x.is_nan() && y.is_nan())
        };
        assert!(same, "{what}[{i}]: ours {x}, reference {y}");
    }
}

#[test]
fn matches_the_reference_forward_and_sample() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/reference/forward_and_sample/cases.json"))
            .unwrap(),
    )
    .unwrap();
    // "fixtures/reference/esm3_d64/model (= …)": the path, then a remark.
    let dir = root().join(
        fixture["model_dir"]
            .as_str()
            .unwrap()
            .split(" (")
            .next()
            .unwrap(),
    );
    let model = Model::Esm3(Box::new(
        Esm3Pipeline::load(&dir, &LoadOptions::default()).unwrap(),
    ));
    let cases = fixture["cases"].as_object().unwrap();
    assert!(cases.len() >= 6);
    for (name, case) in cases {
        let sc = &case["sampling_config"];
        let mut sampling = serde_json::Map::new();
        for t in case["sampled_tracks"].as_array().unwrap() {
            let t = t.as_str().unwrap();
            sampling.insert(t.into(), sc[t].clone());
        }
        let body = json!({
            "model": "esm3-open",
            "inputs": case["input"],
            "sampling_config": sampling,
            "embedding_config": {
                "sequence": sc["return_mean_embedding"],
                "per_residue": sc["return_per_residue_embeddings"],
            },
            "seed": 0,
        });
        let job = esm3_job("forward_and_sample", &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = run_one(&model, job).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let out = &case["output"];
        for t in case["sampled_tracks"].as_array().unwrap() {
            let t = t.as_str().unwrap();
            let mine = &ours[t];
            let what = |k: &str| format!("{name}.{t}.{k}");
            close(&what("tokens"), &mine["tokens"], &out["protein_tensor"][t]);
            close(&what("entropy"), &mine["entropy"], &out["entropy"][t]);
            if let Some(lp) = out["logprob"].get(t) {
                close(&what("logprobs"), &mine["logprobs"], lp);
            }
            if let Some(k) = out["topk_logprob"].get(t) {
                close(&what("topk_logprobs"), &mine["topk_logprobs"], k);
                assert_eq!(
                    mine["topk_tokens"],
                    out["topk_tokens"][t],
                    "{}",
                    what("topk_tokens")
                );
            }
        }
        for track in [
            "sequence",
            "structure",
            "secondary_structure",
            "sasa",
            "function",
        ] {
            let sampled = case["sampled_tracks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == track);
            assert_eq!(ours[track].is_null(), !sampled, "{name}: {track}");
        }
        if let Some(e) = out.get("per_residue_embedding") {
            close(
                &format!("{name}.per_residue"),
                &ours["embeddings"]["per_residue"],
                e,
            );
        }
        if let Some(e) = out.get("mean_embedding") {
            close(&format!("{name}.mean"), &ours["embeddings"]["sequence"], e);
        }
    }
}
