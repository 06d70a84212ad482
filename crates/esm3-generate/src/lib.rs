//! Generation with ESM3 by iterative unmasking, in any order, on any track (spec §6).
//!
//! The algorithm follows the reference's `iterative_sampling_tokens` step for step so that the
//! deterministic path (entropy strategy, temperature 0) is token-for-token identical; where the
//! reference is wrong (real tokens attending to batch padding) we do it right by default and keep
//! a switch for parity.

pub mod batching;
pub mod config;
pub mod design;
pub mod embed;
pub mod iterative;
pub mod pipeline;
pub mod prompt;
pub mod protein;
pub mod sampling;
pub mod schedule;
pub mod score;
pub mod sequence_model;
pub mod tensor;
pub mod track;

pub use config::{GenerationConfig, PaddingAttention, Schedule, Strategy};
pub use iterative::{
    batch_input, batch_logits, iterative_sampling, iterative_sampling_per_prompt, GenerationError,
};
pub use pipeline::Esm3Pipeline;
pub use protein::EsmProtein;
pub use sequence_model::SequenceModel;
pub use tensor::ProteinTensor;
pub use track::Track;
