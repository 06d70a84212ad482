//! `esm3 train vqvae CONFIG`: the VQ-VAE as an [`Objective`] of the shared training loop.
//!
//! Encoder and decoder live in one variable map under `encoder.` and `decoder.` (training-only
//! layers under `training.`); the EMA codebook is not a parameter: the optimizer skips it, and
//! after every update its state is written back into the map so checkpoints carry it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use esm3_models::config::{ModelConfig, StructureDecoderConfig, StructureEncoderConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Codebook, CodebookConfig, Stage, VqVae, VqVaeBatch, VqVaeConfig, VqVaeExample};
use crate::optim::{AdamWConfig, LrSchedule};
use crate::runner::{Objective, RunConfig, Sampler, StepLoss};
use crate::trainable::{Part, Trainable};
use crate::trunk::DataConfig;
use crate::{Result, TrainError};

pub const ENCODER_PREFIX: &str = "encoder.";
pub const DECODER_PREFIX: &str = "decoder.";

/// `esm3 train vqvae CONFIG` (TOML).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqVaeTrainConfig {
    /// Architecture when training from scratch (ignored with `--init`).
    pub encoder: Option<StructureEncoderConfig>,
    pub decoder: Option<StructureDecoderConfig>,
    pub data: DataConfig,
    /// 1: encoder + codebook + decoder with the five geometric losses; 2: encoder and codebook
    /// frozen, the decoder refined, and with `confidence` the pLDDT and pAE heads trained.
    #[serde(default = "one")]
    pub stage: u8,
    #[serde(default)]
    pub confidence: bool,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub optimizer: AdamWConfig,
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Residues per training crop (a uniform random window of longer chains).
    #[serde(default = "default_crop")]
    pub crop_length: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Dead codes are restarted every this many steps (0 = never).
    #[serde(default = "default_restart")]
    pub restart_every: usize,
    #[serde(default = "default_valid")]
    pub valid_proteins: usize,
}

fn one() -> u8 {
    1
}
fn default_crop() -> usize {
    128
}
fn default_batch() -> usize {
    4
}
fn default_restart() -> usize {
    10
}
fn default_valid() -> usize {
    32
}

/// A training chain: backbone plus ESM sequence ids.
#[derive(Clone, Debug)]
pub struct StructureExample {
    pub backbone: Vec<[[f32; 3]; 3]>,
    pub sequence: Vec<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VqVaeState {
    pub sampler: Sampler,
    pub rng: ChaCha8Rng,
    pub codebook_initialised: bool,
}

pub struct VqVaeObjective {
    config: VqVaeTrainConfig,
    model: VqVae,
    train: Vec<StructureExample>,
    valid: Vec<StructureExample>,
    sampler: Sampler,
    rng: ChaCha8Rng,
    pending: Option<super::VqVaeLosses>,
}

/// The trainable set for a VQ-VAE: fresh random weights, or a pair of model directories.
pub fn vqvae_trainable(
    config: &VqVaeTrainConfig,
    init: Option<&Path>,
    device: &candle_core::Device,
) -> Result<Trainable> {
    let parts = match init {
        Some(dir) => {
            let (enc_cfg, enc) = Trainable::load_model_dir(&dir.join("structure_encoder"))?;
            let (dec_cfg, dec) = Trainable::load_model_dir(&dir.join("structure_decoder"))?;
            vec![
                (part(ENCODER_PREFIX, enc_cfg), enc),
                (part(DECODER_PREFIX, dec_cfg), dec),
            ]
        }
        None => {
            let (Some(e), Some(d)) = (&config.encoder, &config.decoder) else {
                return Err(TrainError::Msg(
                    "the config needs [encoder] and [decoder] sections to train from scratch \
                     (or pass --init DIR with structure_encoder/ and structure_decoder/)"
                        .into(),
                ));
            };
            let seed = config.run.seed;
            let enc_cfg = ModelConfig::StructureEncoder(e.clone());
            let dec_cfg = ModelConfig::StructureDecoder(d.clone());
            let mut enc = esm3_models::init::random_weights(&enc_cfg, seed)?;
            // The codebook is initialised from the first batch; its EMA state starts empty.
            for name in ["codebook.N", "codebook.z_avg", "codebook.embeddings"] {
                if let Some(t) = enc.get_mut(name) {
                    *t = t.zeros_like()?;
                }
            }
            let dec = esm3_models::init::random_weights(&dec_cfg, seed + 1)?;
            vec![
                (part(ENCODER_PREFIX, enc_cfg), enc),
                (part(DECODER_PREFIX, dec_cfg), dec),
            ]
        }
    };
    Ok(Trainable::from_parts(parts, device)?.with_init_seed(config.run.seed))
}

fn part(prefix: &str, config: ModelConfig) -> Part {
    Part {
        prefix: prefix.into(),
        config,
    }
}

fn configs(model: &Trainable) -> Result<(StructureEncoderConfig, StructureDecoderConfig)> {
    match (&model.parts[0].config, &model.parts[1].config) {
        (ModelConfig::StructureEncoder(e), ModelConfig::StructureDecoder(d)) => {
            Ok((e.clone(), d.clone()))
        }
        other => Err(TrainError::Msg(format!("not a VQ-VAE pair: {other:?}"))),
    }
}

/// Whether a variable is optimised in this stage.
pub fn frozen(stage: u8) -> impl Fn(&str) -> bool {
    move |name: &str| {
        name.contains("codebook.")
            || (stage == 2
                && (name.starts_with(ENCODER_PREFIX) || name.contains("training.decoder_input")))
    }
}

impl VqVaeObjective {
    pub fn new(
        config: VqVaeTrainConfig,
        model: &Trainable,
        train: Vec<StructureExample>,
        valid: Vec<StructureExample>,
        codebook_initialised: bool,
    ) -> Result<Self> {
        let (enc, dec) = configs(model)?;
        let vq_config = VqVaeConfig::new(enc.clone(), dec);
        let vb = model.var_builder();
        let enc_vb = vb.pp("encoder");
        let codebook = Codebook::from_var_builder(
            CodebookConfig::new(enc.n_codes, enc.d_out),
            &enc_vb,
            codebook_initialised || config.stage == 2,
        )?;
        // Stage 2 trains the decoder on a frozen encoder: build it from constants.
        let encoder_vb = match config.stage {
            2 => model.frozen_var_builder(ENCODER_PREFIX.trim_end_matches('.')),
            _ => enc_vb,
        };
        let vq = VqVae::new(
            vq_config,
            encoder_vb,
            vb.pp("decoder"),
            vb.pp("training"),
            codebook,
        )?;
        let seed = config.run.seed;
        Ok(Self {
            sampler: Sampler::new(train.len(), seed),
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(7)),
            config,
            model: vq,
            train,
            valid,
            pending: None,
        })
    }

    fn stage(&self) -> Stage {
        if self.config.stage == 2 {
            Stage::Two {
                confidence: self.config.confidence,
            }
        } else {
            Stage::One
        }
    }

    fn crop(&mut self, ex: &StructureExample) -> VqVaeExample {
        let n = ex.backbone.len();
        let w = n.min(self.config.crop_length);
        let start = if n > w {
            self.rng.random_range(0..=n - w)
        } else {
            0
        };
        VqVaeExample {
            backbone: ex.backbone[start..start + w].to_vec(),
            sequence: ex.sequence[start..start + w].to_vec(),
            residue_index: None,
        }
    }

    /// Inference model directories `structure_encoder/` and `structure_decoder/` under `dir`.
    /// A stage-1 decoder is exported with the training-time input projection folded into its
    /// token embedding, so exported tokens decode as they did in training.
    pub fn export(&self, model: &Trainable, dir: &Path) -> Result<()> {
        self.model
            .codebook()
            .write_to_varmap(&model.varmap, ENCODER_PREFIX)?;
        model.save_part(0, &dir.join("structure_encoder"), &HashMap::new())?;
        let mut replace = HashMap::new();
        if self.config.stage == 1 {
            replace.insert(
                "embed.weight".to_string(),
                self.model.fused_token_embeddings()?,
            );
        }
        model.save_part(1, &dir.join("structure_decoder"), &replace)?;
        Ok(())
    }
}

impl Objective for VqVaeObjective {
    type State = VqVaeState;

    fn name(&self) -> &str {
        "vqvae"
    }

    fn loss(&mut self, _model: &Trainable, _step: usize) -> Result<StepLoss> {
        let mut examples = Vec::with_capacity(self.config.batch_size);
        for _ in 0..self.config.batch_size {
            let i = self.sampler.next_index();
            let ex = self.train[i].clone();
            examples.push(self.crop(&ex));
        }
        let batch = VqVaeBatch::from_examples(&examples)?;
        if self.config.stage == 1 {
            self.model.initialise_codebook(&batch, &mut self.rng)?;
        }
        let out = self.model.losses(&batch, self.stage())?;
        let mut values: Vec<(String, f64)> = out
            .values
            .iter()
            .filter(|(k, _)| **k != "total")
            .map(|(k, v)| (format!("{k}_loss"), *v as f64))
            .collect();
        values.push(("rmsd".into(), out.metrics.rmsd));
        values.push(("lddt_ca".into(), out.metrics.lddt_ca));
        values.push(("batch_perplexity".into(), out.usage.perplexity));
        let tokens = batch.mask.iter().filter(|&&m| m).count();
        let loss = out.total.clone();
        self.pending = Some(out);
        Ok(StepLoss {
            loss,
            values,
            tokens,
        })
    }

    fn after_update(&mut self, model: &Trainable, step: usize) -> Result<()> {
        let Some(out) = self.pending.take() else {
            return Ok(());
        };
        if self.config.stage == 1 {
            let every = self.config.restart_every;
            let restart = every > 0 && (step + 1).is_multiple_of(every);
            self.model.update_codebook(&out, restart, &mut self.rng)?;
            self.model
                .codebook()
                .write_to_varmap(&model.varmap, ENCODER_PREFIX)?;
        }
        Ok(())
    }

    fn validate(&mut self, _model: &Trainable) -> Result<Vec<(String, f64)>> {
        let n = self.config.valid_proteins.min(self.valid.len());
        let (mut rmsd, mut lddt, mut count) = (0.0, 0.0, 0usize);
        let mut sums: HashMap<String, f64> = HashMap::new();
        let mut codes = Vec::new();
        for chunk in self.valid[..n].chunks(self.config.batch_size.max(1)) {
            // Validation uses the first crop_length·2 residues of each chain, deterministically.
            let examples: Vec<VqVaeExample> = chunk
                .iter()
                .map(|ex| {
                    let w = ex.backbone.len().min(self.config.crop_length * 2);
                    VqVaeExample {
                        backbone: ex.backbone[..w].to_vec(),
                        sequence: ex.sequence[..w].to_vec(),
                        residue_index: None,
                    }
                })
                .collect();
            let batch = VqVaeBatch::from_examples(&examples)?;
            let out = self.model.losses(&batch, self.stage())?;
            let p = out.metrics.proteins;
            rmsd += out.metrics.rmsd * p as f64;
            lddt += out.metrics.lddt_ca * p as f64;
            count += p;
            for (k, v) in &out.values {
                *sums.entry(format!("{k}_loss")).or_default() += *v as f64 * p as f64;
            }
            codes.extend(
                out.codes
                    .iter()
                    .zip(&batch.mask)
                    .filter(|(_, &m)| m)
                    .map(|(&c, _)| c),
            );
        }
        let count_f = count.max(1) as f64;
        let usage = super::codebook::usage_stats(&codes, self.model.codebook().config().n_codes);
        let mut values = vec![
            ("rmsd".to_string(), rmsd / count_f),
            ("lddt_ca".to_string(), lddt / count_f),
            ("codes_used".to_string(), usage.codes_used as f64),
            ("code_perplexity".to_string(), usage.perplexity),
        ];
        let mut rest: Vec<(String, f64)> =
            sums.into_iter().map(|(k, v)| (k, v / count_f)).collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        values.extend(rest);
        Ok(values)
    }

    fn state(&self) -> VqVaeState {
        VqVaeState {
            sampler: self.sampler.clone(),
            rng: self.rng.clone(),
            codebook_initialised: self.model.codebook().is_initialised(),
        }
    }

    fn restore(&mut self, model: &Trainable, state: VqVaeState) -> Result<()> {
        self.sampler.restore(&state.sampler);
        self.rng = state.rng;
        let config = self.model.codebook().config().clone();
        let enc_vb = model.var_builder().pp("encoder");
        *self.model.codebook_mut() =
            Codebook::from_var_builder(config, &enc_vb, state.codebook_initialised)?;
        Ok(())
    }

    fn restore_extra(&mut self, _extra: HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}
