//! Fused, differentiable CPU kernels for training: LayerNorm, GELU (erf) and softmax
//! cross-entropy, each one pass forward and one pass backward.
//!
//! Composed from candle's elementwise ops these layers cost a fresh full-size tensor per
//! primitive, and their backward passes several more: on the VQ-VAE's `[4, 128, 128, 128]` pair
//! activations the backward of one LayerNorm took 0.5 s, of one GELU 0.4 s and of the three
//! pairwise cross-entropies 0.3 s, most of a 1.3 s backward pass. Here each is one row-parallel
//! pass that writes its output once. The forward values are those of the composed formulas (the
//! GELU's bit for bit: the same `erf`); the composed formulas remain the path on other devices
//! and dtypes, and are what the tests check these kernels against.

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Error, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

use crate::fastmath;

/// Rows per rayon task: enough work to amortise the task, small enough to balance two cores.
const ROWS_PER_TASK: usize = 64;

/// The values of a contiguous f32 CPU storage, for every CPU op of this crate; an error
/// naming `what` otherwise.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        return Err(Error::Msg(format!("fused {what}: expected f32")));
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(Error::Msg(format!("fused {what}: operand not contiguous"))),
    }
}

/// A backward pass's gradient for `operand`, shaped like it: `None` where the operand is not
/// tracked (candle then skips it), so untracked gradients are never materialised.
pub(crate) fn grad_for(
    operand: &Tensor,
    values: impl FnOnce() -> Vec<f32>,
) -> Result<Option<Tensor>> {
    match operand.track_op() {
        true => Ok(Some(Tensor::from_vec(
            values(),
            operand.shape(),
            operand.device(),
        )?)),
        false => Ok(None),
    }
}

/// Whether the fused kernels take these operands: f32 on the CPU.
pub(crate) fn takes(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// LayerNorm over the last dimension, `(x − mean) / √(var + eps) · weight + bias`, with the
/// fused backward when `x`, `weight`, `bias` are f32 on the CPU (else `None`: compose it).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    if !takes(&[x, weight, bias]) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    Ok(Some(x.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )?))
}

struct LayerNormOp {
    eps: f32,
}

/// Mean and 1/√(var + eps) of one row (two passes, as the composed formula).
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let c = x.len() as f32;
    let mean = x.iter().sum::<f32>() / c;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ws: &CpuStorage,
        lw: &Layout,
        bs: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            f32_slice(xs, lx, "layer norm input")?,
            f32_slice(ws, lw, "layer norm weight")?,
            f32_slice(bs, lb, "layer norm bias")?,
        );
        let c = w.len();
        if b.len() != c || lx.shape().dims().last() != Some(&c) {
            return Err(Error::Msg(format!(
                "fused layer norm: input {:?}, weight [{c}], bias [{}]",
                lx.shape(),
                b.len()
            )));
        }
        let mut y = vec![0f32; x.len()];
        if c > 0 {
            y.par_chunks_mut(c * ROWS_PER_TASK)
                .zip(x.par_chunks(c * ROWS_PER_TASK))
                .for_each(|(yc, xc)| {
                    for (yr, xr) in yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)) {
                        let (mean, rstd) = row_stats(xr, self.eps);
                        for j in 0..c {
                            yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(y), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = w.elem_count();
        let rows = x.elem_count() / c.max(1);
        let packed =
            x.apply_op3_no_bwd(w, &grad.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows, 1)?.reshape(w.shape())?;
        let db = packed.narrow(0, rows + 1, 1)?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// LayerNorm backward from `(x, weight, grad)`: `[rows + 2, C]` holding dx, then dweight,
/// then dbias (one op can return one tensor).
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ws: &CpuStorage,
        lw: &Layout,
        gs: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, g) = (
            f32_slice(xs, lx, "layer norm input")?,
            f32_slice(ws, lw, "layer norm weight")?,
            f32_slice(gs, lg, "layer norm gradient")?,
        );
        let c = w.len();
        let rows = x.len() / c.max(1);
        let mut out = vec![0f32; (rows + 2) * c];
        if c == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((rows + 2, c))));
        }
        let (dx, params) = out.split_at_mut(rows * c);
        // Per-task partial sums of dweight and dbias, added up after.
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(c * ROWS_PER_TASK)
            .zip(x.par_chunks(c * ROWS_PER_TASK))
            .zip(g.par_chunks(c * ROWS_PER_TASK))
            .map(|((dxc, xc), gc)| {
                let mut acc = vec![0f32; 2 * c];
                let mut xhat = vec![0f32; c];
                for ((dxr, xr), gr) in dxc
                    .chunks_exact_mut(c)
                    .zip(xc.chunks_exact(c))
                    .zip(gc.chunks_exact(c))
                {
                    let (mean, rstd) = row_stats(xr, self.eps);
                    let (mut sum_gw, mut sum_gw_xhat) = (0f32, 0f32);
                    for j in 0..c {
                        xhat[j] = (xr[j] - mean) * rstd;
                        let gw = gr[j] * w[j];
                        sum_gw += gw;
                        sum_gw_xhat += gw * xhat[j];
                        acc[j] += gr[j] * xhat[j];
                        acc[c + j] += gr[j];
                    }
                    let (m1, m2) = (sum_gw / c as f32, sum_gw_xhat / c as f32);
                    for j in 0..c {
                        dxr[j] = rstd * (gr[j] * w[j] - m1 - xhat[j] * m2);
                    }
                }
                acc
            })
            .collect();
        for p in partials {
            for (a, v) in params.iter_mut().zip(p) {
                *a += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, c))))
    }
}

// ---------------------------------------------------------------------------------------------
// GELU (erf)

/// `0.5 · x · (1 + erf(x / √2))` with the fused backward for f32 CPU tensors; candle's op
/// (the same values) elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !x.track_op() || !takes(&[x]) {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1(GeluOp)
}

struct GeluOp;

/// `0.5 · v · (1 + erf(v / √2))` with the vectorisable erf (within 3·10⁻⁷ of libm's, which
/// `Tensor::gelu_erf` calls: a scalar call that was 12 % of a VQ-VAE training step).
#[inline(always)]
fn gelu(v: f32) -> f32 {
    (fastmath::erf(v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * v
}

#[inline(always)]
fn gelu_derivative(v: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + fastmath::erf(v * std::f32::consts::FRAC_1_SQRT_2));
    cdf + v * INV_SQRT_2PI * fastmath::exp(-0.5 * v * v)
}

/// `y = gelu(x)` (`g` absent) or `y = g · gelu′(x)`, elementwise over one chunk.
#[inline(always)]
fn gelu_chunk(x: &[f32], g: Option<&[f32]>, y: &mut [f32]) {
    match g {
        None => y.iter_mut().zip(x).for_each(|(y, &v)| *y = gelu(v)),
        Some(g) => {
            for ((y, &v), &gv) in y.iter_mut().zip(x).zip(g) {
                *y = gv * gelu_derivative(v);
            }
        }
    }
}

/// The same source compiled for AVX-512 (16 lanes), chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_chunk_avx512(x: &[f32], g: Option<&[f32]>, y: &mut [f32]) {
    gelu_chunk(x, g, y)
}

/// One query row of [`crate::pairwise::pair_gelu`]: `out[j·C + x] = gelu((p + col)[j·C + x] −
/// row[x])`, or with `g` the gradient `g · gelu′(…)`, for `C = row.len()`.
pub(crate) fn pair_gelu_rows(
    p: &[f32],
    col: &[f32],
    row: &[f32],
    g: Option<&[f32]>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { pair_gelu_rows_avx512(p, col, row, g, out) };
    }
    pair_gelu_rows_impl(p, col, row, g, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pair_gelu_rows_avx512(
    p: &[f32],
    col: &[f32],
    row: &[f32],
    g: Option<&[f32]>,
    out: &mut [f32],
) {
    pair_gelu_rows_impl(p, col, row, g, out)
}

#[inline(always)]
fn pair_gelu_rows_impl(p: &[f32], col: &[f32], row: &[f32], g: Option<&[f32]>, out: &mut [f32]) {
    let c = row.len();
    if c == 0 {
        return;
    }
    for (j, o) in out.chunks_exact_mut(c).enumerate() {
        let (pj, cj) = (&p[j * c..(j + 1) * c], &col[j * c..(j + 1) * c]);
        match g {
            None => {
                for x in 0..c {
                    o[x] = gelu((pj[x] + cj[x]) - row[x]);
                }
            }
            Some(g) => {
                let gj = &g[j * c..(j + 1) * c];
                for x in 0..c {
                    o[x] = gj[x] * gelu_derivative((pj[x] + cj[x]) - row[x]);
                }
            }
        }
    }
}

/// [`gelu_chunk`] over the whole slice in parallel chunks.
fn gelu_map(x: &[f32], g: Option<&[f32]>) -> Vec<f32> {
    const CHUNK: usize = 4096;
    let mut y = vec![0f32; x.len()];
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx512f");
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(i, (yc, xc))| {
            let gc = g.map(|g| &g[i * CHUNK..i * CHUNK + xc.len()]);
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: the CPU has AVX-512F, checked above.
                return unsafe { gelu_chunk_avx512(xc, gc, yc) };
            }
            gelu_chunk(xc, gc, yc)
        });
    y
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "fused-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gelu input")?;
        Ok((CpuStorage::F32(gelu_map(x, None)), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "fused-gelu-erf-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        gs: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, lx, "gelu input")?;
        let g = f32_slice(gs, lg, "gelu gradient")?;
        if x.len() != g.len() {
            return Err(Error::Msg(
                "fused gelu: gradient and input differ in size".into(),
            ));
        }
        let dx = gelu_map(x, Some(g));
        Ok((CpuStorage::F32(dx), lx.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy

/// `Σᵢ mᵢ · (−log softmax(logitsᵢ)[labelᵢ]) / max(Σᵢ mᵢ, 1)` over the rows of `logits`
/// `[..., C]`, with `labels` and `mask` of the leading shape: a masked mean of the negative
/// log-likelihood, as a scalar, for f32 CPU logits (else `None`). Rows with mask 0 are skipped,
/// so their labels may be anything; a label ≥ C on a counted row is an error.
pub fn masked_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    mask: &Tensor,
) -> Result<Option<Tensor>> {
    if !takes(&[logits]) {
        return Ok(None);
    }
    let c = logits.dims().last().copied().unwrap_or(0);
    if c == 0 || logits.rank() == 0 {
        return Err(Error::Msg(format!(
            "cross-entropy: logits {:?} have no classes",
            logits.shape()
        )));
    }
    let rows = logits.elem_count() / c.max(1);
    let labels = labels
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    let mask = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if labels.len() != rows || mask.len() != rows {
        return Err(Error::Msg(format!(
            "cross-entropy: {rows} rows of logits {:?}, {} labels, {} mask values",
            logits.shape(),
            labels.len(),
            mask.len()
        )));
    }
    let count = mask.iter().sum::<f32>().max(1.0);
    for (i, (&l, &m)) in labels.iter().zip(&mask).enumerate() {
        if m != 0.0 && l as usize >= c {
            return Err(Error::Msg(format!(
                "cross-entropy: label {l} at row {i} is not below the {c} classes"
            )));
        }
    }
    let op = CrossEntropyOp {
        labels: Arc::new(labels),
        weights: Arc::new(mask.iter().map(|m| m / count).collect()),
    };
    Ok(Some(
        logits.contiguous()?.reshape((rows, c))?.apply_op1(op)?,
    ))
}

#[derive(Clone)]
struct CrossEntropyOp {
    labels: Arc<Vec<u32>>,
    weights: Arc<Vec<f32>>,
}

/// `out[j] = exp(row[j] − max(row))`; returns the max and the sum of `out`. With the
/// vectorisable `exp` and reductions (libm's scalar `expf` here was 12 % of a VQ-VAE step:
/// its pairwise heads are 65 k rows × 224 logits at 4 × 128).
#[inline(always)]
fn exp_shifted(row: &[f32], out: &mut [f32]) -> (f32, f32) {
    let max = fastmath::lane_max(row);
    for (o, &v) in out.iter_mut().zip(row) {
        *o = fastmath::exp(v - max);
    }
    (max, fastmath::lane_sum(out))
}

/// Σ over the counted rows of one task's chunk of `w · nll`, rows `first..`.
#[inline(always)]
fn cross_entropy_chunk(op: &CrossEntropyOp, chunk: &[f32], c: usize, first: usize) -> f64 {
    let mut scratch = vec![0f32; c];
    let mut acc = 0f64;
    for (r, row) in chunk.chunks_exact(c).enumerate() {
        let i = first + r;
        let w = op.weights[i];
        if w != 0.0 {
            let (max, sum) = exp_shifted(row, &mut scratch);
            let nll = sum.ln() - (row[op.labels[i] as usize] - max);
            acc += f64::from(w * nll);
        }
    }
    acc
}

/// `g · wᵢ · (softmax(rowᵢ) − onehot(labelᵢ))` into one task's chunk of `dx`, rows `first..`.
#[inline(always)]
fn cross_entropy_grad_chunk(
    op: &CrossEntropyOp,
    chunk: &[f32],
    dx: &mut [f32],
    c: usize,
    first: usize,
    g: f32,
) {
    for (r, (dr, row)) in dx
        .chunks_exact_mut(c)
        .zip(chunk.chunks_exact(c))
        .enumerate()
    {
        let i = first + r;
        let w = op.weights[i];
        if w == 0.0 {
            continue;
        }
        // One exp per logit: the shifted exponentials are written, summed, then scaled.
        let (_, sum) = exp_shifted(row, dr);
        let softmax_scale = g * w / sum;
        dr.iter_mut().for_each(|d| *d *= softmax_scale);
        dr[op.labels[i] as usize] -= g * w;
    }
}

/// The two chunk kernels compiled for AVX-512 (16 lanes), chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn cross_entropy_chunk_avx512(
    op: &CrossEntropyOp,
    chunk: &[f32],
    c: usize,
    first: usize,
) -> f64 {
    cross_entropy_chunk(op, chunk, c, first)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn cross_entropy_grad_chunk_avx512(
    op: &CrossEntropyOp,
    chunk: &[f32],
    dx: &mut [f32],
    c: usize,
    first: usize,
    g: f32,
) {
    cross_entropy_grad_chunk(op, chunk, dx, c, first, g)
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl CustomOp1 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "cross-entropy logits")?;
        let (_, c) = l.shape().dims2()?;
        let wide = avx512();
        let total: f64 = x
            .par_chunks(c.max(1) * ROWS_PER_TASK)
            .enumerate()
            .map(|(t, chunk)| {
                #[cfg(target_arch = "x86_64")]
                if wide {
                    // SAFETY: the CPU has AVX-512F, checked above.
                    return unsafe {
                        cross_entropy_chunk_avx512(self, chunk, c, t * ROWS_PER_TASK)
                    };
                }
                let _ = wide;
                cross_entropy_chunk(self, chunk, c, t * ROWS_PER_TASK)
            })
            .sum();
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            logits.apply_op2_no_bwd(grad, &CrossEntropyGrad(self.clone()))?,
        ))
    }
}

/// `g · wᵢ · (softmax(logitsᵢ) − onehot(labelᵢ))` per row, from `(logits, g)`.
struct CrossEntropyGrad(CrossEntropyOp);

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        gs: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(xs, lx, "cross-entropy logits")?;
        let g = f32_slice(gs, lg, "cross-entropy gradient")?[0];
        let (_, c) = lx.shape().dims2()?;
        let op = &self.0;
        let mut dx = vec![0f32; x.len()];
        let wide = avx512();
        dx.par_chunks_mut(c.max(1) * ROWS_PER_TASK)
            .zip(x.par_chunks(c.max(1) * ROWS_PER_TASK))
            .enumerate()
            .for_each(|(t, (dc, xc))| {
                let first = t * ROWS_PER_TASK;
                #[cfg(target_arch = "x86_64")]
                if wide {
                    // SAFETY: the CPU has AVX-512F, checked above.
                    return unsafe { cross_entropy_grad_chunk_avx512(op, xc, dc, c, first, g) };
                }
                let _ = wide;
                cross_entropy_grad_chunk(op, xc, dc, c, first, g)
            });
        Ok((CpuStorage::F32(dx), lx.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var, D};
    use proptest::prelude::*;

    use super::*;
    use crate::test_values::{max_abs, uniform};

    fn var(shape: &[usize], seed: u64, scale: f32) -> Var {
        let n = shape.iter().product();
        let v: Vec<f32> = uniform(n, seed).into_iter().map(|x| x * scale).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    /// A scalar objective that weights every output element differently, so the backward
    /// pass is checked with a non-uniform incoming gradient.
    fn weighted_sum(y: &Tensor, seed: u64) -> Tensor {
        let w = var(y.dims(), seed, 1.0);
        (y * w.as_tensor()).unwrap().sum_all().unwrap()
    }

    fn composed_layer_norm(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let centered = x.broadcast_sub(&mean).unwrap();
        let var = centered.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        centered
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(w)
            .unwrap()
            .broadcast_add(b)
            .unwrap()
    }

    fn composed_cross_entropy(logits: &Tensor, labels: &Tensor, mask: &Tensor) -> Tensor {
        let shifted = logits
            .broadcast_sub(&logits.max_keepdim(D::Minus1).unwrap().detach())
            .unwrap();
        let lse = shifted
            .exp()
            .unwrap()
            .sum_keepdim(D::Minus1)
            .unwrap()
            .log()
            .unwrap();
        let logp = shifted.broadcast_sub(&lse).unwrap();
        let nll = logp
            .gather(&labels.unsqueeze(D::Minus1).unwrap(), D::Minus1)
            .unwrap()
            .squeeze(D::Minus1)
            .unwrap()
            .neg()
            .unwrap();
        let total = (nll * mask).unwrap().sum_all().unwrap();
        (total / mask.sum_all().unwrap().maximum(1.0).unwrap()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn layer_norm_matches_the_composed_formula(rows in 1usize..150, c in 1usize..70,
                                                   scale in 0.1f32..20.0, seed in 0u64..1000) {
            let x = var(&[rows, c], seed, scale);
            let w = var(&[c], seed + 1, 1.5);
            let b = var(&[c], seed + 2, 0.5);
            let fused = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)
                .unwrap()
                .unwrap();
            let plain = composed_layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor());
            prop_assert!(max_abs(&fused, &plain) < 1e-4);
            let gf = weighted_sum(&fused, seed + 3).backward().unwrap();
            let gp = weighted_sum(&plain, seed + 3).backward().unwrap();
            for v in [&x, &w, &b] {
                let (a, e) = (gf.get(v.as_tensor()).unwrap(), gp.get(v.as_tensor()).unwrap());
                // Relative to the gradient's size: dweight sums `rows` terms.
                let tol = 1e-4 * (1.0 + rows as f32).sqrt() * scale.max(1.0);
                prop_assert!(max_abs(a, e) < tol, "max |Δ| {} ≥ {tol}", max_abs(a, e));
            }
        }

        #[test]
        fn gelu_matches_candle(n in 1usize..9000, scale in 0.1f32..8.0, seed in 0u64..1000) {
            let x = var(&[n], seed, scale);
            let fused = gelu_erf(x.as_tensor()).unwrap();
            let plain = x.as_tensor().gelu_erf().unwrap();
            // Our erf is within 3e-7 of libm's (fastmath's test); gelu scales it by |x|/2.
            let d = max_abs(&fused, &plain);
            prop_assert!(d <= 2e-7 * scale.max(1.0) + 1e-7 * scale, "max |Δ| {d}");
            let gf = weighted_sum(&fused, seed + 1).backward().unwrap();
            let gp = weighted_sum(&plain, seed + 1).backward().unwrap();
            let d = max_abs(gf.get(x.as_tensor()).unwrap(), gp.get(x.as_tensor()).unwrap());
            // candle rounds 1/√(2π) to 0.398942; ours carries all of f32's digits.
            prop_assert!(d < 1e-5 * scale.max(1.0), "max |Δ| {d}");
        }

        #[test]
        fn cross_entropy_matches_the_composed_formula(rows in 1usize..300, c in 2usize..80,
                                                      scale in 0.1f32..30.0, seed in 0u64..1000,
                                                      masked_every in 1usize..5) {
            let logits = var(&[rows, c], seed, scale);
            let labels: Vec<u32> = (0..rows).map(|i| ((i as u64 * 7 + seed) % c as u64) as u32).collect();
            let mask: Vec<f32> = (0..rows).map(|i| f32::from(i % masked_every != 0 || masked_every == 1)).collect();
            let labels = Tensor::from_vec(labels, rows, &Device::Cpu).unwrap();
            let mask = Tensor::from_vec(mask, rows, &Device::Cpu).unwrap();
            let fused = masked_cross_entropy(logits.as_tensor(), &labels, &mask).unwrap().unwrap();
            let plain = composed_cross_entropy(logits.as_tensor(), &labels, &mask);
            let (f, p) = (fused.to_scalar::<f32>().unwrap(), plain.to_scalar::<f32>().unwrap());
            prop_assert!((f - p).abs() < 1e-4 * p.abs().max(1.0), "{f} vs {p}");
            let scaled = |t: &Tensor| (t * 3.0).unwrap();
            let gf = scaled(&fused).backward().unwrap();
            let gp = scaled(&plain).backward().unwrap();
            let d = max_abs(gf.get(logits.as_tensor()).unwrap(), gp.get(logits.as_tensor()).unwrap());
            prop_assert!(d < 1e-6, "max |Δ| {d}");
        }
    }

    #[test]
    fn cross_entropy_ignores_labels_of_masked_rows_and_rejects_counted_ones() {
        let logits = var(&[3, 4], 5, 1.0);
        let labels = Tensor::new(&[1u32, 99, 2], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[1f32, 0.0, 1.0], &Device::Cpu).unwrap();
        assert!(masked_cross_entropy(logits.as_tensor(), &labels, &mask).is_ok());
        let all = Tensor::new(&[1f32, 1.0, 1.0], &Device::Cpu).unwrap();
        let err = masked_cross_entropy(logits.as_tensor(), &labels, &all).unwrap_err();
        assert!(err.to_string().contains("label 99 at row 1"), "{err}");
    }

    #[test]
    fn layer_norm_of_a_batched_input_keeps_its_shape_and_gradients() {
        let x = var(&[2, 3, 5, 8], 9, 2.0);
        let w = var(&[8], 10, 1.0);
        let b = var(&[8], 11, 1.0);
        let y = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)
            .unwrap()
            .unwrap();
        assert_eq!(y.dims(), &[2, 3, 5, 8]);
        let g = weighted_sum(&y, 12).backward().unwrap();
        assert_eq!(g.get(x.as_tensor()).unwrap().dims(), &[2, 3, 5, 8]);
        assert_eq!(g.get(w.as_tensor()).unwrap().dims(), &[8]);
    }
}
