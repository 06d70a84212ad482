//! Protein geometry shared by every part of esm3-rs that touches coordinates.
//!
//! This crate knows nothing about tensors: it works on plain `f32` arrays so that the same code
//! serves the model input path, file readers and metrics, and can be property-tested cheaply.

pub mod chain;
pub mod complexity;
pub mod dssp;
pub mod fasta;
pub mod frames;
pub mod io;
pub mod metrics;
pub mod relax;
pub mod residue_constants;
pub mod sasa;

pub use chain::ProteinChain;
pub use frames::{backbone_frames, gram_schmidt, Frame, Vec3};
pub use io::{read_chain, read_structure, ReadError, Structure};
