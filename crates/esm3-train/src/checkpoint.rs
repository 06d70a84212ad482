//! Resumable checkpoints: everything a run needs to continue bit-for-bit — all weights
//! (training-only ones included), the optimizer moments and step, extra trainer buffers (e.g. the
//! VQ-VAE codebook's moving averages), and a JSON state (RNG, data position).
//!
//! Layout: `RUN/checkpoints/step-00000500/{weights,optimizer,extra}.safetensors`, `state.json`,
//! `parts.json` (the model configs); `RUN/checkpoints/latest` names the newest complete one (written last, so a
//! crash mid-save never points at a partial checkpoint).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Serialize};

use crate::optim::AdamW;
use crate::trainable::Trainable;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{0}")]
    Tensor(#[from] candle_core::Error),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |e| CheckpointError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// Saves a checkpoint for `step` and keeps only the newest `keep` of them.
pub fn save<S: Serialize>(
    run: &Path,
    step: usize,
    model: &Trainable,
    optimizer: &AdamW,
    extra: &HashMap<String, Tensor>,
    state: &S,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let root = checkpoints_dir(run);
    let dir = root.join(format!("step-{step:08}"));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let cpu = |m: HashMap<String, Tensor>| -> candle_core::Result<HashMap<String, Tensor>> {
        m.into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
            .collect()
    };
    candle_core::safetensors::save(&cpu(model.tensors())?, dir.join("weights.safetensors"))?;
    candle_core::safetensors::save(
        &cpu(optimizer.state_tensors())?,
        dir.join("optimizer.safetensors"),
    )?;
    let extra = if extra.is_empty() {
        // safetensors needs at least one tensor; a marker keeps the file well-formed.
        HashMap::from([(
            "none".to_string(),
            Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?,
        )])
    } else {
        cpu(extra.clone())?
    };
    candle_core::safetensors::save(&extra, dir.join("extra.safetensors"))?;
    let state_path = dir.join("state.json");
    let json = serde_json::json!({
        "step": step,
        "optimizer_steps": optimizer.steps_taken(),
        "trainer": state,
    });
    std::fs::write(&state_path, serde_json::to_string_pretty(&json).unwrap())
        .map_err(io(&state_path))?;
    let cfg = dir.join("parts.json");
    std::fs::write(&cfg, serde_json::to_string_pretty(&model.parts).unwrap()).map_err(io(&cfg))?;
    let latest = root.join("latest");
    std::fs::write(&latest, format!("step-{step:08}\n")).map_err(io(&latest))?;
    // Prune older checkpoints.
    let mut all: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(io(&root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    all.sort();
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(dir)
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run: &Path) -> Option<PathBuf> {
    let root = checkpoints_dir(run);
    let name = std::fs::read_to_string(root.join("latest")).ok()?;
    let dir = root.join(name.trim());
    dir.join("state.json").exists().then_some(dir)
}

/// What a restored checkpoint hands back besides the weights and optimizer state it loads.
pub struct Restored<S> {
    pub step: usize,
    pub extra: HashMap<String, Tensor>,
    pub state: S,
}

/// Loads weights and optimizer state from `dir` into `model` / `optimizer`.
pub fn restore<S: DeserializeOwned>(
    dir: &Path,
    model: &Trainable,
    optimizer: &mut AdamW,
) -> Result<Restored<S>, CheckpointError> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| CheckpointError::Io {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    let bad = |what: &str| CheckpointError::Io {
        path: state_path.clone(),
        message: format!("missing or invalid {what}"),
    };
    let step = json["step"].as_u64().ok_or_else(|| bad("step"))? as usize;
    let opt_steps = json["optimizer_steps"]
        .as_u64()
        .ok_or_else(|| bad("optimizer_steps"))? as usize;
    let state: S =
        serde_json::from_value(json["trainer"].clone()).map_err(|e| CheckpointError::Io {
            path: state_path.clone(),
            message: format!("trainer state: {e}"),
        })?;
    let weights = dir.join("weights.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)?;
    model.load_values(&tensors, &weights)?;
    optimizer.load_state(&dir.join("optimizer.safetensors"), opt_steps, &model.device)?;
    let mut extra = candle_core::safetensors::load(dir.join("extra.safetensors"), &model.device)?;
    extra.remove("none");
    Ok(Restored { step, extra, state })
}
