//! Noise configuration: defaults are the paper's Table S6 and §1.4–1.8 values (spec
//! esm3-training.md); every knob is a plain field so configs can be written as TOML.

use serde::{Deserialize, Serialize};

use super::{NoiseError, Result, Schedule};

/// Mask-rate schedule and whole-track dropout probability of one track (spec §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackNoise {
    pub schedule: Schedule,
    /// Probability that the whole track is withheld (masked everywhere).
    pub dropout: f64,
}

impl TrackNoise {
    pub const fn new(schedule: Schedule, dropout: f64) -> Self {
        Self { schedule, dropout }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// Maximum tokens per sample, BOS/EOS included; longer proteins get a uniform random window
    /// of `crop_length − 2` residues (spec §1.11 step 2).
    pub crop_length: usize,
    pub sequence: TrackNoise,
    pub structure: TrackNoise,
    pub coordinates: TrackNoise,
    pub ss8: TrackNoise,
    pub sasa: TrackNoise,
    /// Whole-residue masking (all 8 slots together). Table S6 says square root, A.1.8 says
    /// cosine; the more specific A.1.8 text wins (spec §1.4).
    pub function: TrackNoise,
    pub residue_annotations: TrackNoise,
    /// Std (Å) of the Gaussian noise added to every visible input coordinate (spec §1.5).
    pub coordinate_noise_std: f64,
    /// Probability that a (non-dropped) coordinate mask is drawn as contiguous spans instead
    /// of i.i.d. positions (spec §1.3).
    pub span_mask_probability: f64,
    /// Masked spans per span mask are drawn uniformly from 1..=max_spans (spec leaves it open).
    pub max_spans: usize,
    /// Probability of forcing the atomic-coordination task when a structure is present (§1.6).
    pub atomic_coordination_probability: f64,
    /// Cα–Cα cut-off (Å) for the three pairs of a coordination triplet.
    pub atomic_contact_distance: f32,
    /// Minimum sequence separation of every pair of a coordination triplet.
    pub atomic_min_separation: usize,
    /// Probability each sequence neighbour of a triplet residue is shown too.
    pub atomic_neighbour_probability: f64,
    /// Probability of the tertiary-interface split when no residue gap was applied (§1.7).
    pub interface_split_probability: f64,
    /// Cα–Cα cut-off (Å) of the long-range contact that defines the interface.
    pub interface_contact_distance: f32,
    /// Minimum sequence separation of that contact.
    pub interface_min_separation: usize,
    /// Parameter of the geometric number of pseudo-chains: P(n = 1) = this (§1.8).
    pub residue_gap_geometric_p: f64,
    /// Cap on the number of pseudo-chains.
    pub residue_gap_max_chains: usize,
    /// Minimum number of deleted residues between consecutive pseudo-chains.
    pub residue_gap_min_gap: usize,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            crop_length: 256,
            sequence: TrackNoise::new(Schedule::Betalinear30, 0.0),
            structure: TrackNoise::new(Schedule::Cosine, 0.25),
            coordinates: TrackNoise::new(Schedule::Cubic, 0.5),
            ss8: TrackNoise::new(Schedule::Sqrt, 0.9),
            sasa: TrackNoise::new(Schedule::Sqrt, 0.9),
            function: TrackNoise::new(Schedule::Cosine, 0.9),
            residue_annotations: TrackNoise::new(Schedule::Sqrt, 0.9),
            coordinate_noise_std: 0.1,
            span_mask_probability: 0.5,
            max_spans: 4,
            atomic_coordination_probability: 0.05,
            atomic_contact_distance: 6.0,
            atomic_min_separation: 10,
            atomic_neighbour_probability: 0.5,
            interface_split_probability: 0.05,
            interface_contact_distance: 8.0,
            interface_min_separation: 24,
            residue_gap_geometric_p: 0.9,
            residue_gap_max_chains: 9,
            residue_gap_min_gap: 10,
        }
    }
}

impl NoiseConfig {
    /// Refuses values that would make sampling ill-defined, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| Err(NoiseError::Config(format!("`{field}` {why}")));
        if self.crop_length < 3 {
            return bad(
                "crop_length",
                format!(
                    "is {}; need at least 3 (BOS, one residue, EOS)",
                    self.crop_length
                ),
            );
        }
        let probs = [
            ("sequence.dropout", self.sequence.dropout),
            ("structure.dropout", self.structure.dropout),
            ("coordinates.dropout", self.coordinates.dropout),
            ("ss8.dropout", self.ss8.dropout),
            ("sasa.dropout", self.sasa.dropout),
            ("function.dropout", self.function.dropout),
            (
                "residue_annotations.dropout",
                self.residue_annotations.dropout,
            ),
            ("span_mask_probability", self.span_mask_probability),
            (
                "atomic_coordination_probability",
                self.atomic_coordination_probability,
            ),
            (
                "atomic_neighbour_probability",
                self.atomic_neighbour_probability,
            ),
            (
                "interface_split_probability",
                self.interface_split_probability,
            ),
            ("residue_gap_geometric_p", self.residue_gap_geometric_p),
        ];
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return bad(name, format!("is {p}; a probability must lie in [0, 1]"));
            }
        }
        if !(self.coordinate_noise_std >= 0.0 && self.coordinate_noise_std.is_finite()) {
            return bad(
                "coordinate_noise_std",
                format!("is {}; need a finite value ≥ 0", self.coordinate_noise_std),
            );
        }
        if self.max_spans == 0 {
            return bad("max_spans", "is 0; need at least 1".into());
        }
        if self.residue_gap_max_chains == 0 {
            return bad("residue_gap_max_chains", "is 0; need at least 1".into());
        }
        Ok(())
    }
}
