//! A stack of blocks with a final LayerNorm (`TransformerStack`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::block::{BlockConfig, UnifiedTransformerBlock};
use crate::context::{AttentionContext, GeometryContext};
use crate::norm::{layer_norm, LayerNorm};

pub struct TransformerStack {
    blocks: Vec<UnifiedTransformerBlock>,
    /// Weight-only final LayerNorm; `None` where the reference uses an identity.
    norm: Option<LayerNorm>,
}

pub struct StackOutput {
    /// The final-normed output (what the heads read).
    pub normed: Tensor,
    /// The last block's output before the final norm.
    pub last: Tensor,
    /// Every block's output, when asked for.
    pub hidden_states: Option<Vec<Tensor>>,
}

impl TransformerStack {
    /// `block_config(i)` gives block i's configuration, so a stack can mix geometric and
    /// plain blocks as ESM3 does (geometric attention in block 0 only).
    pub fn new(
        n_layers: usize,
        block_config: impl Fn(usize) -> BlockConfig,
        final_norm: bool,
        d_model: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let blocks = (0..n_layers)
            .map(|i| UnifiedTransformerBlock::new(&block_config(i), vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = if final_norm {
            Some(layer_norm(d_model, false, vb.pp("norm"))?)
        } else {
            None
        };
        Ok(Self { blocks, norm })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        attn_ctx: Option<&AttentionContext>,
        geo: Option<&GeometryContext>,
        keep_hidden_states: bool,
    ) -> Result<StackOutput> {
        let mut x = x.clone();
        let mut hidden = keep_hidden_states.then(|| Vec::with_capacity(self.blocks.len()));
        for block in &self.blocks {
            x = block.forward(&x, attn_ctx, geo)?;
            if let Some(h) = hidden.as_mut() {
                h.push(x.clone());
            }
        }
        let normed = match &self.norm {
            Some(norm) => norm.forward(&x)?,
            None => x.clone(),
        };
        Ok(StackOutput {
            normed,
            last: x,
            hidden_states: hidden,
        })
    }

    pub fn needs_geometry(&self) -> bool {
        self.blocks.iter().any(|b| b.has_geometric_attention())
    }
}
