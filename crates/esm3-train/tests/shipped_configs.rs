//! The training configs shipped in `configs/` (the ones the README and
//! `tools/train-bundled-model.sh` run) parse, and each one's learning-rate schedule spans
//! exactly its run, so an edited step count cannot silently leave the cosine decay unfinished.

use std::path::PathBuf;

use esm3_train::trunk::TrunkTrainConfig;
use esm3_train::vqvae::objective::VqVaeTrainConfig;

fn configs_dir() -> PathBuf {
    esm3_test_support::repo_root().join("configs")
}

#[test]
fn every_shipped_config_parses_and_its_schedule_spans_the_run() {
    let mut seen = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let (steps, total, warmup) = if name.starts_with("vqvae") {
            let c: VqVaeTrainConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(c.stage == 1 || c.stage == 2, "{name}: stage {}", c.stage);
            (c.run.steps, c.schedule.total_steps, c.schedule.warmup_steps)
        } else if name.starts_with("esm3") {
            let c: TrunkTrainConfig =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(c.model.is_some(), "{name}: no [model] section");
            (c.run.steps, c.schedule.total_steps, c.schedule.warmup_steps)
        } else {
            panic!("{name}: configs/ holds vqvae-*.toml and esm3-*.toml only");
        };
        assert_eq!(
            steps, total,
            "{name}: [run] steps vs [schedule] total_steps"
        );
        assert!(warmup < steps, "{name}: warm-up {warmup} ≥ {steps} steps");
        seen += 1;
    }
    // The five configs of tools/train-bundled-model.sh at least.
    assert!(
        seen >= 5,
        "only {seen} configs found in {:?}",
        configs_dir()
    );
}
