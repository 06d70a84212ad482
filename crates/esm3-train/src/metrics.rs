//! The training log: one JSON object per line (`metrics.jsonl`), a CSV view of it
//! (`metrics.csv`) and a PNG of the curves (`curves.png`), rewritten from the log so they never
//! disagree with it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::{Map, Value};

pub struct MetricsLog {
    dir: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (appending) `dir/metrics.jsonl`. On resume, lines after `keep_until_step` are
    /// dropped first so a resumed run's log is the same as an uninterrupted one.
    pub fn open(dir: &Path, keep_until_step: Option<usize>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("metrics.jsonl");
        if let Some(limit) = keep_until_step {
            if path.exists() {
                let kept: Vec<String> = read_lines(&path)?
                    .into_iter()
                    .filter(|(rec, _)| {
                        rec.get("step").and_then(Value::as_u64).unwrap_or(0) as usize <= limit
                    })
                    .map(|(_, line)| line)
                    .collect();
                let mut f = File::create(&path)?;
                for line in kept {
                    writeln!(f, "{line}")?;
                }
            }
        } else if path.exists() {
            std::fs::remove_file(&path)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
        })
    }

    /// Appends one record: `kind` ("train" / "valid"), the step, and named values.
    pub fn record(
        &mut self,
        kind: &str,
        step: usize,
        values: &[(String, f64)],
    ) -> std::io::Result<()> {
        let mut obj = Map::new();
        obj.insert("kind".into(), kind.into());
        obj.insert("step".into(), step.into());
        for (k, v) in values {
            let v = if v.is_finite() {
                Value::from(*v)
            } else {
                Value::Null
            };
            obj.insert(k.clone(), v);
        }
        writeln!(self.file, "{}", Value::Object(obj))?;
        self.file.flush()
    }

    /// Rewrites `metrics.csv` and `curves.png` from the log.
    pub fn render(&self, title: &str) -> std::io::Result<()> {
        let records: Vec<Map<String, Value>> = read_lines(&self.dir.join("metrics.jsonl"))?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        write_csv(&self.dir.join("metrics.csv"), &records)?;
        plot(&self.dir.join("curves.png"), title, &records)
            .map_err(|e| std::io::Error::other(format!("cannot draw curves.png: {e}")))
    }
}

fn read_lines(path: &Path) -> std::io::Result<Vec<(Map<String, Value>, String)>> {
    let mut out = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&line) {
            out.push((m, line));
        }
    }
    Ok(out)
}

fn write_csv(path: &Path, records: &[Map<String, Value>]) -> std::io::Result<()> {
    let mut columns: Vec<String> = vec!["kind".into(), "step".into()];
    let rest: BTreeSet<&String> = records
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| *k != "kind" && *k != "step")
        .collect();
    columns.extend(rest.into_iter().cloned());
    let mut f = File::create(path)?;
    writeln!(f, "{}", columns.join(","))?;
    for r in records {
        let row: Vec<String> = columns
            .iter()
            .map(|c| match r.get(c) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            })
            .collect();
        writeln!(f, "{}", row.join(","))?;
    }
    Ok(())
}

/// Labels use the font bundled with `esm3-report` (one font for every picture we draw).
fn fonts_available() -> bool {
    esm3_report::fonts::ensure_registered()
}

type Series = Vec<(String, Vec<(f64, f64)>)>;

/// Loss-like series of one record kind: every numeric key except bookkeeping ones.
fn series(records: &[Map<String, Value>], kind: &str, keep: impl Fn(&str) -> bool) -> Series {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for r in records
        .iter()
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
    {
        for (k, v) in r {
            if v.is_number() && k != "step" && keep(k) {
                names.insert(k.clone());
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let pts = records
                .iter()
                .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
                .filter_map(|r| {
                    Some((
                        r.get("step")?.as_f64()?,
                        r.get(&name)?.as_f64().filter(|v| v.is_finite())?,
                    ))
                })
                .collect();
            (name, pts)
        })
        .collect()
}

fn plot(
    path: &Path,
    title: &str,
    records: &[Map<String, Value>],
) -> Result<(), Box<dyn std::error::Error>> {
    let labelled = fonts_available();
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 1));
    let is_loss = |k: &str| k.contains("loss") || k.ends_with("_ce");
    let groups = [
        (
            format!("{title}: training loss"),
            series(records, "train", is_loss),
        ),
        (
            format!("{title}: validation"),
            series(records, "valid", |k| !k.contains("rate")),
        ),
    ];
    for (panel, (caption, data)) in panels.iter().zip(groups) {
        let pts: Vec<&(f64, f64)> = data.iter().flat_map(|(_, p)| p).collect();
        if pts.is_empty() {
            continue;
        }
        let x_max = pts.iter().map(|p| p.0).fold(1.0, f64::max);
        let y_max = pts.iter().map(|p| p.1).fold(f64::MIN, f64::max).max(1e-6) * 1.05;
        let y_min = pts.iter().map(|p| p.1).fold(f64::MAX, f64::min).min(0.0);
        let mut builder = ChartBuilder::on(panel);
        builder.margin(12);
        if labelled {
            builder
                .caption(caption.as_str(), ("sans-serif", 20))
                .x_label_area_size(30)
                .y_label_area_size(50);
        }
        let mut chart = builder.build_cartesian_2d(0.0..x_max, y_min..y_max)?;
        let mut mesh = chart.configure_mesh();
        if labelled {
            mesh.x_desc("step");
        } else {
            mesh.disable_x_mesh()
                .disable_y_mesh()
                .x_labels(0)
                .y_labels(0);
        }
        mesh.draw()?;
        for (i, (name, p)) in data.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let drawn =
                chart.draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))?;
            if labelled {
                drawn.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            }
        }
        if labelled {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_resumes_at_a_step_and_renders_csv_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), None).unwrap();
        for step in 1..=4 {
            log.record("train", step, &[("loss".into(), 1.0 / step as f64)])
                .unwrap();
        }
        log.record("valid", 4, &[("sequence_ce".into(), 2.5)])
            .unwrap();
        drop(log);
        let log = MetricsLog::open(dir.path(), Some(2)).unwrap();
        log.render("test").unwrap();
        let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.starts_with("kind,step,loss"));
        let png = std::fs::read(dir.path().join("curves.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
