//! Pre-LayerNorm feed-forward networks (spec §2.5).

use candle_core::{CpuStorage, DType, Module, Result, Storage, Tensor, D};
use rayon::prelude::*;

use crate::fastmath::exp;
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
            FfnKind::SwiGlu => swiglu(&h)?,
            FfnKind::Gelu => crate::fused::gelu_erf(&h)?,
        };
        self.down.forward(&h)
    }
}

/// `SiLU(a) · g` for `h = [a | g]` split in halves along the last dimension.
///
/// CPU inference on f32 takes one vectorised pass (candle's `silu` on the strided half and the
/// product cost ~8% of an ESM C forward at L = 512: a libm `exp` per element and two temporaries);
/// autograd and other devices take the composed ops.
pub fn swiglu(h: &Tensor) -> Result<Tensor> {
    let half = h.dim(D::Minus1)? / 2;
    if h.track_op() || !h.device().is_cpu() || h.dtype() != DType::F32 || !h.is_contiguous() {
        let a = h.narrow(D::Minus1, 0, half)?;
        let g = h.narrow(D::Minus1, half, half)?;
        return candle_nn::ops::silu(&a)? * g;
    }
    let mut dims = h.dims().to_vec();
    *dims.last_mut().expect("narrowed above") = half;
    let out = {
        let (storage, layout) = h.storage_and_layout();
        let values = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
            _ => unreachable!("checked contiguous f32 CPU above"),
        };
        swiglu_rows(values, half)
    };
    Tensor::from_vec(out, dims, h.device())
}

fn swiglu_rows(h: &[f32], half: usize) -> Vec<f32> {
    let mut out = vec![0f32; h.len() / 2];
    if half == 0 {
        return out;
    }
    // ~64 KiB of output per task.
    let rows_per_task = (16_384 / half).max(1);
    out.par_chunks_mut(rows_per_task * half)
        .zip(h.par_chunks(rows_per_task * 2 * half))
        .for_each(|(out, h)| {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                return unsafe { swiglu_block_avx512(h, half, out) };
            }
            swiglu_block(h, half, out)
        });
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn swiglu_block_avx512(h: &[f32], half: usize, out: &mut [f32]) {
    swiglu_block(h, half, out)
}

#[inline(always)]
fn swiglu_block(h: &[f32], half: usize, out: &mut [f32]) {
    for (row, out) in h.chunks_exact(2 * half).zip(out.chunks_exact_mut(half)) {
        let (a, g) = row.split_at(half);
        for ((o, &a), &g) in out.iter_mut().zip(a).zip(g) {
            // SiLU as torch writes it, a · sigmoid(a); exp(−a) = ∞ gives −0 as there.
            *o = a / (1.0 + exp(-a)) * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::swiglu_hidden;
    use super::*;
    use candle_core::{Device, Var};
    use proptest::prelude::*;

    proptest! {
        /// The fused pass against candle's composed `silu(a) · g` (the autograd path).
        #[test]
        fn fused_swiglu_equals_the_composed_ops(
            rows in 1usize..40,
            half in 1usize..300,
            seed in 0u64..1000,
        ) {
            let n = rows * 2 * half;
            // Values up to ±40 reach SiLU's saturated tails on both sides.
            let v: Vec<f32> = (0..n)
                .map(|i| ((i as u64 * 2_654_435_761 + seed * 97) % 8001) as f32 / 100.0 - 40.0)
                .collect();
            let h = Tensor::from_vec(v, (rows, 2 * half), &Device::Cpu).unwrap();
            let fused = swiglu(&h).unwrap();
            let var = Var::from_tensor(&h).unwrap();
            let composed = swiglu(var.as_tensor()).unwrap().detach();
            prop_assert_eq!(fused.dims(), composed.dims());
            let rel = ((&fused - &composed).unwrap().abs().unwrap()
                / (composed.abs().unwrap() + 1.0).unwrap())
                .unwrap()
                .flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            prop_assert!(rel < 1e-6, "max relative difference {rel:e}");
        }
    }

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
