//! AdamW with decoupled weight decay, global-norm gradient clipping and the paper's learning-rate
//! schedule (spec esm3-training.md §2.1).
//!
//! Written here rather than taken from candle-nn because training must resume bit-for-bit: the
//! moment estimates and the step count are saved with every checkpoint and loaded back, which
//! candle-nn's optimizer does not expose.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters. Defaults: β = (0.9, 0.95), weight decay 0.01, ε = 1e-8, clip 1.0
/// (paper §2.1; ε is not given there).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Gradients are rescaled so their global L2 norm is at most this (0 = no clipping).
    pub clip_norm: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
            clip_norm: 1.0,
        }
    }
}

/// Linear warm-up to the peak, then cosine decay to `final_fraction` of the peak at
/// `total_steps` (paper: 10 %).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub final_fraction: f64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self {
            peak: 1e-3,
            warmup_steps: 100,
            total_steps: 1000,
            final_fraction: 0.1,
        }
    }
}

impl LrSchedule {
    /// Learning rate for optimizer step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.final_fraction + (1.0 - self.final_fraction) * cosine)
    }
}

/// One trainable tensor: its checkpoint name, the variable, and whether weight decay applies.
pub struct Param {
    pub name: String,
    pub var: Var,
    pub decay: bool,
    /// Rows of an embedding table that must stay exactly zero (the reference's padding rows):
    /// their gradient is dropped before the update.
    pub frozen_rows: Vec<usize>,
}

/// What one step did, for the log.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

pub struct AdamW {
    pub config: AdamWConfig,
    params: Vec<Param>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
}

/// The scalars of one AdamW update, rounded to f32 as candle's scalar ops round them.
struct UpdateConsts {
    clip: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    inv_bias1: f32,
    inv_bias2: f32,
    eps: f32,
    /// `1 − lr · weight_decay` where the parameter decays.
    decay: Option<f32>,
    lr: f32,
}

/// The AdamW update from candle's tensor ops (any device): the new θ, m and v.
fn composed_update(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &UpdateConsts,
) -> Result<(Tensor, Tensor, Tensor)> {
    let f = |x: f32| x as f64;
    let g = if k.clip != 1.0 {
        g.affine(f(k.clip), 0.0)?
    } else {
        g.clone()
    };
    let m = (m.affine(f(k.beta1), 0.0)? + g.affine(f(k.one_minus_beta1), 0.0)?)?;
    let v = (v.affine(f(k.beta2), 0.0)? + g.sqr()?.affine(f(k.one_minus_beta2), 0.0)?)?;
    let m_hat = m.affine(f(k.inv_bias1), 0.0)?;
    let v_hat = v.affine(f(k.inv_bias2), 0.0)?;
    let update = (m_hat / v_hat.sqrt()?.affine(1.0, f(k.eps))?)?;
    let theta = match k.decay {
        Some(d) => theta.affine(f(d), 0.0)?,
        None => theta.clone(),
    };
    let theta = (theta - update.affine(f(k.lr), 0.0)?)?;
    Ok((theta, m, v))
}

/// The AdamW update of one f32 CPU parameter in a single pass over θ, g, m and v, returning
/// the new θ, m and v; `None` elsewhere (the composed tensor ops then run). The arithmetic is
/// the composed form's, operation for operation in f32, so both give the same values. Why: the
/// composed form is a dozen full passes with fresh tensors per parameter, 6 % of a trunk step.
fn fused_update(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &UpdateConsts,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let usable = |t: &Tensor| {
        t.device().is_cpu()
            && t.dtype() == DType::F32
            && t.is_contiguous()
            && t.shape() == theta.shape()
    };
    if ![theta, g, m, v].into_iter().all(usable) {
        return Ok(None);
    }
    let n = theta.elem_count();
    let (mut new_theta, mut new_m, mut new_v) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    {
        let guards = [theta, g, m, v].map(|t| t.storage_and_layout());
        let slices: Vec<&[f32]> = guards
            .iter()
            .map(|(s, l)| match (&**s, l.contiguous_offsets()) {
                (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(x)), Some((a, b))) => {
                    Ok(&x[a..b])
                }
                _ => Err(candle_core::Error::Msg(
                    "adamw: expected contiguous f32 on the CPU".into(),
                )),
            })
            .collect::<Result<_>>()?;
        let (th, gr, mo, ve) = (slices[0], slices[1], slices[2], slices[3]);
        for i in 0..n {
            let gi = if k.clip != 1.0 { gr[i] * k.clip } else { gr[i] };
            let mi = mo[i] * k.beta1 + gi * k.one_minus_beta1;
            let vi = ve[i] * k.beta2 + (gi * gi) * k.one_minus_beta2;
            let update = (mi * k.inv_bias1) / ((vi * k.inv_bias2).sqrt() + k.eps);
            let t = match k.decay {
                Some(d) => th[i] * d,
                None => th[i],
            };
            new_theta[i] = t - update * k.lr;
            new_m[i] = mi;
            new_v[i] = vi;
        }
    }
    let shape = theta.shape();
    let dev = theta.device();
    Ok(Some((
        Tensor::from_vec(new_theta, shape, dev)?,
        Tensor::from_vec(new_m, shape, dev)?,
        Tensor::from_vec(new_v, shape, dev)?,
    )))
}

/// Whether a parameter gets weight decay: matrices of linear layers do; norms, biases, per-head
/// scales and embedding tables do not (spec §2.1 [I]).
pub fn decays(name: &str, shape: &[usize]) -> bool {
    shape.len() >= 2 && !name.contains("embed") && !name.contains("codebook")
}

impl AdamW {
    pub fn new(params: Vec<Param>, config: AdamWConfig) -> Result<Self> {
        let zeros = |p: &Param| Tensor::zeros(p.var.shape(), DType::F32, p.var.device());
        let m = params.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        let v = params.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            params,
            m,
            v,
            step: 0,
        })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of optimizer steps taken so far.
    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// Clips the gradients to the configured global norm and applies one AdamW update.
    /// Parameters without a gradient (unused in this batch) keep their moments untouched.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<StepReport> {
        let mut grad_list: Vec<Option<Tensor>> = Vec::with_capacity(self.params.len());
        let mut sq = 0f64;
        for p in &self.params {
            let g = match grads.get(p.var.as_tensor()) {
                Some(g) => {
                    let mut g = g.to_dtype(DType::F32)?;
                    if !p.frozen_rows.is_empty() {
                        g = zero_rows(&g, &p.frozen_rows)?;
                    }
                    sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                    Some(g)
                }
                None => None,
            };
            grad_list.push(g);
        }
        let grad_norm = sq.sqrt();
        let clip = if self.config.clip_norm > 0.0 && grad_norm > self.config.clip_norm {
            self.config.clip_norm / (grad_norm + 1e-6)
        } else {
            1.0
        };
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (i, g) in grad_list.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let p = &self.params[i];
            let consts = UpdateConsts {
                clip: clip as f32,
                beta1: c.beta1 as f32,
                one_minus_beta1: (1.0 - c.beta1) as f32,
                beta2: c.beta2 as f32,
                one_minus_beta2: (1.0 - c.beta2) as f32,
                inv_bias1: (1.0 / bias1) as f32,
                inv_bias2: (1.0 / bias2) as f32,
                eps: c.eps as f32,
                decay: (p.decay && c.weight_decay > 0.0)
                    .then_some((1.0 - lr * c.weight_decay) as f32),
                lr: lr as f32,
            };
            let theta = p.var.as_tensor().to_dtype(DType::F32)?;
            let (theta, m, v) = match fused_update(&theta, &g, &self.m[i], &self.v[i], &consts)? {
                Some(updated) => updated,
                None => composed_update(&theta, &g, &self.m[i], &self.v[i], &consts)?,
            };
            p.var.set(&theta.to_dtype(p.var.dtype())?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(StepReport { lr, grad_norm })
    }

    /// Moments as named tensors (`m.<param>`, `v.<param>`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, p) in self.params.iter().enumerate() {
            out.insert(format!("m.{}", p.name), self.m[i].clone());
            out.insert(format!("v.{}", p.name), self.v[i].clone());
        }
        out
    }

    /// Restores the moments and the step count written by [`AdamW::state_tensors`].
    pub fn load_state(&mut self, path: &Path, step: usize, device: &Device) -> Result<()> {
        let mut state = candle_core::safetensors::load(path, device)?;
        for (i, p) in self.params.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{}", p.name);
                let t = state.remove(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "{}: optimizer state has no tensor {key}",
                        path.display()
                    ))
                })?;
                if t.shape() != p.var.shape() {
                    candle_core::bail!(
                        "{}: {key} has shape {:?}, the parameter has {:?}",
                        path.display(),
                        t.dims(),
                        p.var.dims()
                    );
                }
                *slot = t;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// `g` with the given rows (first dimension) set to zero.
fn zero_rows(g: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let n = g.dim(0)?;
    let keep: Vec<f32> = (0..n)
        .map(|r| if rows.contains(&r) { 0.0 } else { 1.0 })
        .collect();
    let mut shape = vec![n];
    shape.extend(std::iter::repeat_n(1, g.rank() - 1));
    g.broadcast_mul(&Tensor::from_vec(keep, shape, g.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_linearly_then_decays_to_the_floor() {
        let s = LrSchedule {
            peak: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            final_fraction: 0.1,
        };
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(10) - 1.0).abs() < 1e-12);
        assert!((s.at(60) - 0.55).abs() < 1e-12);
        assert!((s.at(110) - 0.1).abs() < 1e-12);
        assert!((s.at(500) - 0.1).abs() < 1e-12);
    }

    /// One AdamW step against the formula evaluated by hand in f64.
    #[test]
    fn adamw_step_matches_the_formula() {
        let dev = Device::Cpu;
        let w =
            Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0], [0.5, 3.0]], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[0.25f32, -0.5], &dev).unwrap()).unwrap();
        let params = vec![
            Param {
                name: "w".into(),
                var: w.clone(),
                decay: true,
                frozen_rows: vec![],
            },
            Param {
                name: "b".into(),
                var: b.clone(),
                decay: false,
                frozen_rows: vec![1],
            },
        ];
        let config = AdamWConfig {
            clip_norm: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(params, config.clone()).unwrap();
        // loss = sum(w²) + sum(3·b) → grad w = 2w, grad b = 3 (row 1 frozen → 0).
        let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap()
            + (b.as_tensor() * 3.0).unwrap().sum_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let lr = 0.1;
        opt.step(&grads, lr).unwrap();
        // First step: m̂ = g, v̂ = g², update = g / (|g| + ε) = sign(g).
        let expect_w = |x: f64| x * (1.0 - lr * config.weight_decay) - lr * x.signum();
        let got = w.as_tensor().to_vec2::<f32>().unwrap();
        for (r, row) in [[1.0, -2.0], [0.5, 3.0]].iter().enumerate() {
            for (c, &x) in row.iter().enumerate() {
                assert!((got[r][c] as f64 - expect_w(x)).abs() < 1e-6);
            }
        }
        let got = b.as_tensor().to_vec1::<f32>().unwrap();
        assert!((got[0] as f64 - (0.25 - lr)).abs() < 1e-6);
        assert_eq!(got[1], -0.5, "a frozen row must not move");
    }

    /// The one-pass update equals the composed tensor ops exactly (same f32 operations).
    #[test]
    fn the_fused_update_equals_the_composed_one() {
        let dev = Device::Cpu;
        let t = |seed: u64, scale: f64| {
            let x = Tensor::randn(0f32, 1.0, (37, 29), &dev).unwrap();
            x.affine(scale, seed as f64 * 1e-3).unwrap()
        };
        let (theta, g, m) = (t(1, 1.0), t(2, 0.1), t(3, 0.01));
        let v = t(4, 0.001).sqr().unwrap();
        for (clip, decay) in [(1.0f32, None), (0.37, Some(0.999f32))] {
            let k = UpdateConsts {
                clip,
                beta1: 0.9,
                one_minus_beta1: (1.0f64 - 0.9) as f32,
                beta2: 0.95,
                one_minus_beta2: (1.0f64 - 0.95) as f32,
                inv_bias1: (1.0 / (1.0 - 0.9f64.powi(3))) as f32,
                inv_bias2: (1.0 / (1.0 - 0.95f64.powi(3))) as f32,
                eps: 1e-8,
                decay,
                lr: 1e-3,
            };
            let fused = fused_update(&theta, &g, &m, &v, &k).unwrap().unwrap();
            let composed = composed_update(&theta, &g, &m, &v, &k).unwrap();
            for (a, b) in [
                (&fused.0, &composed.0),
                (&fused.1, &composed.1),
                (&fused.2, &composed.2),
            ] {
                assert_eq!(
                    a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                );
            }
        }
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &dev).unwrap()).unwrap();
        let mut opt = AdamW::new(
            vec![Param {
                name: "w".into(),
                var: w.clone(),
                decay: false,
                frozen_rows: vec![],
            }],
            AdamWConfig::default(),
        )
        .unwrap();
        let loss = (w.as_tensor() * 10.0).unwrap().sum_all().unwrap();
        let report = opt.step(&loss.backward().unwrap(), 0.01).unwrap();
        assert!((report.grad_norm - 200f64.sqrt()).abs() < 1e-4);
    }
}
