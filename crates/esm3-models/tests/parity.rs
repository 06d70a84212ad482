//! Parity with the reference `esm` package on random-weight fixtures it produced
//! (`tools/reference/make_fixtures.py`): every output within 1e-4 at every non-padding position.

use std::path::Path;

use esm3_models::forward::{forward_named, read_inputs};
use esm3_models::import::import_pth;
use esm3_models::model_dir::LoadedModel;
use esm3_models::{LoadOptions, ModelConfig, ModelDir};
use esm3_test_support::reference_fixtures;

const TOLERANCE: f32 = 1e-4;

use esm3_test_support::compare_outputs as compare;

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
