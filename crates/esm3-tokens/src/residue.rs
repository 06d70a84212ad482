//! The residue-annotation track (spec §1.6, §5.8): up to 16 label ids per residue.
//!
//! The vocabulary comes from the weights repository's
//! `uniref90_and_mgnify90_residue_annotations_gt_1k_proteins.csv` (not in the wheel), kept in a
//! model directory as `residue_annotations.csv`. The reference never encodes user residue
//! annotations: it hands its tokenizer a record without `interpro_site_residues`, so the track
//! is always `<pad>` (spec §5.8 QUIRK). `ResidueMode::Reference` reproduces that; `Encode`
//! encodes them the way the tokenizer would have, had the record been complete.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use thiserror::Error;

use crate::function::{merge_annotations, FunctionAnnotation};

/// Label ids per residue.
pub const SLOTS: usize = 16;
pub const PAD: u32 = 0;
pub const NONE: u32 = 3;
/// Id of the first label; ids below are `<pad>`, `<motif>`, `<unk>`, `<none>`.
pub const LABEL_OFFSET: u32 = 4;
/// File name of the vocabulary inside a model directory.
pub const VOCABULARY_FILE: &str = "residue_annotations.csv";

pub type ResidueTokens = [u32; SLOTS];

#[derive(Debug, Error)]
pub enum ResidueError {
    #[error("{path}: {message}")]
    Vocabulary { path: String, message: String },
    #[error(
        "unknown residue-annotation label {label:?}: not one of the {n} labels of the vocabulary"
    )]
    UnknownLabel { label: String, n: usize },
    #[error(
        "residue annotation {label:?} has range {start}..{end}, outside the protein of length \
         {length} (expected 1 <= start <= end <= {length}, 1-based inclusive)"
    )]
    RangeOutsideProtein {
        label: String,
        start: usize,
        end: usize,
        length: usize,
    },
    #[error("residue {position} carries {count} residue-annotation labels; the track holds at most {SLOTS}")]
    TooManyLabels { position: usize, count: usize },
}

/// Whether user residue annotations reach the track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidueMode {
    /// As the reference SDK: labels are validated, the track stays `<pad>`.
    Reference,
    /// Covered residues get their label ids (ascending), uncovered ones `<none>`.
    Encode,
}

#[derive(Clone, Debug)]
pub struct ResidueVocabulary {
    /// Label of id `LABEL_OFFSET + i`.
    labels: Vec<String>,
    index: HashMap<String, u32>,
}

impl ResidueVocabulary {
    /// Orders labels as the reference: group rows by `label_clean`, sum `count`, sort by the
    /// sum descending; ties keep alphabetical order (pandas' groupby sorts keys, the sort is
    /// stable).
    pub fn from_rows(rows: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut sums: std::collections::BTreeMap<String, u64> = Default::default();
        for (label, count) in rows {
            *sums.entry(label).or_default() += count;
        }
        let mut labels: Vec<(String, u64)> = sums.into_iter().collect();
        labels.sort_by_key(|l| std::cmp::Reverse(l.1));
        let labels: Vec<String> = labels.into_iter().map(|(l, _)| l).collect();
        let index = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), LABEL_OFFSET + i as u32))
            .collect();
        Self { labels, index }
    }

    /// Reads the CSV (columns `label_clean` and `count` are used).
    pub fn from_csv(path: &Path) -> Result<Self, ResidueError> {
        let err = |message: String| ResidueError::Vocabulary {
            path: path.display().to_string(),
            message,
        };
        let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
        let header = reader.headers().map_err(|e| err(e.to_string()))?.clone();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| err(format!("no column `{name}` (header {header:?})")))
        };
        let (clean, count) = (col("label_clean")?, col("count")?);
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| err(e.to_string()))?;
            let n: u64 = record
                .get(count)
                .unwrap_or_default()
                .trim()
                .parse()
                .map_err(|_| {
                    err(format!(
                        "line {}: count is not a non-negative integer",
                        i + 2
                    ))
                })?;
            rows.push((record.get(clean).unwrap_or_default().to_string(), n));
        }
        Ok(Self::from_rows(rows))
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn id(&self, label: &str) -> Option<u32> {
        self.index.get(label).copied()
    }

    /// The label of a label id (not of a special id).
    pub fn label(&self, id: u32) -> Option<&str> {
        id.checked_sub(LABEL_OFFSET)
            .and_then(|i| self.labels.get(i as usize))
            .map(String::as_str)
    }

    /// Ids for residues 1..=length (no BOS/EOS rows).
    pub fn tokenize(
        &self,
        annotations: &[FunctionAnnotation],
        length: usize,
        mode: ResidueMode,
    ) -> Result<Vec<ResidueTokens>, ResidueError> {
        let mut per_residue: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); length];
        for a in annotations {
            if a.start < 1 || a.start > a.end || a.end > length {
                return Err(ResidueError::RangeOutsideProtein {
                    label: a.label.clone(),
                    start: a.start,
                    end: a.end,
                    length,
                });
            }
            let id = self
                .id(&a.label)
                .ok_or_else(|| ResidueError::UnknownLabel {
                    label: a.label.clone(),
                    n: self.len(),
                })?;
            for set in &mut per_residue[a.start - 1..a.end] {
                set.insert(id);
            }
        }
        if mode == ResidueMode::Reference || annotations.is_empty() {
            return Ok(vec![[PAD; SLOTS]; length]);
        }
        per_residue
            .iter()
            .enumerate()
            .map(|(i, set)| {
                if set.len() > SLOTS {
                    return Err(ResidueError::TooManyLabels {
                        position: i + 1,
                        count: set.len(),
                    });
                }
                let mut row = [PAD; SLOTS];
                if set.is_empty() {
                    row[0] = NONE;
                }
                for (slot, id) in row.iter_mut().zip(set) {
                    *slot = *id;
                }
                Ok(row)
            })
            .collect()
    }

    /// Spans of every label id in `rows` (which include BOS/EOS, so a row index is a 1-based
    /// residue), merged with gap 3 and at least 5 residues long, as the reference decodes.
    pub fn decode(&self, rows: &[ResidueTokens]) -> Vec<FunctionAnnotation> {
        let mut hits = Vec::new();
        for slot in 0..SLOTS {
            for (row, ids) in rows.iter().enumerate() {
                if let Some(label) = self.label(ids[slot]) {
                    hits.push(FunctionAnnotation::new(label, row, row));
                }
            }
        }
        merge_annotations(
            &hits,
            crate::function::annotation::MERGE_GAP,
            crate::function::annotation::MIN_LENGTH,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> ResidueVocabulary {
        ResidueVocabulary::from_rows([
            ("zinc".to_string(), 5),
            ("heme".to_string(), 9),
            ("atp".to_string(), 2),
            ("zinc".to_string(), 4),
            ("calcium".to_string(), 9),
        ])
    }

    #[test]
    fn labels_are_ordered_by_summed_count_then_name() {
        let v = vocab();
        // calcium 9, heme 9 (tie: alphabetical), zinc 9 (5+4), atp 2.
        assert_eq!(v.label(4), Some("calcium"));
        assert_eq!(v.label(5), Some("heme"));
        assert_eq!(v.label(6), Some("zinc"));
        assert_eq!(v.label(7), Some("atp"));
        assert_eq!(v.label(3), None);
    }

    #[test]
    fn reference_mode_pads_and_encode_mode_encodes() {
        let v = vocab();
        let a = [
            FunctionAnnotation::new("zinc", 2, 3),
            FunctionAnnotation::new("heme", 3, 3),
        ];
        let r = v.tokenize(&a, 4, ResidueMode::Reference).unwrap();
        assert!(r.iter().all(|row| row.iter().all(|&x| x == PAD)));
        let e = v.tokenize(&a, 4, ResidueMode::Encode).unwrap();
        assert_eq!(e[0][..2], [NONE, PAD]);
        assert_eq!(e[1][..2], [6, PAD]);
        assert_eq!(e[2][..3], [5, 6, PAD]);
        let err = v
            .tokenize(
                &[FunctionAnnotation::new("iron", 1, 1)],
                4,
                ResidueMode::Reference,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"iron\""), "{err}");
        let err = v
            .tokenize(
                &[FunctionAnnotation::new("zinc", 3, 5)],
                4,
                ResidueMode::Encode,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("3..5") && err.contains("length 4"), "{err}");
    }
}
