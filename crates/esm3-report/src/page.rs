//! `report.html`: one page listing every record of a run, sortable by pTM and pLDDT, with its
//! confidence PNG and a 3D view coloured by pLDDT (3Dmol.js, vendored). It works from
//! `file://` with no network: the viewer and the records' numbers are inside the page; each
//! structure sits in `<page>_data/<order>.js` beside it (`report_data/` for `report.html`) and
//! is loaded only when its record is shown, so a run of 10,000 records gives a page of a few
//! megabytes, not gigabytes.
//!
//! [`ReportWriter`] also draws the PNGs on worker threads while the caller goes on computing,
//! through a bounded queue, so memory stays bounded however many records a run has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde::Serialize;

use crate::plot::{confidence_png, ConfidencePlot};
use crate::{ReportError, Result};

/// 3Dmol.js 2.5.5 from the npm registry (`npm pack 3dmol@2.5.5`, `build/3Dmol-min.js`; BSD-3
/// licence and the licences of what it bundles in `vendor/3dmol/`).
static VIEWER_JS: &str = include_str!("../vendor/3dmol/3Dmol-min.js");
static TEMPLATE: &str = include_str!("report.html");

/// The page's usual file name.
pub const PAGE: &str = "report.html";

/// Folder beside the page `<stem>.html` holding one script per structure: `<stem>_data`.
pub fn data_dir_name(page: &str) -> String {
    format!("{}_data", page.strip_suffix(".html").unwrap_or(page))
}

/// One row of the report: what the run's JSON says about a record, and its files.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReportRecord {
    /// Position in the run's input (design index, FASTA record): the page lists records in
    /// this order whatever order they were written in (retries, length batches).
    pub order: usize,
    pub name: String,
    pub sequence: String,
    /// 0–100.
    pub mean_plddt: Option<f32>,
    pub ptm: Option<f32>,
    /// Å, where the record has a motif.
    pub motif_rmsd: Option<f32>,
    /// File names relative to the report's folder.
    pub structure_file: Option<String>,
    pub png: Option<String>,
    /// Number of chains (1 for a single chain).
    pub chains: usize,
}

/// A PNG to draw: owned data, so the caller can drop its own copy at once.
pub struct PlotJob {
    pub path: PathBuf,
    pub title: String,
    /// 0–100 per residue.
    pub plddt: Vec<f32>,
    pub pae: Option<Vec<f32>>,
    pub chain_starts: Vec<usize>,
}

/// Collects the records of one run and writes the pictures and the page.
pub struct ReportWriter {
    dir: PathBuf,
    page: String,
    /// By `order`: the page's order, and at most one record per place.
    records: BTreeMap<usize, ReportRecord>,
    jobs: Option<mpsc::SyncSender<PlotJob>>,
    workers: Vec<JoinHandle<Vec<ReportError>>>,
}

impl ReportWriter {
    /// The page will be `dir/page` (e.g. [`PAGE`]); pictures are drawn by up to `threads`
    /// workers (at least one).
    pub fn new(dir: &Path, page: &str, threads: usize) -> Result<Self> {
        let data = dir.join(data_dir_name(page));
        std::fs::create_dir_all(&data).map_err(|e| io_error(&data, e))?;
        let threads = threads.max(1);
        let (send, receive) = mpsc::sync_channel::<PlotJob>(2 * threads);
        let receive = std::sync::Arc::new(std::sync::Mutex::new(receive));
        let workers = (0..threads)
            .map(|_| {
                let receive = receive.clone();
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    loop {
                        let job = match receive.lock().expect("no worker panics holding it").recv()
                        {
                            Ok(job) => job,
                            Err(_) => return errors,
                        };
                        let plot = ConfidencePlot {
                            title: &job.title,
                            plddt: &job.plddt,
                            pae: job.pae.as_deref(),
                            chain_starts: &job.chain_starts,
                        };
                        if let Err(e) = confidence_png(&job.path, &plot) {
                            errors.push(e);
                        }
                    }
                })
            })
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            page: page.to_string(),
            records: BTreeMap::new(),
            jobs: Some(send),
            workers,
        })
    }

    /// Queues a PNG; blocks only while the workers are behind by more than their queue.
    pub fn plot(&self, job: PlotJob) {
        self.jobs
            .as_ref()
            .expect("open until finish")
            .send(job)
            .expect("workers live until finish");
    }

    /// Adds a record; `structure` is the text of its PDB or mmCIF file as written. Its script is
    /// named by `record.order`, so the files do not depend on the order records arrive in; a
    /// second record with the same `order` is an error.
    pub fn add(&mut self, record: ReportRecord, structure: Option<&str>) -> Result<()> {
        let k = record.order;
        if let Some(first) = self.records.get(&k) {
            return Err(ReportError::Input(format!(
                "two records at place {k} of the report ({} and {})",
                first.name, record.name
            )));
        }
        let path = self
            .dir
            .join(data_dir_name(&self.page))
            .join(format!("{k}.js"));
        let format = match record.structure_file.as_deref() {
            Some(f) if f.ends_with(".cif") => "cif",
            _ => "pdb",
        };
        let body = match structure {
            Some(text) => format!(
                "esm3Structure({k}, {}, {});\n",
                json_string(format),
                json_string(text)
            ),
            None => format!("esm3Structure({k}, null, null);\n"),
        };
        std::fs::write(&path, body).map_err(|e| io_error(&path, e))?;
        self.records.insert(k, record);
        Ok(())
    }

    /// Waits for every PNG, then writes `report.html`; returns its path. A PNG that failed is
    /// reported after the page is written, so the page still lists every record.
    pub fn finish(mut self, title: &str) -> Result<PathBuf> {
        drop(self.jobs.take());
        let mut errors = Vec::new();
        for w in self.workers.drain(..) {
            errors.extend(w.join().expect("plot worker panicked"));
        }
        let rows: Vec<&ReportRecord> = self.records.values().collect();
        let path = write_page(&self.dir.join(&self.page), title, &rows)?;
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(path),
        }
    }
}

/// Writes the page at `path` listing `rows` in the order given; their structures were written as
/// `<page stem>_data/<order>.js` beside it.
fn write_page(path: &Path, title: &str, rows: &[&ReportRecord]) -> Result<PathBuf> {
    let page_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let data_dir = data_dir_name(&page_name);
    let records_json = serde_json::to_string(rows).expect("plain data serialises");
    // The viewer first and the user's data last, so nothing a user named is scanned again
    // for a marker.
    let page = TEMPLATE
        .replace("/*VIEWER*/", VIEWER_JS)
        .replace("/*DATA_DIR*/", &script_safe(&json_string(&data_dir)))
        .replace("/*TITLE*/", &html_escape(title))
        .replace("/*RECORDS*/", &script_safe(&records_json));
    std::fs::write(path, page).map_err(|e| io_error(path, e))?;
    Ok(path.to_path_buf())
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// JSON inside `<script>`: `<` escaped so no `</script>` in a user's record name ends it.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('/', "&#47;")
}

fn io_error(path: &Path, e: std::io::Error) -> ReportError {
    ReportError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_holds_every_record_and_structures_sit_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ReportWriter::new(dir.path(), PAGE, 2).unwrap();
        for k in 0..3 {
            let name = format!("d{k}</script>");
            w.plot(PlotJob {
                path: dir.path().join(format!("d{k}.png")),
                title: name.clone(),
                plddt: vec![50.0 + k as f32; 8],
                pae: Some(vec![3.0; 64]),
                chain_starts: vec![0],
            });
            let record = ReportRecord {
                order: 2 - k,
                name,
                sequence: "ACDEFGHI".into(),
                mean_plddt: Some(50.0),
                ptm: Some(0.1 * k as f32),
                structure_file: Some(format!("d{k}.pdb")),
                png: Some(format!("d{k}.png")),
                chains: 1,
                ..Default::default()
            };
            w.add(record, Some("ATOM      1  N   ALA A   1\nEND\n"))
                .unwrap();
        }
        let page = std::fs::read_to_string(w.finish("run").unwrap()).unwrap();
        // The template's two script blocks end once each: a record name cannot end one.
        assert_eq!(page.matches("</script").count(), 2);
        assert!(page.contains("d2\\u003c/script>"));
        // Listed by `order`.
        let d2 = page.find("\"name\":\"d2").unwrap();
        let d0 = page.find("\"name\":\"d0").unwrap();
        assert!(d2 < d0, "d2 has order 0");
        assert!(page.contains("$3Dmol"), "viewer inlined");
        for k in 0..3 {
            assert!(dir.path().join(format!("d{k}.png")).is_file());
            let js =
                std::fs::read_to_string(dir.path().join("report_data").join(format!("{k}.js")))
                    .unwrap();
            assert!(
                js.starts_with(&format!("esm3Structure({k}, \"pdb\", \"ATOM")),
                "{js}"
            );
        }
    }

    #[test]
    fn two_records_at_one_place_are_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ReportWriter::new(dir.path(), PAGE, 1).unwrap();
        let at = |name: &str| ReportRecord {
            order: 4,
            name: name.into(),
            ..Default::default()
        };
        w.add(at("first"), None).unwrap();
        let err = w.add(at("second"), None).unwrap_err().to_string();
        assert!(
            err.contains("place 4") && err.contains("first") && err.contains("second"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_png_is_reported_after_the_page_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ReportWriter::new(dir.path(), PAGE, 1).unwrap();
        w.plot(PlotJob {
            path: dir.path().join("bad.png"),
            title: "bad".into(),
            plddt: vec![],
            pae: None,
            chain_starts: vec![],
        });
        w.add(
            ReportRecord {
                name: "bad".into(),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let err = w.finish("run").unwrap_err().to_string();
        assert!(err.contains("no residues"), "{err}");
        assert!(dir.path().join("report.html").is_file());
    }
}
