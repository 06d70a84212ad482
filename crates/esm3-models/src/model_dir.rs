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
