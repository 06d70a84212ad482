//! ESM C: the sequence-only trunk on the same block stack (spec §2.10).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};
use esm3_nn::{AttentionContext, RegressionHead, TransformerStack};
use esm3_tokens::sequence as seq_vocab;

use crate::array::{expect_shape, HostArray};
use crate::config::EsmcConfig;
use crate::error::{ModelError, Result};
use crate::schema::vocab;

#[derive(Clone, Debug, Default)]
pub struct EsmcInput {
    /// `[B, L]` sequence ids, right-padded with `<pad>` (1).
    pub sequence_tokens: Option<HostArray<i64>>,
    /// `[B, L]`; attention only within equal ids. Default: `token != <pad>`, so real tokens see
    /// only real tokens (as the reference builds it).
    pub sequence_id: Option<HostArray<i64>>,
}

pub struct EsmcOutput {
    pub sequence_logits: Tensor,
    /// Final-normed output (unlike ESM3, whose embeddings are pre-norm).
    pub embeddings: Tensor,
    /// Every block's un-normed output, `[n_layers, B, L, d]`.
    pub hidden_states: Tensor,
}

impl EsmcOutput {
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("sequence_logits", &self.sequence_logits),
            ("embeddings", &self.embeddings),
            ("hidden_states", &self.hidden_states),
        ]
    }
}

pub struct Esmc {
    config: EsmcConfig,
    embed: Embedding,
    transformer: TransformerStack,
    sequence_head: RegressionHead,
    device: Device,
    dtype: DType,
}

impl Esmc {
    pub fn new(config: &EsmcConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.d_model;
        Ok(Self {
            config: config.clone(),
            embed: embedding(vocab::SEQUENCE, d, vb.pp("embed"))?,
            transformer: TransformerStack::new(
                config.n_layers,
                |i| config.block(i),
                true,
                d,
                vb.pp("transformer"),
            )?,
            sequence_head: RegressionHead::new(d, vocab::SEQUENCE, vb.pp("sequence_head"))?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &EsmcConfig {
        &self.config
    }

    pub fn forward(&self, input: &EsmcInput) -> Result<EsmcOutput> {
        let tokens = input
            .sequence_tokens
            .as_ref()
            .ok_or_else(|| ModelError::Input("ESM C needs `sequence_tokens` [B, L]".into()))?;
        expect_shape("sequence_tokens", &tokens.shape, &[None, None])?;
        let (b, l) = (tokens.shape[0], tokens.shape[1]);
        if b == 0 || l == 0 {
            return Err(ModelError::Input(format!(
                "empty input: batch {b}, length {l}"
            )));
        }
        tokens.check_range("sequence_tokens", vocab::SEQUENCE as i64, "sequence ids")?;
        let sequence_id = match &input.sequence_id {
            Some(s) => {
                expect_shape("sequence_id", &s.shape, &[Some(b), Some(l)])?;
                s.data.clone()
            }
            None => tokens
                .data
                .iter()
                .map(|&t| i64::from(t != seq_vocab::PAD as i64))
                .collect(),
        };
        let x = self.embed.forward(&tokens.to_tensor_u32(&self.device)?)?;
        let d_head = self.config.d_model / self.config.n_heads;
        let ctx =
            AttentionContext::new(d_head, b, l, Some(&sequence_id), self.dtype, &self.device)?;
        let out = self.transformer.forward(&x, Some(&ctx), None, true)?;
        let hidden = out.hidden_states.unwrap_or_default();
        Ok(EsmcOutput {
            sequence_logits: self
                .sequence_head
                .forward(&out.normed)?
                .to_dtype(DType::F32)?,
            embeddings: out.normed.to_dtype(DType::F32)?,
            hidden_states: Tensor::stack(&hidden, 0)?.to_dtype(DType::F32)?,
        })
    }
}
