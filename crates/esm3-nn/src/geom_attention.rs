//! Geometric attention over backbone frames (`GeometricReasoningOriginalImpl`, spec §2.6).
//!
//! Per head: one rotation-invariant direction term, one Euclidean distance term between
//! frame-transformed points, and a value vector that is rotated into global coordinates,
//! averaged, and rotated back into the query's frame.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::linear::{linear_b, Linear};

use crate::context::GeometryContext;
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

    #[test]
    fn softplus_matches_torch_including_the_threshold() {
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
        assert_eq!(softplus(25.0), 25.0);
        assert!((softplus(-3.0) - 0.048_587_35).abs() < 1e-7);
    }
}
