//! Parity with the reference `esm` package on random-weight fixtures it produced
//! (`tools/reference/make_fixtures.py`): every output within 1e-4 at every non-padding position.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use esm3_models::forward::{forward_named, read_inputs};
use esm3_models::import::import_pth;
use esm3_models::model_dir::LoadedModel;
use esm3_models::{LoadOptions, ModelConfig, ModelDir};
use esm3_test_support::reference_fixtures;

const TOLERANCE: f32 = 1e-4;

/// Largest |ours − reference| over the positions `position_mask` marks real, per output.
fn compare(ours: &[(String, Tensor)], expected: &HashMap<String, Tensor>) -> Vec<(String, f32)> {
    let mask = expected
        .get("position_mask")
        .map(|m| m.to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap());
    let ours: HashMap<&str, &Tensor> = ours.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut report = Vec::new();
    for (name, want) in expected {
        if name == "position_mask" {
            continue;
        }
        let got = ours
            .get(name.as_str())
            .unwrap_or_else(|| panic!("output `{name}` missing"));
        assert_eq!(got.dims(), want.dims(), "shape of `{name}`");
        // hidden_states is [n_layers, B, L, d]; every other output starts with [B, L].
        let lead = usize::from(name == "hidden_states");
        let dims = want.dims().to_vec();
        let (b, l) = (dims[lead], dims[lead + 1]);
        let inner: usize = dims[lead + 2..].iter().product();
        let outer: usize = dims[..lead].iter().product();
        let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut worst = 0f32;
        for o in 0..outer {
            for bi in 0..b {
                for li in 0..l {
                    if mask.as_ref().is_some_and(|m| m[bi][li] == 0) {
                        continue;
                    }
                    let base = ((o * b + bi) * l + li) * inner;
                    for k in base..base + inner {
                        let diff = (g[k] - w[k]).abs();
                        assert!(
                            !diff.is_nan(),
                            "`{name}` NaN at flat index {k}: ours {} ref {}",
                            g[k],
                            w[k]
                        );
                        worst = worst.max(diff);
                    }
                }
            }
        }
        report.push((name.clone(), worst));
    }
    report
}

fn run_cases(model_name: &str, model: &LoadedModel) -> usize {
    let cases = reference_fixtures().join(model_name).join("cases");
    let mut names: Vec<_> = std::fs::read_dir(&cases)
        .unwrap_or_else(|e| panic!("{}: {e}", cases.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut failures = Vec::new();
    for case in &names {
        let inputs = read_inputs(&case.join("input.safetensors")).unwrap();
        let expected = candle_core::safetensors::load(
            case.join("expected.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let outputs =
            forward_named(model, &inputs).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        for (output, worst) in compare(&outputs, &expected) {
            let label = format!(
                "{model_name}/{}: {output}",
                case.file_name().unwrap().to_string_lossy()
            );
            eprintln!("{label}: max |diff| = {worst:.3e}");
            if worst > TOLERANCE {
                failures.push(format!("{label}: {worst:.3e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "outputs beyond {TOLERANCE}:\n{}",
        failures.join("\n")
    );
    names.len()
}

fn load(dir: &Path) -> LoadedModel {
    ModelDir::open(dir)
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
}

fn check_model(name: &str) {
    let model = load(&reference_fixtures().join(name).join("model"));
    let n = run_cases(name, &model);
    assert!(n > 0, "no cases for {name}");
}

#[test]
fn esm3_d64_matches_reference() {
    check_model("esm3_d64");
}

#[test]
fn esm3_d48_matches_reference() {
    check_model("esm3_d48");
}

#[test]
fn esmc_d64_matches_reference() {
    check_model("esmc_d64");
}

#[test]
fn esmc_d96_matches_reference() {
    check_model("esmc_d96");
}

/// `.pth` → import → forward gives the reference outputs too.
#[test]
fn pth_import_then_forward_matches_reference() {
    for name in ["esm3_d64", "esmc_d64"] {
        let dir = reference_fixtures().join(name);
        let config = ModelConfig::load(&dir.join("model/config.json")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let report =
            import_pth(&dir.join(format!("{name}.pth")), out.path(), Some(config)).unwrap();
        assert!(report.tensors > 0);
        run_cases(name, &load(out.path()));
    }
}
