//! The trainable VQ-VAE: encoder → EMA codebook (straight-through) → decoder, with the stage-1
//! and stage-2 losses of spec esm3-training.md §3.
//!
//! Tensors, through the three var builders given to [`VqVae::new`]:
//! * encoder: the released `StructureTokenEncoder` layout (its `codebook.*` entries are *not*
//!   trained by the optimizer; [`Codebook`] keeps them, see [`Codebook::write_to_varmap`]);
//! * decoder: the released `StructureTokenDecoder` layout (the pairwise head's 224 channels
//!   and the pLDDT head are trained here);
//! * training (e.g. the decoder's var map under `training.`): training-only layers, never part
//!   of an inference model dir:
//!   `training.decoder_input` (Linear d_out → d_model: stage 1 feeds the continuous
//!   straight-through codes to the decoder; [`VqVae::fused_token_embeddings`] folds it into the
//!   decoder's token embedding for export) and `training.inverse_folding` (Linear → GELU →
//!   LayerNorm → Linear to the 64-token sequence vocabulary).
//!
//! How a training loop calls it (stage 1):
//! ```text
//! // enc_map / dec_map: VarMaps filled from random_weights or a checkpoint
//! let enc_vb = VarBuilder::from_varmap(&enc_map, DType::F32, &device);
//! let dec_vb = VarBuilder::from_varmap(&dec_map, DType::F32, &device);
//! let codebook = Codebook::from_var_builder(cfg.codebook.clone(), &enc_vb, resumed)?;
//! let mut model = VqVae::new(cfg, enc_vb, dec_vb.clone(), dec_vb.pp("training"), codebook)?;
//! for step in .. {
//!     model.initialise_codebook(&batch, &mut rng)?;     // no-op after the first batch
//!     let out = model.losses(&batch, Stage::One)?;
//!     let grads = out.total.backward()?;                  // optimizer.step(&grads), skipping
//!     optimizer_step(&grads);                             // encoder.codebook.* (no grads)
//!     let stats = model.update_codebook(&out, true, &mut rng)?;
//!     model.codebook().write_to_varmap(&enc_map, "")?;   // before checkpointing
//! }
//! ```
//! Stage 2 (`Stage::Two { confidence }`): the encoder and codebook are frozen (latents are
//! detached, no commitment term, do not call `update_codebook`), the decoder embeds the token
//! ids with its own table as at inference, and with `confidence` the pLDDT and pAE heads are
//! trained too.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use esm3_models::config::{StructureDecoderConfig, StructureEncoderConfig};
use esm3_models::structure_decoder::{tokens, StructureTokenDecoder};
use esm3_models::structure_encoder::{StructureEncoderInput, StructureTokenEncoder};
use esm3_models::HostArray;
use esm3_nn::linear::{linear, Linear};
use esm3_nn::RegressionHead;
use esm3_protein::metrics::{lddt, superposed_rmsd};
use rand::Rng;

use super::codebook::{Codebook, CodebookConfig, CodebookStats};
use super::geometry::backbone_from_affine;
use super::losses::{self, bool_tensor, TrueBackbone, P3};

/// Width of the inverse-folding head's output: the ESM sequence vocabulary.
pub const SEQUENCE_VOCAB: usize = 64;

fn wrap(e: esm3_models::ModelError) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Encoder, codebook and decoder trained together: five losses + commitment.
    One,
    /// Encoder and codebook frozen; backbone geometric and pairwise losses, plus the pLDDT and
    /// pAE heads when `confidence` (sub-stages 2B/2C).
    Two { confidence: bool },
}

/// Weights of the loss terms in `total` (spec §3.3 [I]: all 1.0; the commitment weight is in
/// [`CodebookConfig::commitment_weight`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LossWeights {
    pub distance: f64,
    pub direction: f64,
    pub binned_direction: f64,
    pub distogram: f64,
    pub inverse_folding: f64,
    pub plddt: f64,
    pub pae: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            distance: 1.0,
            direction: 1.0,
            binned_direction: 1.0,
            distogram: 1.0,
            inverse_folding: 1.0,
            plddt: 1.0,
            pae: 1.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct VqVaeConfig {
    pub encoder: StructureEncoderConfig,
    pub decoder: StructureDecoderConfig,
    pub codebook: CodebookConfig,
    pub weights: LossWeights,
}

impl VqVaeConfig {
    /// Spec defaults for the codebook and loss weights.
    pub fn new(encoder: StructureEncoderConfig, decoder: StructureDecoderConfig) -> Self {
        let codebook = CodebookConfig::new(encoder.n_codes, encoder.d_out);
        Self {
            encoder,
            decoder,
            codebook,
            weights: LossWeights::default(),
        }
    }
}

/// One protein for [`VqVaeBatch::from_examples`].
#[derive(Clone, Debug)]
pub struct VqVaeExample {
    /// N, CA, C per residue (Å); NaN for missing atoms.
    pub backbone: Vec<[[f32; 3]; 3]>,
    /// ESM sequence token ids (4..=23 canonical), one per residue.
    pub sequence: Vec<u32>,
    /// Residue numbers (gaps = chain breaks); `None` = 0..L.
    pub residue_index: Option<Vec<i64>>,
}

/// A padded batch; every per-residue array is `[B, L]` row-major.
#[derive(Clone, Debug)]
pub struct VqVaeBatch {
    pub batch: usize,
    pub len: usize,
    /// `[B, L, 3, 3]` N, CA, C (Å); NaN for missing atoms (anything for padding).
    pub coords: Vec<f32>,
    pub residue_index: Vec<i64>,
    /// Sequence tokens for the inverse-folding loss.
    pub sequence: Vec<u32>,
    /// true = real residue, false = padding.
    pub mask: Vec<bool>,
}

impl VqVaeBatch {
    pub fn new(
        batch: usize,
        len: usize,
        coords: Vec<f32>,
        residue_index: Vec<i64>,
        sequence: Vec<u32>,
        mask: Vec<bool>,
    ) -> Result<Self> {
        let n = batch * len;
        if batch == 0 || len == 0 {
            candle_core::bail!("empty VQ-VAE batch: {batch} × {len}");
        }
        for (name, got, want) in [
            ("coords", coords.len(), n * 9),
            ("residue_index", residue_index.len(), n),
            ("sequence", sequence.len(), n),
            ("mask", mask.len(), n),
        ] {
            if got != want {
                candle_core::bail!(
                    "VQ-VAE batch `{name}` has {got} values, expected {want} for {batch} × {len}"
                );
            }
        }
        Ok(Self {
            batch,
            len,
            coords,
            residue_index,
            sequence,
            mask,
        })
    }

    /// Pads the examples to the longest (padding: NaN coordinates, PAD tokens, mask false).
    pub fn from_examples(examples: &[VqVaeExample]) -> Result<Self> {
        let len = examples.iter().map(|e| e.backbone.len()).max().unwrap_or(0);
        let b = examples.len();
        let mut coords = vec![f32::NAN; b * len * 9];
        let mut residue_index = vec![0i64; b * len];
        let mut sequence = vec![esm3_tokens::sequence::PAD; b * len];
        let mut mask = vec![false; b * len];
        for (r, e) in examples.iter().enumerate() {
            let l = e.backbone.len();
            if e.sequence.len() != l || e.residue_index.as_ref().is_some_and(|ri| ri.len() != l) {
                candle_core::bail!(
                    "example {r}: backbone, sequence and residue_index lengths differ"
                );
            }
            for i in 0..len {
                let g = r * len + i;
                residue_index[g] = match &e.residue_index {
                    Some(ri) if i < l => ri[i],
                    Some(ri) => ri[l - 1] + (i - l + 1) as i64,
                    None => i as i64,
                };
                if i < l {
                    for (a, atom) in e.backbone[i].iter().enumerate() {
                        coords[g * 9 + a * 3..g * 9 + a * 3 + 3].copy_from_slice(atom);
                    }
                    sequence[g] = e.sequence[i];
                    mask[g] = true;
                }
            }
        }
        Self::new(b, len, coords, residue_index, sequence, mask)
    }

    fn encoder_input(&self) -> StructureEncoderInput {
        let (b, l) = (self.batch, self.len);
        StructureEncoderInput {
            coords: HostArray::new(vec![b, l, 3, 3], self.coords.clone()),
            attention_mask: Some(HostArray::new(
                vec![b, l],
                self.mask.iter().map(|&m| i64::from(m)).collect(),
            )),
            sequence_id: None,
            residue_index: Some(HostArray::new(vec![b, l], self.residue_index.clone())),
        }
    }
}

/// Detached latents and codes of the valid residues, for the EMA step.
#[derive(Clone, Debug, Default)]
pub struct CodebookInputs {
    pub latents: Vec<Vec<f32>>,
    pub codes: Vec<u32>,
}

/// Reconstruction quality of the batch (detached), averaged over its proteins.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReconstructionMetrics {
    /// Backbone (N, CA, C) RMSD after Kabsch superposition, Å.
    pub rmsd: f64,
    /// Global LDDT-Cα (15 Å, 0.5/1/2/4 Å).
    pub lddt_ca: f64,
    /// Proteins with at least one valid residue (the averages are over these).
    pub proteins: usize,
}

/// Every loss term as a scalar tensor (unweighted), the weighted `total`, their f32 values,
/// metrics, and what [`VqVae::update_codebook`] needs.
pub struct VqVaeLosses {
    pub total: Tensor,
    pub distance: Tensor,
    pub direction: Tensor,
    pub binned_direction: Tensor,
    pub distogram: Tensor,
    /// Stage 1 only.
    pub inverse_folding: Option<Tensor>,
    /// Stage 1 only: MSE(z, sg(e)), weighted by `commitment_weight` in `total`.
    pub commitment: Option<Tensor>,
    /// Stage 2 with confidence only.
    pub plddt: Option<Tensor>,
    pub pae: Option<Tensor>,
    /// Name → value of every term present, plus `total`.
    pub values: BTreeMap<&'static str, f32>,
    pub metrics: ReconstructionMetrics,
    /// Batch code usage (perplexity, distinct codes); the EMA fields are filled by
    /// `update_codebook`.
    pub usage: CodebookStats,
    pub codebook_inputs: CodebookInputs,
    /// `[B, L, 3, 3]` predicted N, CA, C (tracks gradients).
    pub bb_pred: Tensor,
    /// `[B·L]` code per residue.
    pub codes: Vec<u32>,
}

pub struct VqVae {
    config: VqVaeConfig,
    encoder: StructureTokenEncoder,
    decoder: StructureTokenDecoder,
    codebook: Codebook,
    decoder_input: Linear,
    inverse_folding: RegressionHead,
    device: Device,
    dtype: DType,
}

impl VqVae {
    /// `encoder_vb` / `decoder_vb` hold the released layouts at their root (e.g. over the
    /// encoder's and the decoder's `VarMap`); `training_vb` the training-only layers (e.g.
    /// `decoder_vb.pp("training")`, so they stay out of the exported decoder dir).
    pub fn new(
        config: VqVaeConfig,
        encoder_vb: VarBuilder,
        decoder_vb: VarBuilder,
        training_vb: VarBuilder,
        codebook: Codebook,
    ) -> Result<Self> {
        let encoder = StructureTokenEncoder::new(&config.encoder, encoder_vb).map_err(wrap)?;
        let device = decoder_vb.device().clone();
        let dtype = decoder_vb.dtype();
        let decoder = StructureTokenDecoder::new(&config.decoder, decoder_vb).map_err(wrap)?;
        let t = training_vb;
        let d = config.decoder.d_model;
        let decoder_input = linear(config.encoder.d_out, d, t.pp("decoder_input"))?;
        // A fresh VarMap would create the head's LayerNorm weight as zeros (the default init of
        // `get`), which silences the head; create it as ones first (no-op when it exists).
        t.pp("inverse_folding.norm")
            .get_with_hints(d, "weight", candle_nn::Init::Const(1.0))?;
        let inverse_folding = RegressionHead::with_names(
            d,
            SEQUENCE_VOCAB,
            ["dense", "norm", "output"],
            t.pp("inverse_folding"),
        )?;
        if codebook.config().n_codes != config.encoder.n_codes
            || codebook.config().dim != config.encoder.d_out
        {
            candle_core::bail!("codebook shape does not match the encoder config");
        }
        Ok(Self {
            config,
            encoder,
            decoder,
            codebook,
            decoder_input,
            inverse_folding,
            device,
            dtype,
        })
    }

    pub fn config(&self) -> &VqVaeConfig {
        &self.config
    }
    pub fn encoder(&self) -> &StructureTokenEncoder {
        &self.encoder
    }
    pub fn decoder(&self) -> &StructureTokenDecoder {
        &self.decoder
    }
    pub fn codebook(&self) -> &Codebook {
        &self.codebook
    }
    pub fn codebook_mut(&mut self) -> &mut Codebook {
        &mut self.codebook
    }

    /// Latents `[B·L, d_out]` and which rows are valid (real residue with a frame).
    fn latents(&self, batch: &VqVaeBatch) -> Result<(Tensor, Vec<bool>)> {
        let lat = self.encoder.latents(&batch.encoder_input()).map_err(wrap)?;
        let n = batch.batch * batch.len;
        let z = lat.z.reshape((n, self.config.encoder.d_out))?;
        let valid = lat
            .has_frame
            .iter()
            .zip(&batch.mask)
            .map(|(&f, &m)| f && m)
            .collect();
        Ok((z, valid))
    }

    /// Initialises the codebook from this batch's encoder outputs if it is not yet
    /// initialised (spec §3.2); returns whether it did.
    pub fn initialise_codebook<R: Rng + ?Sized>(
        &mut self,
        batch: &VqVaeBatch,
        rng: &mut R,
    ) -> Result<bool> {
        if self.codebook.is_initialised() {
            return Ok(false);
        }
        let (z, valid) = self.latents(batch)?;
        let rows = valid_rows(&z, &valid)?;
        self.codebook.initialise(&rows, rng)?;
        Ok(true)
    }

    /// The EMA step (and dead-code restarts when `restart`) from a stage-1 forward's latents.
    /// Call after the optimizer step.
    pub fn update_codebook<R: Rng + ?Sized>(
        &mut self,
        losses: &VqVaeLosses,
        restart: bool,
        rng: &mut R,
    ) -> Result<CodebookStats> {
        let c = &losses.codebook_inputs;
        self.codebook.update(&c.latents, &c.codes, restart, rng)
    }

    /// Decoder input `[B, L + 2, d_model]`: BOS, one vector per residue, EOS after the last
    /// real residue, PAD elsewhere; and sequence ids keeping PAD out of attention.
    fn decoder_input(
        &self,
        batch: &VqVaeBatch,
        codes: &[u32],
        z_q: Option<&Tensor>,
    ) -> Result<(Tensor, Vec<i64>)> {
        let (b, l) = (batch.batch, batch.len);
        let w = l + 2;
        let mut ids = vec![tokens::PAD as u32; b * w];
        let mut is_code = vec![false; b * w];
        for r in 0..b {
            ids[r * w] = tokens::BOS as u32;
            let mut last = None;
            for i in 0..l {
                if batch.mask[r * l + i] {
                    ids[r * w + i + 1] = codes[r * l + i];
                    is_code[r * w + i + 1] = true;
                    last = Some(i);
                }
            }
            ids[r * w + last.map_or(1, |i| i + 2)] = tokens::EOS as u32;
        }
        let seq_id: Vec<i64> = ids
            .iter()
            .map(|&t| i64::from(t == tokens::PAD as u32))
            .collect();
        let id_tensor = Tensor::from_vec(ids, (b, w), &self.device)?;
        let embedded = self.decoder.embed_tokens(&id_tensor).map_err(wrap)?;
        let x = match z_q {
            None => embedded,
            Some(z_q) => {
                let d = self.config.decoder.d_model;
                let proj = self.decoder_input.forward(
                    &z_q.reshape((b, l, self.config.encoder.d_out))?
                        .to_dtype(self.dtype)?,
                )?;
                let zero = Tensor::zeros((b, 1, d), proj.dtype(), &self.device)?;
                let full = Tensor::cat(&[&zero, &proj, &zero], 1)?;
                let m = Tensor::from_vec(
                    is_code.iter().map(|&c| u8::from(c)).collect::<Vec<_>>(),
                    (b, w, 1),
                    &self.device,
                )?
                .broadcast_as((b, w, d))?;
                m.where_cond(&full, &embedded)?
            }
        };
        Ok((x, seq_id))
    }

    /// All losses of `stage` for one batch (module docs show the calling sequence).
    pub fn losses(&self, batch: &VqVaeBatch, stage: Stage) -> Result<VqVaeLosses> {
        let (b, l) = (batch.batch, batch.len);
        let w = &self.config.weights;
        let (z, valid_latent) = self.latents(batch)?;
        let z = match stage {
            Stage::One => z,
            Stage::Two { .. } => z.detach(),
        };
        let q = self.codebook.quantize(&z, &valid_latent)?;
        let valid_codes: Vec<u32> = q
            .codes
            .iter()
            .zip(&valid_latent)
            .filter(|(_, &v)| v)
            .map(|(&c, _)| c)
            .collect();
        let usage = super::codebook::usage_stats(&valid_codes, self.config.encoder.n_codes);
        let codebook_inputs = match stage {
            Stage::One => CodebookInputs {
                latents: valid_rows(&z, &valid_latent)?,
                codes: valid_codes,
            },
            Stage::Two { .. } => CodebookInputs::default(),
        };
        let (x, seq_id) = match stage {
            Stage::One => self.decoder_input(batch, &q.codes, Some(&q.z_q))?,
            Stage::Two { .. } => self.decoder_input(batch, &q.codes, None)?,
        };
        let h = self
            .decoder
            .hidden_states(&x, Some(&seq_id))
            .map_err(wrap)?
            .narrow(1, 1, l)?;

        let truth = TrueBackbone::new(b, l, &batch.coords, &batch.mask, &batch.residue_index);
        let g = self.geometry_losses(&h, &truth)?;
        let mut total = ((&g.distance * w.distance)?
            + (&g.direction * w.direction)?
            + (&g.distogram * w.distogram)?
            + (&g.binned_direction * w.binned_direction)?)?;
        let (mut inverse_folding, mut commitment, mut plddt, mut pae) = (None, None, None, None);
        if stage == Stage::One {
            let if_loss = self.inverse_folding_loss(&h, &truth, batch)?;
            total = (total + (&if_loss * w.inverse_folding)?)?;
            let c = q.commitment_mse.to_dtype(DType::F32)?;
            total = (total + (&c * self.config.codebook.commitment_weight)?)?;
            inverse_folding = Some(if_loss);
            commitment = Some(c);
        }
        let pred_host = host_backbone(&g.bb_pred)?;
        if let Stage::Two { confidence: true } = stage {
            let (pl, pa) = self.confidence_losses(&h, &truth, &g, &pred_host)?;
            total = ((total + (&pl * w.plddt)?)? + (&pa * w.pae)?)?;
            plddt = Some(pl);
            pae = Some(pa);
        }
        let values = scalar_values(&[
            ("total", Some(&total)),
            ("distance", Some(&g.distance)),
            ("direction", Some(&g.direction)),
            ("binned_direction", Some(&g.binned_direction)),
            ("distogram", Some(&g.distogram)),
            ("inverse_folding", inverse_folding.as_ref()),
            ("commitment", commitment.as_ref()),
            ("plddt", plddt.as_ref()),
            ("pae", pae.as_ref()),
        ])?;
        Ok(VqVaeLosses {
            total,
            distance: g.distance,
            direction: g.direction,
            binned_direction: g.binned_direction,
            distogram: g.distogram,
            inverse_folding,
            commitment,
            plddt,
            pae,
            values,
            metrics: reconstruction_metrics(&truth, &pred_host),
            usage,
            codebook_inputs,
            bb_pred: g.bb_pred,
            codes: q.codes,
        })
    }

    /// The geometric losses of every stage, from the decoder's hidden states `h` `[B, L, d]`.
    fn geometry_losses(&self, h: &Tensor, truth: &TrueBackbone) -> Result<GeometryLosses> {
        let (b, l) = (truth.batch, truth.len);
        let (f32_, dev) = (DType::F32, &self.device);
        let true_coords = truth.coords_tensor(f32_, dev)?;
        let mask = truth.mask_tensor(f32_, dev)?;
        let bonded = truth.bonded_tensor(f32_, dev)?;
        let pred = backbone_from_affine(&self.decoder.affine_projection(h).map_err(wrap)?)?;
        let bb_pred = pred.atoms;
        let distance = losses::backbone_distance_loss(&bb_pred, &true_coords, &mask)?;
        let direction = losses::backbone_direction_loss(&bb_pred, &true_coords, &mask, &bonded)?;
        let pair = self.decoder.pairwise_logits(h).map_err(wrap)?;
        let pair_mask = bool_tensor(&truth.pair_mask(), (b, l, l), f32_, dev)?;
        let distogram = losses::distogram_loss(
            &pair,
            &Tensor::from_vec(truth.distogram_labels(), (b, l, l), dev)?,
            &pair_mask,
        )?;
        let binned_direction = losses::binned_direction_loss(
            &pair,
            &Tensor::from_vec(truth.direction_labels(), (b, l, l, 6), dev)?,
            &pair_mask,
        )?;
        Ok(GeometryLosses {
            bb_pred,
            pair,
            pair_mask,
            distance,
            direction,
            distogram,
            binned_direction,
        })
    }

    /// Stage 1's inverse-folding head: cross-entropy of the true residue at every valid
    /// position with a canonical residue.
    fn inverse_folding_loss(
        &self,
        h: &Tensor,
        truth: &TrueBackbone,
        batch: &VqVaeBatch,
    ) -> Result<Tensor> {
        let (b, l) = (batch.batch, batch.len);
        let logits = self.inverse_folding.forward(h)?.to_dtype(DType::F32)?;
        let if_mask: Vec<bool> = (0..b * l)
            .map(|g| truth.valid[g] && losses::is_canonical_residue(batch.sequence[g]))
            .collect();
        losses::masked_cross_entropy(
            &logits,
            &Tensor::from_vec(batch.sequence.clone(), (b, l), &self.device)?,
            &bool_tensor(&if_mask, (b, l), DType::F32, &self.device)?,
        )
    }

    /// Stage 2's confidence heads against the errors of the prediction `pred_host`: pLDDT
    /// and PAE cross-entropies.
    fn confidence_losses(
        &self,
        h: &Tensor,
        truth: &TrueBackbone,
        g: &GeometryLosses,
        pred_host: &[[P3; 3]],
    ) -> Result<(Tensor, Tensor)> {
        let (b, l) = (truth.batch, truth.len);
        let dev = &self.device;
        let (pl_labels, pl_mask) = truth.plddt_labels(pred_host);
        let pl = losses::masked_cross_entropy(
            &self.decoder.plddt_logits(h).map_err(wrap)?,
            &Tensor::from_vec(pl_labels, (b, l), dev)?,
            &bool_tensor(&pl_mask, (b, l), DType::F32, dev)?,
        )?;
        let pa = losses::pae_loss(
            &g.pair,
            &Tensor::from_vec(truth.aligned_error_labels(pred_host), (b, l, l), dev)?,
            &g.pair_mask,
        )?;
        Ok((pl, pa))
    }

    /// The decoder's token-embedding table `[4101, d_model]` with rows 0..n_codes replaced by
    /// `decoder_input(e_k)`: a stage-1 decoder saved with this table decodes token ids exactly
    /// as it decoded the codebook vectors during training (the input is per-position).
    pub fn fused_token_embeddings(&self) -> Result<Tensor> {
        let rows = esm3_models::schema::vocab::STRUCTURE_EMBED as u32;
        let ids = Tensor::arange(0u32, rows, &self.device)?.unsqueeze(0)?;
        let table = self.decoder.embed_tokens(&ids).map_err(wrap)?.squeeze(0)?;
        let k = self.config.encoder.n_codes;
        let codes = self
            .decoder_input
            .forward(&self.codebook.embeddings().to_dtype(self.dtype)?)?;
        Tensor::cat(&[codes, table.narrow(0, k, rows as usize - k)?], 0)?
            .detach()
            .contiguous()
    }
}

/// The rows of `z` `[n, d]` marked valid, detached, on the host.
/// The value of each loss the stage computed, by name, for the log.
fn scalar_values(
    losses: &[(&'static str, Option<&Tensor>)],
) -> Result<BTreeMap<&'static str, f32>> {
    let mut values = BTreeMap::new();
    for &(name, t) in losses {
        if let Some(t) = t {
            values.insert(name, t.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        }
    }
    Ok(values)
}

/// The predicted backbone, pair logits and geometric losses of one batch.
struct GeometryLosses {
    bb_pred: Tensor,
    pair: Tensor,
    pair_mask: Tensor,
    distance: Tensor,
    direction: Tensor,
    distogram: Tensor,
    binned_direction: Tensor,
}

fn valid_rows(z: &Tensor, valid: &[bool]) -> Result<Vec<Vec<f32>>> {
    let all = z
        .detach()
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?;
    Ok(all
        .into_iter()
        .zip(valid)
        .filter(|(_, &v)| v)
        .map(|(r, _)| r)
        .collect())
}

/// `[B, L, 3, 3]` tensor → `[B·L]` host backbones (f64), detached.
fn host_backbone(bb: &Tensor) -> Result<Vec<[P3; 3]>> {
    let v = bb
        .detach()
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    Ok(v.chunks(9)
        .map(|c| std::array::from_fn(|a| std::array::from_fn(|k| c[a * 3 + k])))
        .collect())
}

/// Per-protein superposed backbone RMSD and global LDDT-Cα, averaged over the batch.
pub fn reconstruction_metrics(truth: &TrueBackbone, pred: &[[P3; 3]]) -> ReconstructionMetrics {
    let (b, l) = (truth.batch, truth.len);
    let to32 = |p: P3| [p[0] as f32, p[1] as f32, p[2] as f32];
    let mut m = ReconstructionMetrics::default();
    for r in 0..b {
        let rows = r * l..(r + 1) * l;
        let valid = &truth.valid[rows.clone()];
        if !valid.iter().any(|&v| v) {
            continue;
        }
        let atoms = |src: &[[P3; 3]]| -> Vec<[f32; 3]> {
            src[rows.clone()]
                .iter()
                .flatten()
                .map(|&p| to32(p))
                .collect()
        };
        let atom_mask: Vec<bool> = valid.iter().flat_map(|&v| [v; 3]).collect();
        let (rmsd, _) = superposed_rmsd(&atoms(pred), &atoms(&truth.coords), Some(&atom_mask))
            .expect("at least one valid atom");
        let ca = |src: &[[P3; 3]]| -> Vec<[f32; 3]> {
            src[rows.clone()].iter().map(|bb| to32(bb[1])).collect()
        };
        let score = lddt(&ca(pred), &ca(&truth.coords), valid, losses::LDDT_CUTOFF);
        m.rmsd += rmsd;
        m.lddt_ca += score.global;
        m.proteins += 1;
    }
    if m.proteins > 0 {
        m.rmsd /= m.proteins as f64;
        m.lddt_ca /= m.proteins as f64;
    }
    m
}
