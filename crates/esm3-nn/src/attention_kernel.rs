//! Scaled dot-product attention in one pass per block of query rows, for CPU inference.
//!
//! Why by hand: composed from candle ops, attention at ESM C 300M's shape (15 heads, L = 512)
//! spends ~56 ms a layer on a 2-core Zen 4 — `q·kᵀ` and `p·v` through candle's batched matmul,
//! then a separate pass to scale, one to add the mask and candle's softmax, whose scalar `exp`
//! alone takes 22 ms — more than half of ESM C's whole forward at that length. Here each block of
//! 64 query rows gets its scores from one BLAS call into a buffer that stays in cache, is
//! exponentiated in place with a vectorised `exp`, and is contracted with the values by a second
//! BLAS call straight into the `[B, L, H·Dh]` layout the output projection reads (no transpose).
//! The softmax's division is applied to the `Dh` outputs of a row rather than its `L` weights.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use crate::disjoint::SendPtr;
use crate::fastmath::{exp, lane_max, lane_sum};

/// Query rows handled together: their scores (`64 × L` f32) stay in L2 for L up to a few thousand.
const QUERY_BLOCK: usize = 64;

/// The sizes of one attention call: q, k, v are `[batch, heads, len, d_head]`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub len: usize,
    pub d_head: usize,
}

/// `softmax(scale · q·kᵀ + mask) · v`, returned as `[batch, len, heads · d_head]`.
///
/// `mask`, if given, is additive `[batch, len, len]` (0 or −∞), shared by all heads.
///
/// Long because its two GEMM calls spell out thirteen arguments each and the softmax between
/// them works on the head's buffers in place.
pub fn attention_core(
    gemm: &dyn crate::blas::Gemm,
    shape: AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    scale: f32,
) -> Vec<f32> {
    let AttentionShape {
        batch: b,
        heads: h,
        len: l,
        d_head: dh,
    } = shape;
    let n = b * h * l * dh;
    assert!(
        q.len() == n && k.len() == n && v.len() == n,
        "attention input of the wrong size"
    );
    if let Some(m) = mask {
        assert_eq!(m.len(), b * l * l, "attention mask of the wrong size");
    }
    let mut out = vec![0f32; n];
    if n == 0 {
        return out;
    }
    let width = h * dh;
    let blocks = l.div_ceil(QUERY_BLOCK);
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..b * h * blocks).into_par_iter().for_each(|task| {
        let (bh, blk) = (task / blocks, task % blocks);
        let (bi, hi) = (bh / h, bh % h);
        let i0 = blk * QUERY_BLOCK;
        let rows = QUERY_BLOCK.min(l - i0);
        let head = bh * l * dh;
        let mut scores = vec![0f32; rows * l];
        // SAFETY: q rows i0..i0+rows and all of k for this head lie within `head..head + l·dh`;
        // `scores` holds rows × l.
        unsafe {
            gemm.gemm(
                false,
                true,
                rows,
                l,
                dh,
                scale,
                q.as_ptr().add(head + i0 * dh),
                dh,
                k.as_ptr().add(head),
                dh,
                0.0,
                scores.as_mut_ptr(),
                l,
            );
        }
        let mask_rows = mask.map(|m| &m[(bi * l + i0) * l..(bi * l + i0 + rows) * l]);
        let sums = exp_rows_in_place(&mut scores, l, mask_rows);
        let out_ptr = &out_ptr;
        // SAFETY: the output rows (bi, i0..i0+rows) at columns hi·dh..(hi+1)·dh are written by
        // this task only (tasks differ in head or query block); v's head lies within bounds.
        unsafe {
            let dst = out_ptr.0.add((bi * l + i0) * width + hi * dh);
            gemm.gemm(
                false,
                false,
                rows,
                dh,
                l,
                1.0,
                scores.as_ptr(),
                l,
                v.as_ptr().add(head),
                dh,
                0.0,
                dst,
                width,
            );
            for (r, sum) in sums.iter().enumerate() {
                let row = std::slice::from_raw_parts_mut(dst.add(r * width), dh);
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|x| *x *= inv);
            }
        }
    });
    out
}

/// Replaces each row `s` of `scores` (rows of `width`) by `exp(s + mask − max(s + mask))` and
/// returns each row's sum.
pub(crate) fn exp_rows_in_place(
    scores: &mut [f32],
    width: usize,
    mask: Option<&[f32]>,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { exp_rows_avx512(scores, width, mask) };
    }
    exp_rows(scores, width, mask)
}

/// The same source compiled for AVX-512 (16 lanes), chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_rows_avx512(scores: &mut [f32], width: usize, mask: Option<&[f32]>) -> Vec<f32> {
    exp_rows(scores, width, mask)
}

#[inline(always)]
fn exp_rows(scores: &mut [f32], width: usize, mask: Option<&[f32]>) -> Vec<f32> {
    let mut sums = Vec::with_capacity(scores.len() / width.max(1));
    for (r, row) in scores.chunks_exact_mut(width).enumerate() {
        if let Some(m) = mask {
            let m = &m[r * width..(r + 1) * width];
            row.iter_mut().zip(m).for_each(|(s, m)| *s += m);
        }
        let max = lane_max(row);
        // A row masked everywhere gives NaN, as the composed softmax does.
        row.iter_mut().for_each(|s| *s = exp(*s - max));
        sums.push(lane_sum(row));
    }
    sums
}

/// What [`split_heads`] needs: the fused projection `[B·L, 3·D]` (q | k | v), optional
/// LayerNorms over the full width of q and of k (`(weight, bias, eps)`), and the rotary
/// tables `[L, d_head / 2]`.
pub struct HeadSplit<'a> {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub d_head: usize,
    pub qkv: &'a [f32],
    pub q_ln: Option<(&'a [f32], &'a [f32], f32)>,
    pub k_ln: Option<(&'a [f32], &'a [f32], f32)>,
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

/// q and k LayerNorm-ed and rotated, and v, each `[B, H, L, d_head]`, in one pass over `qkv`.
///
/// Why: composed, this is three strided copies, two LayerNorms, three head transposes and two
/// rotary passes — each a full pass over `[L, D]` with its own allocation (~5 ms a layer for
/// ESM C 300M at L = 512, as much as its attention core); here each projected row is read once
/// while in cache. Rotary is the reference's non-interleaved form: halves `[x₁, x₂]` of each
/// head become `[x₁·cos − x₂·sin, x₂·cos + x₁·sin]`.
pub fn split_heads(s: &HeadSplit) -> [Vec<f32>; 3] {
    let (b, l, h, dh) = (s.batch, s.len, s.heads, s.d_head);
    let d = h * dh;
    let half = dh / 2;
    assert_eq!(s.qkv.len(), b * l * 3 * d, "qkv of the wrong size");
    assert!(dh % 2 == 0 && s.cos.len() == l * half && s.sin.len() == l * half);
    let mut outs = [
        vec![0f32; b * l * d],
        vec![0f32; b * l * d],
        vec![0f32; b * l * d],
    ];
    let ptrs = outs.each_mut().map(|o| SendPtr(o.as_mut_ptr()));
    s.qkv.par_chunks(3 * d).enumerate().for_each(|(row, x)| {
        let (bi, li) = (row / l, row % l);
        let (cos, sin) = (
            &s.cos[li * half..(li + 1) * half],
            &s.sin[li * half..(li + 1) * half],
        );
        let mut normed = vec![0f32; d];
        for (part, ln) in [(0, s.q_ln), (1, s.k_ln), (2, None)] {
            let src = &x[part * d..(part + 1) * d];
            let src = match ln {
                Some((w, bias, eps)) => {
                    layer_norm_row(src, w, bias, eps, &mut normed);
                    &normed[..]
                }
                None => src,
            };
            let ptrs = &ptrs;
            for hi in 0..h {
                let x = &src[hi * dh..(hi + 1) * dh];
                // SAFETY: row (bi, li) of head hi is written by this row's task only, inside
                // the b·h·l·dh values of the output.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        ptrs[part].0.add(((bi * h + hi) * l + li) * dh),
                        dh,
                    )
                };
                if part == 2 {
                    dst.copy_from_slice(x);
                    continue;
                }
                let (x1, x2) = x.split_at(half);
                let (d1, d2) = dst.split_at_mut(half);
                for j in 0..half {
                    d1[j] = x1[j] * cos[j] - x2[j] * sin[j];
                    d2[j] = x2[j] * cos[j] + x1[j] * sin[j];
                }
            }
        }
    });
    outs
}

/// `(x − mean) / sqrt(var + eps) · w + b` with the biased variance, as torch's LayerNorm.
fn layer_norm_row(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = lane_sum(x) / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, &x), &w), &b) in out.iter_mut().zip(x).zip(w).zip(b) {
        *o = (x - mean) * inv * w + b;
    }
}

/// The fused path for a call of [`crate::MultiHeadAttention`]: `Some([B, L, H·Dh])` when the
/// inputs are f32 CPU tensors outside autograd and a BLAS is loaded, `None` to take the composed
/// ops. `mask` is the additive `[B, 1, L, L]` mask.
pub fn fused_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
) -> Result<Option<Tensor>> {
    let Some(blas) = crate::blas::get() else {
        return Ok(None);
    };
    let applies = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op();
    if !applies(q) || !applies(k) || !applies(v) || mask.is_some_and(|m| !applies(m)) {
        return Ok(None);
    }
    let (b, h, l, dh) = q.dims4()?;
    if k.dims() != q.dims() || v.dims() != q.dims() {
        return Ok(None);
    }
    if mask.is_some_and(|m| m.dims() != [b, 1, l, l]) {
        return Ok(None);
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let mask = mask.map(|m| m.contiguous()).transpose()?;
    let shape = AttentionShape {
        batch: b,
        heads: h,
        len: l,
        d_head: dh,
    };
    let out = {
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let ms = mask.as_ref().map(|m| m.storage_and_layout());
        let mask_values = match &ms {
            Some((s, l)) => Some(cpu_f32_values(s, l)?),
            None => None,
        };
        attention_core(
            blas,
            shape,
            cpu_f32_values(&qs, ql)?,
            cpu_f32_values(&ks, kl)?,
            cpu_f32_values(&vs, vl)?,
            mask_values,
            scale,
        )
    };
    Ok(Some(Tensor::from_vec(out, (b, l, h * dh), q.device())?))
}

pub(crate) fn cpu_f32_values<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(&v[a..b]),
        _ => Err(candle_core::Error::Msg(
            "fused attention: expected a contiguous f32 CPU tensor".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::max_abs_diff;
    use candle_core::{Device, D};
    use proptest::prelude::*;

    /// The composed candle formula the fused kernel replaces, as `[B, L, H·Dh]`.
    fn composed(
        shape: AttentionShape,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
        scale: f32,
    ) -> Vec<f32> {
        let AttentionShape {
            batch: b,
            heads: h,
            len: l,
            d_head: dh,
        } = shape;
        let dev = Device::Cpu;
        let t = |x: &[f32]| Tensor::from_vec(x.to_vec(), (b, h, l, dh), &dev).unwrap();
        let (q, k, v) = (t(q), t(k), t(v));
        let mut s = (q.matmul(&k.t().unwrap()).unwrap() * scale as f64).unwrap();
        if let Some(m) = mask {
            let m = Tensor::from_vec(m.to_vec(), (b, 1, l, l), &dev).unwrap();
            s = s.broadcast_add(&m).unwrap();
        }
        let max = s.max_keepdim(D::Minus1).unwrap();
        let e = s.broadcast_sub(&max).unwrap().exp().unwrap();
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, l, h * dh))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn case() -> impl Strategy<Value = (AttentionShape, Vec<f32>, Option<Vec<f32>>)> {
        (1usize..3, 1usize..4, 1usize..150, 1usize..12, any::<bool>()).prop_flat_map(
            |(batch, heads, len, d_head, masked)| {
                let shape = AttentionShape {
                    batch,
                    heads,
                    len,
                    d_head,
                };
                let n = 3 * batch * heads * len * d_head;
                // Sequence ids per position: the mask lets i attend j iff they are equal.
                let ids = proptest::collection::vec(0i64..3, batch * len);
                (
                    Just(shape),
                    proptest::collection::vec(-3f32..3.0, n),
                    ids.prop_map(move |ids| {
                        masked.then(|| {
                            let mut m = vec![0f32; batch * len * len];
                            for b in 0..batch {
                                for i in 0..len {
                                    for j in 0..len {
                                        if ids[b * len + i] != ids[b * len + j] {
                                            m[(b * len + i) * len + j] = f32::NEG_INFINITY;
                                        }
                                    }
                                }
                            }
                            m
                        })
                    }),
                )
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Against the composed candle ops, with the test's plain GEMM and, where one is
        /// loaded, the system BLAS (query blocks cross 64 rows at len ≥ 65). Outputs are
        /// averages of values in [−3, 3]: 10⁻⁵ is a few f32 roundings of summation order.
        #[test]
        fn fused_attention_equals_the_composed_ops((shape, qkv, mask) in case()) {
            let n = qkv.len() / 3;
            let (q, rest) = qkv.split_at(n);
            let (k, v) = rest.split_at(n);
            let scale = 1.0 / (shape.d_head as f32).sqrt();
            let want = composed(shape, q, k, v, mask.as_deref(), scale);
            let got = attention_core(&crate::test_values::NAIVE, shape, q, k, v, mask.as_deref(), scale);
            let d = max_abs_diff(&got, &want);
            prop_assert!(d < 1e-5, "plain GEMM: max |Δ| {d:e}");
            if let Some(blas) = crate::blas::get() {
                let got = attention_core(blas, shape, q, k, v, mask.as_deref(), scale);
                let d = max_abs_diff(&got, &want);
                prop_assert!(d < 1e-5, "blas: max |Δ| {d:e}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Against candle's LayerNorm and rotary kernels and the head transpose.
        #[test]
        fn split_heads_equals_the_composed_ops(
            batch in 1usize..3,
            len in 1usize..20,
            heads in 1usize..4,
            half in 1usize..6,
            with_ln in any::<bool>(),
            seed in 0u64..1000,
        ) {
            let dev = Device::Cpu;
            let dh = 2 * half;
            let d = heads * dh;
            let vals = |n: usize, salt: u64| -> Vec<f32> {
                (0..n as u64)
                    .map(|i| ((i * 2_654_435_761 + seed * 31 + salt) % 2001) as f32 / 500.0 - 2.0)
                    .collect()
            };
            let qkv = vals(batch * len * 3 * d, 1);
            let (wq, bq, wk, bk) = (vals(d, 2), vals(d, 3), vals(d, 4), vals(d, 5));
            let (cos, sin) = crate::rotary::rotary_tables(dh, len, DType::F32, &dev).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let eps = 1e-5f32;
            let got = split_heads(&HeadSplit {
                batch, len, heads, d_head: dh, qkv: &qkv,
                q_ln: with_ln.then_some((&wq[..], &bq[..], eps)),
                k_ln: with_ln.then_some((&wk[..], &bk[..], eps)),
                cos: &flat(&cos), sin: &flat(&sin),
            });
            let t = Tensor::from_vec(qkv.clone(), (batch, len, 3 * d), &dev).unwrap();
            for (part, (w, b)) in [(0, (&wq, &bq)), (1, (&wk, &bk)), (2, (&wq, &bq))] {
                let mut x = t.narrow(D::Minus1, part * d, d).unwrap().contiguous().unwrap();
                if with_ln && part < 2 {
                    let w = Tensor::new(w.as_slice(), &dev).unwrap();
                    let b = Tensor::new(b.as_slice(), &dev).unwrap();
                    x = candle_nn::ops::layer_norm(&x, &w, &b, eps).unwrap();
                }
                let mut x = x.reshape((batch, len, heads, dh)).unwrap()
                    .transpose(1, 2).unwrap().contiguous().unwrap();
                if part < 2 {
                    x = candle_nn::rotary_emb::rope(&x, &cos, &sin).unwrap();
                }
                let diff = max_abs_diff(&got[part], &flat(&x));
                prop_assert!(diff < 1e-5, "part {part}: max |Δ| {diff:e}");
            }
        }
    }

    #[test]
    fn the_tensor_entry_point_declines_what_it_cannot_take() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 5, 4), DType::F32, &dev).unwrap();
        assert!(fused_attention(&q, &k, &k, None, 0.5).unwrap().is_none());
        let var = candle_core::Var::from_tensor(&q).unwrap();
        assert!(fused_attention(var.as_tensor(), &q, &q, None, 0.5)
            .unwrap()
            .is_none());
        if crate::blas::get().is_some() {
            let out = fused_attention(&q, &q, &q, None, 0.5).unwrap().unwrap();
            assert_eq!(out.dims(), [1, 3, 8]);
        }
    }
}
