//! Geometric attention's per-head core in one pass for CPU inference.
//!
//! Why by hand: composed from tensor ops, each head materialises `[L, L, 3]` differences, their
//! squares, sums, roots, two scaled `[L, L]` terms, their difference, the biased logits and the
//! softmax — eight passes over memory for ~20 flops per pair, with 256 heads in the 1.4B model.
//! Here each query row is computed, normalised and contracted with the values while it is in
//! cache. The arithmetic is the composed form's, operation for operation, up to summation order.

use rayon::prelude::*;

/// Inputs are `[B, V, L, 3]` row-major (rotated query/key directions, values, query/key points
/// in global coordinates), per-head softplus weights `[V]`, and the additive bias `[B, L, L]`.
/// Returns the attended values `[B, V, L, 3]`.
pub struct GeomInputs<'a> {
    pub batch: usize,
    pub heads: usize,
    pub len: usize,
    pub query_rot: &'a [f32],
    pub key_rot: &'a [f32],
    pub value: &'a [f32],
    pub query_dist: &'a [f32],
    pub key_dist: &'a [f32],
    pub rotation_weight: &'a [f32],
    pub distance_weight: &'a [f32],
    pub bias: &'a [f32],
}

pub fn geometric_attention_core(g: &GeomInputs) -> Vec<f32> {
    let (b, v, l) = (g.batch, g.heads, g.len);
    let n = b * v * l * 3;
    for s in [g.query_rot, g.key_rot, g.value, g.query_dist, g.key_dist] {
        assert_eq!(s.len(), n, "geometric attention input of the wrong size");
    }
    assert_eq!(g.bias.len(), b * l * l);
    assert!(g.rotation_weight.len() == v && g.distance_weight.len() == v);
    let mut out = vec![0f32; n];
    let sqrt3 = 3f32.sqrt();
    out.par_chunks_mut(l * 3).enumerate().for_each(|(bh, out)| {
        let (bi, h) = (bh / v, bh % v);
        let base = bh * l * 3;
        let soa = |s: &[f32]| -> [Vec<f32>; 3] {
            let s = &s[base..base + l * 3];
            [0, 1, 2].map(|c| (0..l).map(|j| s[j * 3 + c]).collect())
        };
        let [krx, kry, krz] = soa(g.key_rot);
        let [kdx, kdy, kdz] = soa(g.key_dist);
        let [vx, vy, vz] = soa(g.value);
        let (rw, dw) = (g.rotation_weight[h], g.distance_weight[h]);
        let mut logits = vec![0f32; l];
        for i in 0..l {
            let q = &g.query_rot[base + i * 3..base + i * 3 + 3];
            let p = &g.query_dist[base + i * 3..base + i * 3 + 3];
            let bias = &g.bias[(bi * l + i) * l..(bi * l + i + 1) * l];
            let mut max = f32::NEG_INFINITY;
            for j in 0..l {
                let dot = q[0] * krx[j] + q[1] * kry[j] + q[2] * krz[j];
                let rotation = (dot / sqrt3) * rw;
                let (dx, dy, dz) = (p[0] - kdx[j], p[1] - kdy[j], p[2] - kdz[j]);
                let distance = ((dx * dx + dy * dy + dz * dz).sqrt() / sqrt3) * dw;
                let x = (rotation - distance) + bias[j];
                logits[j] = x;
                max = max.max(x);
            }
            let mut sum = 0f32;
            for x in logits.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            let (mut ox, mut oy, mut oz) = (0f32, 0f32, 0f32);
            for j in 0..l {
                let pj = logits[j] / sum;
                ox += pj * vx[j];
                oy += pj * vy[j];
                oz += pj * vz[j];
            }
            out[i * 3] = ox;
            out[i * 3 + 1] = oy;
            out[i * 3 + 2] = oz;
        }
    });
    out
}

/// Gradients of [`geometric_attention_core`]'s output with respect to each of its inputs but
/// the bias (a constant mask), the arrays in the inputs' layouts.
pub struct GeomGrads {
    pub query_rot: Vec<f32>,
    pub key_rot: Vec<f32>,
    pub value: Vec<f32>,
    pub query_dist: Vec<f32>,
    pub key_dist: Vec<f32>,
    pub rotation_weight: Vec<f32>,
    pub distance_weight: Vec<f32>,
}

/// The backward pass of [`geometric_attention_core`] for the output gradient `d_out`
/// (`[B, V, L, 3]`), recomputing each query row's attention weights `a`:
/// `dv_j += a_ij·do_i`, `dℓ_ij = a_ij·(do_i·v_j − Σ_j' a_ij'·do_i·v_j')`, then through
/// `ℓ_ij = rw·(q_i·k_j)/√3 − dw·|p_i − d_j|/√3 + bias_ij` to q, k, p, d and the two weights.
/// Where a query point and a key point coincide the distance's gradient is taken as 0 (the
/// composed form's square root has none there).
///
/// Why by hand: composed, the backward of the pairwise `[L, L, 3]` differences and their
/// reductions was a quarter of a trunk training step (8 × 128 residues, one geometric layer).
///
/// Long because it is one pass: every gradient of a (query, key) pair is accumulated where the
/// pair's forward intermediates are recomputed, which is what makes it faster than the composed
/// backward; split, each part would recompute or store `[L, L, 3]` intermediates.
pub fn geometric_attention_backward(g: &GeomInputs, d_out: &[f32]) -> GeomGrads {
    let (b, v, l) = (g.batch, g.heads, g.len);
    let n = b * v * l * 3;
    assert_eq!(
        d_out.len(),
        n,
        "geometric attention gradient of the wrong size"
    );
    let sqrt3 = 3f32.sqrt();
    // Per (batch, head): the five array gradients of its rows, and its two weight gradients.
    let per_head: Vec<([Vec<f32>; 5], f32, f32)> = (0..b * v)
        .into_par_iter()
        .map(|bh| {
            let (bi, h) = (bh / v, bh % v);
            let base = bh * l * 3;
            let row = |s: &[f32], i: usize| -> [f32; 3] {
                let r = &s[base + i * 3..base + i * 3 + 3];
                [r[0], r[1], r[2]]
            };
            let (rw, dw) = (g.rotation_weight[h], g.distance_weight[h]);
            let mut grads: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; l * 3]);
            let (mut d_rw, mut d_dw) = (0f32, 0f32);
            let mut a = vec![0f32; l];
            let mut dist = vec![0f32; l];
            let mut rot = vec![0f32; l];
            for i in 0..l {
                let (q, p, d_o) = (row(g.query_rot, i), row(g.query_dist, i), row(d_out, i));
                let bias = &g.bias[(bi * l + i) * l..(bi * l + i + 1) * l];
                let mut max = f32::NEG_INFINITY;
                for j in 0..l {
                    let (k, kd) = (row(g.key_rot, j), row(g.key_dist, j));
                    let dot = q[0] * k[0] + q[1] * k[1] + q[2] * k[2];
                    rot[j] = dot / sqrt3;
                    let (dx, dy, dz) = (p[0] - kd[0], p[1] - kd[1], p[2] - kd[2]);
                    dist[j] = (dx * dx + dy * dy + dz * dz).sqrt() / sqrt3;
                    let x = (rot[j] * rw - dist[j] * dw) + bias[j];
                    a[j] = x;
                    max = max.max(x);
                }
                let mut sum = 0f32;
                for x in a.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                // a_ij, da_ij = do_i · v_j and their weighted mean.
                let mut mean = 0f32;
                for (j, x) in a.iter_mut().enumerate() {
                    *x /= sum;
                    let vj = row(g.value, j);
                    mean += *x * (d_o[0] * vj[0] + d_o[1] * vj[1] + d_o[2] * vj[2]);
                }
                let (mut dq, mut dp) = ([0f32; 3], [0f32; 3]);
                for j in 0..l {
                    let (k, kd, vj) = (row(g.key_rot, j), row(g.key_dist, j), row(g.value, j));
                    let aj = a[j];
                    for c in 0..3 {
                        grads[2][j * 3 + c] += aj * d_o[c];
                    }
                    let da = d_o[0] * vj[0] + d_o[1] * vj[1] + d_o[2] * vj[2];
                    let dl = aj * (da - mean);
                    d_rw += dl * rot[j];
                    d_dw -= dl * dist[j];
                    let gr = dl * rw / sqrt3;
                    // d|p − d|/dp = (p − d)/|p − d|, with |p − d| = dist·√3.
                    let gd = if dist[j] > 0.0 {
                        -dl * dw / (sqrt3 * dist[j] * sqrt3)
                    } else {
                        0.0
                    };
                    for c in 0..3 {
                        dq[c] += gr * k[c];
                        grads[1][j * 3 + c] += gr * q[c];
                        let diff = p[c] - kd[c];
                        dp[c] += gd * diff;
                        grads[4][j * 3 + c] -= gd * diff;
                    }
                }
                grads[0][i * 3..i * 3 + 3].copy_from_slice(&dq);
                grads[3][i * 3..i * 3 + 3].copy_from_slice(&dp);
            }
            (grads, d_rw, d_dw)
        })
        .collect();
    let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| Vec::with_capacity(n));
    let (mut d_rw, mut d_dw) = (vec![0f32; v], vec![0f32; v]);
    for (bh, (grads, r, d)) in per_head.into_iter().enumerate() {
        for (o, g) in out.iter_mut().zip(grads) {
            o.extend_from_slice(&g);
        }
        d_rw[bh % v] += r;
        d_dw[bh % v] += d;
    }
    let [query_rot, key_rot, value, query_dist, key_dist] = out;
    GeomGrads {
        query_rot,
        key_rot,
        value,
        query_dist,
        key_dist,
        rotation_weight: d_rw,
        distance_weight: d_dw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::scaled;
    use candle_core::{Device, Tensor};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The fused kernel against the composed tensor-op form, with masked keys (`f32::MIN`
        /// bias) and whole rows masked, odd lengths and head counts.
        #[test]
        fn fused_core_matches_the_composed_form(batch in 1usize..3, heads in 1usize..6, len in 1usize..40,
                                                 seed in 0u64..10_000, mask_every in 2usize..7) {
            let dev = Device::Cpu;
            let n = batch * heads * len * 3;
            // Directions of a few units, values and points of ~10 Å, as in the trunk.
            let scales = [2.0, 2.0, 10.0, 10.0, 10.0];
            let arrays: Vec<Vec<f32>> = (0..5).map(|i| scaled(n, seed * 7 + i as u64, scales[i])).collect();
            let rw: Vec<f32> = scaled(heads, seed + 11, 1.0).iter().map(|x| x.abs() + 0.1).collect();
            let dw: Vec<f32> = scaled(heads, seed + 12, 1.0).iter().map(|x| x.abs() + 0.1).collect();
            let mut bias = vec![1f32; batch * len * len];
            for (idx, b) in bias.iter_mut().enumerate() {
                let (row, col) = (idx / len, idx % len);
                if col % mask_every == 0 || row % (mask_every + 3) == 1 {
                    *b = f32::MIN;
                } else if (row + col) % 5 == 0 {
                    *b = 0.0;
                }
            }
            let fused = geometric_attention_core(&GeomInputs {
                batch, heads, len,
                query_rot: &arrays[0], key_rot: &arrays[1], value: &arrays[2],
                query_dist: &arrays[3], key_dist: &arrays[4],
                rotation_weight: &rw, distance_weight: &dw, bias: &bias,
            });
            let t = |v: &Vec<f32>| Tensor::from_vec(v.clone(), (batch, heads, len, 3), &dev).unwrap();
            let composed = crate::geom_attention::attend_composed(
                &t(&arrays[0]), &t(&arrays[1]), &t(&arrays[2]), &t(&arrays[3]), &t(&arrays[4]),
                &Tensor::from_vec(rw, (heads, 1, 1), &dev).unwrap(),
                &Tensor::from_vec(dw, (heads, 1, 1), &dev).unwrap(),
                &Tensor::from_vec(bias, (batch, 1, len, len), &dev).unwrap(),
            ).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let max = fused.iter().zip(&composed).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // Values reach 10: a few f32 ulps of that (summation order differs).
            prop_assert!(max <= 5e-6 * 10.0, "max |fused - composed| = {max}");
        }
    }
}
