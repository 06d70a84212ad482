//! `GenerationConfig`, with the SDK's names and defaults (spec §6.1).

use serde::{Deserialize, Serialize};

use crate::track::Track;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Cosine,
    Linear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Unmask a random subset of the masked positions each step.
    #[default]
    Random,
    /// Unmask the positions whose predictive distribution has the lowest entropy first.
    Entropy,
}

/// How padded batches attend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PaddingAttention {
    /// Real tokens never attend to padding: each prompt generates as if alone.
    #[default]
    Masked,
    /// As the reference: no attention mask, so real tokens attend to padding (spec §6.7).
    Reference,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    pub track: Track,
    /// Extra ids never sampled (ignored for the function track, as in the reference).
    pub invalid_ids: Vec<i64>,
    pub schedule: Schedule,
    pub strategy: Strategy,
    pub num_steps: usize,
    pub temperature: f32,
    pub temperature_annealing: bool,
    pub top_p: f32,
    /// Drop structure tokens from the prompt when it has coordinates.
    pub condition_on_coordinates_only: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            track: Track::Sequence,
            invalid_ids: Vec::new(),
            schedule: Schedule::Cosine,
            strategy: Strategy::Random,
            num_steps: 20,
            temperature: 1.0,
            temperature_annealing: true,
            top_p: 1.0,
            condition_on_coordinates_only: true,
        }
    }
}

impl GenerationConfig {
    pub fn new(track: Track) -> Self {
        Self {
            track,
            ..Default::default()
        }
    }

    /// The SDK's "entropy-based" preset: cosine, entropy, no annealing.
    pub fn use_entropy_based_unmasking_strategy(&mut self) {
        self.schedule = Schedule::Cosine;
        self.strategy = Strategy::Entropy;
        self.temperature_annealing = false;
    }

    /// The SDK's "generative" preset: cosine, random, annealing.
    pub fn use_generative_unmasking_strategy(&mut self) {
        self.schedule = Schedule::Cosine;
        self.strategy = Strategy::Random;
        self.temperature_annealing = true;
    }

    /// Structure prediction from a sequence, as `esm3 fold` does it: the most likely token,
    /// lowest entropy first (deterministic).
    pub fn folding() -> Self {
        Self {
            strategy: Strategy::Entropy,
            temperature: 0.0,
            temperature_annealing: false,
            ..Self::new(Track::Structure)
        }
    }

    /// Sequence design for a given backbone, as `esm3 inverse-fold` does it: temperature 0.1,
    /// no annealing, random order.
    pub fn inverse_folding() -> Self {
        Self {
            temperature: 0.1,
            temperature_annealing: false,
            ..Self::new(Track::Sequence)
        }
    }

    /// The paper's sampling for designs of `length` residues (spec esm3-training.md §6.4–6.5):
    /// a constant temperature of 0.7 over `length` decoding steps. At the SDK's defaults
    /// (temperature 1.0 annealed, 20 steps) a small model falls into repeats.
    pub fn paper_sampling(track: Track, length: usize) -> Self {
        Self {
            temperature: 0.7,
            temperature_annealing: false,
            num_steps: length.max(1),
            ..Self::new(track)
        }
    }

    /// The plan `esm3 generate --length` runs: every track by [`paper_sampling`](Self::paper_sampling),
    /// except a structure that follows a generated sequence, which is predicted from it by
    /// [`folding`](Self::folding) as the paper folds its designs.
    pub fn unconditional_plan(tracks: &[Track], length: usize) -> Vec<Self> {
        tracks
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if t == Track::Structure && tracks[..i].contains(&Track::Sequence) {
                    Self::folding()
                } else {
                    Self::paper_sampling(t, length)
                }
            })
            .collect()
    }

    /// Refuses values the sampler cannot honour.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_steps == 0 {
            return Err("num_steps must be at least 1".into());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature {} must be a finite number ≥ 0",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        let ids = self.track.samplable_ids();
        if ids.clone().all(|id| self.invalid_ids.contains(&id)) && self.track != Track::Function {
            return Err(format!(
                "invalid_ids exclude every samplable id of the {} track",
                self.track.name()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unconditional_plan_folds_a_structure_that_follows_a_sequence() {
        let plan = GenerationConfig::unconditional_plan(&[Track::Sequence, Track::Structure], 80);
        assert_eq!(plan[0].track, Track::Sequence);
        assert_eq!((plan[0].temperature, plan[0].num_steps), (0.7, 80));
        assert!(!plan[0].temperature_annealing);
        assert_eq!(plan[1].track, Track::Structure);
        assert_eq!(
            (plan[1].temperature, plan[1].strategy),
            (0.0, Strategy::Entropy)
        );
        plan.iter().for_each(|c| c.validate().unwrap());
        // A structure generated first is sampled, not folded: there is no sequence to fold.
        let plan = GenerationConfig::unconditional_plan(&[Track::Structure, Track::Sequence], 5);
        assert_eq!((plan[0].temperature, plan[0].num_steps), (0.7, 5));
    }
}
