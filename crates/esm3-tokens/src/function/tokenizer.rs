//! Per-residue label sets → 8 LSH ids per residue (spec §5.2–5.4).

use std::collections::{BTreeSet, HashMap};

use super::data::FunctionData;
use super::lsh::Hyperplanes;
use super::tfidf::tfidf;
use super::{FunctionAnnotation, FunctionError, FunctionTokens, DEPTH, NONE, PAD, UNK};

/// A label the function track understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunctionLabel {
    /// Index into the sorted InterPro entry list.
    InterPro(u32),
    /// Index into the keyword vocabulary.
    Keyword(u32),
}

pub struct FunctionTokenizer {
    data: FunctionData,
    hyperplanes: Hyperplanes,
}

/// The first `IPR` followed by digits, as the reference's `re.search(r"IPR\d+", label)`.
pub fn find_interpro_id(label: &str) -> Option<&str> {
    label.match_indices("IPR").find_map(|(i, _)| {
        let digits = label[i + 3..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        (digits > 0).then(|| &label[i..i + 3 + digits])
    })
}

impl FunctionTokenizer {
    pub fn new(data: FunctionData, hyperplanes: Hyperplanes) -> Result<Self, FunctionError> {
        if hyperplanes.dim() != data.keywords.len() {
            return Err(FunctionError::Hyperplanes {
                source_name: "function tokenizer".into(),
                message: format!(
                    "hyperplanes have dim {}, but the keyword vocabulary has {} keywords",
                    hyperplanes.dim(),
                    data.keywords.len()
                ),
            });
        }
        Ok(Self { data, hyperplanes })
    }

    pub fn data(&self) -> &FunctionData {
        &self.data
    }

    /// An InterPro label contains a known `IPR…` id anywhere (so "Kringle (IPR000001)" works);
    /// otherwise the label must be exactly a vocabulary keyword.
    pub fn resolve(&self, label: &str) -> Result<FunctionLabel, FunctionError> {
        if let Some(i) = find_interpro_id(label).and_then(|id| self.data.entry_index(id)) {
            return Ok(FunctionLabel::InterPro(i));
        }
        if let Some(k) = self.data.keyword_index(label) {
            return Ok(FunctionLabel::Keyword(k));
        }
        Err(FunctionError::UnknownLabel {
            label: label.to_string(),
            n_entries: self.data.entries.len(),
            n_keywords: self.data.keywords.len(),
        })
    }

    /// The hash of one residue's label set; `None` when its TF-IDF vector is zero (`<unk>`).
    pub fn hash_labels(&self, labels: &BTreeSet<FunctionLabel>) -> Option<FunctionTokens> {
        let keywords: Vec<u32> = labels
            .iter()
            .filter_map(|l| match l {
                FunctionLabel::Keyword(k) => Some(*k),
                FunctionLabel::InterPro(_) => None,
            })
            .collect();
        let mut v = tfidf(&keywords, &self.data.idf);
        for label in labels {
            if let FunctionLabel::InterPro(i) = label {
                let entry = &self.data.entries[*i as usize];
                v = v.maximum(&tfidf(&entry.keywords, &self.data.idf));
            }
        }
        (!v.is_zero()).then(|| self.hyperplanes.hash(&v))
    }

    /// Ids for residues 1..=length (no BOS/EOS rows). No annotation at all gives `<pad>`
    /// everywhere; a residue no annotation covers gets `<none>`.
    pub fn tokenize(
        &self,
        annotations: &[FunctionAnnotation],
        length: usize,
    ) -> Result<Vec<FunctionTokens>, FunctionError> {
        let mut per_residue: Vec<BTreeSet<FunctionLabel>> = vec![BTreeSet::new(); length];
        for a in annotations {
            if a.start < 1 || a.start > a.end || a.end > length {
                return Err(FunctionError::RangeOutsideProtein {
                    label: a.label.clone(),
                    start: a.start,
                    end: a.end,
                    length,
                });
            }
            let label = self.resolve(&a.label)?;
            for set in &mut per_residue[a.start - 1..a.end] {
                set.insert(label);
            }
        }
        if annotations.is_empty() {
            return Ok(vec![[PAD; DEPTH]; length]);
        }
        // Neighbouring residues usually share their label set: hash each set once.
        let mut cache: HashMap<&BTreeSet<FunctionLabel>, FunctionTokens> = HashMap::new();
        Ok(per_residue
            .iter()
            .map(|set| {
                if set.is_empty() {
                    return [NONE; DEPTH];
                }
                *cache
                    .entry(set)
                    .or_insert_with(|| self.hash_labels(set).unwrap_or([UNK; DEPTH]))
            })
            .collect())
    }

    /// As `tokenize`, with the `<pad>` rows the model's BOS and EOS positions take.
    pub fn encode(
        &self,
        annotations: &[FunctionAnnotation],
        length: usize,
    ) -> Result<Vec<FunctionTokens>, FunctionError> {
        let mut rows = Vec::with_capacity(length + 2);
        rows.push([PAD; DEPTH]);
        rows.extend(self.tokenize(annotations, length)?);
        rows.push([PAD; DEPTH]);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpro_ids_are_found_inside_labels() {
        assert_eq!(find_interpro_id("Kringle (IPR000001)"), Some("IPR000001"));
        assert_eq!(find_interpro_id("IPRx and IPR12"), Some("IPR12"));
        assert_eq!(find_interpro_id("IPR"), None);
        assert_eq!(find_interpro_id("kringle"), None);
    }
}
