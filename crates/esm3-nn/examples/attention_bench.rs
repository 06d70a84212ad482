//! Attention core at the models' real shapes: the composed candle ops (`q·kᵀ`, scale, mask,
//! softmax, `·v`, transpose) vs the fused kernel of `esm3_nn::attention_kernel`, per layer.
//!
//! `cargo run --release -p esm3-nn --example attention_bench [-- --lens 256,512 --reps 5]`
//! Threads follow RAYON_NUM_THREADS for both. The fused kernel needs the system BLAS.

use std::time::Instant;

use candle_core::{Device, Tensor, D};
use esm3_nn::attention_kernel::fused_attention;

/// (model, heads, d_head): ESM3 1.4B (24 × 64), ESM C 300M (15 × 64), ESM C 600M (18 × 64).
const MODELS: [(&str, usize, usize); 3] = [
    ("esm3", 24, 64),
    ("esmc-300m", 15, 64),
    ("esmc-600m", 18, 64),
];

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn composed(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
    let (b, h, l, dh) = q.dims4().unwrap();
    let s = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
    let p = candle_nn::ops::softmax_last_dim(&s).unwrap();
    p.matmul(v)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b, l, h * dh))
        .unwrap()
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let lens: Vec<usize> = arg("--lens")
        .unwrap_or("64,256,512".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let reps: usize = arg("--reps").map(|s| s.parse().unwrap()).unwrap_or(5);
    let dev = Device::Cpu;
    println!(
        "threads {}; BLAS: {}",
        candle_core::utils::get_num_threads(),
        esm3_nn::blas::backend_name()
    );
    println!("| model | L | composed ms/layer | fused ms/layer | speed-up | max abs diff |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (model, h, dh) in MODELS {
        for &l in &lens {
            let x = || Tensor::randn(0f32, 1.0, (1, h, l, dh), &dev);
            let (q, k, v) = (x()?, x()?, x()?);
            let scale = 1.0 / (dh as f64).sqrt();
            let c = median_ms(reps, || {
                composed(&q, &k, &v, scale);
            });
            let Some(fused) = fused_attention(&q, &k, &v, None, scale as f32)? else {
                println!("| {model} | {l} | {c:.2} | n/a (no BLAS) | | |");
                continue;
            };
            let f = median_ms(reps, || {
                fused_attention(&q, &k, &v, None, scale as f32).unwrap();
            });
            let diff = (fused - composed(&q, &k, &v, scale))?
                .abs()?
                .flatten_all()?
                .max(D::Minus1)?
                .to_scalar::<f32>()?;
            println!(
                "| {model} | {l} | {c:.2} | {f:.2} | {:.2} | {diff:.1e} |",
                c / f
            );
        }
    }
    Ok(())
}
