//! `x · wᵀ` with its backward pass on the system BLAS, for training on the CPU.
//!
//! Why: with trainable weights the Linear layer went through candle's matmul (the `gemm` crate)
//! forward and backward. On the 2-core Zen 4 VM that crate reaches 139 GFLOP/s on the trunk's
//! shapes against OpenBLAS's 180 (`gemm_bench`), and its backward adds a transposed copy of
//! each operand. Here the three products of a training step (`y = x·wᵀ`, `dx = dy·w`,
//! `dw = dyᵀ·x`) are each one BLAS call per column block, reading the operands in place.
//! The bias is added in the same op, its gradient the column sums of `dy`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::f32_slice;

use crate::blas::Gemm;
use crate::disjoint::SendPtr;

/// The operands of one dense product `c = op(a) · op(b)` (c fresh, m×n, leading dimension n).
struct Product<'a> {
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &'a [f32],
    b: &'a [f32],
}

/// Runs `p` split over the rayon pool by blocks of whole 64-wide column panels, each block one
/// single-threaded call (as `Blas::sgemm_nt`: the library's own pool would spin between ops).
fn product(gemm: &dyn Gemm, p: &Product) -> Vec<f32> {
    let Product {
        trans_a,
        trans_b,
        m,
        n,
        k,
        a,
        b,
    } = *p;
    assert!(
        a.len() >= m * k && b.len() >= k * n,
        "GEMM operand too short"
    );
    let mut c = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return c;
    }
    let (lda, ldb) = (if trans_a { m } else { k }, if trans_b { k } else { n });
    let threads = rayon::current_num_threads().max(1);
    let block = if m * n * k < 1 << 18 {
        n
    } else {
        n.div_ceil(threads).div_ceil(64) * 64
    };
    let blocks = n.div_ceil(block);
    let c_ptr = SendPtr(c.as_mut_ptr());
    (0..blocks).into_par_iter().for_each(|blk| {
        let (j0, nb) = (blk * block, block.min(n - blk * block));
        let b_off = if trans_b { j0 * ldb } else { j0 };
        let c_ptr = &c_ptr;
        // SAFETY: block `blk` writes columns j0..j0+nb of c's m rows only (disjoint between
        // blocks) and reads op(b)'s columns j0..j0+nb; the lengths were checked above.
        unsafe {
            gemm.gemm(
                trans_a,
                trans_b,
                m,
                nb,
                k,
                1.0,
                a.as_ptr(),
                lda,
                b.as_ptr().add(b_off),
                ldb,
                0.0,
                c_ptr.0.add(j0),
                n,
            )
        }
    });
    c
}

/// Rows of `x` (all but its last dimension) and the weight's `(out, in)`, checked.
fn dims(lx: &Layout, lw: &Layout) -> Result<(usize, usize, usize)> {
    let (n, k) = lw.shape().dims2()?;
    let xd = lx.shape().dims();
    if xd.last() != Some(&k) {
        return Err(candle_core::Error::Msg(format!(
            "linear: input's last dimension is {:?}, weight expects {k}",
            xd.last()
        )));
    }
    Ok((lx.shape().elem_count() / k.max(1), n, k))
}

/// `y = x · wᵀ`, differentiable in both operands.
struct LinearOp {
    gemm: &'static dyn Gemm,
}

/// `dx = dy · w` (`dy` first operand, `w` second).
struct GradInput {
    gemm: &'static dyn Gemm,
}

/// `dw = dyᵀ · x` (`dy` first operand, `x` second).
struct GradWeight {
    gemm: &'static dyn Gemm,
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "trainable-linear"
    }
    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, n, k) = dims(lx, lw)?;
        let c = product(
            self.gemm,
            &Product {
                trans_a: false,
                trans_b: true,
                m,
                n,
                k,
                a: f32_slice(x, lx, "input")?,
                b: f32_slice(w, lw, "weight")?,
            },
        );
        let mut out = lx.shape().dims().to_vec();
        *out.last_mut().unwrap() = n;
        Ok((CpuStorage::F32(c), Shape::from(out)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = match x.track_op() {
            true => Some(grad.apply_op2_no_bwd(w, &GradInput { gemm: self.gemm })?),
            false => None,
        };
        let gw = match w.track_op() {
            true => Some(grad.apply_op2_no_bwd(x, &GradWeight { gemm: self.gemm })?),
            false => None,
        };
        Ok((gx, gw))
    }
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "trainable-linear-grad-input"
    }
    fn cpu_fwd(
        &self,
        dy: &CpuStorage,
        ly: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = lw.shape().dims2()?;
        let m = ly.shape().elem_count() / n.max(1);
        let c = product(
            self.gemm,
            &Product {
                trans_a: false,
                trans_b: false,
                m,
                n: k,
                k: n,
                a: f32_slice(dy, ly, "gradient")?,
                b: f32_slice(w, lw, "weight")?,
            },
        );
        let mut out = ly.shape().dims().to_vec();
        *out.last_mut().unwrap() = k;
        Ok((CpuStorage::F32(c), Shape::from(out)))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "trainable-linear-grad-weight"
    }
    fn cpu_fwd(
        &self,
        dy: &CpuStorage,
        ly: &Layout,
        x: &CpuStorage,
        lx: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = *ly.shape().dims().last().unwrap_or(&0);
        let k = *lx.shape().dims().last().unwrap_or(&0);
        let m = lx.shape().elem_count() / k.max(1);
        let c = product(
            self.gemm,
            &Product {
                trans_a: true,
                trans_b: false,
                m: n,
                n: k,
                k: m,
                a: f32_slice(dy, ly, "gradient")?,
                b: f32_slice(x, lx, "input")?,
            },
        );
        Ok((CpuStorage::F32(c), Shape::from((n, k))))
    }
}

/// `y = x · wᵀ + b`: as [`LinearOp`], and `db` is the column sums of `dy` in one contiguous
/// pass. (With `broadcast_add`, candle's backward sums the gradient over its broadcast rows
/// with a strided reduction: 7 % of a trunk training step, mostly the 4,101-wide structure
/// head's bias.)
impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "trainable-linear-bias"
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
        let (CpuStorage::F32(mut y), shape) = CustomOp2::cpu_fwd(self, x, lx, w, lw)? else {
            unreachable!("the product is f32")
        };
        let b = f32_slice(b, lb, "bias")?;
        if b.len() != lw.shape().dims2()?.0 {
            return Err(candle_core::Error::Msg(format!(
                "linear: bias of {} values for {} outputs",
                b.len(),
                lw.shape().dims2()?.0
            )));
        }
        if !b.is_empty() {
            for row in y.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        Ok((CpuStorage::F32(y), shape))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = CustomOp2::bwd(self, x, w, res, grad)?;
        let gb = match b.track_op() {
            true => {
                let n = b.elem_count();
                let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let mut sums = vec![0f32; n];
                if n > 0 {
                    for row in g.chunks_exact(n) {
                        sums.iter_mut().zip(row).for_each(|(s, g)| *s += g);
                    }
                }
                Some(Tensor::from_vec(sums, b.shape(), b.device())?)
            }
            false => None,
        };
        Ok((gx, gw, gb))
    }
}

/// `x · wᵀ (+ bias)` for `x` `[…, in]`, `w` `[out, in]` and `bias` `[out]`, all f32 on the
/// CPU, differentiable in whichever of them track gradients.
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    gemm: &'static dyn Gemm,
) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match bias {
        None => x.apply_op2(&w, LinearOp { gemm }),
        Some(b) => x.apply_op3(&w, &b.contiguous()?, LinearOp { gemm }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_abs, tensor, NAIVE};
    use candle_core::Var;
    use proptest::prelude::*;

    /// Value and both gradients of `sum(c ⊙ (x·wᵀ))` by `f`, for a fixed random `c`.
    fn value_and_grads(
        x: &Tensor,
        w: &Tensor,
        c: &Tensor,
        f: impl Fn(&Tensor, &Tensor) -> Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
        let y = f(xv.as_tensor(), wv.as_tensor());
        let grads = (&y * c).unwrap().sum_all().unwrap().backward().unwrap();
        (
            y,
            grads.get(xv.as_tensor()).unwrap().clone(),
            grads.get(wv.as_tensor()).unwrap().clone(),
        )
    }

    fn check(gemm: &'static dyn Gemm, batch: usize, rows: usize, k: usize, n: usize, seed: u64) {
        let x = tensor(&[batch, rows, k], seed);
        let w = tensor(&[n, k], seed + 1);
        let c = tensor(&[batch, rows, n], seed + 2);
        let ours = value_and_grads(&x, &w, &c, |x, w| linear(x, w, None, gemm).unwrap());
        let candle = value_and_grads(&x, &w, &c, |x, w| {
            x.broadcast_matmul(&w.t().unwrap()).unwrap()
        });
        // Sums of up to max(k, rows·batch, n) products of values in [-1, 1].
        let terms = k.max(rows * batch).max(n) as f32;
        let tol = 1e-5 * terms.sqrt() * 8.0;
        for (name, a, b) in [
            ("y", &ours.0, &candle.0),
            ("dx", &ours.1, &candle.1),
            ("dw", &ours.2, &candle.2),
        ] {
            assert_eq!(a.dims(), b.dims(), "{name}");
            let d = max_abs(a, b);
            assert!(d <= tol, "{name}: max |Δ| {d} > {tol}");
        }
    }

    #[test]
    fn the_bias_and_its_gradient_equal_candles_broadcast_add() {
        for (rows, k, n, seed) in [(1, 1, 1, 1u64), (37, 20, 45, 2), (130, 64, 300, 3)] {
            let x = tensor(&[2, rows, k], seed);
            let w = tensor(&[n, k], seed + 1);
            let b = Var::from_tensor(&tensor(&[n], seed + 2)).unwrap();
            let c = tensor(&[2, rows, n], seed + 3);
            let run = |y: Tensor| {
                let g = (&y * &c).unwrap().sum_all().unwrap().backward().unwrap();
                (y, g.get(b.as_tensor()).unwrap().clone())
            };
            let ours = run(linear(&x, &w, Some(b.as_tensor()), &NAIVE).unwrap());
            let candle = run(x
                .broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap());
            let tol = 1e-5 * ((2 * rows).max(k) as f32).sqrt() * 8.0;
            assert!(max_abs(&ours.0, &candle.0) <= tol);
            assert!(max_abs(&ours.1, &candle.1) <= tol);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Value and gradients against candle's differentiable matmul on odd shapes and tails,
        /// with the plain-loop GEMM (so the column blocking is checked with or without a BLAS).
        #[test]
        fn equals_candles_matmul_and_its_gradients(batch in 1usize..3, rows in 1usize..60,
                                                    k in 1usize..140, n in 1usize..150,
                                                    seed in 0u64..1000) {
            check(&NAIVE, batch, rows, k, n, seed);
        }
    }

    #[test]
    fn large_products_split_into_column_blocks_agree() {
        // m·n·k ≥ 2^18 takes the blocked path: 70 rows × 300 × 130.
        check(&NAIVE, 1, 70, 130, 300, 7);
        if let Some(blas) = crate::blas::get() {
            check(blas, 2, 65, 257, 200, 8);
        }
    }

    #[test]
    fn only_the_tracked_operand_gets_a_gradient() {
        let x = tensor(&[3, 4], 1);
        let w = Var::from_tensor(&tensor(&[5, 4], 2)).unwrap();
        let grads = linear(&x, w.as_tensor(), None, &NAIVE)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&x).is_none());
        assert_eq!(grads.get(w.as_tensor()).unwrap().dims(), &[5, 4]);
    }
}
