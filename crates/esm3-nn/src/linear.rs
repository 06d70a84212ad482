//! The Linear layer of every model here: candle's formula for training and other devices, the
//! system BLAS for CPU inference, and bf16 weights multiplied on AVX512-BF16 when asked for.
//!
//! Why our own type instead of `candle_nn::Linear`: candle's CPU matmul has no bf16 kernel and
//! is slower than OpenBLAS on the trunk's shapes; the layer decides per call which path applies,
//! so a model is built once and runs on whatever the call allows.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout,
    Module, Result, Shape, Tensor,
};
use candle_nn::{Init, VarBuilder};

use crate::bf16_gemm::{self, PackedBf16};
use crate::blas;
use crate::mapped::{self, MappedMatrix};

/// Precision of the Linear weights held for inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// Weights in the VarBuilder's dtype (f32 for parity).
    #[default]
    Native,
    /// Weights stored bf16, activations rounded to bf16 at each product, accumulation in f32.
    /// Everything else (norms, embeddings, the residual stream, softmax) stays f32.
    Bf16,
}

thread_local! {
    static PRECISION: Cell<MatmulPrecision> = const { Cell::new(MatmulPrecision::Native) };
}

/// Builds with the given Linear weight precision: layers constructed inside `f` (on this thread)
/// store their weights so. Scoped rather than a VarBuilder argument so that every model's
/// constructor keeps its reference-shaped signature.
pub fn with_matmul_precision<R>(p: MatmulPrecision, f: impl FnOnce() -> R) -> R {
    let before = PRECISION.with(|c| c.replace(p));
    let out = f();
    PRECISION.with(|c| c.set(before));
    out
}

/// Whether bf16 products can run here (AVX512-BF16); otherwise a bf16 request keeps f32 weights.
pub fn bf16_available() -> bool {
    bf16_gemm::available()
}

#[derive(Clone, Debug)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

/// `[out, in]`, as in the checkpoint.
#[derive(Clone, Debug)]
enum Weight {
    Owned(Tensor),
    /// In the checkpoint's mapping (see [`crate::mapped`]); a tensor copy is made only if a
    /// call needs candle's path (training, another device, non-f32 activations).
    Mapped {
        values: MappedMatrix,
        out_in: (usize, usize),
        copy: OnceLock<Tensor>,
    },
    /// Rounded to bf16 and packed for the AVX512-BF16 kernel ([`MatmulPrecision::Bf16`]); the
    /// rounded values are unpacked to a tensor only if a call needs candle's path.
    Packed {
        packed: Arc<PackedBf16>,
        copy: OnceLock<Tensor>,
    },
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight: Weight::Owned(weight),
            bias,
        }
    }

    pub fn weight(&self) -> &Tensor {
        match &self.weight {
            Weight::Owned(t) => t,
            Weight::Mapped {
                values,
                out_in,
                copy,
            } => copy.get_or_init(|| {
                Tensor::from_slice(values.values(), *out_in, &Device::Cpu)
                    .expect("a mapped weight's length equals its checked shape")
            }),
            Weight::Packed { packed, copy } => copy.get_or_init(|| {
                Tensor::from_vec(packed.unpack(), packed.dims(), &Device::Cpu)
                    .expect("an unpacked weight's length equals its shape")
            }),
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// candle's formula (as `candle_nn::Linear`), differentiable, any device.
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let weight = self.weight();
        let w = if weight.dtype() != x.dtype() {
            weight.to_dtype(x.dtype())?
        } else {
            weight.clone()
        };
        let dims = x.dims().to_vec();
        let k = *dims.last().unwrap_or(&0);
        let y = if x.is_contiguous() && dims.len() > 2 {
            let rows = x.elem_count() / k.max(1);
            let mut out = dims.clone();
            *out.last_mut().unwrap() = w.dim(0)?;
            x.reshape((rows, k))?.matmul(&w.t()?)?.reshape(out)?
        } else if dims.len() > 2 {
            let batch = &dims[..dims.len() - 2];
            x.matmul(&w.broadcast_left(batch)?.t()?)?
        } else {
            x.matmul(&w.t()?)?
        };
        match &self.bias {
            None => Ok(y),
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?),
        }
    }

    /// Training on the CPU in f32 with a BLAS: the products and their gradients through
    /// [`crate::trainable_linear`]; `None` where that does not apply.
    fn forward_trainable(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Weight::Owned(w) = &self.weight else {
            return Ok(None);
        };
        let Some(blas) = blas::get() else {
            return Ok(None);
        };
        let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        if !cpu_f32(x)
            || !cpu_f32(w)
            || x.rank() == 0
            || self.bias.as_ref().is_some_and(|b| !cpu_f32(b))
        {
            return Ok(None);
        }
        Ok(Some(crate::trainable_linear::linear(
            x,
            w,
            self.bias.as_ref(),
            blas,
        )?))
    }

    /// Whether this call is CPU inference on f32 activations, which the fast kernels take.
    fn fast_path_applies(&self, x: &Tensor) -> bool {
        let bias_ok = self
            .bias
            .as_ref()
            .is_none_or(|b| !b.track_op() && b.dtype() == DType::F32 && b.device().is_cpu());
        let x_ok = !x.track_op() && x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() >= 1;
        bias_ok && x_ok
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.fast_path_applies(x) {
            if let Some(y) = self.forward_trainable(x)? {
                return Ok(y);
            }
            return self.forward_candle(x);
        }
        let op = match &self.weight {
            Weight::Packed { packed, .. } => Product::Bf16(packed),
            Weight::Mapped { values, out_in, .. } => match blas::get() {
                Some(blas) => Product::Sgemm(blas, values.values(), *out_in),
                None => return self.forward_candle(x),
            },
            Weight::Owned(w) => {
                let usable = !w.track_op() && w.device().is_cpu() && w.dtype() == DType::F32;
                match blas::get() {
                    // The tensor's values are reachable only inside an op it is an operand of.
                    Some(blas) if usable => {
                        let op = TensorWeightOp { blas };
                        let x = x.contiguous()?;
                        return match &self.bias {
                            Some(b) => x.apply_op3_no_bwd(w, b, &op),
                            None => x.apply_op2_no_bwd(w, &op),
                        };
                    }
                    _ => {
                        return match self.forward_trainable(x)? {
                            Some(y) => Ok(y),
                            None => self.forward_candle(x),
                        }
                    }
                }
            }
        };
        let x = x.contiguous()?;
        match &self.bias {
            Some(b) => x.apply_op2_no_bwd(b, &op),
            None => x.apply_op1_no_bwd(&op),
        }
    }
}

/// One product outside candle, its weight resolved.
#[derive(Clone, Copy)]
enum Product<'a> {
    /// BLAS sgemm on f32 weights `[out, in]`.
    Sgemm(&'static blas::Blas, &'a [f32], (usize, usize)),
    /// The bf16 kernel on a packed weight.
    Bf16(&'a PackedBf16),
}

impl Product<'_> {
    fn out_in(&self) -> (usize, usize) {
        match self {
            Product::Sgemm(_, _, d) => *d,
            Product::Bf16(p) => p.dims(),
        }
    }
}

fn contiguous<'a, T>(v: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(candle_core::Error::Msg(format!(
            "blas linear: {what} not contiguous"
        ))),
    }
}

/// `x @ w.T + bias` by `product`.
fn fast_linear(
    product: Product<'_>,
    x: &CpuStorage,
    lx: &Layout,
    bias: Option<(&CpuStorage, &Layout)>,
) -> Result<(CpuStorage, Shape)> {
    let (n, k) = product.out_in();
    let xd = lx.shape().dims();
    if xd.last() != Some(&k) {
        return Err(candle_core::Error::Msg(format!(
            "linear: input's last dimension is {:?}, weight expects {k}",
            xd.last()
        )));
    }
    let m = lx.shape().elem_count() / k.max(1);
    let mut out_dims = xd.to_vec();
    *out_dims.last_mut().unwrap() = n;
    let mut c = vec![0f32; m * n];
    let beta = match bias {
        Some((CpuStorage::F32(b), lb)) => {
            let b = contiguous(b, lb, "bias")?;
            for row in c.chunks_exact_mut(n) {
                row.copy_from_slice(b);
            }
            1.0
        }
        Some(_) => return Err(candle_core::Error::Msg("linear: bias must be f32".into())),
        None => 0.0,
    };
    let CpuStorage::F32(xv) = x else {
        return Err(candle_core::Error::Msg("linear: input must be f32".into()));
    };
    let a = contiguous(xv, lx, "input")?;
    if m > 0 && n > 0 {
        match product {
            Product::Bf16(p) => p.matmul_nt(a, m, &mut c),
            Product::Sgemm(blas, w, _) => blas.sgemm_nt(m, n, k, a, w, beta, &mut c),
        }
    }
    Ok((CpuStorage::F32(c), Shape::from(out_dims)))
}

impl CustomOp1 for Product<'_> {
    fn name(&self) -> &'static str {
        "fast-linear"
    }
    fn cpu_fwd(&self, x: &CpuStorage, lx: &Layout) -> Result<(CpuStorage, Shape)> {
        fast_linear(*self, x, lx, None)
    }
}

impl CustomOp2 for Product<'_> {
    fn name(&self) -> &'static str {
        "fast-linear-bias"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fast_linear(*self, x, lx, Some((b, lb)))
    }
}

/// The weight is a candle tensor: the op's second operand.
struct TensorWeightOp {
    blas: &'static blas::Blas,
}

impl TensorWeightOp {
    fn run(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let out_in = lw.shape().dims2()?;
        let CpuStorage::F32(wv) = w else {
            return Err(candle_core::Error::Msg(format!(
                "linear: weight dtype {:?} has no BLAS path",
                w.dtype()
            )));
        };
        let w = contiguous(wv, lw, "weight")?;
        fast_linear(Product::Sgemm(self.blas, w, out_in), x, lx, bias)
    }
}

impl CustomOp2 for TensorWeightOp {
    fn name(&self) -> &'static str {
        "blas-linear"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(x, lx, w, lw, None)
    }
}

impl CustomOp3 for TensorWeightOp {
    fn name(&self) -> &'static str {
        "blas-linear-bias"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run(x, lx, w, lw, Some((b, lb)))
    }
}

/// Loads `weight` `[out, in]` (and `bias` `[out]`) at `vb`, the weight in the precision set by
/// [`with_matmul_precision`] when the VarBuilder's dtype is f32.
pub fn linear_b(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = weight(in_dim, out_dim, &vb)?;
    // candle_nn's initialisation hints, so that a fresh VarMap (training) starts where
    // `candle_nn::linear` would: Kaiming-normal weights, U(±1/√in) biases.
    let bound = 1. / (in_dim as f64).sqrt();
    let bias = if bias {
        Some(vb.get_with_hints(
            out_dim,
            "bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

/// The weight at `vb`, held as [`linear_b`] describes.
fn weight(in_dim: usize, out_dim: usize, vb: &VarBuilder) -> Result<Weight> {
    let precision = PRECISION.with(|c| c.get());
    let name = format!("{}.weight", vb.prefix());
    let f32_cpu = vb.dtype() == DType::F32 && vb.device().is_cpu();
    let fetch = || {
        vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )
    };
    if precision == MatmulPrecision::Bf16 && f32_cpu && bf16_available() {
        // Packed straight from the mapping when there is one, so the f32 copy never exists.
        let packed = match mapped::lookup(&name, &[out_dim, in_dim]) {
            Some(m) => {
                let packed = PackedBf16::pack(m.values(), out_dim, in_dim);
                m.release(&name);
                packed
            }
            None => PackedBf16::pack(&fetch()?.flatten_all()?.to_vec1::<f32>()?, out_dim, in_dim),
        };
        return Ok(Weight::Packed {
            packed: Arc::new(packed),
            copy: OnceLock::new(),
        });
    }
    // In place from a mapped checkpoint only where the BLAS path will read it: without a BLAS
    // every product goes through candle, which needs its own copy anyway.
    if f32_cpu && blas::get().is_some() {
        if let Some(values) = mapped::lookup(&name, &[out_dim, in_dim]) {
            return Ok(Weight::Mapped {
                values,
                out_in: (out_dim, in_dim),
                copy: OnceLock::new(),
            });
        }
    }
    Ok(Weight::Owned(fetch()?))
}

pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_b(in_dim, out_dim, true, vb)
}

pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_b(in_dim, out_dim, false, vb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_abs, tensor};
    use candle_core::Device;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The BLAS path against candle's matmul on random shapes with odd sizes and tails.
        #[test]
        fn blas_path_matches_candle(rows in 1usize..70, batch in 1usize..3, k in 1usize..150,
                                    n in 1usize..90, with_bias: bool, seed in 0u64..1000) {
            let x = tensor(&[batch, rows, k], seed);
            let w = tensor(&[n, k], seed + 1);
            let b = with_bias.then(|| tensor(&[n], seed + 2));
            let lin = Linear::new(w, b);
            let plain = lin.forward_candle(&x).unwrap();
            let fast = lin.forward(&x).unwrap();
            prop_assert_eq!(plain.dims(), fast.dims());
            // Sums of k products of values in [-1, 1]: rounding grows like sqrt(k)·eps·|terms|.
            let tol = 1e-5 * (k as f32).sqrt() * 8.0;
            prop_assert!(max_abs(&plain, &fast) <= tol, "diff {}", max_abs(&plain, &fast));
        }

        /// A layer built with bf16 precision equals candle's product of the bf16-rounded
        /// operands (the accumulation is f32; only the summation order differs).
        #[test]
        fn bf16_layer_is_an_f32_product_of_rounded_operands(rows in 1usize..40, k in 1usize..130,
                                                           n in 1usize..70, seed in 0u64..1000) {
            if !bf16_available() {
                eprintln!("skipping: no AVX512-BF16 on this CPU");
                return Ok(());
            }
            let x = tensor(&[1, rows, k], seed);
            let w = tensor(&[n, k], seed + 1);
            let b = tensor(&[n], seed + 2);
            let tensors = [("l.weight".to_string(), w.clone()), ("l.bias".to_string(), b.clone())];
            let vb = VarBuilder::from_tensors(tensors.into(), DType::F32, &Device::Cpu);
            let lin = with_matmul_precision(MatmulPrecision::Bf16, || linear(k, n, vb.pp("l")))
                .unwrap();
            let packed = matches!(lin.weight, Weight::Packed { .. });
            prop_assert!(packed, "bf16 precision did not pack the weight");
            let fast = lin.forward(&x).unwrap();
            let round = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
            let expect = Linear::new(round(&w), Some(b)).forward_candle(&round(&x)).unwrap();
            let tol = 1e-5 * (k as f32).sqrt() * 8.0;
            prop_assert!(max_abs(&expect, &fast) <= tol, "diff {}", max_abs(&expect, &fast));
            // candle's path (used when training or on another device) sees the same weights.
            let plain = lin.forward_candle(&round(&x)).unwrap();
            prop_assert!(max_abs(&expect, &plain) <= tol);
        }
    }

    #[test]
    fn fresh_variables_start_from_candles_initialisation() {
        // A zero start (VarBuilder's default hint) would stop every gradient behind the layer.
        let map = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let lin = linear(64, 32, vb.pp("l")).unwrap();
        let w = lin
            .weight()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = lin.bias().unwrap().to_vec1::<f32>().unwrap();
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        // Kaiming normal for fan-in 64: std √(2/64) ≈ 0.18 (tanh-free gain as in candle_nn).
        assert!(std > 0.05 && std < 0.5, "weight std {std}");
        assert!(b.iter().all(|v| v.abs() <= 1.0 / 8.0) && b.iter().any(|&v| v != 0.0));
        assert!(lin.weight().is_variable());
    }

    #[test]
    fn zero_rows_and_rank_two_inputs_work() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 3), &dev).unwrap();
        let lin = Linear::new(w, None);
        let x = Tensor::zeros((0, 3), DType::F32, &dev).unwrap();
        assert_eq!(lin.forward(&x).unwrap().dims(), &[0, 5]);
        let x = Tensor::randn(0f32, 1.0, (4, 3), &dev).unwrap();
        let d = max_abs(&lin.forward(&x).unwrap(), &lin.forward_candle(&x).unwrap());
        assert!(d < 1e-5);
    }
}
