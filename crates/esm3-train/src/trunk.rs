//! The ESM3 trunk's masked multi-track objective (spec esm3-training.md §1): corrupt each protein
//! with the per-track noise schedules, run the trunk, and take cross-entropy on the supervised
//! (masked) positions of every output track.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::Result;
use esm3_models::config::{Esm3Config, ModelConfig};
use esm3_models::{Esm3, Esm3Head};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::loss::head_cross_entropy;
use crate::noise::{collate, corrupt, NoiseConfig, TrainingBatch, TrainingProtein};
use crate::optim::{AdamWConfig, LrSchedule};
use crate::runner::{Objective, RunConfig, Sampler, StepLoss};
use crate::trainable::Trainable;

/// `esm3 train esm3 CONFIG` (TOML).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkTrainConfig {
    /// Architecture of a model trained from scratch (ignored with `--init`).
    pub model: Option<Esm3Config>,
    pub data: DataConfig,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub optimizer: AdamWConfig,
    #[serde(default)]
    pub schedule: LrSchedule,
    #[serde(default)]
    pub noise: NoiseConfig,
    /// Proteins per optimizer step.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Validation proteins (the first N of the valid split).
    #[serde(default = "default_valid")]
    pub valid_proteins: usize,
    /// Probability that a sample is drawn from the proteins with structure tokens (the rest
    /// from all proteins). Sequence-only chains outnumber structures ten to one in the shipped
    /// data; without this the structure track would see few examples. 0 = uniform.
    #[serde(default)]
    pub structure_fraction: f64,
}

fn default_batch() -> usize {
    8
}
fn default_valid() -> usize {
    64
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A dataset directory built by `esm3 data build` (and tokenized by `esm3 data tokenize`).
    pub dataset: std::path::PathBuf,
}

/// Trainer state saved in checkpoints: data position and the noise RNG.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrunkState {
    pub sampler: Sampler,
    pub structure_sampler: Sampler,
    pub rng: ChaCha8Rng,
}

/// Rows of the embeddings that the reference keeps at zero (padding / mask ids, spec §1.3).
pub fn zero_rows(name: &str) -> Vec<usize> {
    let enc = "encoder.";
    let zero_row_tables = ["ss8_embed", "sasa_embed", "function_embed", "residue_embed"];
    if name.starts_with(enc) && zero_row_tables.iter().any(|t| name.contains(t)) {
        vec![0]
    } else {
        Vec::new()
    }
}

pub struct TrunkObjective {
    config: TrunkTrainConfig,
    train: Vec<TrainingProtein>,
    valid: Vec<TrainingProtein>,
    sampler: Sampler,
    /// Indices (into `train`) of the proteins with structure tokens, and their sampler.
    with_structure: Vec<usize>,
    structure_sampler: Sampler,
    rng: ChaCha8Rng,
}

impl TrunkObjective {
    pub fn new(
        config: TrunkTrainConfig,
        train: Vec<TrainingProtein>,
        valid: Vec<TrainingProtein>,
    ) -> Self {
        let seed = config.run.seed;
        let with_structure: Vec<usize> = (0..train.len())
            .filter(|&i| train[i].structure_tokens.is_some())
            .collect();
        Self {
            sampler: Sampler::new(train.len(), seed),
            structure_sampler: Sampler::new(with_structure.len(), seed.wrapping_add(2)),
            with_structure,
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
            config,
            train,
            valid,
        }
    }

    fn model(&self, model: &Trainable) -> Result<Esm3> {
        let ModelConfig::Esm3(c) = model.config() else {
            return Err(crate::TrainError::Msg(format!(
                "the trunk objective needs an ESM3 model, got {:?}",
                model.config()
            )));
        };
        Ok(Esm3::new(c, model.var_builder())?)
    }
}

/// Sets the embedding rows the reference keeps at zero to zero (a fresh random init has noise
/// there).
pub fn zero_padding_rows(model: &Trainable) -> Result<()> {
    for (name, var) in model.named_vars() {
        let rows = zero_rows(&name);
        if rows.is_empty() {
            continue;
        }
        let t = var.as_tensor();
        let n = t.dim(0)?;
        let keep: Vec<f32> = (0..n)
            .map(|r| if rows.contains(&r) { 0.0 } else { 1.0 })
            .collect();
        let keep = Tensor::from_vec(keep, (n, 1), t.device())?;
        var.set(&t.broadcast_mul(&keep)?)?;
    }
    Ok(())
}

/// Per-track masked losses of one batch: total (sum of the tracks' means, weight 1 each,
/// spec §1.1 [I]) and named values.
pub fn batch_loss(
    model: &Esm3,
    batch: &TrainingBatch,
) -> Result<(Tensor, Vec<(String, f64)>, usize)> {
    let hidden = model.forward_hidden(&batch.input)?;
    let t = &batch.targets;
    let tracks = [
        ("sequence", Esm3Head::Sequence, &t.sequence),
        ("structure", Esm3Head::Structure, &t.structure),
        ("ss8", Esm3Head::SecondaryStructure, &t.ss8),
        ("sasa", Esm3Head::Sasa, &t.sasa),
        ("function", Esm3Head::Function, &t.function),
    ];
    let mut total: Option<Tensor> = None;
    let mut values = Vec::new();
    let mut tokens = 0;
    for (name, head, targets) in tracks {
        if let Some((loss, n, _)) = head_cross_entropy(model, head, &hidden.normed, targets)? {
            values.push((format!("{name}_loss"), loss.to_scalar::<f32>()? as f64));
            tokens += n;
            total = Some(match total {
                Some(acc) => (acc + loss)?,
                None => loss,
            });
        }
    }
    let total = match total {
        Some(t) => t,
        None => {
            return Err(crate::TrainError::Msg(
                "batch has no supervised position in any track".into(),
            ))
        }
    };
    Ok((total, values, tokens))
}

impl Objective for TrunkObjective {
    type State = TrunkState;

    fn name(&self) -> &str {
        "esm3"
    }

    fn loss(&mut self, model: &Trainable, _step: usize) -> Result<StepLoss> {
        let esm3 = self.model(model)?;
        let mut samples = Vec::with_capacity(self.config.batch_size);
        let mut rates: HashMap<&str, f64> = HashMap::new();
        for _ in 0..self.config.batch_size {
            let from_structures = !self.with_structure.is_empty()
                && self.config.structure_fraction > 0.0
                && rand::Rng::random::<f64>(&mut self.rng) < self.config.structure_fraction;
            let index = if from_structures {
                self.with_structure[self.structure_sampler.next_index()]
            } else {
                self.sampler.next_index()
            };
            let protein = &self.train[index];
            let s = corrupt(protein, &self.config.noise, &mut self.rng)
                .map_err(|e| crate::TrainError::Msg(e.to_string()))?;
            *rates.entry("sequence_rate").or_default() += s.record.sequence.rate;
            *rates.entry("structure_rate").or_default() += s.record.structure.rate;
            samples.push(s);
        }
        let batch = collate(&samples).map_err(|e| crate::TrainError::Msg(e.to_string()))?;
        let (loss, mut values, tokens) = batch_loss(&esm3, &batch)?;
        for (k, v) in rates {
            values.push((k.to_string(), v / samples.len() as f64));
        }
        Ok(StepLoss {
            loss,
            values,
            tokens,
        })
    }

    fn validate(&mut self, model: &Trainable) -> Result<Vec<(String, f64)>> {
        let esm3 = self.model(model)?;
        let n = self.config.valid_proteins.min(self.valid.len());
        let report = crate::eval::evaluate_trunk(
            &esm3,
            &self.valid[..n],
            self.config.noise.crop_length,
            8,
            self.config.run.seed,
        )?;
        Ok(report.values())
    }

    fn state(&self) -> TrunkState {
        TrunkState {
            sampler: self.sampler.clone(),
            structure_sampler: self.structure_sampler.clone(),
            rng: self.rng.clone(),
        }
    }

    fn restore(&mut self, _model: &Trainable, state: TrunkState) -> Result<()> {
        self.sampler.restore(&state.sampler);
        self.structure_sampler.restore(&state.structure_sampler);
        self.rng = state.rng;
        Ok(())
    }
}

/// The device a training run uses: CUDA when compiled in and present, else CPU.
pub fn training_device() -> Device {
    Device::cuda_if_available(0).unwrap_or(Device::Cpu)
}
