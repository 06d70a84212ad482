//! Pictures of a run's records (`esm3_report`): a `<name>.png` per record with pLDDT and PAE,
//! and one page listing them all, for `generate`, `fold` and `structure decode`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use esm3_generate::EsmProtein;
use esm3_report::{PlotJob, ReportRecord, ReportWriter};

#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ReportArgs {
    /// Write no PNGs and no report page.
    #[arg(long)]
    pub no_report: bool,
}

/// The pictures of one run, written as its records are.
pub struct RunReport {
    dir: PathBuf,
    writer: Option<ReportWriter>,
}

impl RunReport {
    /// `page` is the page's file name in `dir` (`report.html` for a folder of records).
    pub fn new(args: ReportArgs, dir: &Path, page: &str) -> Result<Self> {
        let writer = if args.no_report {
            None
        } else {
            // The model keeps the cores busy; one plotting thread is enough to keep up with it.
            Some(
                ReportWriter::new(dir, page, 1)
                    .with_context(|| format!("preparing the report in {}", dir.display()))?,
            )
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            writer,
        })
    }

    /// Adds the record `write_design` just wrote (its `summary` JSON) with its picture; `order`
    /// is its place in the run's input.
    pub fn add_design(
        &mut self,
        order: usize,
        summary: &serde_json::Value,
        protein: &EsmProtein,
    ) -> Result<()> {
        let name = summary["name"].as_str().unwrap_or_default().to_string();
        let structure_file = summary["structure_file"].as_str().map(str::to_string);
        let record = ReportRecord {
            order,
            sequence: summary["sequence"].as_str().unwrap_or_default().to_string(),
            mean_plddt: summary["mean_plddt"].as_f64().map(|v| v as f32 * 100.0),
            ptm: summary["ptm"].as_f64().map(|v| v as f32),
            motif_rmsd: summary["motif_backbone_rmsd"].as_f64().map(|v| v as f32),
            chains: summary["chains"].as_array().map_or(1, Vec::len),
            structure_file,
            png: None,
            name,
        };
        let sequence = protein.sequence.as_deref().unwrap_or_default();
        let chain_starts: Vec<usize> = sequence
            .chars()
            .enumerate()
            .filter(|&(_, c)| c == '|')
            .map(|(i, _)| i + 1)
            .collect();
        self.add(
            record,
            protein.plddt.as_deref(),
            protein.predicted_aligned_error.clone(),
            chain_starts,
        )
    }

    /// Adds one record; `plddt` is 0–1 per residue (the decoder's), `pae` `[L, L]` in Å.
    pub fn add(
        &mut self,
        mut record: ReportRecord,
        plddt: Option<&[f32]>,
        pae: Option<Vec<f32>>,
        chain_starts: Vec<usize>,
    ) -> Result<()> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        if let Some(plddt) = plddt {
            let png = format!("{}.png", record.name);
            writer.plot(PlotJob {
                path: self.dir.join(&png),
                title: record.name.clone(),
                plddt: plddt.iter().map(|v| v * 100.0).collect(),
                pae,
                chain_starts,
            });
            record.png = Some(png);
        }
        let structure = match &record.structure_file {
            Some(f) => {
                let path = self.dir.join(f);
                Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {} for the report", path.display()))?,
                )
            }
            None => None,
        };
        writer.add(record, structure.as_deref())?;
        Ok(())
    }

    /// Waits for the pictures and writes the page; prints where it is.
    pub fn finish(self, title: &str) -> Result<()> {
        if let Some(writer) = self.writer {
            let page = writer.finish(title)?;
            eprintln!("report: {}", page.display());
        }
        Ok(())
    }
}
