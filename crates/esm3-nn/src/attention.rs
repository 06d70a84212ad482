//! Multi-head self-attention with QK-LayerNorm over the full width and rotary (spec §2.3).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::linear::{linear_b, Linear};

use crate::context::AttentionContext;
use crate::norm::{layer_norm, LayerNorm};
use crate::rotary::apply_rotary;

pub struct MultiHeadAttention {
    layernorm: LayerNorm,
    qkv: Linear,
    out_proj: Linear,
    q_ln: Option<LayerNorm>,
    k_ln: Option<LayerNorm>,
    n_heads: usize,
    d_head: usize,
}

impl MultiHeadAttention {
    /// `vb` points at `…attn`. The LayerNorm before the QKV projection always has a bias;
    /// the QK-LayerNorms and the Linear layers follow `bias`.
    pub fn new(
        d_model: usize,
        n_heads: usize,
        bias: bool,
        qk_layernorm: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let layernorm = layer_norm(d_model, true, vb.pp("layernorm_qkv.0"))?;
        let qkv = linear_b(d_model, 3 * d_model, bias, vb.pp("layernorm_qkv.1"))?;
        let out_proj = linear_b(d_model, d_model, bias, vb.pp("out_proj"))?;
        let (q_ln, k_ln) = if qk_layernorm {
            (
                Some(layer_norm(d_model, bias, vb.pp("q_ln"))?),
                Some(layer_norm(d_model, bias, vb.pp("k_ln"))?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            layernorm,
            qkv,
            out_proj,
            q_ln,
            k_ln,
            n_heads,
            d_head: d_model / n_heads,
        })
    }

    pub fn forward(&self, x: &Tensor, ctx: &AttentionContext) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let qkv = self.qkv.forward(&self.layernorm.forward(x)?)?;
        let mut q = qkv.narrow(D::Minus1, 0, d)?;
        let mut k = qkv.narrow(D::Minus1, d, d)?;
        let v = qkv.narrow(D::Minus1, 2 * d, d)?;
        if let Some(ln) = &self.q_ln {
            q = ln.forward(&q.contiguous()?)?;
        }
        if let Some(ln) = &self.k_ln {
            k = ln.forward(&k.contiguous()?)?;
        }
        let heads = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, l, self.n_heads, self.d_head))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = apply_rotary(&heads(q)?, &ctx.cos, &ctx.sin)?;
        let k = apply_rotary(&heads(k)?, &ctx.cos, &ctx.sin)?;
        let v = heads(v.contiguous()?)?;
        let scale = 1.0 / (self.d_head as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = &ctx.mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = crate::norm::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))?;
        self.out_proj.forward(&context)
    }
}
