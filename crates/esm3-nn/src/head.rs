//! The output head: Linear → GELU → LayerNorm → Linear (spec §2.8).

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, LayerNorm, Linear, VarBuilder};

use crate::norm::layer_norm;

pub struct RegressionHead {
    dense: Linear,
    norm: LayerNorm,
    output: Linear,
}

impl RegressionHead {
    pub fn new(d_model: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dense: linear(d_model, d_model, vb.pp("0"))?,
            norm: layer_norm(d_model, true, vb.pp("2"))?,
            output: linear(d_model, out, vb.pp("3"))?,
        })
    }
}

impl Module for RegressionHead {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.dense.forward(x)?.gelu_erf()?;
        self.output.forward(&self.norm.forward(&h)?)
    }
}
