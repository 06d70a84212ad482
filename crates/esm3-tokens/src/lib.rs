//! Tokenizers for the ESM3 tracks, with the reference's vocabularies and ids (spec §1).
//!
//! Each track's vocabulary lives next to its tokenizer as constants; this crate has no tensor
//! dependency, so the ids it produces are plain integers that any backend can consume.

pub mod function;
pub mod residue;
pub mod sasa;
pub mod sequence;
pub mod ss8;

pub use sequence::{SequenceTokenizer, TokenizeError};
