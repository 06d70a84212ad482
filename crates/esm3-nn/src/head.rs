//! The output head: Linear → GELU → LayerNorm → Linear (spec §2.8).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::linear::{linear, Linear};

use crate::norm::{layer_norm, LayerNorm};

pub struct RegressionHead {
    dense: Linear,
    norm: LayerNorm,
    output: Linear,
}

impl RegressionHead {
    pub fn new(d_model: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_names(d_model, out, ["0", "2", "3"], vb)
    }

    /// The same head under other sub-module names: the VQ-VAE decoder's `RegressionHead` class
    /// names its layers `dense`, `norm`, `output` instead of `nn.Sequential` indices.
    pub fn with_names(
        d_model: usize,
        out: usize,
        names: [&str; 3],
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            dense: linear(d_model, d_model, vb.pp(names[0]))?,
            norm: layer_norm(d_model, true, vb.pp(names[1]))?,
            output: linear(d_model, out, vb.pp(names[2]))?,
        })
    }

    /// A head whose hidden layer is wider than its input (the function decoder's heads use
    /// `hidden_dim = 4·d_model`).
    pub fn with_hidden(d_model: usize, hidden: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dense: linear(d_model, hidden, vb.pp("0"))?,
            norm: layer_norm(hidden, true, vb.pp("2"))?,
            output: linear(hidden, out, vb.pp("3"))?,
        })
    }
}

impl Module for RegressionHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = crate::fused::gelu_erf(&self.dense.forward(x)?)?;
        self.output.forward(&self.norm.forward(&h)?)
    }
}
