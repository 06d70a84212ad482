//! Held-out evaluation of a trunk at fixed conditioning, used for validation during training and
//! for the model card: each task shows some tracks in full, hides one, and scores the hidden
//! track's predictions at every labelled position.
//!
//! | task | visible | hidden, scored |
//! |---|---|---|
//! | `seq15` | sequence with 15 % masked | the masked residues |
//! | `seq_given_structure` (inverse folding) | structure tokens + coordinates | sequence |
//! | `structure_given_seq` (folding, argmax) | sequence | structure tokens |
//! | `ss8_given_seq` / `sasa_given_seq` | sequence | SS8 / SASA bins |

use crate::Result;
use esm3_models::{Esm3, Esm3Head};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::loss::head_cross_entropy;
use crate::noise::{
    collate, corrupt, CorruptedSample, NoiseConfig, Schedule, TrackNoise, TrainingProtein, IGNORE,
};

/// Summed cross-entropy and accuracy of one task.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskScore {
    pub nll_sum: f64,
    pub correct: usize,
    pub count: usize,
}

impl TaskScore {
    pub fn mean_nll(&self) -> f64 {
        self.nll_sum / self.count.max(1) as f64
    }
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }
}

#[derive(Clone, Debug, Default)]
pub struct TrunkReport {
    pub seq15: TaskScore,
    pub seq_given_structure: TaskScore,
    pub structure_given_seq: TaskScore,
    pub ss8_given_seq: TaskScore,
    pub sasa_given_seq: TaskScore,
}

impl TrunkReport {
    /// Named values for the metrics log.
    pub fn values(&self) -> Vec<(String, f64)> {
        let mut out = vec![
            ("seq15_ce".to_string(), self.seq15.mean_nll()),
            ("seq15_perplexity".to_string(), self.seq15.mean_nll().exp()),
        ];
        for (name, s) in [
            ("seq_given_structure", &self.seq_given_structure),
            ("structure_given_seq", &self.structure_given_seq),
            ("ss8_given_seq", &self.ss8_given_seq),
            ("sasa_given_seq", &self.sasa_given_seq),
        ] {
            if s.count > 0 {
                out.push((format!("{name}_ce"), s.mean_nll()));
                out.push((format!("{name}_accuracy"), s.accuracy()));
            }
        }
        out
    }
}

/// A config under which `corrupt` hides every track (so every label becomes a target) and does
/// nothing else: no augmentation, no coordinate noise.
fn hide_everything(crop_length: usize) -> NoiseConfig {
    let hidden = TrackNoise::new(Schedule::Linear, 1.0);
    NoiseConfig {
        crop_length,
        sequence: hidden,
        structure: hidden,
        coordinates: hidden,
        ss8: hidden,
        sasa: hidden,
        function: hidden,
        residue_annotations: hidden,
        coordinate_noise_std: 0.0,
        atomic_coordination_probability: 0.0,
        interface_split_probability: 0.0,
        residue_gap_geometric_p: 1.0,
        ..NoiseConfig::default()
    }
}

/// Which tracks a task shows.
#[derive(Clone, Copy)]
enum Task {
    Seq15,
    SeqGivenStructure,
    StructureGivenSeq,
}

/// Turns an all-hidden sample into the task's input: copies true labels of the visible tracks
/// from the targets into the inputs, and clears the targets of every track not scored.
fn reveal(
    hidden: &CorruptedSample,
    protein: &TrainingProtein,
    task: Task,
    rng: &mut ChaCha8Rng,
) -> CorruptedSample {
    let mut s = hidden.clone();
    let t = &mut s.targets;
    let show_sequence = |s: &mut Vec<i64>, t: &[i64]| {
        for (i, &v) in t.iter().enumerate() {
            if v >= 0 {
                s[i] = v;
            }
        }
    };
    match task {
        Task::Seq15 => {
            let mut seq_target = vec![IGNORE; t.sequence.len()];
            for (i, &v) in t.sequence.iter().enumerate() {
                if v >= 0 {
                    if rng.random::<f64>() < 0.15 {
                        seq_target[i] = v;
                    } else {
                        s.sequence[i] = v;
                    }
                }
            }
            // Keep unknown residues (never targets) as they were on input.
            t.sequence = seq_target;
            t.structure.fill(IGNORE);
            t.ss8.fill(IGNORE);
            t.sasa.fill(IGNORE);
        }
        Task::SeqGivenStructure => {
            show_sequence(&mut s.structure, &t.structure);
            for (p, &r) in s.residue_index.iter().enumerate() {
                if r >= 0 {
                    if let Some(bb) = &protein.backbone {
                        s.coordinates[p] = bb[r as usize];
                        s.per_res_plddt[p] =
                            if bb[r as usize].iter().flatten().all(|v| v.is_finite()) {
                                1.0
                            } else {
                                0.0
                            };
                    }
                }
            }
            t.structure.fill(IGNORE);
            t.ss8.fill(IGNORE);
            t.sasa.fill(IGNORE);
        }
        Task::StructureGivenSeq => {
            show_sequence(&mut s.sequence, &t.sequence);
            t.sequence.fill(IGNORE);
        }
    }
    for row in t.function.iter_mut() {
        *row = [IGNORE; 8];
    }
    t.residue_annotations = None;
    s
}

/// Scores the model on the proteins (each cropped to `crop_length` by a seeded window).
pub fn evaluate_trunk(
    model: &Esm3,
    proteins: &[TrainingProtein],
    crop_length: usize,
    batch_size: usize,
    seed: u64,
) -> Result<TrunkReport> {
    let config = hide_everything(crop_length);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xE7A1);
    let mut report = TrunkReport::default();
    let err = crate::TrainError::Noise;
    for chunk in proteins.chunks(batch_size.max(1)) {
        let hidden: Vec<CorruptedSample> = chunk
            .iter()
            .map(|p| corrupt(p, &config, &mut rng))
            .collect::<std::result::Result<_, _>>()
            .map_err(err)?;
        for task in [
            Task::Seq15,
            Task::SeqGivenStructure,
            Task::StructureGivenSeq,
        ] {
            let mut samples = Vec::new();
            for (h, p) in hidden.iter().zip(chunk) {
                if matches!(task, Task::SeqGivenStructure) && p.structure_tokens.is_none() {
                    continue;
                }
                samples.push(reveal(h, p, task, &mut rng));
            }
            if samples.is_empty() {
                continue;
            }
            let batch = collate(&samples).map_err(err)?;
            let hidden_states = model.forward_hidden(&batch.input)?;
            let score = |head: Esm3Head, targets, into: &mut TaskScore| -> Result<()> {
                if let Some((loss, n, correct)) =
                    head_cross_entropy(model, head, &hidden_states.normed, targets)?
                {
                    into.nll_sum += loss.to_scalar::<f32>()? as f64 * n as f64;
                    into.count += n;
                    into.correct += correct;
                }
                Ok(())
            };
            let t = &batch.targets;
            match task {
                Task::Seq15 => score(Esm3Head::Sequence, &t.sequence, &mut report.seq15)?,
                Task::SeqGivenStructure => score(
                    Esm3Head::Sequence,
                    &t.sequence,
                    &mut report.seq_given_structure,
                )?,
                Task::StructureGivenSeq => {
                    score(
                        Esm3Head::Structure,
                        &t.structure,
                        &mut report.structure_given_seq,
                    )?;
                    score(
                        Esm3Head::SecondaryStructure,
                        &t.ss8,
                        &mut report.ss8_given_seq,
                    )?;
                    score(Esm3Head::Sasa, &t.sasa, &mut report.sasa_given_seq)?;
                }
            }
        }
    }
    Ok(report)
}
