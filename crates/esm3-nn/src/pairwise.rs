//! Fused ops over all residue pairs, for the structure decoder's pairwise head in training.
//!
//! Why: that head builds `[B, L, L, C]` features from per-residue vectors by broadcasting,
//! `q_j ⊙ k_i` and `P_ij + a_j − b_i`. In candle's backward pass each broadcast operand's
//! gradient is a strided reduction of a pair-sized tensor, and every node adds a zeroed
//! pair-sized buffer: at 4 × 128 residues the pair tensors hold 4–8 M values each. Here each
//! op reads its inputs once and its backward sums over pairs with contiguous row loops.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::{f32_slice, grad_for, takes};

/// `[B, L, C]` dims of a per-residue operand, `None` unless both agree.
fn residue_dims(a: &Tensor, b: &Tensor) -> Option<(usize, usize, usize)> {
    let d = a.dims3().ok()?;
    (b.dims() == a.dims()).then_some(d)
}

// ---------------------------------------------------------------------------------------------
// Outer product

/// `out[b, i, j, :] = q[b, j, :] ⊙ k[b, i, :]` for `q`, `k` `[B, L, C]` f32 on the CPU (the
/// candle form: `q.unsqueeze(1).broadcast_mul(k.unsqueeze(2))`), differentiable in both;
/// `None` elsewhere.
pub fn outer_product(q: &Tensor, k: &Tensor) -> Result<Option<Tensor>> {
    if !takes(&[q, k]) || residue_dims(q, k).is_none() {
        return Ok(None);
    }
    Ok(Some(
        q.contiguous()?.apply_op2(&k.contiguous()?, OuterProduct)?,
    ))
}

struct OuterProduct;

impl CustomOp2 for OuterProduct {
    fn name(&self) -> &'static str {
        "pairwise-outer-product"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        lq: &Layout,
        ks: &CpuStorage,
        lk: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, l, c) = lq.shape().dims3()?;
        let (q, k) = (f32_slice(qs, lq, "q")?, f32_slice(ks, lk, "k")?);
        let mut out = vec![0f32; b * l * l * c];
        if !out.is_empty() {
            // One task per (b, i): row i of the output is k_i times every q_j.
            out.par_chunks_mut(l * c)
                .enumerate()
                .for_each(|(bi, rows)| {
                    let batch = bi / l;
                    let ki = &k[bi * c..(bi + 1) * c];
                    for (j, o) in rows.chunks_exact_mut(c).enumerate() {
                        let qj = &q[(batch * l + j) * c..(batch * l + j + 1) * c];
                        o.iter_mut()
                            .zip(qj.iter().zip(ki))
                            .for_each(|(o, (a, b))| *o = a * b);
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, l, l, c))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, l, c) = q.dims3()?;
        let grad = grad.contiguous()?;
        let (dq, dk) = {
            let guards = [q, k, &grad].map(|t| t.storage_and_layout());
            let v = |i: usize| crate::attention_kernel::cpu_f32_values(&guards[i].0, guards[i].1);
            let (q, k, g) = (v(0)?, v(1)?, v(2)?);
            // dk_i = Σ_j g_ij ⊙ q_j, dq_j = Σ_i g_ij ⊙ k_i, one batch per task.
            let per_batch: Vec<(Vec<f32>, Vec<f32>)> = (0..b)
                .into_par_iter()
                .map(|batch| {
                    let (mut dq, mut dk) = (vec![0f32; l * c], vec![0f32; l * c]);
                    for i in 0..l {
                        let ki = &k[(batch * l + i) * c..][..c];
                        for j in 0..l {
                            let gij = &g[((batch * l + i) * l + j) * c..][..c];
                            let qj = &q[(batch * l + j) * c..][..c];
                            let dki = &mut dk[i * c..(i + 1) * c];
                            for x in 0..c {
                                dki[x] += gij[x] * qj[x];
                            }
                            let dqj = &mut dq[j * c..(j + 1) * c];
                            for x in 0..c {
                                dqj[x] += gij[x] * ki[x];
                            }
                        }
                    }
                    (dq, dk)
                })
                .collect();
            let (dq, dk): (Vec<_>, Vec<_>) = per_batch.into_iter().unzip();
            (dq.concat(), dk.concat())
        };
        Ok((grad_for(q, || dq)?, grad_for(k, || dk)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Pair features through GELU

/// `gelu(p[b, i, j, :] + col[b, j, :] − row[b, i, :])` (erf GELU) for `p` `[B, L, L, C]` and
/// `col`, `row` `[B, L, C]`, f32 on the CPU (the candle form:
/// `gelu_erf(p.broadcast_add(col.unsqueeze(1)).broadcast_sub(row.unsqueeze(2)))`),
/// differentiable in all three; `None` elsewhere.
pub fn pair_gelu(p: &Tensor, col: &Tensor, row: &Tensor) -> Result<Option<Tensor>> {
    if !takes(&[p, col, row]) {
        return Ok(None);
    }
    let Some((b, l, c)) = residue_dims(col, row) else {
        return Ok(None);
    };
    if p.dims() != [b, l, l, c] {
        return Ok(None);
    }
    Ok(Some(p.contiguous()?.apply_op3(
        &col.contiguous()?,
        &row.contiguous()?,
        PairGelu,
    )?))
}

struct PairGelu;

impl CustomOp3 for PairGelu {
    fn name(&self) -> &'static str {
        "pairwise-gelu"
    }

    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        lp: &Layout,
        cs: &CpuStorage,
        lc: &Layout,
        rs: &CpuStorage,
        lr: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, l, c) = lc.shape().dims3()?;
        let (p, col, row) = (
            f32_slice(ps, lp, "p")?,
            f32_slice(cs, lc, "col")?,
            f32_slice(rs, lr, "row")?,
        );
        let mut out = vec![0f32; p.len()];
        if !out.is_empty() {
            out.par_chunks_mut(l * c).enumerate().for_each(|(bi, o)| {
                let batch = bi / l;
                let ri = &row[bi * c..(bi + 1) * c];
                let pi = &p[bi * l * c..(bi + 1) * l * c];
                let cols = &col[batch * l * c..(batch + 1) * l * c];
                crate::fused::pair_gelu_rows(pi, cols, ri, None, o);
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, l, l, c))))
    }

    fn bwd(
        &self,
        p_t: &Tensor,
        col_t: &Tensor,
        row_t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, l, c) = col_t.dims3()?;
        let grad = grad.contiguous()?;
        let mut dp = vec![0f32; b * l * l * c];
        let (dcol, drow) = {
            let guards = [p_t, col_t, row_t, &grad].map(|t| t.storage_and_layout());
            let v = |i: usize| crate::attention_kernel::cpu_f32_values(&guards[i].0, guards[i].1);
            let (p, col, row, g) = (v(0)?, v(1)?, v(2)?, v(3)?);
            if !dp.is_empty() {
                dp.par_chunks_mut(l * c).enumerate().for_each(|(bi, d)| {
                    let batch = bi / l;
                    let ri = &row[bi * c..(bi + 1) * c];
                    let pi = &p[bi * l * c..(bi + 1) * l * c];
                    let gi = &g[bi * l * c..(bi + 1) * l * c];
                    let cols = &col[batch * l * c..(batch + 1) * l * c];
                    crate::fused::pair_gelu_rows(pi, cols, ri, Some(gi), d);
                });
            }
            // dcol_j = Σ_i dp_ij, drow_i = −Σ_j dp_ij.
            let mut dcol = vec![0f32; b * l * c];
            let mut drow = vec![0f32; b * l * c];
            for bi in 0..b * l {
                let batch = bi / l;
                let d = &dp[bi * l * c..(bi + 1) * l * c];
                let dr = &mut drow[bi * c..(bi + 1) * c];
                let dc = &mut dcol[batch * l * c..(batch + 1) * l * c];
                for (dpj, dcj) in d.chunks_exact(c).zip(dc.chunks_exact_mut(c)) {
                    for x in 0..c {
                        dcj[x] += dpj[x];
                        dr[x] -= dpj[x];
                    }
                }
            }
            (dcol, drow)
        };
        Ok((
            grad_for(p_t, || dp)?,
            grad_for(col_t, || dcol)?,
            grad_for(row_t, || drow)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::{max_abs, uniform};
    use candle_core::{Device, Var};

    fn var(shape: &[usize], seed: u64, scale: f64) -> Var {
        let t =
            Tensor::from_vec(uniform(shape.iter().product(), seed), shape, &Device::Cpu).unwrap();
        Var::from_tensor(&t.affine(scale, 0.0).unwrap()).unwrap()
    }

    /// Output and gradients of `sum(c ⊙ f(vars))` for a fixed random `c`.
    fn run(out: Tensor, vars: &[&Var], seed: u64) -> Vec<Tensor> {
        let c =
            Tensor::from_vec(uniform(out.elem_count(), seed), out.shape(), &Device::Cpu).unwrap();
        let grads = (&out * &c).unwrap().sum_all().unwrap().backward().unwrap();
        let mut all = vec![out];
        all.extend(
            vars.iter()
                .map(|v| grads.get(v.as_tensor()).unwrap().clone()),
        );
        all
    }

    #[test]
    fn outer_product_and_its_gradients_equal_the_broadcast_form() {
        for (b, l, c, seed) in [(1, 1, 1, 1u64), (2, 7, 5, 2), (3, 19, 33, 3)] {
            let (q, k) = (var(&[b, l, c], seed, 2.0), var(&[b, l, c], seed + 1, 2.0));
            let ours = run(
                outer_product(q.as_tensor(), k.as_tensor())
                    .unwrap()
                    .unwrap(),
                &[&q, &k],
                seed + 2,
            );
            let candle = q
                .as_tensor()
                .unsqueeze(1)
                .unwrap()
                .broadcast_mul(&k.as_tensor().unsqueeze(2).unwrap())
                .unwrap();
            let candle = run(candle, &[&q, &k], seed + 2);
            for (a, e) in ours.iter().zip(&candle) {
                assert_eq!(a.dims(), e.dims());
                // Gradients sum L products of values up to 2.
                assert!(
                    max_abs(a, e) <= 1e-6 * (l as f32).sqrt() * 4.0,
                    "{}",
                    max_abs(a, e)
                );
            }
        }
    }

    #[test]
    fn pair_gelu_and_its_gradients_equal_the_broadcast_form() {
        for (b, l, c, seed) in [(1, 1, 1, 1u64), (2, 7, 5, 2), (2, 23, 40, 3)] {
            let p = var(&[b, l, l, c], seed, 3.0);
            let (col, row) = (
                var(&[b, l, c], seed + 1, 3.0),
                var(&[b, l, c], seed + 2, 3.0),
            );
            let vars = [&p, &col, &row];
            let ours = run(
                pair_gelu(p.as_tensor(), col.as_tensor(), row.as_tensor())
                    .unwrap()
                    .unwrap(),
                &vars,
                seed + 3,
            );
            let pre = p
                .as_tensor()
                .broadcast_add(&col.as_tensor().unsqueeze(1).unwrap())
                .unwrap()
                .broadcast_sub(&row.as_tensor().unsqueeze(2).unwrap())
                .unwrap();
            let candle = run(pre.gelu_erf().unwrap(), &vars, seed + 3);
            for (a, e) in ours.iter().zip(&candle) {
                assert_eq!(a.dims(), e.dims());
                // Our erf is within 3e-7 of libm's; gradients sum L terms.
                let d = max_abs(a, e);
                assert!(d <= 1e-5 * (l as f32).sqrt(), "max |Δ| {d}");
            }
        }
    }
}
