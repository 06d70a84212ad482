//! The trunk's loss on one output head, shared by training (`trunk`) and held-out evaluation
//! (`eval`) so both score exactly the same thing. The VQ-VAE's logits-level losses are in
//! `vqvae::losses`.

use candle_core::{DType, Tensor, D};
use esm3_models::schema::vocab;
use esm3_models::{Esm3, Esm3Head, HostArray};

use crate::Result;

/// Mean cross-entropy of `head` over positions whose target is ≥ 0, with the head applied to
/// those rows only (the structure head is 4096 wide: most positions are not supervised).
/// Returns (loss, number of supervised targets, correct argmax predictions).
pub fn head_cross_entropy(
    model: &Esm3,
    head: Esm3Head,
    normed: &Tensor,
    targets: &HostArray<i64>,
) -> Result<Option<(Tensor, usize, usize)>> {
    let d = normed.dim(D::Minus1)?;
    let flat = normed.reshape(((), d))?;
    let depth = if head == Esm3Head::Function {
        vocab::FUNCTION_DEPTH
    } else {
        1
    };
    let positions = targets.data.len() / depth;
    let mut rows = Vec::new();
    for p in 0..positions {
        if targets.data[p * depth..(p + 1) * depth]
            .iter()
            .any(|&t| t >= 0)
        {
            rows.push(p as u32);
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let dev = normed.device();
    let idx = Tensor::from_vec(rows.clone(), rows.len(), dev)?;
    let mut logits = model.head(head, &flat.index_select(&idx, 0)?)?;
    let mut tgt: Vec<i64> = Vec::with_capacity(rows.len() * depth);
    for &r in &rows {
        tgt.extend_from_slice(&targets.data[r as usize * depth..(r as usize + 1) * depth]);
    }
    if depth > 1 {
        logits = logits.reshape((rows.len() * depth, vocab::FUNCTION))?;
    }
    // Slots without a target (function rows with some ignored slots).
    let keep: Vec<u32> = (0..tgt.len() as u32)
        .filter(|&i| tgt[i as usize] >= 0)
        .collect();
    if keep.len() != tgt.len() {
        logits = logits.index_select(&Tensor::from_vec(keep.clone(), keep.len(), dev)?, 0)?;
    }
    let labels: Vec<u32> = keep.iter().map(|&i| tgt[i as usize] as u32).collect();
    let n = labels.len();
    let labels = Tensor::from_vec(labels, (n, 1), dev)?;
    let every = Tensor::ones(n, DType::F32, dev)?;
    let loss = match esm3_nn::fused::masked_cross_entropy(&logits, &labels.squeeze(1)?, &every)? {
        Some(loss) => loss,
        None => {
            let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            (log_probs.gather(&labels, 1)?.sum_all()?.neg()? / n as f64)?
        }
    };
    let predicted = logits.detach().argmax(D::Minus1)?.to_vec1::<u32>()?;
    let truth = labels.squeeze(1)?.to_vec1::<u32>()?;
    let correct = predicted.iter().zip(&truth).filter(|(a, b)| a == b).count();
    Ok(Some((loss, n, correct)))
}
