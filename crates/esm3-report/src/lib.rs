//! Pictures of results, for people who pick designs by looking at them: a PNG per record with
//! the pLDDT curve and the PAE heat map ([`plot`]), and one offline `report.html` listing every
//! record with its numbers, its PNG and a 3D view coloured by pLDDT ([`page`]).
//!
//! The crate knows nothing of tensors or models: callers hand it per-residue numbers and the
//! text of the structure files they wrote.

pub mod fonts;
pub mod page;
pub mod plot;

pub use page::{PlotJob, ReportRecord, ReportWriter, PAGE};
pub use plot::{confidence_png, ConfidencePlot};

/// What can go wrong while drawing or writing pictures.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
    #[error("{0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, ReportError>;
