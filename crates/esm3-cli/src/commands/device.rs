//! `--device` and `--dtype`, shared by every command that runs a model.

use anyhow::Result;
use clap::Args;
use esm3_models::LoadOptions;

#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to run: `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute precision: `f32` (reference parity) or `bf16`. On a CPU with AVX512-BF16, bf16
    /// multiplies the Linear layers in bf16 (AMX where present) and keeps the rest in f32;
    /// elsewhere (CUDA, older CPUs) every tensor is bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    pub fn load_options(&self) -> Result<LoadOptions> {
        LoadOptions::from_names(&self.device, &self.dtype).map_err(anyhow::Error::msg)
    }
}
