//! Pre-LayerNorm feed-forward networks (spec §2.5).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::linear::{linear_b, Linear};

use crate::norm::{layer_norm, LayerNorm};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnKind {
    /// LN → Linear(d, 2h) → SiLU(first half) · second half → Linear(h, d).
    SwiGlu,
    /// LN → Linear(d, h) → GELU (erf) → Linear(h, d).
    Gelu,
}

/// SwiGLU hidden width: `expansion_ratio · d` rounded up to a multiple of 256, computed in
/// double precision like the reference's Python float arithmetic.
pub fn swiglu_hidden(d_model: usize, expansion_ratio: f64) -> usize {
    (((expansion_ratio * d_model as f64) + 255.0) / 256.0).floor() as usize * 256
}

pub struct FeedForward {
    norm: LayerNorm,
    up: Linear,
    down: Linear,
    kind: FfnKind,
}

impl FeedForward {
    /// `vb` points at `…ffn`; tensor indices are the reference's `nn.Sequential` positions.
    pub fn new(
        d_model: usize,
        kind: FfnKind,
        expansion_ratio: f64,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let norm = layer_norm(d_model, true, vb.pp("0"))?;
        let (up, down) = match kind {
            FfnKind::SwiGlu => {
                let h = swiglu_hidden(d_model, expansion_ratio);
                (
                    linear_b(d_model, 2 * h, bias, vb.pp("1"))?,
                    linear_b(h, d_model, bias, vb.pp("3"))?,
                )
            }
            FfnKind::Gelu => {
                let h = (expansion_ratio * d_model as f64) as usize;
                (
                    linear_b(d_model, h, bias, vb.pp("1"))?,
                    linear_b(h, d_model, bias, vb.pp("3"))?,
                )
            }
        };
        Ok(Self {
            norm,
            up,
            down,
            kind,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.up.forward(&self.norm.forward(x)?)?;
        let h = match self.kind {
            FfnKind::SwiGlu => {
                let half = h.dim(D::Minus1)? / 2;
                let a = h.narrow(D::Minus1, 0, half)?;
                let g = h.narrow(D::Minus1, half, half)?;
                (candle_nn::ops::silu(&a)? * g)?
            }
            FfnKind::Gelu => crate::fused::gelu_erf(&h)?,
        };
        self.down.forward(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::swiglu_hidden;

    #[test]
    fn hidden_sizes_match_the_reference_models() {
        assert_eq!(swiglu_hidden(1536, 8.0 / 3.0), 4096);
        assert_eq!(swiglu_hidden(960, 8.0 / 3.0), 2560);
        assert_eq!(swiglu_hidden(1152, 8.0 / 3.0), 3072);
        assert_eq!(swiglu_hidden(1280, 8.0 / 3.0), 3584);
        assert_eq!(swiglu_hidden(1024, 4.0), 4096);
        assert_eq!(swiglu_hidden(64, 8.0 / 3.0), 256);
    }
}
