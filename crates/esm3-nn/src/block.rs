//! The pre-LN transformer block with optional plain and geometric attention (spec §2.2).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::attention::MultiHeadAttention;
use crate::context::{AttentionContext, GeometryContext};
use crate::ffn::{FeedForward, FfnKind};
use crate::geom_attention::GeometricAttention;

/// Everything that distinguishes the blocks of the ESM family's stacks.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    pub d_model: usize,
    pub n_heads: usize,
    /// Geometric-attention heads, when the block has geometric attention.
    pub v_heads: Option<usize>,
    pub use_plain_attn: bool,
    pub bias: bool,
    pub qk_layernorm: bool,
    pub ffn: FfnKind,
    pub expansion_ratio: f64,
    /// Every residual branch is divided by this (√(n_layers/36) in ESM3 and ESM C).
    pub residue_scaling: f64,
    pub mask_and_zero_frameless: bool,
}

pub struct UnifiedTransformerBlock {
    attn: Option<MultiHeadAttention>,
    geom_attn: Option<GeometricAttention>,
    ffn: FeedForward,
    scaling: f64,
}

impl UnifiedTransformerBlock {
    pub fn new(cfg: &BlockConfig, vb: VarBuilder) -> Result<Self> {
        let attn = if cfg.use_plain_attn {
            Some(MultiHeadAttention::new(
                cfg.d_model,
                cfg.n_heads,
                cfg.bias,
                cfg.qk_layernorm,
                vb.pp("attn"),
            )?)
        } else {
            None
        };
        let geom_attn = match cfg.v_heads {
            Some(v) => Some(GeometricAttention::new(
                cfg.d_model,
                v,
                cfg.bias,
                cfg.mask_and_zero_frameless,
                vb.pp("geom_attn"),
            )?),
            None => None,
        };
        let ffn = FeedForward::new(
            cfg.d_model,
            cfg.ffn,
            cfg.expansion_ratio,
            cfg.bias,
            vb.pp("ffn"),
        )?;
        Ok(Self {
            attn,
            geom_attn,
            ffn,
            scaling: cfg.residue_scaling,
        })
    }

    pub fn has_geometric_attention(&self) -> bool {
        self.geom_attn.is_some()
    }

    pub fn forward(
        &self,
        x: &Tensor,
        attn_ctx: Option<&AttentionContext>,
        geo: Option<&GeometryContext>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        if let Some(attn) = &self.attn {
            let ctx = attn_ctx.ok_or_else(|| {
                candle_core::Error::Msg("attention block run without attention context".into())
            })?;
            x = (&x + (attn.forward(&x, ctx)? / self.scaling)?)?;
        }
        if let Some(geom) = &self.geom_attn {
            let geo = geo.ok_or_else(|| {
                candle_core::Error::Msg("geometric block run without frames".into())
            })?;
            x = (&x + (geom.forward(&x, geo)? / self.scaling)?)?;
        }
        let r = (self.ffn.forward(&x)? / self.scaling)?;
        &x + r
    }
}
