//! Model directories: `config.json` + memory-mapped `model.safetensors`, checked before use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use esm3_nn::MatmulPrecision;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::esm3::Esm3;
use crate::esmc::Esmc;
use crate::function_decoder::FunctionTokenDecoder;
use crate::schema;
use crate::structure_decoder::StructureTokenDecoder;
use crate::structure_encoder::StructureTokenEncoder;
use crate::weights::{MmapWeights, SharedWeights};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Where and in what precision to run a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Compute dtype. Weights are converted on load; f32 is the parity path.
    pub dtype: DType,
    /// Precision of the Linear products when `dtype` is f32 on the CPU: `Bf16` keeps the
    /// residual stream, norms and softmax in f32 and multiplies bf16 (as torch's CPU autocast).
    pub matmul: MatmulPrecision,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            matmul: MatmulPrecision::Native,
        }
    }
}

impl LoadOptions {
    /// Options from the names users type (`--device`/`--dtype`, `esm3rs.load(device=, dtype=)`):
    /// device `cpu`, `cuda` or `cuda:N`; dtype `f32` (reference parity), `bf16` or `f16`. On a
    /// CPU with AVX512-BF16, `bf16` multiplies the Linear layers in bf16 and keeps the rest f32;
    /// elsewhere every tensor is bf16.
    pub fn from_names(device: &str, dtype: &str) -> std::result::Result<Self, String> {
        let device = match device {
            "cpu" => Device::Cpu,
            d if d == "cuda" || d.starts_with("cuda:") => {
                let ordinal = match d.strip_prefix("cuda:") {
                    Some(n) => n
                        .parse()
                        .map_err(|_| format!("device `{d}`: expected cuda:N with N a number"))?,
                    None => 0,
                };
                Device::new_cuda(ordinal).map_err(|e| {
                    // candle appends a backtrace to its errors: the first line says what failed.
                    let cause = e.to_string();
                    let cause = cause.lines().next().unwrap_or_default().to_string();
                    let hint = if cfg!(feature = "cuda") {
                        "is there an NVIDIA GPU with its driver, and is the ordinal in range?"
                    } else {
                        "this build has no CUDA backend: build with --features cuda (cargo build, or maturin build for the wheel)"
                    };
                    format!("cannot open CUDA device {ordinal}: {cause} ({hint})")
                })?
            }
            other => {
                return Err(format!(
                    "unknown device `{other}`: expected cpu, cuda or cuda:N"
                ))
            }
        };
        let (dtype, matmul) = match dtype {
            "f32" => (DType::F32, MatmulPrecision::Native),
            "bf16" if device.is_cpu() && esm3_nn::linear::bf16_available() => {
                (DType::F32, MatmulPrecision::Bf16)
            }
            "bf16" => (DType::BF16, MatmulPrecision::Native),
            "f16" => (DType::F16, MatmulPrecision::Native),
            other => {
                return Err(format!(
                    "unknown dtype `{other}`: expected f32, bf16 or f16"
                ))
            }
        };
        Ok(Self {
            device,
            dtype,
            matmul,
        })
    }
}

// One per process, moved rarely: boxing the large variants buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum LoadedModel {
    Esm3(Esm3),
    Esmc(Esmc),
    StructureEncoder(StructureTokenEncoder),
    StructureDecoder(StructureTokenDecoder),
    FunctionDecoder(FunctionTokenDecoder),
}

/// An opened (not yet loaded) model directory.
#[derive(Clone, Debug)]
pub struct ModelDir {
    pub path: PathBuf,
    pub config: ModelConfig,
}

impl ModelDir {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.is_dir() {
            return Err(ModelError::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "model directory not found (expected a folder with config.json and model.safetensors)",
                ),
            ));
        }
        let config = ModelConfig::load(&path.join(CONFIG_FILE))?;
        Ok(Self { path, config })
    }

    pub fn weights_path(&self) -> PathBuf {
        self.path.join(WEIGHTS_FILE)
    }

    /// Memory-maps the weights and checks every tensor name, shape and dtype against the config.
    fn open_weights(&self) -> Result<MmapWeights> {
        let file = self.weights_path();
        if !file.is_file() {
            return Err(ModelError::io(
                &file,
                std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
            ));
        }
        let weights = MmapWeights::open(&file)?;
        let mut problems: Vec<String> = weights
            .infos()
            .filter(|(_, _, dtype)| !matches!(dtype, DType::F32 | DType::BF16 | DType::F16))
            .map(|(name, _, dtype)| {
                format!("tensor `{name}` has dtype {dtype:?}, expected F32, BF16 or F16")
            })
            .collect();
        problems.extend(schema::check(
            &schema::schema(&self.config),
            weights.infos().map(|(n, shape, _)| (n, shape.to_vec())),
        ));
        if !problems.is_empty() {
            problems.sort();
            return Err(ModelError::Checkpoint {
                path: file,
                model: self.config.model_type().into(),
                config: self.config.describe(),
                problems,
            });
        }
        Ok(weights)
    }

    /// Checks the weights file without building the model.
    pub fn check(&self) -> Result<()> {
        self.open_weights().map(|_| ())
    }

    pub fn load(&self, options: &LoadOptions) -> Result<LoadedModel> {
        let weights = Arc::new(self.open_weights()?);
        let vb = VarBuilder::from_backend(
            Box::new(SharedWeights(weights.clone())),
            options.dtype,
            options.device.clone(),
        );
        esm3_nn::with_mapped_weights(weights, || {
            esm3_nn::with_matmul_precision(options.matmul, || self.build(vb))
        })
    }

    fn build(&self, vb: VarBuilder) -> Result<LoadedModel> {
        Ok(match &self.config {
            ModelConfig::Esm3(c) => LoadedModel::Esm3(Esm3::new(c, vb)?),
            ModelConfig::Esmc(c) => LoadedModel::Esmc(Esmc::new(c, vb)?),
            ModelConfig::StructureEncoder(c) => {
                LoadedModel::StructureEncoder(StructureTokenEncoder::new(c, vb)?)
            }
            ModelConfig::StructureDecoder(c) => {
                LoadedModel::StructureDecoder(StructureTokenDecoder::new(c, vb)?)
            }
            ModelConfig::FunctionDecoder(c) => {
                LoadedModel::FunctionDecoder(FunctionTokenDecoder::new(c, vb)?)
            }
        })
    }
}
/// Writes `config.json` + `model.safetensors`.
pub fn write_model_dir(
    dir: &Path,
    config: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let weights = dir.join(WEIGHTS_FILE);
    candle_core::safetensors::save(tensors, &weights).map_err(|e| ModelError::Unreadable {
        path: weights,
        message: format!("cannot write: {e}"),
    })?;
    let cfg = dir.join(CONFIG_FILE);
    std::fs::write(&cfg, config.to_json()).map_err(|e| ModelError::io(&cfg, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_options_from_names_take_what_users_type_and_name_what_is_wrong() {
        let o = LoadOptions::from_names("cpu", "f32").unwrap();
        assert!(o.device.is_cpu());
        assert_eq!((o.dtype, o.matmul), (DType::F32, MatmulPrecision::Native));
        let bf16 = LoadOptions::from_names("cpu", "bf16").unwrap();
        if esm3_nn::linear::bf16_available() {
            assert_eq!(
                (bf16.dtype, bf16.matmul),
                (DType::F32, MatmulPrecision::Bf16)
            );
        } else {
            assert_eq!(bf16.dtype, DType::BF16);
        }
        let e = LoadOptions::from_names("gpu", "f32").unwrap_err();
        assert!(e.contains("unknown device `gpu`"), "{e}");
        let e = LoadOptions::from_names("cpu", "f64").unwrap_err();
        assert!(e.contains("unknown dtype `f64`"), "{e}");
        let e = LoadOptions::from_names("cuda:x", "f32").unwrap_err();
        assert!(e.contains("cuda:N"), "{e}");
        if !cfg!(feature = "cuda") {
            let e = LoadOptions::from_names("cuda", "f32").unwrap_err();
            assert!(e.contains("no CUDA backend"), "{e}");
        }
    }
}
