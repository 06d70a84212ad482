//! `--device` and `--dtype`, shared by every command that runs a model.

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use clap::Args;
use esm3_models::LoadOptions;
use esm3_models::{bf16_available, MatmulPrecision};

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
        let device = match self.device.as_str() {
            "cpu" => Device::Cpu,
            d if d == "cuda" || d.starts_with("cuda:") => {
                let ordinal = d
                    .strip_prefix("cuda:")
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or(0);
                Device::new_cuda(ordinal).map_err(|e| {
                    // candle appends a backtrace to its errors: the first line says what failed.
                    let cause = e.to_string();
                    let cause = cause.lines().next().unwrap_or_default();
                    let hint = if cfg!(feature = "cuda") {
                        "is there an NVIDIA GPU with its driver, and is the ordinal in range?"
                    } else {
                        "this build has no CUDA backend: build with --features cuda"
                    };
                    anyhow::anyhow!("cannot open CUDA device {ordinal}: {cause} ({hint})")
                })?
            }
            other => bail!("unknown device `{other}`: expected cpu, cuda or cuda:N"),
        };
        let (dtype, matmul) = match self.dtype.as_str() {
            "f32" => (DType::F32, MatmulPrecision::Native),
            "bf16" if device.is_cpu() && bf16_available() => (DType::F32, MatmulPrecision::Bf16),
            "bf16" => (DType::BF16, MatmulPrecision::Native),
            "f16" => (DType::F16, MatmulPrecision::Native),
            other => bail!("unknown dtype `{other}`: expected f32, bf16 or f16"),
        };
        Ok(LoadOptions {
            device,
            dtype,
            matmul,
        })
    }
}
