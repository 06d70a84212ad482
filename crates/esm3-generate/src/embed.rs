//! Embeddings per residue and per protein.
//!
//! Policy: per-residue embeddings cover the residues only (the BOS and EOS slots are dropped;
//! chain-break positions are kept so rows align with the input string); the mean is over those
//! same rows. ESM3 embeddings are the last block's output before the final norm, ESM C's after
//! it — each as its reference defines `embeddings`.

use candle_core::Tensor;
use esm3_tokens::SequenceTokenizer;

use crate::batching::length_batches;
use crate::iterative::GenerationError;
use crate::sequence_model::SequenceModel;

pub struct Embedding {
    /// `[L, d]`, f32.
    pub per_residue: Tensor,
    /// `[d]`, f32.
    pub mean: Tensor,
}

/// Embeds sequences in batches of at most `batch_size` records of similar length
/// ([`length_batches`]), returned in input order; a sequence's embedding does not depend on
/// its batch.
pub fn embed_sequences(
    model: &dyn SequenceModel,
    sequences: &[&str],
    batch_size: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<Vec<Embedding>, GenerationError> {
    let tok = SequenceTokenizer::strict();
    let rows: Vec<Vec<i64>> = sequences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            tok.encode(s)
                .map(|ids| ids.into_iter().map(i64::from).collect())
                .map_err(|e| GenerationError::Prompt {
                    prompt: i,
                    message: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
    let mut out: Vec<Option<Embedding>> = (0..rows.len()).map(|_| None).collect();
    for chunk in &length_batches(&lengths, batch_size) {
        let batch: Vec<Vec<i64>> = chunk.iter().map(|&i| rows[i].clone()).collect();
        let result = model.sequence_forward(&batch)?;
        for (b, &i) in chunk.iter().enumerate() {
            let per_residue = result
                .embeddings
                .get(b)?
                .narrow(0, 1, rows[i].len() - 2)?
                .contiguous()?;
            let mean = per_residue.mean(0)?;
            out[i] = Some(Embedding { per_residue, mean });
        }
        on_batch(chunk.len());
    }
    Ok(out
        .into_iter()
        .map(|e| e.expect("every sequence is in one batch"))
        .collect())
}
