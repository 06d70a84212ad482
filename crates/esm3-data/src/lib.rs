//! Training data: sources (structure files, the ProMod3 structure DB), identity-cluster splits, shards.
//!
//! The pipeline is `build` (read sources → cluster by alignment identity → split by cluster →
//! write shards) and `Dataset::open(dir).split("train")` (read shards back). See
//! [`dataset::build`] for the on-disk layout and [`cluster`] for the homology criterion.

pub mod align;
pub mod cluster;
pub mod dataset;
pub mod promod3;
pub mod purge;
pub mod purge_rerun;
pub mod shards;
pub mod split;
pub mod structures;

use std::path::{Path, PathBuf};

pub use dataset::{build, BuildConfig, BuildReport, Dataset, Manifest, SplitCounts};

/// One protein chain of the training data, with whatever tracks its source provides.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainRecord {
    /// Unique within a dataset, e.g. `12AS_A`.
    pub name: String,
    /// Upper-case PDB id (or the file stem when a file has none).
    pub pdb_id: String,
    /// `promod3` or `structures:<dir name>`; says where the tracks came from.
    pub source: String,
    /// One-letter amino-acid codes (`X` for unknown residues).
    pub sequence: String,
    /// DSSP 8-state letters `HGIEBTSC` (`C` for loops), `_` where DSSP had no complete backbone.
    pub ss8: Option<String>,
    /// Per-residue solvent accessible surface in Å², NaN = unknown.
    pub sasa: Option<Vec<f32>>,
    /// N, CA, C coordinates in Å, NaN = missing atom.
    pub backbone: Option<Vec<[[f32; 3]; 3]>>,
    /// VQ-VAE structure codes, stored later with [`Dataset::write_structure_tokens`].
    pub structure_tokens: Option<Vec<i64>>,
    /// Sequence-identity cluster (connected component), numbered within the dataset.
    pub cluster: u32,
}

impl ChainRecord {
    /// Length in residues.
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    /// True when the record carries backbone coordinates.
    pub fn has_coords(&self) -> bool {
        self.backbone.is_some()
    }
}

/// Everything that can go wrong reading sources or a dataset; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: line {line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn format_err(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_owned(),
        message: message.into(),
    }
}
