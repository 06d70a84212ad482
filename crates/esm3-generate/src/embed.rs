//! Embeddings per residue and per protein.
//!
//! Policy: per-residue embeddings cover the residues only (the BOS and EOS slots are dropped;
//! chain-break positions are kept so rows align with the input string); the mean is over those
//! same rows. ESM3 embeddings are the last block's output before the final norm, ESM C's after
//! it — each as its reference defines `embeddings`.

use candle_core::Tensor;
use esm3_tokens::SequenceTokenizer;

use crate::iterative::GenerationError;
use crate::sequence_model::SequenceModel;

pub struct Embedding {
    /// `[L, d]`, f32.
    pub per_residue: Tensor,
    /// `[d]`, f32.
    pub mean: Tensor,
}

/// Embeds sequences in batches of `batch_size`.
pub fn embed_sequences(
    model: &dyn SequenceModel,
    sequences: &[&str],
    batch_size: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<Vec<Embedding>, GenerationError> {
    let tok = SequenceTokenizer::strict();
    let mut out = Vec::with_capacity(sequences.len());
    for (chunk_index, chunk) in sequences.chunks(batch_size.max(1)).enumerate() {
        let rows: Vec<Vec<i64>> = chunk
            .iter()
            .enumerate()
            .map(|(i, s)| {
                tok.encode(s)
                    .map(|ids| ids.into_iter().map(i64::from).collect())
                    .map_err(|e| GenerationError::Prompt {
                        prompt: chunk_index * batch_size.max(1) + i,
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let result = model.sequence_forward(&rows)?;
        for (b, r) in rows.iter().enumerate() {
            let per_residue = result
                .embeddings
                .get(b)?
                .narrow(0, 1, r.len() - 2)?
                .contiguous()?;
            let mean = per_residue.mean(0)?;
            out.push(Embedding { per_residue, mean });
        }
        on_batch(chunk.len());
    }
    Ok(out)
}
