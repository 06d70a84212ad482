//! The README's training flow end to end on a tiny slice of the shipped data: build a dataset,
//! train a VQ-VAE, tokenize the dataset with it, train a trunk, resume it, and use the result.

mod common;

use common::{esm3, ok, s, stderr};
use std::path::Path;

fn shared() -> std::path::PathBuf {
    esm3_test_support::shared_data()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

const VQVAE: &str = r#"
crop_length = 24
batch_size = 2
valid_proteins = 2
[encoder]
d_model = 16
n_heads = 1
v_heads = 2
n_layers = 1
d_out = 8
n_codes = 16
[decoder]
d_model = 16
n_heads = 2
n_layers = 1
[data]
dataset = "DATASET"
[run]
steps = 2
log_every = 1
validate_every = 2
checkpoint_every = 1
"#;

const TRUNK: &str = r#"
batch_size = 2
valid_proteins = 2
[model]
d_model = 32
n_heads = 2
v_heads = 2
n_layers = 1
[data]
dataset = "DATASET"
[run]
steps = 3
log_every = 1
validate_every = 3
checkpoint_every = 2
[noise]
crop_length = 40
"#;

#[test]
fn build_train_tokenize_train_resume_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dataset = d.join("dataset");
    ok(&esm3(&[
        "data",
        "build",
        "--promod3",
        s(&shared().join("promod3_structdb")),
        "--promod3-limit",
        "300",
        "--seed",
        "3",
        "-o",
        s(&dataset),
    ]));

    let vq_cfg = d.join("vqvae.toml");
    write(&vq_cfg, &VQVAE.replace("DATASET", s(&dataset)));
    let vq_run = d.join("vqvae");
    ok(&esm3(&[
        "train",
        "vqvae",
        s(&vq_cfg),
        "-o",
        s(&vq_run),
        "--quiet",
    ]));
    for f in [
        "metrics.jsonl",
        "metrics.csv",
        "curves.png",
        "final/structure_encoder/config.json",
        "final/structure_decoder/model.safetensors",
    ] {
        assert!(vq_run.join(f).exists(), "missing {f}");
    }
    // Stage 2 (confidence heads) starts from stage 1's export.
    let vq2_cfg = d.join("vqvae2.toml");
    write(
        &vq2_cfg,
        &format!(
            "stage = 2\nconfidence = true\n{}",
            VQVAE.replace("DATASET", s(&dataset))
        ),
    );
    let vq2_run = d.join("vqvae2");
    ok(&esm3(&[
        "train",
        "vqvae",
        s(&vq2_cfg),
        "-o",
        s(&vq2_run),
        "--init",
        s(&vq_run.join("final")),
        "--quiet",
    ]));

    ok(&esm3(&[
        "data",
        "tokenize",
        s(&dataset),
        "--structure-encoder",
        s(&vq2_run.join("final/structure_encoder")),
    ]));

    let cfg = d.join("esm3.toml");
    write(&cfg, &TRUNK.replace("DATASET", s(&dataset)));
    let run = d.join("esm3");
    // Two steps, then resume to three.
    ok(&esm3(&[
        "train",
        "esm3",
        s(&cfg),
        "-o",
        s(&run),
        "--steps",
        "2",
        "--quiet",
    ]));
    let again = esm3(&["train", "esm3", s(&cfg), "-o", s(&run), "--quiet"]);
    assert!(
        !again.status.success(),
        "a second run into the same --out must ask for --resume"
    );
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
    ok(&esm3(&[
        "train",
        "esm3",
        s(&cfg),
        "-o",
        s(&run),
        "--resume",
        "--quiet",
    ]));
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.contains("\"train\"")).count(),
        3,
        "{log}"
    );

    // The final trunk plus the VQ-VAE is a model directory the inference commands use.
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(run.join("final").join(f), model.join(f)).unwrap();
    }
    for part in ["structure_encoder", "structure_decoder"] {
        let to = model.join(part);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(vq2_run.join("final").join(part).join(f), to.join(f)).unwrap();
        }
    }
    let out = d.join("designs");
    ok(&esm3(&[
        "generate",
        "--length",
        "12",
        "--num-steps",
        "3",
        "--model-dir",
        s(&model),
        "-o",
        s(&out),
    ]));
    assert!(std::fs::read_dir(&out).unwrap().count() >= 2);

    // Fine-tuning starts from a model directory.
    let ft = d.join("finetune");
    ok(&esm3(&[
        "train",
        "esm3",
        s(&cfg),
        "-o",
        s(&ft),
        "--init",
        s(&run.join("final")),
        "--steps",
        "1",
        "--quiet",
    ]));

    // The model card's evaluation runs on the same model and dataset and writes every metric.
    let report = d.join("evaluation.json");
    let eval = esm3(&[
        "train",
        "evaluate",
        "--model-dir",
        s(&model),
        "--dataset",
        s(&dataset),
        "--splits",
        "test",
        "--max-len",
        "40",
        "--generations",
        "1",
        "--fold-steps",
        "2",
        "--json",
        s(&report),
    ]);
    ok(&eval);
    let text = String::from_utf8_lossy(&eval.stdout).to_string();
    assert!(text.contains("fold LDDT-Cα (2-step decoding"), "{text}");
    assert!(text.contains("random tokens"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let metrics = json["splits"][0]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 9, "{json}");
    for m in metrics {
        let value = m[1]["model"].as_f64().unwrap();
        assert!(value.is_finite(), "{m}");
    }
    let generation = &json["generation"];
    for key in [
        "mean_plddt",
        "random_tokens_mean_plddt",
        "mean_ptm",
        "random_tokens_mean_ptm",
    ] {
        let v = generation[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(generation["sequence_temperature"].as_f64(), Some(0.7));
}
