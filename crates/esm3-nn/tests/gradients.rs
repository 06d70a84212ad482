//! Backward passes of every layer against central finite differences, on tiny shapes.
//!
//! For a layer f and a fixed random projection R, the scalar s(θ) = Σ f(x; θ)·R is
//! differentiated by candle's autograd; along a random direction v the analytic derivative
//! ⟨∇s, v⟩ must match (s(θ + εv) − s(θ − εv)) / 2ε, for every parameter tensor and the input.

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use esm3_nn::norm::{layer_norm, softmax_last_dim};
use esm3_nn::rotary::{apply_rotary, rotary_tables};
use esm3_nn::{
    AttentionContext, BlockConfig, FeedForward, FfnKind, GeometricAttention, GeometryContext,
    MultiHeadAttention, RegressionHead, UnifiedTransformerBlock,
};

const B: usize = 2;
const L: usize = 5;
const D: usize = 16;

/// Fills every variable of the map with seeded noise (norm weights around 1).
fn randomise(map: &VarMap, seed: u64) -> Result<()> {
    let mut names: Vec<(String, Var)> = map
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rng = esm3_models_free_rng(seed);
    for (name, var) in names {
        let n = var.elem_count();
        let data: Vec<f32> = (0..n).map(|_| rng()).collect();
        let mut t = Tensor::from_vec(data, var.shape(), &Device::Cpu)?;
        let is_norm_weight =
            name.ends_with("weight") && var.rank() == 1 && !name.contains("scale_per_head");
        if is_norm_weight {
            t = ((t * 0.2)? + 1.0)?;
        } else if var.rank() == 2 {
            t = (t / (var.dims()[1] as f64).sqrt())?;
        } else {
            t = (t * 0.3)?;
        }
        var.set(&t)?;
    }
    Ok(())
}

/// A tiny seeded normal generator (no dependency on the model crates).
fn esm3_models_free_rng(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        let mut u = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
    }
}

/// Checks ⟨∇s, v⟩ against central differences for every var of `map` and for `input`.
fn check(map: &VarMap, input: &Var, f: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
    let dev = Device::Cpu;
    let out_shape = f(input.as_tensor())?.shape().clone();
    let r = Tensor::randn(0f32, 1.0, out_shape, &dev)?;
    let s = |x: &Tensor| -> Result<f64> {
        (f(x)? * &r)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()
    };
    let loss = (f(input.as_tensor())? * &r)?.sum_all()?;
    let grads = loss.backward()?;
    let mut vars: Vec<(String, Var)> = map
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.push(("<input>".into(), input.clone()));
    let eps: f64 = std::env::var("FD_EPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3e-3);
    for (name, var) in vars {
        let v = Tensor::randn(0f32, 1.0, var.shape(), &dev)?;
        let analytic = match grads.get(var.as_tensor()) {
            Some(g) => (g * &v)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?,
            None => 0.0,
        };
        let base = var.as_tensor().copy()?;
        var.set(&(&base + (&v * eps)?)?)?;
        let plus = s(input.as_tensor())?;
        var.set(&(&base - (&v * eps)?)?)?;
        let minus = s(input.as_tensor())?;
        var.set(&base)?;
        let numeric = (plus - minus) / (2.0 * eps);
        let tol = 2e-2 * numeric.abs().max(analytic.abs()).max(1.0);
        assert!(
            (analytic - numeric).abs() <= tol,
            "{name}: analytic {analytic} vs finite difference {numeric}"
        );
    }
    Ok(())
}

fn input(shape: &[usize], seed: u64) -> Var {
    let mut rng = esm3_models_free_rng(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng()).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
}

fn vb(map: &VarMap) -> VarBuilder<'static> {
    VarBuilder::from_varmap(map, DType::F32, &Device::Cpu)
}

/// Random rigid frames: a small helical backbone, one chain, every residue framed.
fn geometry() -> GeometryContext {
    let mut backbone = Vec::new();
    for i in 0..(B * L) {
        let t = i as f32 * 1.7;
        let ca = [2.3 * t.cos(), 2.3 * t.sin(), 1.5 * i as f32];
        let n = [ca[0] - 1.2, ca[1] + 0.5, ca[2] - 0.4];
        let c = [ca[0] + 0.9, ca[1] + 1.1, ca[2] + 0.3];
        backbone.push([n, ca, c]);
    }
    let chain = vec![0i64; B * L];
    GeometryContext::new(B, L, &backbone, None, &chain, &Device::Cpu).unwrap()
}

#[test]
fn layer_norm_and_softmax() -> Result<()> {
    let map = VarMap::new();
    let ln = layer_norm(D, true, vb(&map).pp("ln"))?;
    randomise(&map, 1)?;
    let x = input(&[B, L, D], 2);
    check(&map, &x, &|x| ln.forward(x))?;
    let empty = VarMap::new();
    check(&empty, &x, &|x| softmax_last_dim(&(x * 2.0)?))
}

#[test]
fn rotary() -> Result<()> {
    let (cos, sin) = rotary_tables(8, L, DType::F32, &Device::Cpu)?;
    let x = input(&[B, 2, L, 8], 3);
    check(&VarMap::new(), &x, &|x| apply_rotary(x, &cos, &sin))
}

#[test]
fn attention_with_padding_mask() -> Result<()> {
    let map = VarMap::new();
    let attn = MultiHeadAttention::new(D, 2, false, true, vb(&map))?;
    randomise(&map, 4)?;
    let ids: Vec<i64> = (0..B * L)
        .map(|i| i64::from(i % L >= 4 && i / L == 1))
        .collect();
    let ctx = AttentionContext::new(D / 2, B, L, Some(&ids), DType::F32, &Device::Cpu)?;
    let x = input(&[B, L, D], 5);
    check(&map, &x, &|x| attn.forward(x, &ctx))
}

#[test]
fn geometric_attention() -> Result<()> {
    let map = VarMap::new();
    let geom = GeometricAttention::new(D, 2, false, true, vb(&map))?;
    randomise(&map, 6)?;
    let geo = geometry();
    let x = input(&[B, L, D], 7);
    check(&map, &x, &|x| geom.forward(x, &geo))
}

#[test]
fn feed_forward_swiglu_and_gelu() -> Result<()> {
    for (kind, seed) in [(FfnKind::SwiGlu, 8), (FfnKind::Gelu, 9)] {
        let map = VarMap::new();
        let ffn = FeedForward::new(D, kind, 2.0, true, vb(&map))?;
        randomise(&map, seed)?;
        let x = input(&[B, L, D], seed + 10);
        check(&map, &x, &|x| ffn.forward(x))?;
    }
    Ok(())
}

#[test]
fn regression_head() -> Result<()> {
    let map = VarMap::new();
    let head = RegressionHead::new(D, 7, vb(&map))?;
    randomise(&map, 11)?;
    let x = input(&[B, L, D], 12);
    check(&map, &x, &|x| head.forward(x))
}

#[test]
fn unified_block_with_geometric_attention() -> Result<()> {
    let map = VarMap::new();
    let cfg = BlockConfig {
        d_model: D,
        n_heads: 2,
        v_heads: Some(2),
        use_plain_attn: true,
        bias: false,
        qk_layernorm: true,
        ffn: FfnKind::SwiGlu,
        expansion_ratio: 8.0 / 3.0,
        residue_scaling: 1.5,
        mask_and_zero_frameless: true,
    };
    let block = UnifiedTransformerBlock::new(&cfg, vb(&map))?;
    randomise(&map, 13)?;
    let ctx = AttentionContext::new(D / 2, B, L, None, DType::F32, &Device::Cpu)?;
    let geo = geometry();
    let x = input(&[B, L, D], 14);
    check(&map, &x, &|x| block.forward(x, Some(&ctx), Some(&geo)))
}
