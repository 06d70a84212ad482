//! Rotary position embedding, GPT-NeoX "half split" layout over the whole head (spec §2.4).

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// cos/sin tables for positions `0..seq_len`, shape `[seq_len, d_head / 2]`, computed in f32 as
/// the reference does and then cast to the compute dtype.
pub fn rotary_tables(
    d_head: usize,
    seq_len: usize,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = d_head / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d_head as f32))
        .collect();
    let mut cos = Vec::with_capacity(seq_len * half);
    let mut sin = Vec::with_capacity(seq_len * half);
    for p in 0..seq_len {
        for &f in &inv_freq {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (seq_len, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (seq_len, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

/// Applies the rotation to `x` of shape `[B, H, L, d_head]`: candle's fused kernel for
/// inference; the same formula from differentiable ops when `x` tracks gradients (the kernel has
/// no backward pass).
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        if let Some(y) = rotary_with_backward(x, cos, sin)? {
            return Ok(y);
        }
        return apply_rotary_differentiable(x, cos, sin);
    }
    candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)
}

/// `[x1, x2] -> [x1·cos − x2·sin, x2·cos + x1·sin]` over the two halves of each head.
pub fn apply_rotary_differentiable(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(candle_core::D::Minus1)? / 2;
    let x1 = x.narrow(candle_core::D::Minus1, 0, half)?;
    let x2 = x.narrow(candle_core::D::Minus1, half, half)?;
    let first = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let second = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[first, second], candle_core::D::Minus1)
}

/// The rotation as one op whose backward is the inverse rotation (the same with `−sin`), for
/// f32 CPU training; `None` elsewhere. Why: composed, it is nine graph nodes per tensor (two
/// narrows, four products, a difference, a sum and a concatenation), each with its own
/// gradient buffer in candle's backward pass, for q and for k in every layer.
fn rotary_with_backward(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !cpu_f32(x) || !cpu_f32(cos) || !cpu_f32(sin) || x.rank() != 4 {
        return Ok(None);
    }
    let (_, _, l, d) = x.dims4()?;
    if d % 2 != 0 || cos.dims() != [l, d / 2] || sin.dims() != [l, d / 2] {
        return Ok(None);
    }
    let table = |t: &Tensor| -> Result<Vec<f32>> { t.detach().flatten_all()?.to_vec1::<f32>() };
    let op = Rotation {
        cos: std::sync::Arc::new(table(cos)?),
        sin: std::sync::Arc::new(table(sin)?),
        inverse: false,
    };
    Ok(Some(x.contiguous()?.apply_op1(op)?))
}

/// `[x₁, x₂] → [x₁·cos ∓ x₂·sin, x₂·cos ± x₁·sin]` per head of `[B, H, L, D]` (lower signs when
/// `inverse`).
#[derive(Clone)]
struct Rotation {
    cos: std::sync::Arc<Vec<f32>>,
    sin: std::sync::Arc<Vec<f32>>,
    inverse: bool,
}

impl CustomOp1 for Rotation {
    fn name(&self) -> &'static str {
        "rotary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((a, b))) = (s, layout.contiguous_offsets()) else {
            return Err(candle_core::Error::Msg(
                "rotary: expected contiguous f32".into(),
            ));
        };
        let x = &v[a..b];
        let dims = layout.shape().dims();
        let (l, d) = (dims[2], dims[3]);
        let half = d / 2;
        let sign = if self.inverse { -1.0f32 } else { 1.0 };
        let mut y = vec![0f32; x.len()];
        if !y.is_empty() {
            y.par_chunks_mut(l * d)
                .zip(x.par_chunks(l * d))
                .for_each(|(yh, xh)| {
                    for p in 0..l {
                        let (c, sn) =
                            (&self.cos[p * half..][..half], &self.sin[p * half..][..half]);
                        let (xr, yr) = (&xh[p * d..][..d], &mut yh[p * d..][..d]);
                        let (x1, x2) = xr.split_at(half);
                        let (y1, y2) = yr.split_at_mut(half);
                        for i in 0..half {
                            let si = sign * sn[i];
                            y1[i] = x1[i] * c[i] - x2[i] * si;
                            y2[i] = x2[i] * c[i] + x1[i] * si;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Rotation {
            inverse: !self.inverse,
            ..self.clone()
        };
        Ok(Some(grad.contiguous()?.apply_op1(inverse)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused candle kernel must compute exactly the reference formula.
    #[test]
    fn rope_matches_the_written_formula() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, l, d) = (1, 2, 5, 8);
        let data: Vec<f32> = (0..b * h * l * d)
            .map(|i| ((i * 37 % 11) as f32) - 5.0)
            .collect();
        let x = Tensor::from_vec(data.clone(), (b, h, l, d), &dev)?;
        let (cos, sin) = rotary_tables(d, l, DType::F32, &dev)?;
        let y = apply_rotary(&x, &cos, &sin)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (cos, sin) = (cos.to_vec2::<f32>()?, sin.to_vec2::<f32>()?);
        for hh in 0..h {
            for p in 0..l {
                let base = (hh * l + p) * d;
                for i in 0..d / 2 {
                    let (u0, u1) = (data[base + i], data[base + i + d / 2]);
                    let want0 = u0 * cos[p][i] - u1 * sin[p][i];
                    let want1 = u1 * cos[p][i] + u0 * sin[p][i];
                    assert!((y[base + i] - want0).abs() < 1e-5);
                    assert!((y[base + i + d / 2] - want1).abs() < 1e-5);
                }
            }
        }
        Ok(())
    }

    /// The one-op rotation and its backward against the composed formula and its gradient.
    #[test]
    fn rotation_op_and_its_gradient_equal_the_composed_formula() -> Result<()> {
        let dev = Device::Cpu;
        for (b, h, l, d, seed) in [(1, 1, 1, 2, 1u64), (2, 3, 7, 10, 2), (1, 2, 33, 64, 3)] {
            let n = b * h * l * d;
            let x = candle_core::Var::from_tensor(&Tensor::from_vec(
                crate::test_values::uniform(n, seed),
                (b, h, l, d),
                &dev,
            )?)?;
            let c = Tensor::from_vec(crate::test_values::uniform(n, seed + 1), (b, h, l, d), &dev)?;
            let (cos, sin) = rotary_tables(d, l, DType::F32, &dev)?;
            let fused = rotary_with_backward(x.as_tensor(), &cos, &sin)?.expect("takes f32 CPU");
            let composed = apply_rotary_differentiable(x.as_tensor(), &cos, &sin)?;
            let grad = |y: &Tensor| -> Result<Tensor> {
                Ok((y * &c)?
                    .sum_all()?
                    .backward()?
                    .get(x.as_tensor())
                    .unwrap()
                    .clone())
            };
            let diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
                (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
            };
            assert!(diff(&fused, &composed)? < 1e-6);
            assert!(diff(&grad(&fused)?, &grad(&composed)?)? < 1e-6);
        }
        Ok(())
    }
}
