//! Rotary position embedding, GPT-NeoX "half split" layout over the whole head (spec §2.4).

use candle_core::{DType, Device, Result, Tensor};

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
}
