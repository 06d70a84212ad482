//! LayerNorm with or without a learned bias.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::LAYER_NORM_EPS;

/// A LayerNorm over the last dimension.
///
/// Inference takes candle's fused kernel; that kernel has no backward pass, so when the input or
/// the weights track gradients (training) f32 CPU tensors take [`crate::fused::layer_norm`] and
/// anything else the same formula composed from differentiable ops.
/// Without a learned bias we still hold a zero bias: the fused kernel needs one, and adding zero
/// changes no bit of the result.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Weight, bias and epsilon, for kernels that fuse the normalisation into another pass.
    pub(crate) fn parts(&self) -> (&Tensor, &Tensor, f64) {
        (&self.weight, &self.bias, self.eps)
    }

    /// The normalisation written out with differentiable ops (f32 internally, as the kernel).
    pub fn forward_differentiable(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let internal = match dtype {
            DType::F16 | DType::BF16 => DType::F32,
            d => d,
        };
        let x = x.to_dtype(internal)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let tracking = x.track_op() || self.weight.track_op() || self.bias.track_op();
        if !tracking && x.is_contiguous() {
            candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32)
        } else if let Some(y) = crate::fused::layer_norm(x, &self.weight, &self.bias, self.eps)? {
            Ok(y)
        } else {
            self.forward_differentiable(x)
        }
    }
}

pub fn layer_norm(size: usize, bias: bool, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(size, "weight")?;
    let bias = if bias {
        vb.get(size, "bias")?
    } else {
        Tensor::zeros(size, weight.dtype(), weight.device())?
    };
    Ok(LayerNorm::new(weight, bias, LAYER_NORM_EPS))
}

/// Softmax over the last dimension: candle's fused kernel for inference, the composed
/// (differentiable) formula when `x` tracks gradients.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.track_op() && x.is_contiguous() {
        return candle_nn::ops::softmax_last_dim(x);
    }
    // The max only shifts the exponent for stability; it carries no gradient.
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn composed_forms_equal_the_fused_kernels() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (3, 5, 16), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.1, 16, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, 16, &dev).unwrap();
        let ln = LayerNorm::new(w, b, LAYER_NORM_EPS);
        let fused = ln.forward(&x).unwrap();
        let composed = ln.forward_differentiable(&x).unwrap();
        let d = (fused - composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);

        let fused = softmax_last_dim(&x).unwrap();
        let v = Var::from_tensor(&x).unwrap();
        let composed = softmax_last_dim(v.as_tensor()).unwrap();
        let d = (fused - composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
