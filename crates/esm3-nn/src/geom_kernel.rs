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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use proptest::prelude::*;

    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        crate::test_values::uniform(n, seed)
            .into_iter()
            .map(|v| v * scale)
            .collect()
    }

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
            let arrays: Vec<Vec<f32>> = (0..5).map(|i| values(n, seed * 7 + i as u64, scales[i])).collect();
            let rw: Vec<f32> = values(heads, seed + 11, 1.0).iter().map(|x| x.abs() + 0.1).collect();
            let dw: Vec<f32> = values(heads, seed + 12, 1.0).iter().map(|x| x.abs() + 0.1).collect();
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
