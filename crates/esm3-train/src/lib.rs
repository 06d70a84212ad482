//! Training of ESM3-architecture models on CPU (and CUDA behind the `cuda` feature of the
//! model crates): the masked multi-track objective of the paper (spec esm3-training.md §1–2) and
//! the stage-1/stage-2 VQ-VAE structure tokenizer (§3).
//!
//! Layout: `noise` builds corrupted inputs and targets per track; `vqvae` holds the tokenizer's
//! losses and codebook; `optim` the optimizer and learning-rate schedule; `checkpoint` the
//! resumable state; `metrics` the log and plot.

pub mod card;
pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod heap;
pub mod loss;
pub mod metrics;
pub mod noise;
pub mod optim;
pub mod runner;
pub mod trainable;
pub mod trunk;
pub mod vqvae;

/// Errors of training code: tensor and model errors, bad data, bad configs.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] esm3_models::ModelError),
    #[error(transparent)]
    Noise(#[from] noise::NoiseError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Msg(String),
}

impl TrainError {
    /// An I/O failure on `path`, named in the message.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
