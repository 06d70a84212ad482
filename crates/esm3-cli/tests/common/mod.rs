//! Helpers shared by the end-to-end tests: running the real binary and finding test data.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

/// Runs the `esm3` binary built for these tests.
pub fn esm3(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_esm3"))
        .args(args)
        .output()
        .expect("run esm3")
}

/// `esm3 generate --prompt PROMPT -o OUT --model-dir MODEL`.
pub fn generate_prompt(prompt: &Path, out: &Path, model: &Path) -> Output {
    esm3(&[
        "generate",
        "--prompt",
        s(prompt),
        "-o",
        s(out),
        "--model-dir",
        s(model),
    ])
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing both streams otherwise.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

/// The reference parity fixtures.
pub fn fixtures() -> PathBuf {
    esm3_test_support::reference_fixtures()
}

/// `shared/data/structures` beside the project.
pub fn structures() -> PathBuf {
    esm3_test_support::shared_data().join("structures")
}

#[allow(unused_imports)] // not every test binary that includes `common` compares tensors
pub use esm3_test_support::max_diff;

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn load(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}
