//! `--device` and `--dtype`, shared by every command that runs a model.

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use clap::Args;
use esm3_models::LoadOptions;

#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to run: `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute precision: `f32` (reference parity) or `bf16` (half the memory).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    pub fn load_options(&self) -> Result<LoadOptions> {
        let device = match self.device.as_str() {
            "cpu" => Device::Cpu,
            d if d == "cuda" || d.starts_with("cuda:") => {
                let ordinal = d
                    .strip_prefix("cuda:")
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or(0);
                Device::new_cuda(ordinal).map_err(|e| {
                    anyhow::anyhow!("cannot open CUDA device {ordinal}: {e} (is this build made with --features cuda?)")
                })?
            }
            other => bail!("unknown device `{other}`: expected cpu, cuda or cuda:N"),
        };
        let dtype = match self.dtype.as_str() {
            "f32" => DType::F32,
            "bf16" => DType::BF16,
            "f16" => DType::F16,
            other => bail!("unknown dtype `{other}`: expected f32, bf16 or f16"),
        };
        Ok(LoadOptions { device, dtype })
    }
}
