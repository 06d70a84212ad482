//! TF-IDF vectors of keyword bags (spec §5.3): `(1 + ln tf)·idf`, L2-normalised, in f64.

/// A sparse vector over the keyword vocabulary with strictly increasing indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f64>,
}

impl SparseVector {
    pub fn is_zero(&self) -> bool {
        self.values.iter().all(|&v| v == 0.0)
    }

    pub fn norm(&self) -> f64 {
        self.values.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// Element-wise maximum, as the reference combines an InterPro entry's vector with the
    /// others so that many similar entries do not wash out a distinct one.
    pub fn maximum(&self, other: &SparseVector) -> SparseVector {
        let mut out = SparseVector::default();
        let (mut i, mut j) = (0, 0);
        while i < self.indices.len() || j < other.indices.len() {
            let a = self.indices.get(i).copied().unwrap_or(u32::MAX);
            let b = other.indices.get(j).copied().unwrap_or(u32::MAX);
            let (index, value) = match a.cmp(&b) {
                std::cmp::Ordering::Less => {
                    i += 1;
                    (a, self.values[i - 1].max(0.0))
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (b, other.values[j - 1].max(0.0))
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (a, self.values[i - 1].max(other.values[j - 1]))
                }
            };
            out.indices.push(index);
            out.values.push(value);
        }
        out
    }
}

/// The TF-IDF vector of a bag of keyword indices (repeats raise the term frequency).
/// Indices must be below `idf.len()`. An empty bag gives the zero vector.
pub fn tfidf(terms: &[u32], idf: &[f64]) -> SparseVector {
    let mut counts: Vec<(u32, u32)> = Vec::new();
    let mut sorted = terms.to_vec();
    sorted.sort_unstable();
    for t in sorted {
        match counts.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => counts.push((t, 1)),
        }
    }
    let values: Vec<f64> = counts
        .iter()
        .map(|&(t, n)| (1.0 + f64::from(n).ln()) * idf[t as usize])
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    SparseVector {
        indices: counts.iter().map(|&(t, _)| t).collect(),
        values: values.into_iter().map(|v| v / norm).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_terms_use_sublinear_tf_and_unit_norm() {
        let idf = [2.0, 3.0, 5.0];
        let v = tfidf(&[2, 0, 2, 2], &idf);
        assert_eq!(v.indices, vec![0, 2]);
        let a = 2.0;
        let b = (1.0 + 3f64.ln()) * 5.0;
        let n = (a * a + b * b).sqrt();
        assert!((v.values[0] - a / n).abs() < 1e-15 && (v.values[1] - b / n).abs() < 1e-15);
        assert!(tfidf(&[], &idf).is_zero());
    }

    #[test]
    fn maximum_takes_the_union() {
        let a = SparseVector {
            indices: vec![1, 4],
            values: vec![0.5, 0.2],
        };
        let b = SparseVector {
            indices: vec![0, 4],
            values: vec![0.1, 0.7],
        };
        let m = a.maximum(&b);
        assert_eq!(m.indices, vec![0, 1, 4]);
        assert_eq!(m.values, vec![0.1, 0.5, 0.7]);
    }
}
