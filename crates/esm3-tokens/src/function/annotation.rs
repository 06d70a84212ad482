//! Annotations with 1-based inclusive spans, and the reference's span merging (spec §5.6).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionAnnotation {
    pub label: String,
    /// 1-based, inclusive.
    pub start: usize,
    /// 1-based, inclusive.
    pub end: usize,
}

impl FunctionAnnotation {
    pub fn new(label: impl Into<String>, start: usize, end: usize) -> Self {
        Self {
            label: label.into(),
            start,
            end,
        }
    }

    pub fn len(&self) -> usize {
        self.end + 1 - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }
}

/// Merges half-open ranges sorted by start (stable): a range joins the previous one when
/// `prev_end + gap >= start`.
fn merge_ranges(mut ranges: Vec<(usize, usize)>, gap: usize) -> Vec<(usize, usize)> {
    ranges.sort_by_key(|r| r.0);
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if last.1 + gap >= r.0 => last.1 = last.1.max(r.1),
            _ => merged.push(r),
        }
    }
    merged
}

/// Groups by label (first-seen order), merges each label's spans bridging gaps of up to `gap`
/// residues, and keeps the spans of at least `min_length` residues.
pub fn merge_annotations(
    annotations: &[FunctionAnnotation],
    gap: usize,
    min_length: usize,
) -> Vec<FunctionAnnotation> {
    let mut groups: Vec<(&str, Vec<(usize, usize)>)> = Vec::new();
    for a in annotations {
        let range = (a.start, a.end + 1);
        match groups.iter_mut().find(|(l, _)| *l == a.label) {
            Some((_, ranges)) => ranges.push(range),
            None => groups.push((&a.label, vec![range])),
        }
    }
    groups
        .into_iter()
        .flat_map(|(label, ranges)| {
            merge_ranges(ranges, gap)
                .into_iter()
                .map(move |(s, e)| FunctionAnnotation::new(label, s, e - 1))
        })
        .filter(|a| a.len() >= min_length)
        .collect()
}

/// The reference decoder's defaults (`annotation_gap_merge_max`, `annotation_min_length`,
/// InterPro and keyword probability thresholds).
pub const MERGE_GAP: usize = 3;
pub const MIN_LENGTH: usize = 5;
pub const INTERPRO_THRESHOLD: f32 = 0.1;
pub const KEYWORD_THRESHOLD: f32 = 0.5;

/// How the reference renders a decoded InterPro annotation: `"<name> (<id>)"`, or the bare id
/// when the entry list has no name for it.
pub fn interpro_display(id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decoder outputs turned into spans (spec §5.6). `rows` are the function ids of every
/// position *including* BOS/EOS, so a row index is a 1-based residue index. Logits are
/// row-major `[rows, classes]`. Labels are the bare keyword / InterPro id.
pub struct DecodedFunction {
    pub keywords: Vec<FunctionAnnotation>,
    pub interpro: Vec<FunctionAnnotation>,
}

pub fn decode_function_logits(
    rows: &[[i64; super::DEPTH]],
    keyword_logits: &[f32],
    interpro_logits: &[f32],
    keywords: &[String],
    interpro_ids: &[String],
) -> DecodedFunction {
    let decodable: Vec<bool> = rows
        .iter()
        .map(|r| {
            r.iter().all(|&id| {
                id != i64::from(super::PAD)
                    && id != i64::from(super::NONE)
                    && id != i64::from(super::UNK)
            })
        })
        .collect();
    let (nk, ni) = (keywords.len(), interpro_ids.len());
    let mut interpro = Vec::new();
    let mut keyword_hits: Vec<FunctionAnnotation> = Vec::new();
    for (row, ok) in decodable.iter().enumerate() {
        if !ok {
            continue;
        }
        for (c, id) in interpro_ids.iter().enumerate() {
            if sigmoid(interpro_logits[row * ni + c]) >= INTERPRO_THRESHOLD {
                interpro.push(FunctionAnnotation::new(id.clone(), row, row));
            }
        }
        for (k, kw) in keywords.iter().enumerate() {
            if sigmoid(keyword_logits[row * nk + k]) >= KEYWORD_THRESHOLD {
                keyword_hits.push(FunctionAnnotation::new(kw.clone(), row, row));
            }
        }
    }
    // The reference first joins touching keyword rows, then merges with the gap; joining
    // touching spans first does not change the result of the gap merge.
    DecodedFunction {
        keywords: merge_annotations(&keyword_hits, MERGE_GAP, MIN_LENGTH),
        interpro: merge_annotations(&interpro, MERGE_GAP, MIN_LENGTH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_up_to_three_are_bridged_and_short_spans_dropped() {
        let a = |l: &str, s, e| FunctionAnnotation::new(l, s, e);
        let merged = merge_annotations(
            &[
                a("x", 10, 12),
                a("y", 1, 9),
                a("x", 1, 3),
                a("x", 16, 16),
                a("x", 21, 22),
            ],
            3,
            5,
        );
        // x: [1,3] and [10,12] are 6 apart (not merged); [10,12]+[16,16] gap 3 → [10,16];
        // [21,22] gap 4 stays alone and is too short; [1,3] too short.
        assert_eq!(merged, vec![a("x", 10, 16), a("y", 1, 9)]);
    }
}
