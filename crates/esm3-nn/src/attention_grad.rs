//! Scaled dot-product attention as one differentiable op, for training on the CPU.
//!
//! Why: composed from candle ops, the core of one attention layer in a training step is eight
//! graph nodes over `[B, H, L, L]` (the scores' product, scale, mask, the softmax's max, shift,
//! exp, sum and division, then the product with the values and a transposed copy), and candle's
//! backward pass gives each node a zeroed gradient buffer it then adds into. Here the forward
//! keeps nothing but its inputs, and the backward recomputes the probabilities of one head at a
//! time while they fit in cache and takes the textbook gradient of softmax attention:
//! `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = s·dS·K`, `dK = s·dSᵀ·Q`.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::f32_slice;

use crate::attention_kernel::{cpu_f32_values, exp_rows_in_place};
use crate::blas::Gemm;
use crate::disjoint::SendPtr;

#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    heads: usize,
    len: usize,
    d_head: usize,
}

struct AttentionOp {
    /// Additive `[B, 1, L, L]`, no gradient.
    mask: Option<Tensor>,
    scale: f32,
    dims: Dims,
    gemm: &'static dyn Gemm,
}

/// `softmax(scale · q·kᵀ + mask)` of one head into `p` (`L × L`).
///
/// # Safety
/// `q` and `k` address one head's `L × d_head` rows.
unsafe fn probabilities(
    op: &AttentionOp,
    q: *const f32,
    k: *const f32,
    mask: Option<&[f32]>,
    p: &mut [f32],
) {
    let Dims { len: l, d_head, .. } = op.dims;
    op.gemm.gemm(
        false,
        true,
        l,
        l,
        d_head,
        op.scale,
        q,
        d_head,
        k,
        d_head,
        0.0,
        p.as_mut_ptr(),
        l,
    );
    let sums = exp_rows_in_place(p, l, mask);
    for (row, sum) in p.chunks_exact_mut(l).zip(sums) {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

impl AttentionOp {
    /// Runs `f(task, b, h, head offset, mask rows of b)` for every (batch, head) in parallel.
    fn each_head(
        &self,
        mask: Option<&[f32]>,
        f: impl Fn(usize, usize, usize, Option<&[f32]>) + Sync,
    ) {
        let Dims {
            batch,
            heads,
            len: l,
            d_head,
        } = self.dims;
        (0..batch * heads).into_par_iter().for_each(|bh| {
            let b = bh / heads;
            f(
                b,
                bh % heads,
                bh * l * d_head,
                mask.map(|m| &m[b * l * l..(b + 1) * l * l]),
            );
        });
    }
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "training-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Dims {
            batch,
            heads,
            len: l,
            d_head,
        } = self.dims;
        let (q, k, v) = (
            f32_slice(q, lq, "q")?,
            f32_slice(k, lk, "k")?,
            f32_slice(v, lv, "v")?,
        );
        let width = heads * d_head;
        let mut out = vec![0f32; batch * l * width];
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), Shape::from((batch, l, width))));
        }
        let mask_guard = self.mask.as_ref().map(|m| m.storage_and_layout());
        let mask = match &mask_guard {
            Some((s, layout)) => Some(cpu_f32_values(s, layout)?),
            None => None,
        };
        let out_ptr = SendPtr(out.as_mut_ptr());
        self.each_head(mask, |b, h, head, mask| {
            let mut p = vec![0f32; l * l];
            let out_ptr = &out_ptr;
            // SAFETY: the head's rows lie within q, k and v (sizes checked in `attention`);
            // this task alone writes output rows b·L.. at columns h·d_head..(h+1)·d_head.
            unsafe {
                probabilities(
                    self,
                    q.as_ptr().add(head),
                    k.as_ptr().add(head),
                    mask,
                    &mut p,
                );
                self.gemm.gemm(
                    false,
                    false,
                    l,
                    d_head,
                    l,
                    1.0,
                    p.as_ptr(),
                    l,
                    v.as_ptr().add(head),
                    d_head,
                    0.0,
                    out_ptr.0.add(b * l * width + h * d_head),
                    width,
                );
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((batch, l, width))))
    }

    /// The softmax-attention backward per head: P recomputed, dV = Pᵀ·dO, dP = dO·Vᵀ,
    /// dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = s·dS·K, dK = s·dSᵀ·Q. Long because each of its four
    /// GEMM calls spells out thirteen arguments, one a line; the steps share the head's buffers.
    fn bwd(
        &self,
        q_t: &Tensor,
        k_t: &Tensor,
        v_t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Dims {
            batch,
            heads,
            len: l,
            d_head,
        } = self.dims;
        let width = heads * d_head;
        let grad = grad.contiguous()?;
        let n = batch * heads * l * d_head;
        let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        if n > 0 {
            let guards = [q_t, k_t, v_t, &grad].map(|t| t.storage_and_layout());
            let [q, k, v, d_out] = [0, 1, 2, 3].map(|i| cpu_f32_values(&guards[i].0, guards[i].1));
            let (q, k, v, d_out) = (q?, k?, v?, d_out?);
            let mask_guard = self.mask.as_ref().map(|m| m.storage_and_layout());
            let mask = match &mask_guard {
                Some((s, layout)) => Some(cpu_f32_values(s, layout)?),
                None => None,
            };
            let ptrs = (
                SendPtr(dq.as_mut_ptr()),
                SendPtr(dk.as_mut_ptr()),
                SendPtr(dv.as_mut_ptr()),
            );
            self.each_head(mask, |b, h, head, mask| {
                let (mut p, mut ds) = (vec![0f32; l * l], vec![0f32; l * l]);
                let ptrs = &ptrs;
                // SAFETY: as in the forward; this task alone writes head `head` of dq, dk, dv.
                unsafe {
                    let (qh, kh, vh) = (
                        q.as_ptr().add(head),
                        k.as_ptr().add(head),
                        v.as_ptr().add(head),
                    );
                    let d_oh = d_out.as_ptr().add(b * l * width + h * d_head);
                    probabilities(self, qh, kh, mask, &mut p);
                    let g = self.gemm;
                    g.gemm(
                        true,
                        false,
                        l,
                        d_head,
                        l,
                        1.0,
                        p.as_ptr(),
                        l,
                        d_oh,
                        width,
                        0.0,
                        ptrs.2 .0.add(head),
                        d_head,
                    );
                    g.gemm(
                        false,
                        true,
                        l,
                        l,
                        d_head,
                        1.0,
                        d_oh,
                        width,
                        vh,
                        d_head,
                        0.0,
                        ds.as_mut_ptr(),
                        l,
                    );
                    for (dp_row, p_row) in ds.chunks_exact_mut(l).zip(p.chunks_exact(l)) {
                        let r: f32 = dp_row.iter().zip(p_row).map(|(a, b)| a * b).sum();
                        dp_row
                            .iter_mut()
                            .zip(p_row)
                            .for_each(|(d, p)| *d = p * (*d - r));
                    }
                    g.gemm(
                        false,
                        false,
                        l,
                        d_head,
                        l,
                        self.scale,
                        ds.as_ptr(),
                        l,
                        kh,
                        d_head,
                        0.0,
                        ptrs.0 .0.add(head),
                        d_head,
                    );
                    g.gemm(
                        true,
                        false,
                        l,
                        d_head,
                        l,
                        self.scale,
                        ds.as_ptr(),
                        l,
                        qh,
                        d_head,
                        0.0,
                        ptrs.1 .0.add(head),
                        d_head,
                    );
                }
            });
        }
        use crate::fused::grad_for;
        Ok((
            grad_for(q_t, || dq)?,
            grad_for(k_t, || dk)?,
            grad_for(v_t, || dv)?,
        ))
    }
}

/// `softmax(scale · q·kᵀ + mask) · v` for `q`, `k`, `v` `[B, H, L, d_head]` f32 on the CPU,
/// as `[B, L, H·d_head]` (the output projection's layout), differentiable in q, k and v; the
/// mask `[B, 1, L, L]` is a constant. `None` where the shapes or devices do not fit.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
    gemm: &'static dyn Gemm,
) -> Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if !cpu_f32(q) || !cpu_f32(k) || !cpu_f32(v) || mask.is_some_and(|m| !cpu_f32(m)) {
        return Ok(None);
    }
    let (batch, heads, len, d_head) = q.dims4()?;
    if k.dims() != q.dims() || v.dims() != q.dims() {
        return Ok(None);
    }
    if mask.is_some_and(|m| m.dims() != [batch, 1, len, len]) {
        return Ok(None);
    }
    let op = AttentionOp {
        mask: mask.map(|m| m.detach().contiguous()).transpose()?,
        scale,
        dims: Dims {
            batch,
            heads,
            len,
            d_head,
        },
        gemm,
    };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    Ok(Some(q.apply_op3(&k, &v, op)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_abs, uniform, NAIVE};
    use candle_core::{Device, Var, D};
    use proptest::prelude::*;

    /// The composed candle formula this op replaces (what `MultiHeadAttention` ran before).
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64) -> Tensor {
        let (b, h, l, dh) = q.dims4().unwrap();
        let mut s = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        if let Some(m) = mask {
            s = s.broadcast_add(m).unwrap();
        }
        let p = crate::norm::softmax_last_dim(&s).unwrap();
        p.matmul(v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, l, h * dh))
            .unwrap()
    }

    /// A sequence-id mask: positions attend within their own id (every row keeps itself).
    fn block_mask(b: usize, l: usize, seed: u64) -> Tensor {
        let ids: Vec<u32> = uniform(b * l, seed)
            .iter()
            .map(|x| (*x > 0.3) as u32)
            .collect();
        let mut m = vec![0f32; b * l * l];
        for bi in 0..b {
            for i in 0..l {
                for j in 0..l {
                    if ids[bi * l + i] != ids[bi * l + j] {
                        m[(bi * l + i) * l + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, l, l), &Device::Cpu).unwrap()
    }

    fn check(b: usize, h: usize, l: usize, dh: usize, masked: bool, seed: u64) {
        let shape = (b, h, l, dh);
        let t = |s: u64| {
            let x = Tensor::from_vec(uniform(b * h * l * dh, s), shape, &Device::Cpu).unwrap();
            Var::from_tensor(&(x * 2.0).unwrap()).unwrap()
        };
        let (q, k, v) = (t(seed), t(seed + 1), t(seed + 2));
        let mask = masked.then(|| block_mask(b, l, seed + 3));
        let c = Tensor::from_vec(
            uniform(b * l * h * dh, seed + 4),
            (b, l, h * dh),
            &Device::Cpu,
        )
        .unwrap();
        let scale = 1.0 / (dh as f64).sqrt();
        let run = |out: Tensor| {
            let grads = (&out * &c).unwrap().sum_all().unwrap().backward().unwrap();
            let g = |x: &Var| grads.get(x.as_tensor()).unwrap().clone();
            (out, g(&q), g(&k), g(&v))
        };
        let ours = run(attention(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            mask.as_ref(),
            scale as f32,
            &NAIVE,
        )
        .unwrap()
        .unwrap());
        let reference = run(composed(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            mask.as_ref(),
            scale,
        ));
        let tol = 2e-5 * (l.max(dh) as f32).sqrt() * 8.0;
        for (name, a, b) in [
            ("out", &ours.0, &reference.0),
            ("dq", &ours.1, &reference.1),
            ("dk", &ours.2, &reference.2),
            ("dv", &ours.3, &reference.3),
        ] {
            assert_eq!(a.dims(), b.dims(), "{name}");
            let d = max_abs(a, b);
            assert!(
                d <= tol,
                "{name}: max |Δ| {d} > {tol} at {:?}",
                (b.dims(), masked)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Output and the three gradients against the composed candle ops on odd shapes, with
        /// and without a sequence-id mask.
        #[test]
        fn equals_the_composed_ops_and_their_gradients(b in 1usize..3, h in 1usize..4,
                                                        l in 1usize..40, dh in 1usize..20,
                                                        masked: bool, seed in 0u64..1000) {
            check(b, h, l, dh, masked, seed);
        }
    }

    #[test]
    fn declines_what_it_cannot_take_and_tracks_only_what_is_tracked() {
        let dev = Device::Cpu;
        let q = Tensor::ones((1, 2, 3, 4), candle_core::DType::F32, &dev).unwrap();
        let short = Tensor::ones((1, 2, 3, 2), candle_core::DType::F32, &dev).unwrap();
        assert!(attention(&q, &short, &q, None, 0.5, &NAIVE)
            .unwrap()
            .is_none());
        let bad_mask = Tensor::zeros((1, 1, 3, 2), candle_core::DType::F32, &dev).unwrap();
        assert!(attention(&q, &q, &q, Some(&bad_mask), 0.5, &NAIVE)
            .unwrap()
            .is_none());
        let v = Var::from_tensor(&q).unwrap();
        let out = attention(&q, &q, v.as_tensor(), None, 0.5, &NAIVE)
            .unwrap()
            .unwrap();
        let grads = out
            .sum(D::Minus1)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&q).is_none());
        assert_eq!(grads.get(v.as_tensor()).unwrap().dims(), &[1, 2, 3, 4]);
    }
}
