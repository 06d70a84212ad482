//! VQ-VAE training (spec esm3-training.md §3).
//!
//! * [`codebook`]: the EMA codebook with dead-code restarts and the straight-through estimator;
//! * [`losses`]: stage-1 geometric / pairwise / inverse-folding losses and stage-2 pLDDT / pAE
//!   losses as tensor functions, with host-side targets;
//! * [`geometry`]: the decoder's backbone head as differentiable tensor ops;
//! * [`model`]: [`VqVae`], which wires encoder, codebook and decoder and computes every loss
//!   of a batch (its module docs show how a training loop calls it).

pub mod codebook;
pub mod geometry;
pub mod losses;
pub mod model;
pub mod objective;

pub use codebook::{Codebook, CodebookConfig, CodebookStats, Quantized};
pub use model::{
    CodebookInputs, LossWeights, ReconstructionMetrics, Stage, VqVae, VqVaeBatch, VqVaeConfig,
    VqVaeExample, VqVaeLosses,
};
