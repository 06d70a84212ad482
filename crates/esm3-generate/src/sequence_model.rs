//! What scoring and embedding need from a model: sequence logits and embeddings for a batch of
//! token rows. ESM3 and ESM C both provide it.

use candle_core::Tensor;

use esm3_models::model_dir::LoadedModel;
use esm3_models::{Esm3, Esmc, EsmcInput, HostArray};
use esm3_tokens::sequence as seq;

use crate::config::PaddingAttention;
use crate::iterative::{batch_logits, GenerationError};
use crate::tensor::ProteinTensor;

pub struct SequenceOutput {
    /// `[B, L, 64]`
    pub logits: Tensor,
    /// `[B, L, d]`: ESM3's pre-final-norm stream, ESM C's post-norm output (as each reference defines it).
    pub embeddings: Tensor,
}

pub trait SequenceModel {
    /// Runs token rows (each with BOS/EOS) as one right-padded batch; padding never influences
    /// real positions.
    fn sequence_forward(&self, rows: &[Vec<i64>]) -> Result<SequenceOutput, GenerationError>;
}

impl SequenceModel for Esm3 {
    fn sequence_forward(&self, rows: &[Vec<i64>]) -> Result<SequenceOutput, GenerationError> {
        let batch: Vec<ProteinTensor> = rows
            .iter()
            .map(|r| ProteinTensor {
                sequence: Some(r.clone()),
                ..Default::default()
            })
            .collect();
        let out = batch_logits(self, &batch, PaddingAttention::Masked)?;
        Ok(SequenceOutput {
            logits: out.sequence_logits,
            embeddings: out.embeddings,
        })
    }
}

impl SequenceModel for Esmc {
    fn sequence_forward(&self, rows: &[Vec<i64>]) -> Result<SequenceOutput, GenerationError> {
        let l = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut data = Vec::with_capacity(rows.len() * l);
        for r in rows {
            data.extend_from_slice(r);
            data.extend(std::iter::repeat_n(seq::PAD as i64, l - r.len()));
        }
        let out = self.forward(&EsmcInput {
            sequence_tokens: Some(HostArray::new(vec![rows.len(), l], data)),
            sequence_id: None,
        })?;
        Ok(SequenceOutput {
            logits: out.sequence_logits,
            embeddings: out.embeddings,
        })
    }
}

impl SequenceModel for LoadedModel {
    fn sequence_forward(&self, rows: &[Vec<i64>]) -> Result<SequenceOutput, GenerationError> {
        match self {
            LoadedModel::Esm3(m) => m.sequence_forward(rows),
            LoadedModel::Esmc(m) => m.sequence_forward(rows),
            #[allow(unreachable_patterns)]
            _ => Err(GenerationError::Invalid(
                "this model type has no sequence track (use an esm3 or esmc model)".into(),
            )),
        }
    }
}
