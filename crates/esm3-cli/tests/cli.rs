//! End-to-end tests that drive the real `esm3` binary.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use esm3_models::init::random_weights;
use esm3_models::model_dir::write_model_dir;
use esm3_models::{EsmcConfig, ModelConfig};

fn tiny_esmc(dir: &Path) -> ModelConfig {
    let config = ModelConfig::Esmc(EsmcConfig {
        d_model: 16,
        n_heads: 2,
        n_layers: 1,
    });
    write_model_dir(dir, &config, &random_weights(&config, 1).unwrap()).unwrap();
    config
}

fn save(path: &Path, tensors: &[(&str, Tensor)]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn forward_through_the_binary_matches_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    for (model, case) in [
        ("esm3_d64", "single"),
        ("esm3_d64", "two_chains"),
        ("esmc_d64", "batch_padded"),
    ] {
        let case_dir = fixtures().join(model).join("cases").join(case);
        let out = tmp.path().join(format!("{model}_{case}.safetensors"));
        let timings = tmp.path().join("t.json");
        let o = esm3(&[
            "forward",
            "--model-dir",
            s(&fixtures().join(model).join("model")),
            "--input",
            s(&case_dir.join("input.safetensors")),
            "--output",
            s(&out),
            "--repeat",
            "2",
            "--timings",
            s(&timings),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&timings).unwrap()).unwrap();
        assert_eq!(t["forward_s"].as_array().unwrap().len(), 2);
        let (got, want) = (load(&out), load(&case_dir.join("expected.safetensors")));
        let mask = want["position_mask"].to_dtype(DType::F32).unwrap();
        for (name, w) in &want {
            if name == "position_mask" {
                continue;
            }
            let g = &got[name];
            assert_eq!(g.dims(), w.dims(), "{name}");
            // Zero out padding positions on both sides before comparing.
            let m = if name == "hidden_states" {
                mask.unsqueeze(0).unwrap()
            } else {
                mask.clone()
            };
            let mut m = m;
            while m.rank() < w.rank() {
                m = m.unsqueeze(m.rank()).unwrap();
            }
            let (g, w) = (g.broadcast_mul(&m).unwrap(), w.broadcast_mul(&m).unwrap());
            let d = max_diff(&g, &w);
            assert!(d <= 1e-4, "{model}/{case}/{name}: {d}");
        }
    }
}

#[test]
fn forward_rejects_bad_inputs_with_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    tiny_esmc(&dir);
    let out = tmp.path().join("out.safetensors");
    let cases: Vec<(&str, Vec<(&str, Tensor)>, &str)> = vec![
        (
            "unknown name",
            vec![
                (
                    "sequence_tokens",
                    Tensor::new(&[[0i64, 5, 2]], &Device::Cpu).unwrap(),
                ),
                (
                    "structure_tokens",
                    Tensor::new(&[[0i64, 5, 2]], &Device::Cpu).unwrap(),
                ),
            ],
            "unknown input tensor(s) [\"structure_tokens\"] for a esmc model",
        ),
        (
            "out of range",
            vec![(
                "sequence_tokens",
                Tensor::new(&[[0i64, 5, 70, 2]], &Device::Cpu).unwrap(),
            )],
            "`sequence_tokens`[0, 2] = 70 is out of range: expected sequence ids in 0..64",
        ),
        (
            "float tokens",
            vec![(
                "sequence_tokens",
                Tensor::new(&[[0f32, 5.0, 2.0]], &Device::Cpu).unwrap(),
            )],
            "`sequence_tokens` has dtype F32: expected an integer tensor",
        ),
        (
            "bad shape",
            vec![(
                "sequence_tokens",
                Tensor::new(&[0i64, 5, 2], &Device::Cpu).unwrap(),
            )],
            "`sequence_tokens` has shape [3], expected [_, _]",
        ),
    ];
    for (what, tensors, message) in cases {
        let input = tmp.path().join("in.safetensors");
        save(&input, &tensors);
        let o = esm3(&[
            "forward",
            "--model-dir",
            s(&dir),
            "--input",
            s(&input),
            "--output",
            s(&out),
        ]);
        assert!(!o.status.success(), "{what} accepted");
        assert!(stderr(&o).contains(message), "{what}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{what}: {}", stderr(&o));
    }
}

#[test]
fn esm3_inputs_are_validated_per_track() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures().join("esm3_d64/model");
    let out = tmp.path().join("out.safetensors");
    let input = tmp.path().join("in.safetensors");
    let dev = Device::Cpu;
    save(
        &input,
        &[
            (
                "sequence_tokens",
                Tensor::new(&[[0i64, 5, 2]], &dev).unwrap(),
            ),
            (
                "function_tokens",
                Tensor::zeros((1, 3, 7), DType::I64, &dev).unwrap(),
            ),
        ],
    );
    let o = esm3(&[
        "forward",
        "--model-dir",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(
        stderr(&o).contains("`function_tokens` has shape [1, 3, 7], expected [1, 3, 8]"),
        "{}",
        stderr(&o)
    );
    save(
        &input,
        &[(
            "structure_coords",
            Tensor::zeros((1, 4, 2, 3), DType::F32, &dev).unwrap(),
        )],
    );
    let o = esm3(&[
        "forward",
        "--model-dir",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(
        stderr(&o).contains("`structure_coords` has shape [1, 4, 2, 3]"),
        "{}",
        stderr(&o)
    );
    save(
        &input,
        &[(
            "average_plddt",
            Tensor::zeros((1, 4), DType::F32, &dev).unwrap(),
        )],
    );
    let o = esm3(&[
        "forward",
        "--model-dir",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(
        stderr(&o).contains("no input track given"),
        "{}",
        stderr(&o)
    );
    // Only coordinates: the length comes from them, everything else is defaulted.
    save(
        &input,
        &[(
            "structure_coords",
            Tensor::zeros((1, 4, 3, 3), DType::F32, &dev).unwrap(),
        )],
    );
    let o = esm3(&[
        "forward",
        "--model-dir",
        s(&model),
        "--input",
        s(&input),
        "--output",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(load(&out)["sequence_logits"].dims(), &[1, 4, 64]);
}

#[test]
fn broken_model_directories_are_reported_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.safetensors");
    save(
        &input,
        &[(
            "sequence_tokens",
            Tensor::new(&[[0i64, 5, 2]], &Device::Cpu).unwrap(),
        )],
    );
    let out = tmp.path().join("out.safetensors");
    let run = |dir: &Path| {
        esm3(&[
            "forward",
            "--model-dir",
            s(dir),
            "--input",
            s(&input),
            "--output",
            s(&out),
        ])
    };

    let o = run(&tmp.path().join("nowhere"));
    assert!(
        stderr(&o).contains("model directory not found"),
        "{}",
        stderr(&o)
    );

    // A tensor missing and one mis-shaped.
    let dir = tmp.path().join("broken");
    let config = tiny_esmc(&dir);
    let mut w = random_weights(&config, 1).unwrap();
    w.remove("transformer.norm.weight");
    w.insert(
        "embed.weight".into(),
        Tensor::zeros((64, 17), DType::F32, &Device::Cpu).unwrap(),
    );
    write_model_dir(&dir, &config, &w).unwrap();
    let e = stderr(&run(&dir));
    assert!(
        e.contains("missing tensor `transformer.norm.weight` (expected shape [16])"),
        "{e}"
    );
    assert!(
        e.contains("tensor `embed.weight` has shape [64, 17], expected [64, 16]"),
        "{e}"
    );
    assert!(e.contains("model.safetensors"), "{e}");

    // A truncated weights file.
    let dir = tmp.path().join("truncated");
    tiny_esmc(&dir);
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(&dir);
    assert!(
        !o.status.success() && stderr(&o).contains("cannot read checkpoint"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"));

    // A config that cannot be a model.
    let dir = tmp.path().join("badconfig");
    tiny_esmc(&dir);
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type":"esmc","d_model":16,"n_heads":3,"n_layers":1}"#,
    )
    .unwrap();
    let e = stderr(&run(&dir));
    assert!(
        e.contains("config.json") && e.contains("not divisible by n_heads 3"),
        "{e}"
    );
}

#[test]
fn import_checks_names_shapes_and_file_format() {
    let tmp = tempfile::tempdir().unwrap();
    let pth = fixtures().join("esmc_d64/esmc_d64.pth");
    // Unknown file name without --config.
    let o = esm3(&["import", s(&pth), "--out", s(&tmp.path().join("a"))]);
    assert!(
        stderr(&o).contains("hyper-parameters unknown for `esmc_d64.pth`"),
        "{}",
        stderr(&o)
    );
    // Wrong hyper-parameters: every mismatching tensor is named.
    let cfg = tmp.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"model_type":"esmc","d_model":64,"n_heads":4,"n_layers":3}"#,
    )
    .unwrap();
    let o = esm3(&[
        "import",
        s(&pth),
        "--out",
        s(&tmp.path().join("b")),
        "--config",
        s(&cfg),
    ]);
    let e = stderr(&o);
    assert!(
        e.contains("missing tensor `transformer.blocks.2.ffn.1.weight` (expected shape [512, 64])"),
        "{e}"
    );
    // Right hyper-parameters.
    std::fs::write(
        &cfg,
        r#"{"model_type":"esmc","d_model":64,"n_heads":4,"n_layers":2}"#,
    )
    .unwrap();
    let dir = tmp.path().join("c");
    let o = esm3(&["import", s(&pth), "--out", s(&dir), "--config", s(&cfg)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tensors"));
    assert!(dir.join("model.safetensors").is_file() && dir.join("config.json").is_file());
    // Not a torch zip at all.
    let junk = tmp.path().join("esm3_sm_open_v1.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let o = esm3(&["import", s(&junk), "--out", s(&tmp.path().join("d"))]);
    assert!(
        stderr(&o).contains("cannot read checkpoint"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tokenize_is_strict_unless_told_otherwise() {
    let o = esm3(&["tokenize", "MKT_|A"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "[0,20,15,11,32,31,5,2]"
    );
    let o = esm3(&["tokenize", "MKTJ"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid residue 'J' at position 4"),
        "{}",
        stderr(&o)
    );
    let o = esm3(&["tokenize", "--lenient", "MKTJ"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "[0,20,15,11,3,2]"
    );
}
