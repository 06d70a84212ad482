//! The ESM3 trunk: input fusion of all tracks, a transformer stack with geometric attention in
//! block 0, and six output heads (spec §2.7–2.9).

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{embedding, Embedding, VarBuilder};
use esm3_nn::linear::{linear, Linear};
use esm3_nn::{AttentionContext, GeometryContext, RegressionHead, TransformerStack};

use crate::array::HostArray;
use crate::config::Esm3Config;
use crate::error::Result;
use crate::schema::vocab;

mod input;
pub use input::Esm3Input;
use input::Prepared;

/// Structure-track special ids (spec §1.2).
pub mod structure_ids {
    pub const MASK: i64 = 4096;
    pub const EOS: i64 = 4097;
    pub const BOS: i64 = 4098;
    pub const PAD: i64 = 4099;
    pub const CHAINBREAK: i64 = 4100;
}

/// Outputs named like the reference `ESMOutput`.
pub struct Esm3Output {
    pub sequence_logits: Tensor,
    pub structure_logits: Tensor,
    pub secondary_structure_logits: Tensor,
    pub sasa_logits: Tensor,
    /// `[B, L, 8, 260]`
    pub function_logits: Tensor,
    pub residue_logits: Tensor,
    /// The last block's output before the final norm (spec §11 item 11).
    pub embeddings: Tensor,
}

impl Esm3Output {
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("sequence_logits", &self.sequence_logits),
            ("structure_logits", &self.structure_logits),
            (
                "secondary_structure_logits",
                &self.secondary_structure_logits,
            ),
            ("sasa_logits", &self.sasa_logits),
            ("function_logits", &self.function_logits),
            ("residue_logits", &self.residue_logits),
            ("embeddings", &self.embeddings),
        ]
    }
}

pub struct Esm3 {
    config: Esm3Config,
    sequence_embed: Embedding,
    plddt_projection: Linear,
    structure_per_res_plddt_projection: Linear,
    structure_tokens_embed: Embedding,
    ss8_embed: Embedding,
    sasa_embed: Embedding,
    function_embed: Vec<Embedding>,
    /// EmbeddingBag table with row 0 zeroed: `padding_idx = 0` entries are skipped in the sum.
    residue_embed: Embedding,
    transformer: TransformerStack,
    sequence_head: RegressionHead,
    structure_head: RegressionHead,
    ss8_head: RegressionHead,
    sasa_head: RegressionHead,
    function_head: RegressionHead,
    residue_head: RegressionHead,
    device: Device,
    dtype: DType,
}

/// The 16 RBF features of a value in 0..1: centres as torch's `linspace(0, 1, 16)` computes them
/// (forward from 0 for the first half, backward from 1 for the second), width 1/16.
fn rbf16(values: &[f32]) -> Vec<f32> {
    const N: usize = 16;
    let step = 1.0f32 / (N as f32 - 1.0);
    let centres: [f32; N] = std::array::from_fn(|i| {
        if i < N / 2 {
            step * i as f32
        } else {
            1.0 - step * (N - i - 1) as f32
        }
    });
    let std = 1.0f32 / N as f32;
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        for c in centres {
            let z = (v - c) / std;
            out.push((-(z * z)).exp());
        }
    }
    out
}

impl Esm3 {
    pub fn new(config: &Esm3Config, vb: VarBuilder) -> Result<Self> {
        let d = config.d_model;
        let enc = vb.pp("encoder");
        let residue_table = enc.pp("residue_embed").get((vocab::RESIDUE, d), "weight")?;
        let zero_row = Tensor::zeros((1, d), residue_table.dtype(), residue_table.device())?;
        let residue_table = Tensor::cat(
            &[&zero_row, &residue_table.narrow(0, 1, vocab::RESIDUE - 1)?],
            0,
        )?;
        let n_layers = config.n_layers;
        let heads = vb.pp("output_heads");
        Ok(Self {
            config: config.clone(),
            sequence_embed: embedding(vocab::SEQUENCE, d, enc.pp("sequence_embed"))?,
            plddt_projection: linear(16, d, enc.pp("plddt_projection"))?,
            structure_per_res_plddt_projection: linear(
                16,
                d,
                enc.pp("structure_per_res_plddt_projection"),
            )?,
            structure_tokens_embed: embedding(
                vocab::STRUCTURE_EMBED,
                d,
                enc.pp("structure_tokens_embed"),
            )?,
            ss8_embed: embedding(vocab::SS8, d, enc.pp("ss8_embed"))?,
            sasa_embed: embedding(vocab::SASA, d, enc.pp("sasa_embed"))?,
            function_embed: (0..vocab::FUNCTION_DEPTH)
                .map(|k| {
                    embedding(
                        vocab::FUNCTION,
                        d / 8,
                        enc.pp(format!("function_embed.{k}")),
                    )
                })
                .collect::<candle_core::Result<_>>()?,
            residue_embed: Embedding::new(residue_table, d),
            transformer: TransformerStack::new(
                n_layers,
                |i| config.block(i),
                true,
                d,
                vb.pp("transformer"),
            )?,
            sequence_head: RegressionHead::new(d, vocab::SEQUENCE, heads.pp("sequence_head"))?,
            structure_head: RegressionHead::new(
                d,
                vocab::STRUCTURE_LOGITS,
                heads.pp("structure_head"),
            )?,
            ss8_head: RegressionHead::new(d, vocab::SS8, heads.pp("ss8_head"))?,
            sasa_head: RegressionHead::new(d, vocab::SASA, heads.pp("sasa_head"))?,
            function_head: RegressionHead::new(
                d,
                vocab::FUNCTION * vocab::FUNCTION_DEPTH,
                heads.pp("function_head"),
            )?,
            residue_head: RegressionHead::new(d, vocab::RESIDUE, heads.pp("residue_head"))?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &Esm3Config {
        &self.config
    }

    pub fn forward(&self, input: &Esm3Input) -> Result<Esm3Output> {
        let hidden = self.forward_hidden(input)?;
        let (b, l) = (hidden.normed.dim(0)?, hidden.normed.dim(1)?);
        let h = &hidden.normed;
        Ok(Esm3Output {
            sequence_logits: self.head(Esm3Head::Sequence, h)?,
            structure_logits: self.head(Esm3Head::Structure, h)?,
            secondary_structure_logits: self.head(Esm3Head::SecondaryStructure, h)?,
            sasa_logits: self.head(Esm3Head::Sasa, h)?,
            function_logits: self.head(Esm3Head::Function, h)?.reshape((
                b,
                l,
                vocab::FUNCTION_DEPTH,
                vocab::FUNCTION,
            ))?,
            residue_logits: self.head(Esm3Head::Residue, h)?,
            embeddings: hidden.last.to_dtype(DType::F32)?,
        })
    }

    /// The trunk without the heads: for training (heads applied to supervised rows only) and
    /// for callers that need one head or the embeddings.
    pub fn forward_hidden(&self, input: &Esm3Input) -> Result<Esm3Hidden> {
        let p = Prepared::new(input)?;
        let (b, l) = (p.batch, p.len);
        let dev = &self.device;

        let ids = |a: &HostArray<i64>| a.to_tensor_u32(dev);
        // pLDDT arrays are [B, L], or [1, L] / [B, 1] and broadcast like the reference.
        let rbf = |a: &HostArray<f32>| -> Result<Tensor> {
            Ok(
                Tensor::from_vec(rbf16(&a.data), (a.shape[0], a.shape[1], 16), dev)?
                    .to_dtype(self.dtype)?,
            )
        };
        let avg = self.plddt_projection.forward(&rbf(&p.average_plddt)?)?;
        let per_res = self
            .structure_per_res_plddt_projection
            .forward(&rbf(&p.per_res_plddt)?)?;

        let mut x = self.sequence_embed.forward(&ids(&p.sequence)?)?;
        x = x.broadcast_add(&avg)?;
        x = (x + per_res)?;
        x = (x + self.structure_tokens_embed.forward(&ids(&p.structure)?)?)?;
        x = (x + self.ss8_embed.forward(&ids(&p.ss8)?)?)?;
        x = (x + self.sasa_embed.forward(&ids(&p.sasa)?)?)?;
        let fun = ids(&p.function)?;
        let parts = (0..vocab::FUNCTION_DEPTH)
            .map(|k| self.function_embed[k].forward(&fun.narrow(2, k, 1)?.squeeze(2)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        x = (x + Tensor::cat(&parts, D::Minus1)?)?;
        if p.residue.data.iter().any(|&v| v != 0) {
            // An all-empty bag contributes exactly zero; skip the [B, L, 16, d] lookup then.
            x = (x + self.residue_embed.forward(&ids(&p.residue)?)?.sum(2)?)?;
        }

        let d_head = self.config.d_model / self.config.n_heads;
        let seq_id = p.sequence_id.as_ref().map(|s| s.data.as_slice());
        let attn_ctx = AttentionContext::new(d_head, b, l, seq_id, self.dtype, dev)?;
        let geo = GeometryContext::new(b, l, &p.backbone, seq_id, &p.chain_id, dev)?;
        let out = self
            .transformer
            .forward(&x, Some(&attn_ctx), Some(&geo), false)?;
        Ok(Esm3Hidden {
            normed: out.normed,
            last: out.last,
        })
    }

    /// One output head applied to final-norm states `h` (`[..., d_model]`), in f32. Function
    /// logits come out flat (`[..., 8·260]`).
    pub fn head(&self, head: Esm3Head, h: &Tensor) -> Result<Tensor> {
        let module = match head {
            Esm3Head::Sequence => &self.sequence_head,
            Esm3Head::Structure => &self.structure_head,
            Esm3Head::SecondaryStructure => &self.ss8_head,
            Esm3Head::Sasa => &self.sasa_head,
            Esm3Head::Function => &self.function_head,
            Esm3Head::Residue => &self.residue_head,
        };
        Ok(module.forward(h)?.to_dtype(DType::F32)?)
    }
}

/// The trunk's final hidden states, before the output heads.
pub struct Esm3Hidden {
    /// After the final LayerNorm: what every head reads.
    pub normed: Tensor,
    /// The last block's output before the final norm (the reference's `embeddings`).
    pub last: Tensor,
}

/// The output heads of ESM3, one per output track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Esm3Head {
    Sequence,
    Structure,
    SecondaryStructure,
    Sasa,
    Function,
    Residue,
}

#[cfg(test)]
mod tests {
    use super::rbf16;

    #[test]
    fn rbf_peaks_at_its_centres() {
        let f = rbf16(&[0.0, 1.0, 1.0 / 3.0]);
        assert_eq!(f[0], 1.0);
        assert!(f[2] < 0.02 && f[1] > 0.3);
        assert!((f[16 + 15] - 1.0).abs() < 1e-6);
        assert!((f[32 + 5] - 1.0).abs() < 1e-5);
    }
}
