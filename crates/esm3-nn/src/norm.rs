//! LayerNorm with or without a learned bias.

use candle_core::{Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::LAYER_NORM_EPS;

/// A LayerNorm over the last dimension. Without a bias we still hand candle a zero bias: it
/// then takes its fused kernel, and adding zero changes no bit of the result.
pub fn layer_norm(size: usize, bias: bool, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(size, "weight")?;
    let bias = if bias {
        vb.get(size, "bias")?
    } else {
        Tensor::zeros(size, weight.dtype(), weight.device())?
    };
    Ok(LayerNorm::new(weight, bias, LAYER_NORM_EPS))
}
