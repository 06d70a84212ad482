//! Errors that name what the user gave us: the file, the tensor, the position, the expected value.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid model config: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: checkpoint does not match a {model} model with {config}:\n  {}", problems.join("\n  "))]
    Checkpoint {
        path: PathBuf,
        model: String,
        config: String,
        problems: Vec<String>,
    },
    #[error("{path}: cannot read checkpoint: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
