//! The function track (spec §1.5, §5): InterPro ids and keywords → TF-IDF vectors → 8 LSH
//! tokens per residue, and the span merging used when decoding them back to annotations.

pub mod annotation;
pub mod data;
pub mod lsh;
pub mod tfidf;
pub mod tokenizer;

use std::path::PathBuf;

use thiserror::Error;

pub use annotation::{merge_annotations, FunctionAnnotation};
pub use data::{FunctionData, InterProEntry};
pub use lsh::Hyperplanes;
pub use tfidf::SparseVector;
pub use tokenizer::{FunctionLabel, FunctionTokenizer};

/// Tokens per residue (LSH tables).
pub const DEPTH: usize = 8;
/// Hyperplanes per table: one bit each, so a table's value is in 0..256.
pub const BITS_PER_TOKEN: usize = 8;
/// Rows of the function vocabulary: 4 specials + 256 LSH values.
pub const VOCAB_SIZE: usize = 260;
pub const PAD: u16 = 0;
pub const MOTIF: u16 = 1;
pub const UNK: u16 = 2;
pub const NONE: u16 = 3;
/// Id of LSH value 0; value h has id `LSH_OFFSET + h`.
pub const LSH_OFFSET: u16 = 4;

/// One residue's 8 function ids.
pub type FunctionTokens = [u16; DEPTH];

#[derive(Debug, Error)]
pub enum FunctionError {
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error(
        "unknown function label {label:?}: neither an InterPro id of the {n_entries}-entry list \
         (IPR followed by digits, e.g. IPR000001) nor one of the {n_keywords} keywords of the vocabulary"
    )]
    UnknownLabel {
        label: String,
        n_entries: usize,
        n_keywords: usize,
    },
    #[error(
        "annotation {label:?} has range {start}..{end}, outside the protein of length {length} \
         (expected 1 <= start <= end <= {length}, 1-based inclusive)"
    )]
    RangeOutsideProtein {
        label: String,
        start: usize,
        end: usize,
        length: usize,
    },
    #[error("hyperplanes {source_name}: {message}")]
    Hyperplanes {
        source_name: String,
        message: String,
    },
}
