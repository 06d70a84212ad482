//! Sequence scoring: pseudo-log-likelihood and masked-marginal mutation effects.

use esm3_tokens::sequence::{self as seq, SequenceTokenizer};

use crate::iterative::GenerationError;
use crate::sampling::log_softmax;
use crate::sequence_model::SequenceModel;

/// A point mutation `A23V`: wild type, 1-based position, mutant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    pub wild_type: char,
    pub position: usize,
    pub mutant: char,
}

/// A variant: one or more mutations scored together (`A23V:G45D`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    pub text: String,
    pub mutations: Vec<Mutation>,
}

impl Variant {
    /// Parses `A23V` or `A23V:G45D` (also `,`-free, `+` accepted as a separator).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut mutations = Vec::new();
        for part in text.split([':', '+']) {
            let mut chars = part.chars();
            let (Some(wt), Some(mt)) = (chars.next(), part.chars().last()) else {
                return Err(format!("mutation `{part}` in `{text}`: expected e.g. A23V"));
            };
            let digits = &part[wt.len_utf8()..part.len() - mt.len_utf8()];
            let position: usize = digits.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!(
                    "mutation `{part}` in `{text}`: position `{digits}` is not a 1-based number"
                )
            })?;
            for c in [wt, mt] {
                if seq::char_id(c).is_none_or(|id| !(4..31).contains(&id)) {
                    return Err(format!(
                        "mutation `{part}` in `{text}`: `{c}` is not an amino-acid letter"
                    ));
                }
            }
            mutations.push(Mutation {
                wild_type: wt,
                position,
                mutant: mt,
            });
        }
        if mutations.is_empty() || text.is_empty() {
            return Err("empty mutation".into());
        }
        Ok(Self {
            text: text.to_string(),
            mutations,
        })
    }

    /// Checks every wild-type letter against the sequence.
    pub fn check_against(&self, sequence: &str) -> Result<(), String> {
        let residues: Vec<char> = sequence.chars().collect();
        for m in &self.mutations {
            match residues.get(m.position - 1) {
                None => {
                    return Err(format!(
                        "mutation {}{}{}: position {} is outside the sequence (length {})",
                        m.wild_type,
                        m.position,
                        m.mutant,
                        m.position,
                        residues.len()
                    ))
                }
                Some(&c) if c != m.wild_type => {
                    return Err(format!(
                        "mutation {}{}{}: the sequence has {c} at position {}, not {}",
                        m.wild_type, m.position, m.mutant, m.position, m.wild_type
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Pseudo-log-likelihood of a sequence.
#[derive(Clone, Debug)]
pub struct PseudoLikelihood {
    /// Σ_i log p(x_i | x with position i masked), natural log.
    pub pll: f64,
    /// Per-residue log-probabilities.
    pub per_residue: Vec<f32>,
}

impl PseudoLikelihood {
    pub fn mean(&self) -> f64 {
        self.pll / self.per_residue.len().max(1) as f64
    }
    /// exp(−mean log p): the pseudo-perplexity.
    pub fn pseudo_perplexity(&self) -> f64 {
        (-self.mean()).exp()
    }
}

/// Log-probabilities of all 64 ids at `positions` (token indices) of one masked row.
fn masked_log_probs(
    model: &dyn SequenceModel,
    rows: &[Vec<i64>],
    positions: &[usize],
) -> Result<Vec<Vec<f32>>, GenerationError> {
    let out = model.sequence_forward(rows)?;
    let mut result = Vec::with_capacity(rows.len());
    for (b, &p) in positions.iter().enumerate() {
        let logits = out.logits.get(b)?.get(p)?.to_vec1::<f32>()?;
        result.push(log_softmax(&logits));
    }
    Ok(result)
}

/// Masks each residue in turn (in batches of `batch_size` masked copies) and sums
/// log p(true residue). Chain breaks and other special tokens are skipped.
pub fn pseudo_log_likelihood(
    model: &dyn SequenceModel,
    sequence: &str,
    batch_size: usize,
) -> Result<PseudoLikelihood, GenerationError> {
    let ids =
        SequenceTokenizer::strict()
            .encode(sequence)
            .map_err(|e| GenerationError::Prompt {
                prompt: 0,
                message: e.to_string(),
            })?;
    let positions: Vec<usize> = (1..ids.len() - 1)
        .filter(|&i| !seq::SPECIAL_IDS.contains(&ids[i]))
        .collect();
    let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
    let mut per_residue = Vec::with_capacity(positions.len());
    for chunk in positions.chunks(batch_size.max(1)) {
        let rows: Vec<Vec<i64>> = chunk
            .iter()
            .map(|&p| {
                let mut r = ids.clone();
                r[p] = seq::MASK as i64;
                r
            })
            .collect();
        for (lp, &p) in masked_log_probs(model, &rows, chunk)?.iter().zip(chunk) {
            per_residue.push(lp[ids[p] as usize]);
        }
    }
    Ok(PseudoLikelihood {
        pll: per_residue.iter().map(|&v| v as f64).sum(),
        per_residue,
    })
}

/// Masked-marginal score of each variant: all its positions masked at once, then
/// Σ log p(mutant) − log p(wild type). Higher is better.
pub fn masked_marginals(
    model: &dyn SequenceModel,
    sequence: &str,
    variants: &[Variant],
    batch_size: usize,
) -> Result<Vec<f64>, GenerationError> {
    let err = GenerationError::Invalid;
    let ids: Vec<i64> = SequenceTokenizer::strict()
        .encode(sequence)
        .map_err(|e| err(e.to_string()))?
        .into_iter()
        .map(i64::from)
        .collect();
    for v in variants {
        v.check_against(sequence).map_err(err)?;
    }
    let id_of = |c: char| seq::char_id(c).expect("checked when parsed") as usize;
    let mut scores = Vec::with_capacity(variants.len());
    for chunk in variants.chunks(batch_size.max(1)) {
        let rows: Vec<Vec<i64>> = chunk
            .iter()
            .map(|v| {
                let mut r = ids.clone();
                for m in &v.mutations {
                    r[m.position] = seq::MASK as i64;
                }
                r
            })
            .collect();
        let out = model.sequence_forward(&rows)?;
        for (b, v) in chunk.iter().enumerate() {
            let mut score = 0f64;
            for m in &v.mutations {
                let logits = out.logits.get(b)?.get(m.position)?.to_vec1::<f32>()?;
                let lp = log_softmax(&logits);
                score += (lp[id_of(m.mutant)] - lp[id_of(m.wild_type)]) as f64;
            }
            scores.push(score);
        }
    }
    Ok(scores)
}

/// Every single mutant of a sequence over the 20 standard amino acids, for deep mutational scans.
pub fn all_single_mutants(sequence: &str) -> Vec<Variant> {
    const STANDARD: &str = "ACDEFGHIKLMNPQRSTVWY";
    let mut out = Vec::new();
    for (i, wt) in sequence.chars().enumerate() {
        if !STANDARD.contains(wt) {
            continue;
        }
        for mt in STANDARD.chars().filter(|&c| c != wt) {
            let text = format!("{wt}{}{mt}", i + 1);
            out.push(Variant {
                mutations: vec![Mutation {
                    wild_type: wt,
                    position: i + 1,
                    mutant: mt,
                }],
                text,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_variants() {
        let v = Variant::parse("A3V:G5D").unwrap();
        assert_eq!(
            v.mutations[0],
            Mutation {
                wild_type: 'A',
                position: 3,
                mutant: 'V'
            }
        );
        assert_eq!(v.mutations[1].position, 5);
        assert!(v.check_against("MKAYG").is_ok());
        assert_eq!(
            v.check_against("MKLYG").unwrap_err(),
            "mutation A3V: the sequence has L at position 3, not A"
        );
        assert!(Variant::parse("A0V").unwrap_err().contains("1-based"));
        assert!(Variant::parse("AxV").is_err());
        assert!(Variant::parse("J3V")
            .unwrap_err()
            .contains("not an amino-acid letter"));
        assert!(Variant::parse("A9V")
            .unwrap()
            .check_against("MKA")
            .unwrap_err()
            .contains("outside"));
    }

    #[test]
    fn single_mutant_scan_has_19_per_standard_residue() {
        assert_eq!(all_single_mutants("MKX").len(), 38);
    }
}
