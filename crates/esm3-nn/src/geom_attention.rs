//! Geometric attention over backbone frames (`GeometricReasoningOriginalImpl`, spec §2.6).
//!
//! Per head: one rotation-invariant direction term, one Euclidean distance term between
//! frame-transformed points, and a value vector that is rotated into global coordinates,
//! averaged, and rotated back into the query's frame.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::VarBuilder;

use crate::linear::{linear_b, Linear};

use crate::context::GeometryContext;
use crate::fused::f32_slice;
use crate::geom_kernel::{geometric_attention_backward, geometric_attention_core, GeomInputs};
use crate::norm::{layer_norm, LayerNorm};

/// Largest `[B, heads, L, L, 3]` distance intermediate we allow before splitting the heads
/// into groups; bounds memory at long lengths without changing any result.
const MAX_PAIRWISE_BYTES: usize = 96 << 20;

pub struct GeometricAttention {
    s_norm: LayerNorm,
    proj: Linear,
    out_proj: Linear,
    /// softplus(distance_scale_per_head), `[V, 1, 1]` f32.
    distance_weight: Tensor,
    /// softplus(rotation_scale_per_head), `[V, 1, 1]` f32.
    rotation_weight: Tensor,
    /// The raw per-head scales, kept when they are trainable so the softplus is recomputed
    /// (and differentiated) at every forward.
    trainable_scales: Option<(Tensor, Tensor)>,
    v_heads: usize,
    mask_and_zero_frameless: bool,
}

/// PyTorch's softplus (β = 1, threshold 20) in f32.
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// softplus on a tensor, differentiable: log(1 + exp(x)) = max(x, 0) + log(1 + exp(−|x|)).
fn softplus_tensor(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let stable = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    x.relu()? + stable
}

impl GeometricAttention {
    /// `vb` points at `…geom_attn`.
    pub fn new(
        d_model: usize,
        v_heads: usize,
        bias: bool,
        mask_and_zero_frameless: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let s_norm = layer_norm(d_model, bias, vb.pp("s_norm"))?;
        let proj = linear_b(d_model, 15 * v_heads, bias, vb.pp("proj"))?;
        let out_proj = linear_b(3 * v_heads, d_model, bias, vb.pp("out_proj"))?;
        let raw_distance = vb.get(v_heads, "distance_scale_per_head")?;
        let raw_rotation = vb.get(v_heads, "rotation_scale_per_head")?;
        let trainable_scales = (raw_distance.track_op() || raw_rotation.track_op())
            .then(|| (raw_distance.clone(), raw_rotation.clone()));
        let weight = |raw: &Tensor| -> Result<Tensor> {
            let raw = raw.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let w: Vec<f32> = raw.into_iter().map(softplus).collect();
            Tensor::from_vec(w, (v_heads, 1, 1), vb.device())
        };
        Ok(Self {
            distance_weight: weight(&raw_distance)?,
            rotation_weight: weight(&raw_rotation)?,
            trainable_scales,
            s_norm,
            proj,
            out_proj,
            v_heads,
            mask_and_zero_frameless,
        })
    }

    /// Long because it follows the reference's `GeometricReasoningOriginalImpl.forward`
    /// (`esm/layers/geom_attention.py`) line for line, so a parity bug is found by reading the
    /// two side by side.
    pub fn forward(&self, x: &Tensor, geo: &GeometryContext) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let v = self.v_heads;
        let dtype = x.dtype();
        if self.mask_and_zero_frameless && !geo.any_frame {
            // Every query is frameless and zeroed: only out_proj's bias (if any) remains.
            let zeros = Tensor::zeros((b, l, 3 * v), dtype, x.device())?;
            return self.out_proj.forward(&zeros);
        }
        // Rotations and rotated vectors stay in f32 whatever the stream dtype (as in the reference).
        let p = self
            .proj
            .forward(&self.s_norm.forward(x)?)?
            .to_dtype(DType::F32)?;
        let rot_t = geo.rot.transpose(2, 3)?.contiguous()?;
        // p_rot: 3V vectors rotated into global coordinates: w = u · Rᵀ.
        let vec_rot = p.narrow(D::Minus1, 0, 9 * v)?.reshape((b, l, 3 * v, 3))?;
        let vec_rot = vec_rot.contiguous()?.matmul(&rot_t)?;
        // p_dist: 2V points moved into global coordinates: w = u · Rᵀ + t.
        let vec_dist = p
            .narrow(D::Minus1, 9 * v, 6 * v)?
            .reshape((b, l, 2 * v, 3))?
            .contiguous()?
            .matmul(&rot_t)?
            .broadcast_add(&geo.trans)?;
        // [B, L, n, 3] → [B, heads, L, 3]
        let per_head = |t: &Tensor, start: usize| -> Result<Tensor> {
            t.narrow(2, start, v)?.transpose(1, 2)?.contiguous()
        };
        let query_rot = per_head(&vec_rot, 0)?;
        let key_rot = per_head(&vec_rot, v)?;
        let value = per_head(&vec_rot, 2 * v)?;
        let query_dist = per_head(&vec_dist, 0)?;
        let key_dist = per_head(&vec_dist, v)?;

        let (distance_weight, rotation_weight) = match &self.trainable_scales {
            Some((d, r)) => (
                softplus_tensor(d)?.reshape((v, 1, 1))?,
                softplus_tensor(r)?.reshape((v, 1, 1))?,
            ),
            None => (self.distance_weight.clone(), self.rotation_weight.clone()),
        };
        let fused = !p.track_op() && x.device().is_cpu() && self.trainable_scales.is_none();
        let out = if fused {
            let data = |t: &Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1::<f32>() };
            let (qr, kr, val, qd, kd) = (
                data(&query_rot)?,
                data(&key_rot)?,
                data(&value)?,
                data(&query_dist)?,
                data(&key_dist)?,
            );
            let (rw, dw, bias) = (
                data(&rotation_weight)?,
                data(&distance_weight)?,
                data(&geo.bias)?,
            );
            let out =
                crate::geom_kernel::geometric_attention_core(&crate::geom_kernel::GeomInputs {
                    batch: b,
                    heads: v,
                    len: l,
                    query_rot: &qr,
                    key_rot: &kr,
                    value: &val,
                    query_dist: &qd,
                    key_dist: &kd,
                    rotation_weight: &rw,
                    distance_weight: &dw,
                    bias: &bias,
                });
            Tensor::from_vec(out, (b, v, l, 3), x.device())?
        } else if let Some(out) = attend_with_backward(
            [&query_rot, &key_rot, &value, &query_dist, &key_dist],
            &rotation_weight,
            &distance_weight,
            &geo.bias,
        )? {
            out
        } else {
            attend_composed(
                &query_rot,
                &key_rot,
                &value,
                &query_dist,
                &key_dist,
                &rotation_weight,
                &distance_weight,
                &geo.bias,
            )?
        };
        // Back into the query's local frame: o' = Rᵀ·o, i.e. row vector o times R.
        let out = out.transpose(1, 2)?.contiguous()?.matmul(&geo.rot)?; // [B, L, V, 3]
        let mut out = out.reshape((b, l, 3 * v))?;
        if self.mask_and_zero_frameless {
            out = out.broadcast_mul(&geo.frame_mask)?;
        }
        self.out_proj.forward(&out.to_dtype(dtype)?)
    }
}

/// The per-head core as one differentiable op for f32 CPU training (the fused forward and
/// [`crate::geom_kernel::geometric_attention_backward`]), `None` elsewhere. The five `[B, V,
/// L, 3]` arrays travel as one stacked operand and the two `[V, 1, 1]` weights as another
/// (a candle op takes at most three); the bias is a constant.
fn attend_with_backward(
    arrays: [&Tensor; 5],
    rotation_weight: &Tensor,
    distance_weight: &Tensor,
    bias: &Tensor,
) -> Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    let all = arrays
        .iter()
        .chain([&rotation_weight, &distance_weight, &bias]);
    if !all.into_iter().all(|t| cpu_f32(t)) {
        return Ok(None);
    }
    let (b, v, l, three) = arrays[0].dims4()?;
    if three != 3
        || arrays.iter().any(|t| t.dims() != arrays[0].dims())
        || bias.dims() != [b, 1, l, l]
        || rotation_weight.elem_count() != v
        || distance_weight.elem_count() != v
    {
        return Ok(None);
    }
    let packed = Tensor::stack(&arrays, 0)?;
    let weights = Tensor::cat(
        &[rotation_weight.reshape(v)?, distance_weight.reshape(v)?],
        0,
    )?;
    let op = AttendOp {
        bias: bias.detach().contiguous()?,
        dims: (b, v, l),
    };
    Ok(Some(packed.apply_op2(&weights, op)?))
}

/// `[5, B, V, L, 3]` arrays and `[2V]` weights → attended values `[B, V, L, 3]`.
struct AttendOp {
    bias: Tensor,
    dims: (usize, usize, usize),
}

impl AttendOp {
    fn inputs<'a>(&self, packed: &'a [f32], weights: &'a [f32], bias: &'a [f32]) -> GeomInputs<'a> {
        let (batch, heads, len) = self.dims;
        let n = batch * heads * len * 3;
        let part = |i: usize| &packed[i * n..(i + 1) * n];
        GeomInputs {
            batch,
            heads,
            len,
            query_rot: part(0),
            key_rot: part(1),
            value: part(2),
            query_dist: part(3),
            key_dist: part(4),
            rotation_weight: &weights[..heads],
            distance_weight: &weights[heads..],
            bias,
        }
    }
}

impl CustomOp2 for AttendOp {
    fn name(&self) -> &'static str {
        "geometric-attention-core"
    }

    fn cpu_fwd(
        &self,
        packed: &CpuStorage,
        lp: &Layout,
        weights: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bs, bl) = self.bias.storage_and_layout();
        let bias = crate::attention_kernel::cpu_f32_values(&bs, bl)?;
        let inputs = self.inputs(
            f32_slice(packed, lp, "geometric attention arrays")?,
            f32_slice(weights, lw, "geometric attention weights")?,
            bias,
        );
        let out = geometric_attention_core(&inputs);
        let (b, v, l) = self.dims;
        Ok((CpuStorage::F32(out), Shape::from((b, v, l, 3))))
    }

    fn bwd(
        &self,
        packed: &Tensor,
        weights: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grads = {
            let [(ps, pl), (ws, wl), (bs, bl), (gs, gl)] =
                [packed, weights, &self.bias, &grad].map(|t| t.storage_and_layout());
            use crate::attention_kernel::cpu_f32_values as values;
            let inputs = self.inputs(values(&ps, pl)?, values(&ws, wl)?, values(&bs, bl)?);
            geometric_attention_backward(&inputs, values(&gs, gl)?)
        };
        let d_packed = crate::fused::grad_for(packed, || {
            let mut all = grads.query_rot;
            for part in [grads.key_rot, grads.value, grads.query_dist, grads.key_dist] {
                all.extend_from_slice(&part);
            }
            all
        })?;
        let d_weights = crate::fused::grad_for(weights, || {
            let mut w = grads.rotation_weight;
            w.extend_from_slice(&grads.distance_weight);
            w
        })?;
        Ok((d_packed, d_weights))
    }
}

/// The per-head core from differentiable tensor ops (training, other devices): the
/// attended values `[B, V, L, 3]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_composed(
    query_rot: &Tensor,
    key_rot: &Tensor,
    value: &Tensor,
    query_dist: &Tensor,
    key_dist: &Tensor,
    rotation_weight: &Tensor,
    distance_weight: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    let (b, v, l, _) = query_rot.dims4()?;
    let sqrt3 = 3f64.sqrt();
    let group = (MAX_PAIRWISE_BYTES / (b * l * l * 3 * 4).max(1)).clamp(1, v);
    let mut outs = Vec::with_capacity(v.div_ceil(group));
    let mut h0 = 0;
    while h0 < v {
        let hn = group.min(v - h0);
        let qr = query_rot.narrow(1, h0, hn)?;
        let kr = key_rot.narrow(1, h0, hn)?;
        let rotation =
            (qr.matmul(&kr.t()?)? / sqrt3)?.broadcast_mul(&rotation_weight.narrow(0, h0, hn)?)?;
        let qd = query_dist.narrow(1, h0, hn)?.unsqueeze(3)?;
        let kd = key_dist.narrow(1, h0, hn)?.unsqueeze(2)?;
        let distance = (qd.broadcast_sub(&kd)?.sqr()?.sum(D::Minus1)?.sqrt()? / sqrt3)?
            .broadcast_mul(&distance_weight.narrow(0, h0, hn)?)?;
        let logits = (rotation - distance)?.broadcast_add(bias)?;
        let attn = crate::norm::softmax_last_dim(&logits)?;
        outs.push(attn.matmul(&value.narrow(1, h0, hn)?)?);
        h0 += hn;
    }
    Tensor::cat(&outs, 1) // [B, V, L, 3]
}

#[cfg(test)]
mod tests {
    use super::softplus;
    use super::{attend_composed, attend_with_backward};
    use crate::test_values::scaled;
    use candle_core::{Device, Tensor, Var};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The one-op core and its backward against the composed tensor ops and their
        /// gradients, for all five arrays and both weights, with masked keys (`f32::MIN` bias).
        #[test]
        fn the_core_op_and_its_gradients_equal_the_composed_form(
            batch in 1usize..3, heads in 1usize..5, len in 1usize..24, seed in 0u64..10_000,
            mask_every in 2usize..7,
        ) {
            let dev = Device::Cpu;
            let n = batch * heads * len * 3;
            let scales = [2.0, 2.0, 10.0, 10.0, 10.0];
            let var = |v: Vec<f32>, shape: &[usize]| Var::from_tensor(&Tensor::from_vec(v, shape, &dev).unwrap()).unwrap();
            let arrays: Vec<Var> = (0..5)
                .map(|i| var(scaled(n, seed * 7 + i as u64, scales[i]), &[batch, heads, len, 3]))
                .collect();
            let weight = |s: u64| var(scaled(heads, s, 1.0).iter().map(|x| x.abs() + 0.1).collect(), &[heads, 1, 1]);
            let (rw, dw) = (weight(seed + 11), weight(seed + 12));
            let mut bias = vec![0f32; batch * len * len];
            for (idx, b) in bias.iter_mut().enumerate() {
                if (idx % len) % mask_every == 1 {
                    *b = f32::MIN;
                }
            }
            let bias = Tensor::from_vec(bias, (batch, 1, len, len), &dev).unwrap();
            let c = Tensor::from_vec(scaled(n, seed + 13, 1.0), (batch, heads, len, 3), &dev).unwrap();
            let a: Vec<&Tensor> = arrays.iter().map(|v| v.as_tensor()).collect();
            let run = |out: Tensor| -> Vec<Tensor> {
                let grads = (&out * &c).unwrap().sum_all().unwrap().backward().unwrap();
                let mut all = vec![out];
                for v in arrays.iter().chain([&rw, &dw]) {
                    all.push(grads.get(v.as_tensor()).unwrap().clone());
                }
                all
            };
            let ours = run(attend_with_backward([a[0], a[1], a[2], a[3], a[4]], rw.as_tensor(), dw.as_tensor(), &bias).unwrap().unwrap());
            let composed = run(attend_composed(a[0], a[1], a[2], a[3], a[4], rw.as_tensor(), dw.as_tensor(), &bias).unwrap());
            let names = ["out", "d query_rot", "d key_rot", "d value", "d query_dist", "d key_dist", "d rotation_weight", "d distance_weight"];
            for ((name, x), y) in names.iter().zip(&ours).zip(&composed) {
                prop_assert_eq!(x.dims(), y.dims());
                let scale = y.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                prop_assert!(d <= 1e-5 * (1.0 + scale), "{}: max |Δ| {} (largest {})", name, d, scale);
            }
        }
    }

    #[test]
    fn softplus_matches_torch_including_the_threshold() {
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
        assert_eq!(softplus(25.0), 25.0);
        assert!((softplus(-3.0) - 0.048_587_35).abs() < 1e-7);
    }
}
