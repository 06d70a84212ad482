//! Neural layers of the ESM3 family on candle.
//!
//! Each layer is built from a `VarBuilder` using the reference checkpoint's own tensor names, so a
//! model file is the single source of truth for its weights. Layers follow the reference's order
//! of floating-point operations where that matters for 1e-4 parity (spec §11).

pub mod attention;
pub mod attention_grad;
pub mod attention_kernel;
pub mod bf16_gemm;
pub mod blas;
pub mod block;
pub mod context;
mod disjoint;
mod fastmath;
pub mod ffn;
pub mod fused;
pub mod geom_attention;
pub mod geom_kernel;
pub mod head;
pub mod linear;
pub mod mapped;
pub mod norm;
pub mod pairwise;
pub mod rotary;
pub mod stack;
#[cfg(test)]
mod test_values;
pub mod trainable_linear;

pub use attention::MultiHeadAttention;
pub use block::{BlockConfig, UnifiedTransformerBlock};
pub use context::{AttentionContext, GeometryContext};
pub use ffn::{FeedForward, FfnKind};
pub use geom_attention::GeometricAttention;
pub use head::RegressionHead;
pub use linear::{with_matmul_precision, Linear, MatmulPrecision};
pub use mapped::{with_mapped_weights, MappedWeights};
pub use stack::{StackOutput, TransformerStack};

/// Every LayerNorm in the ESM family uses PyTorch's default epsilon.
pub const LAYER_NORM_EPS: f64 = 1e-5;
