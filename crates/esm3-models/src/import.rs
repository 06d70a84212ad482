//! `esm3 import`: official (or any) PyTorch checkpoints → model directories.
//!
//! The reference ships `torch.save` state dicts (zip pickles). We read them with candle's pickle
//! reader, check every name, shape and dtype against the model's schema, and write our
//! safetensors format with the reference names unchanged, keeping the stored dtype.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::pickle::PthTensors;
use candle_core::{DType, Tensor};

use esm3_tokens::function::lsh::HYPERPLANES_FILE;
use esm3_tokens::function::Hyperplanes;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::model_dir::{ModelDir, CONFIG_FILE, WEIGHTS_FILE};
use crate::schema;

/// What an import wrote.
#[derive(Debug)]
pub struct ImportReport {
    pub out_dir: PathBuf,
    pub config: ModelConfig,
    pub tensors: usize,
    pub parameters: usize,
    pub dtypes: Vec<DType>,
}

/// Chooses the config: the one given, else the known one for an official file name.
pub fn resolve_config(pth: &Path, config: Option<ModelConfig>) -> Result<ModelConfig> {
    if let Some(c) = config {
        return Ok(c);
    }
    let name = pth.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    ModelConfig::for_official_file(name).ok_or_else(|| ModelError::Config {
        path: pth.to_path_buf(),
        message: format!(
            "hyper-parameters unknown for `{name}`: official names are esm3_sm_open_v1.pth, \
             esmc_300m_2024_12_v0.pth, esmc_600m_2024_12_v0.pth, esm3_structure_encoder_v0.pth, \
             esm3_structure_decoder_v0.pth, esm3_function_decoder_v0.pth; for any other checkpoint pass \
             --config with a config.json"
        ),
    })
}

pub fn import_pth(pth: &Path, out_dir: &Path, config: Option<ModelConfig>) -> Result<ImportReport> {
    let config = resolve_config(pth, config)?;
    config.validate().map_err(|message| ModelError::Config {
        path: pth.to_path_buf(),
        message,
    })?;
    if !pth.is_file() {
        return Err(ModelError::io(
            pth,
            std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found"),
        ));
    }
    let unreadable = |e: candle_core::Error| ModelError::Unreadable {
        path: pth.to_path_buf(),
        message: format!("{e} (expected a torch.save state dict in zip format)"),
    };
    let pt = PthTensors::new(pth, None).map_err(unreadable)?;
    let infos = pt.tensor_infos();
    let mut problems: Vec<String> = infos
        .values()
        .filter(|i| !matches!(i.dtype, DType::F32 | DType::BF16 | DType::F16))
        .map(|i| {
            format!(
                "tensor `{}` has dtype {:?}, expected F32, BF16 or F16",
                i.name, i.dtype
            )
        })
        .collect();
    problems.extend(schema::check(
        &schema::schema(&config),
        infos
            .iter()
            .map(|(n, i)| (n.as_str(), i.layout.dims().to_vec())),
    ));
    if !problems.is_empty() {
        problems.sort();
        return Err(ModelError::Checkpoint {
            path: pth.to_path_buf(),
            model: config.model_type().into(),
            config: config.describe(),
            problems,
        });
    }
    let mut tensors: HashMap<String, Tensor> = HashMap::with_capacity(infos.len());
    let mut dtypes = Vec::new();
    let mut parameters = 0;
    for name in infos.keys() {
        let t = pt
            .get(name)
            .map_err(unreadable)?
            .ok_or_else(|| unreadable(candle_core::Error::Msg(format!("tensor {name} vanished"))))?
            .contiguous()?;
        if !dtypes.contains(&t.dtype()) {
            dtypes.push(t.dtype());
        }
        parameters += t.elem_count();
        tensors.insert(name.clone(), t);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    let weights = out_dir.join(WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &weights).map_err(|e| ModelError::Unreadable {
        path: weights.clone(),
        message: format!("cannot write: {e}"),
    })?;
    let config_path = out_dir.join(CONFIG_FILE);
    std::fs::write(&config_path, config.to_json()).map_err(|e| ModelError::io(&config_path, e))?;
    // Re-open what we wrote: the directory must pass the same check every load does.
    ModelDir::open(out_dir)?.check()?;
    Ok(ImportReport {
        out_dir: out_dir.to_path_buf(),
        config,
        tensors: tensors.len(),
        parameters,
        dtypes,
    })
}
/// Converts the official `hyperplanes_8bit_58641.npz` (or any npz of that layout) into
/// `hyperplanes.safetensors` in `model_dir`, checking its width against the decoder's keyword
/// vocabulary when the directory already holds a function-decoder config.
pub fn import_hyperplanes(npz: &Path, model_dir: &Path) -> Result<Hyperplanes> {
    let h = Hyperplanes::read_npz(npz).map_err(|e| ModelError::Input(e.to_string()))?;
    let config_path = model_dir.join(CONFIG_FILE);
    if config_path.is_file() {
        if let crate::ModelConfig::FunctionDecoder(c) = crate::ModelConfig::load(&config_path)? {
            if c.keyword_vocabulary_size != h.dim() {
                return Err(ModelError::Input(format!(
                    "{}: hyperplanes have dim {}, but the decoder in {} has {} keywords",
                    npz.display(),
                    h.dim(),
                    model_dir.display(),
                    c.keyword_vocabulary_size
                )));
            }
        }
    }
    std::fs::create_dir_all(model_dir).map_err(|e| ModelError::io(model_dir, e))?;
    h.write_safetensors(&model_dir.join(HYPERPLANES_FILE))
        .map_err(|e| ModelError::Input(e.to_string()))?;
    Ok(h)
}
