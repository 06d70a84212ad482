//! Seeded random weights for any model config: the starting point of training, and the way tests
//! build models of arbitrary shapes without a checkpoint.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::schema::schema;

/// SplitMix64 + Box–Muller: tiny, seedable and identical on every platform.
pub struct Normal {
    state: u64,
    spare: Option<f32>,
}

impl Normal {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    pub fn sample(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some((r * t.sin()) as f32);
        (r * t.cos()) as f32
    }
}

/// Random weights for every tensor of the config's schema. Matrices get a variance-preserving
/// scale (1/√fan_in); norm weights 1 + 0.1·N(0,1); biases and per-head scales 0.1·N(0,1).
/// Nothing sits at a "neutral" value, so tests exercise every parameter.
pub fn random_weights(config: &ModelConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = Normal::new(seed);
    let mut out = HashMap::new();
    for (name, shape) in schema(config) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if shape.len() == 2 {
            let scale = if name.contains("embed") {
                0.5
            } else {
                1.0 / (shape[1] as f32).sqrt()
            };
            (0..n).map(|_| rng.sample() * scale).collect()
        } else if name.ends_with(".weight") {
            (0..n).map(|_| 1.0 + 0.1 * rng.sample()).collect()
        } else {
            (0..n).map(|_| 0.1 * rng.sample()).collect()
        };
        out.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Normal;

    #[test]
    fn normal_samples_have_unit_moments_and_are_seeded() {
        let mut a = Normal::new(7);
        let xs: Vec<f32> = (0..20000).map(|_| a.sample()).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / xs.len() as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let mut b = Normal::new(7);
        assert_eq!(b.sample(), xs[0]);
    }
}
