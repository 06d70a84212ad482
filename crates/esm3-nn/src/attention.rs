//! Multi-head self-attention with QK-LayerNorm over the full width and rotary (spec §2.3).

use candle_core::{DType, Module, Result, Tensor, D};
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
        let (q, k, v) = match self.split_heads_fused(&qkv, ctx)? {
            Some(qkv) => qkv,
            None => self.split_heads_composed(&qkv, ctx)?,
        };
        let scale = 1.0 / (self.d_head as f64).sqrt();
        if let Some(context) =
            crate::attention_kernel::fused_attention(&q, &k, &v, ctx.mask.as_ref(), scale as f32)?
        {
            return self.out_proj.forward(&context);
        }
        if let Some(blas) = crate::blas::get() {
            let training = crate::attention_grad::attention(
                &q,
                &k,
                &v,
                ctx.mask.as_ref(),
                scale as f32,
                blas,
            )?;
            if let Some(context) = training {
                return self.out_proj.forward(&context);
            }
        }
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = &ctx.mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = crate::norm::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))?;
        self.out_proj.forward(&context)
    }

    /// q, k (QK-LayerNorm-ed, rotated) and v as `[B, H, L, d_head]` by candle ops.
    fn split_heads_composed(
        &self,
        qkv: &Tensor,
        ctx: &AttentionContext,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, l, d3) = qkv.dims3()?;
        let d = d3 / 3;
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
        Ok((q, k, v))
    }

    /// The same in one pass ([`crate::attention_kernel::split_heads`]) for f32 CPU inference;
    /// `None` where that does not apply.
    fn split_heads_fused(
        &self,
        qkv: &Tensor,
        ctx: &AttentionContext,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        use crate::attention_kernel::{cpu_f32_values, split_heads, HeadSplit};
        let plain = |t: &Tensor| {
            t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op() && t.is_contiguous()
        };
        let lns = [&self.q_ln, &self.k_ln];
        let lns_plain = lns.iter().all(|ln| {
            ln.as_ref().is_none_or(|ln| {
                let (w, b, _) = ln.parts();
                plain(w) && plain(b)
            })
        });
        if !plain(qkv) || !plain(&ctx.cos) || !plain(&ctx.sin) || !lns_plain || self.d_head % 2 != 0
        {
            return Ok(None);
        }
        let (b, l, _) = qkv.dims3()?;
        let qkv_s = Tensor::storage_and_layout(qkv);
        let (cos_s, sin_s) = (
            Tensor::storage_and_layout(&ctx.cos),
            Tensor::storage_and_layout(&ctx.sin),
        );
        let ln_s = lns.map(|ln| {
            ln.as_ref().map(|ln| {
                let (w, b, eps) = ln.parts();
                (
                    Tensor::storage_and_layout(w),
                    Tensor::storage_and_layout(b),
                    eps as f32,
                )
            })
        });
        let ln_values = |i: usize| -> Result<Option<(&[f32], &[f32], f32)>> {
            match &ln_s[i] {
                None => Ok(None),
                Some(((ws, wl), (bs, bl), eps)) => Ok(Some((
                    cpu_f32_values(ws, wl)?,
                    cpu_f32_values(bs, bl)?,
                    *eps,
                ))),
            }
        };
        let [q, k, v] = split_heads(&HeadSplit {
            batch: b,
            len: l,
            heads: self.n_heads,
            d_head: self.d_head,
            qkv: cpu_f32_values(&qkv_s.0, qkv_s.1)?,
            q_ln: ln_values(0)?,
            k_ln: ln_values(1)?,
            cos: cpu_f32_values(&cos_s.0, cos_s.1)?,
            sin: cpu_f32_values(&sin_s.0, sin_s.1)?,
        });
        let shape = (b, self.n_heads, l, self.d_head);
        let t = |v: Vec<f32>| Tensor::from_vec(v, shape, qkv.device());
        Ok(Some((t(q)?, t(k)?, t(v)?)))
    }
}
