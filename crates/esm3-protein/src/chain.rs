//! One protein chain in atom37 form: what the structure readers produce and what the model
//! input path, writers and metrics consume (the reference's `ProteinChain`).

use std::ops::Range;

use crate::frames::{Frame, Vec3};
use crate::residue_constants::{one_to_three, ATOM_TYPE_NUM, C, CA, N, UNKNOWN_RESIDUE};

/// A missing atom.
pub const MISSING: Vec3 = [f32::NAN; 3];

/// One protein chain. All per-residue vectors have the length of `sequence` (in residues).
///
/// Differences from the reference `ProteinChain`: the atom mask is derived from the
/// coordinates instead of stored beside them (one source of truth), `insertion_code` uses
/// `' '` for "none", and `b_factor` holds the file's B-factor of each residue's CA (or first
/// atom) where the reference stores a constant 1 unless told the file is a prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct ProteinChain {
    /// Where the chain came from (file stem without format extensions).
    pub id: String,
    /// Author chain id (`auth_asym_id`); may be empty in PDB files with a blank chain column.
    pub chain_id: String,
    /// One-letter codes; `X` for residues without one.
    pub sequence: String,
    /// Coordinates in Å in the reference's atom37 order; NaN = atom not present.
    pub atom37: Vec<[Vec3; ATOM_TYPE_NUM]>,
    /// Author residue numbers.
    pub residue_index: Vec<i32>,
    /// Insertion codes, `' '` when none.
    pub insertion_code: Vec<char>,
    /// Per-residue B-factor as read (or pLDDT 0–100 for predicted structures); NaN for a
    /// residue without atoms.
    pub b_factor: Vec<f32>,
}

/// A `ProteinChain` whose per-residue vectors disagree in length.
#[derive(Debug, thiserror::Error)]
#[error("protein chain '{id}': {field} has {got} entries but the sequence has {expected} residues")]
pub struct ChainShapeError {
    pub id: String,
    pub field: &'static str,
    pub got: usize,
    pub expected: usize,
}

/// N, CA, C of every residue of an atom37 array.
pub fn atom37_backbone(atom37: &[[Vec3; ATOM_TYPE_NUM]]) -> Vec<[Vec3; 3]> {
    atom37.iter().map(|r| [r[N], r[CA], r[C]]).collect()
}

impl ProteinChain {
    /// A chain from per-residue data, checking that every vector matches the sequence length.
    pub fn new(
        id: impl Into<String>,
        chain_id: impl Into<String>,
        sequence: impl Into<String>,
        atom37: Vec<[Vec3; ATOM_TYPE_NUM]>,
        residue_index: Vec<i32>,
        insertion_code: Vec<char>,
        b_factor: Vec<f32>,
    ) -> Result<Self, ChainShapeError> {
        let chain = ProteinChain {
            id: id.into(),
            chain_id: chain_id.into(),
            sequence: sequence.into(),
            atom37,
            residue_index,
            insertion_code,
            b_factor,
        };
        chain.check_shape()?;
        Ok(chain)
    }

    /// Checks that every per-residue vector has one entry per residue.
    pub fn check_shape(&self) -> Result<(), ChainShapeError> {
        let expected = self.sequence.chars().count();
        let lengths = [
            ("atom37", self.atom37.len()),
            ("residue_index", self.residue_index.len()),
            ("insertion_code", self.insertion_code.len()),
            ("b_factor", self.b_factor.len()),
        ];
        for (field, got) in lengths {
            if got != expected {
                return Err(ChainShapeError {
                    id: self.id.clone(),
                    field,
                    got,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// Number of residues.
    pub fn len(&self) -> usize {
        self.atom37.len()
    }

    pub fn is_empty(&self) -> bool {
        self.atom37.is_empty()
    }

    /// N, CA, C of every residue, the input of [`crate::frames::backbone_frames`].
    pub fn backbone(&self) -> Vec<[Vec3; 3]> {
        atom37_backbone(&self.atom37)
    }

    /// Which atoms are present: all three coordinates finite (the reference's `from_atom37`).
    pub fn atom37_mask(&self) -> Vec<[bool; ATOM_TYPE_NUM]> {
        self.atom37
            .iter()
            .map(|r| r.map(|p| p.iter().all(|v| v.is_finite())))
            .collect()
    }

    /// The frame of the mean N, CA, C over residues whose three backbone atoms are all finite
    /// (spec §4.4; divisor count + 1e-8, so a chain without backbone gets translation 0).
    ///
    /// The sums are accumulated in `f64` and rounded once to `f32`: torch's cascade summation
    /// is that accurate, and the mean backbone's frame is ill-conditioned (mean N, CA and C lie
    /// within about an ångström of each other), so a plain running `f32` sum moves normalised
    /// coordinates by up to ~1e-3 Å away from the reference.
    pub fn normalization_frame(&self) -> Frame {
        let mut sums = [[0f64; 3]; 3];
        let mut count = 0usize;
        for residue in &self.atom37 {
            let bb = [residue[N], residue[CA], residue[C]];
            if bb.iter().flatten().all(|v| v.is_finite()) {
                count += 1;
                for (sum, atom) in sums.iter_mut().zip(bb) {
                    for k in 0..3 {
                        sum[k] += f64::from(atom[k]);
                    }
                }
            }
        }
        let divisor = count as f32 + 1e-8;
        let mean = sums.map(|s| s.map(|v| v as f32 / divisor));
        Frame::from_backbone(mean[0], mean[1], mean[2])
    }

    /// Coordinates expressed in [`Self::normalization_frame`], exactly as the reference's
    /// `normalize_coordinates` (spec §4.4): unchanged when the frame's translation is zero,
    /// infinite components come back as `+inf`, NaN stays NaN.
    pub fn normalize_coordinates(&self) -> ProteinChain {
        let frame = self.normalization_frame();
        let t = frame.trans;
        if (t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt() <= 0.0 {
            return self.clone();
        }
        let atom37 = self
            .atom37
            .iter()
            .map(|residue| {
                residue.map(|p| {
                    let q = frame.invert_apply(p);
                    [0, 1, 2].map(|k| {
                        if p[k].is_infinite() {
                            f32::INFINITY
                        } else {
                            q[k]
                        }
                    })
                })
            })
            .collect();
        ProteinChain {
            atom37,
            ..self.clone()
        }
    }

    /// The residues in `range` (positions, not residue numbers).
    pub fn select(&self, range: Range<usize>) -> ProteinChain {
        ProteinChain {
            id: self.id.clone(),
            chain_id: self.chain_id.clone(),
            sequence: self
                .sequence
                .chars()
                .skip(range.start)
                .take(range.len())
                .collect(),
            atom37: self.atom37[range.clone()].to_vec(),
            residue_index: self.residue_index[range.clone()].to_vec(),
            insertion_code: self.insertion_code[range.clone()].to_vec(),
            b_factor: self.b_factor[range].to_vec(),
        }
    }

    /// The chains of a complex written as one: a sequence `AAA|BBB` (the chain-break token
    /// between chains, as the reference's `ProteinComplex` joins them for the model) becomes
    /// chains A, B, … numbered from 1 each, the break positions dropped; with each chain, its
    /// positions in the whole. A sequence without `|` is itself, unchanged.
    pub fn split_at_chain_breaks(&self) -> Vec<(ProteinChain, Range<usize>)> {
        let letters: Vec<char> = self.sequence.chars().collect();
        if !letters.contains(&CHAIN_BREAK) {
            return vec![(self.clone(), 0..letters.len())];
        }
        let mut out = Vec::new();
        for range in chain_ranges(&self.sequence) {
            let mut chain = self.select(range.clone());
            chain.chain_id = chain_letter(out.len());
            chain.residue_index = (1..=range.len() as i32).collect();
            chain.insertion_code = vec![' '; range.len()];
            out.push((chain, range));
        }
        out
    }

    /// Letters no residue is named for (the gap `-`, `.`, which the model's sequence vocabulary
    /// has and may sample) become `X`, as the reference writes them (UNK) in structure files;
    /// returns their positions (0-based). The caller keeps the original letters elsewhere.
    pub fn unnamed_residues_to_unknown(&mut self) -> Vec<usize> {
        let unnamed = |l: char| l != 'X' && one_to_three(l) == UNKNOWN_RESIDUE;
        let positions: Vec<usize> = self
            .sequence
            .chars()
            .enumerate()
            .filter(|&(_, l)| unnamed(l))
            .map(|(i, _)| i)
            .collect();
        if !positions.is_empty() {
            self.sequence = self
                .sequence
                .chars()
                .map(|l| if unnamed(l) { 'X' } else { l })
                .collect();
        }
        positions
    }
}

/// Between the chains of a complex in one sequence (the reference's `chain_break_token`).
pub const CHAIN_BREAK: char = '|';

/// The positions (0-based, in letters) of each chain of `AAA|BBB`, in order; break positions
/// and empty chains are in none.
pub fn chain_ranges(sequence: &str) -> Vec<Range<usize>> {
    let letters: Vec<char> = sequence.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    for end in (0..=letters.len()).filter(|&i| i == letters.len() || letters[i] == CHAIN_BREAK) {
        if end > start {
            out.push(start..end);
        }
        start = end + 1;
    }
    out
}

/// A, B, …, Z, then a, …, z, then 0–9: PDB's one-column chain ids in the usual order.
pub fn chain_letter(k: usize) -> String {
    const IDS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (IDS[k % IDS.len()] as char).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain_from(atom37: Vec<[Vec3; ATOM_TYPE_NUM]>) -> ProteinChain {
        let n = atom37.len();
        ProteinChain::new(
            "t",
            "A",
            "G".repeat(n),
            atom37,
            (1..=n as i32).collect(),
            vec![' '; n],
            vec![0.0; n],
        )
        .unwrap()
    }

    fn with_sequence(sequence: &str) -> ProteinChain {
        let n = sequence.chars().count();
        let atom37 = (0..n)
            .map(|i| [[i as f32, 0.0, 0.0]; ATOM_TYPE_NUM])
            .collect();
        let mut c = chain_from(atom37);
        c.sequence = sequence.to_string();
        c.b_factor = (0..n).map(|i| i as f32).collect();
        c
    }

    #[test]
    fn a_complex_splits_into_lettered_chains_numbered_from_one() {
        let parts = with_sequence("MKV|GS|W").split_at_chain_breaks();
        let got: Vec<(&str, &str, std::ops::Range<usize>)> = parts
            .iter()
            .map(|(c, r)| (c.chain_id.as_str(), c.sequence.as_str(), r.clone()))
            .collect();
        assert_eq!(
            got,
            vec![("A", "MKV", 0..3), ("B", "GS", 4..6), ("C", "W", 7..8)]
        );
        let (b, _) = &parts[1];
        assert_eq!(b.residue_index, vec![1, 2]);
        // Each chain keeps its own atoms and B-factors, not a neighbour's.
        assert_eq!(b.atom37[0][0][0], 4.0);
        assert_eq!(b.b_factor, vec![4.0, 5.0]);
        // No break: the chain itself.
        let single = with_sequence("MKV");
        assert_eq!(single.split_at_chain_breaks(), vec![(single.clone(), 0..3)]);
    }

    #[test]
    fn unnamed_letters_become_x_and_are_reported() {
        let mut c = with_sequence("MK-A.X");
        assert_eq!(c.unnamed_residues_to_unknown(), vec![2, 4]);
        assert_eq!(c.sequence, "MKXAXX");
    }

    proptest! {
        #[test]
        fn split_parts_cover_every_residue_once(seq in "[ACDEFGHIKLMNPQRSTVWY]{1,6}(\\|[ACDEFGHIKLMNPQRSTVWY]{1,6}){0,4}") {
            let whole = with_sequence(&seq);
            let parts = whole.split_at_chain_breaks();
            prop_assert_eq!(parts.len(), seq.matches('|').count() + 1);
            let letters: Vec<char> = seq.chars().collect();
            for (chain, range) in &parts {
                prop_assert_eq!(chain.sequence.clone(), letters[range.clone()].iter().collect::<String>());
                prop_assert!(chain.check_shape().is_ok());
            }
            let total: usize = parts.iter().map(|(c, _)| c.len()).sum();
            prop_assert_eq!(total, letters.len() - seq.matches('|').count());
        }
    }

    fn residue(n: Vec3, ca: Vec3, c: Vec3) -> [Vec3; ATOM_TYPE_NUM] {
        let mut r = [MISSING; ATOM_TYPE_NUM];
        r[N] = n;
        r[CA] = ca;
        r[C] = c;
        r
    }

    #[test]
    fn mismatched_lengths_are_rejected_with_the_field_named() {
        let err = ProteinChain::new(
            "x",
            "A",
            "AG",
            vec![[MISSING; 37]],
            vec![1, 2],
            vec![' '; 2],
            vec![0.0; 2],
        )
        .unwrap_err();
        assert!(err.to_string().contains("atom37 has 1 entries"), "{err}");
    }

    #[test]
    fn chain_without_backbone_is_left_unchanged_and_inf_stays_inf() {
        let mut r = [MISSING; ATOM_TYPE_NUM];
        r[5] = [1.0, f32::NEG_INFINITY, 3.0];
        let chain = chain_from(vec![r]);
        let out = chain.normalize_coordinates();
        assert_eq!(out.atom37[0][5][0], 1.0);
        assert_eq!(out.atom37[0][5][1], f32::NEG_INFINITY);
    }

    #[test]
    fn select_keeps_residue_fields_aligned() {
        let chain = chain_from(vec![residue([0.0; 3], [1.0; 3], [2.0; 3]); 5]);
        let part = chain.select(1..3);
        assert_eq!(part.len(), 2);
        assert_eq!(part.residue_index, vec![2, 3]);
        part.check_shape().unwrap();
    }

    fn point() -> impl Strategy<Value = Vec3> {
        prop::array::uniform3(-80f32..80f32)
    }

    proptest! {
        /// After normalisation the mean backbone's frame is the identity; infinite components
        /// stay +inf.
        #[test]
        fn normalized_mean_backbone_frame_is_identity(
            residues in prop::collection::vec((point(), point(), point()), 1..20),
            inf_at in 0usize..40,
        ) {
            let mut atom37: Vec<_> = residues.iter().map(|&(n, ca, c)| residue(n, ca, c)).collect();
            if let Some(r) = atom37.get_mut(inf_at) {
                r[N] = [f32::INFINITY, 0.0, 0.0];
            }
            let chain = chain_from(atom37);
            let valid: Vec<[Vec3; 3]> = chain.backbone().into_iter().filter(|b| b.iter().flatten().all(|v| v.is_finite())).collect();
            prop_assume!(!valid.is_empty());
            // Only well-conditioned mean backbones: N off the C–CA line by at least 1 Å.
            let mean = [0, 1, 2].map(|a| [0, 1, 2].map(|k| valid.iter().map(|b| b[a][k]).sum::<f32>() / valid.len() as f32));
            let sub = |p: Vec3, q: Vec3| [p[0] - q[0], p[1] - q[1], p[2] - q[2]];
            let (x, y) = (sub(mean[1], mean[2]), sub(mean[0], mean[1]));
            let cross = [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]];
            let norm = |v: Vec3| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            prop_assume!(norm(x) > 1.0 && norm(cross) / norm(x) > 1.0);
            let out = chain.normalize_coordinates();
            let after = out.normalization_frame();
            for k in 0..3 {
                prop_assert!(after.trans[k].abs() < 1e-3, "trans {:?}", after.trans);
            }
            for i in 0..3 {
                for j in 0..3 {
                    let want = if i == j { 1.0 } else { 0.0 };
                    prop_assert!((after.rot[i][j] - want).abs() < 1e-3, "rot {:?}", after.rot);
                }
            }
            if let Some(r) = out.atom37.get(inf_at) {
                prop_assert_eq!(r[N][0], f32::INFINITY);
            }
        }
    }
}
