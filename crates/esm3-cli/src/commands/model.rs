//! `--model-dir` with the bundled default model as fallback, shared by every model command.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use esm3_models::model_dir::LoadedModel;
use esm3_models::ModelDir;

use super::device::DeviceArgs;

/// Where the bundled default model lives, relative to the repository root.
pub const BUNDLED_MODEL: &str = "models/esm3-rs-small";

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors). Default: $ESM3_MODEL_DIR, else the
    /// bundled model (models/esm3-rs-small).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl ModelArgs {
    /// The directory to use: the flag, the environment, or the bundled model next to the binary
    /// (target/*/esm3 → repository root) or next to the sources this binary was built from.
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.model_dir {
            return Ok(dir.clone());
        }
        if let Some(dir) = std::env::var_os("ESM3_MODEL_DIR") {
            return Ok(dir.into());
        }
        let mut tried = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            for up in exe.ancestors().skip(1).take(4) {
                tried.push(up.join(BUNDLED_MODEL));
            }
        }
        tried.push(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(BUNDLED_MODEL),
        );
        if let Some(found) = tried.iter().find(|p| p.join("config.json").is_file()) {
            return Ok(found.clone());
        }
        bail!(
            "no --model-dir given, ESM3_MODEL_DIR unset, and no bundled model found (looked in: {})",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    }

    pub fn load(&self) -> Result<(ModelDir, LoadedModel)> {
        let dir = ModelDir::open(self.resolve()?)?;
        tracing::info!(path = %dir.path.display(), config = %dir.config.describe(), "loading model");
        let model = dir.load(&self.device.load_options()?)?;
        Ok((dir, model))
    }
}
