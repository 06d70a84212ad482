//! GEMM throughput on the trunk's real Linear shapes: candle's matmul (`gemm` crate) vs the
//! BLAS path of `esm3_nn::Linear`, side by side, in GFLOP/s.
//!
//! `cargo run --release -p esm3-nn --example gemm_bench [-- --rows 64,256,512 --reps 5 --model esm3|esmc-300m|esmc-600m --cold]`
//! `--cold`: the BLAS path only, each product on a weight evicted from the caches, as in a forward.
//! Threads follow RAYON_NUM_THREADS for both.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use esm3_nn::linear::linear;
use esm3_nn::{blas, with_matmul_precision, Linear, MatmulPrecision};

/// (name, out, in) of the esm3-sm-open-v1 trunk's Linear layers (d_model 1536, 256 geometric heads).
const SHAPES: [(&str, usize, usize); 6] = [
    ("attn qkv", 4608, 1536),
    ("attn out", 1536, 1536),
    ("geom proj", 3840, 1536),
    ("geom out", 1536, 768),
    ("ffn up", 8192, 1536),
    ("ffn down", 1536, 4096),
];

/// ESM C 300M (d_model 960) and 600M (1152): fused QKV, output, SwiGLU up (2 × hidden) and down.
const ESMC_300M_SHAPES: [(&str, usize, usize); 4] = [
    ("attn qkv", 2880, 960),
    ("attn out", 960, 960),
    ("ffn up", 5120, 960),
    ("ffn down", 960, 2560),
];
const ESMC_600M_SHAPES: [(&str, usize, usize); 4] = [
    ("attn qkv", 3456, 1152),
    ("attn out", 1152, 1152),
    ("ffn up", 6144, 1152),
    ("ffn down", 1152, 3072),
];

/// Copies of a weight of `values` f32 that together take 1 GiB, beyond any last-level cache.
fn cold_copies(values: usize) -> usize {
    ((1usize << 30) / (4 * values).max(1)).max(2)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let rows: Vec<usize> = arg("--rows")
        .unwrap_or("64,256,512".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let reps: usize = arg("--reps").map(|s| s.parse().unwrap()).unwrap_or(5);
    let shapes: &[(&str, usize, usize)] = match arg("--model").as_deref() {
        None | Some("esm3") => &SHAPES,
        Some("esmc-300m") => &ESMC_300M_SHAPES,
        Some("esmc-600m") => &ESMC_600M_SHAPES,
        Some(other) => panic!("--model {other}: expected esm3, esmc-300m or esmc-600m"),
    };
    let cold = args.iter().any(|a| a == "--cold");
    let dev = Device::Cpu;
    println!(
        "threads {}; BLAS: {}; bf16 kernel: {}",
        candle_core::utils::get_num_threads(),
        blas::backend_name(),
        esm3_nn::bf16_gemm::kernel_name()
    );
    println!(
        "| layer | M | N | K | candle GFLOP/s | BLAS f32 GFLOP/s | BLAS/candle | bf16 GFLOP/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (mut tc, mut tb, mut t16, mut flops_all) = (0.0, 0.0, 0.0, 0.0);
    for &m in &rows {
        for &(name, n, k) in shapes {
            let x = Tensor::randn(0f32, 1.0, (1, m, k), &dev)?;
            let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? / (k as f64).sqrt())?;
            let b = Tensor::randn(0f32, 0.1, n, &dev)?;
            let lin = Linear::new(w.clone(), Some(b.clone()));
            let flops = 2.0 * (m * n * k) as f64;
            if cold {
                // As in a forward: each product reads a weight not touched since the last
                // layer, here one of enough copies to exceed the last-level cache.
                let copies: Vec<Linear> = (0..cold_copies(n * k))
                    .map(|_| Linear::new((&w + 0.0).unwrap(), Some(b.clone())))
                    .collect();
                let mut i = 0;
                let f = time(reps * copies.len(), || {
                    copies[i % copies.len()].forward(&x).unwrap();
                    i += 1;
                });
                tb += f;
                flops_all += flops;
                println!(
                    "| {name} | {m} | {n} | {k} | | {:.1} (cold) | | |",
                    flops / f / 1e9
                );
                continue;
            }
            let c = time(reps, || {
                lin.forward_candle(&x).unwrap();
            });
            let f = time(reps, || {
                lin.forward(&x).unwrap();
            });
            let h = if esm3_nn::linear::bf16_available() {
                let tensors = [("weight".to_string(), w.clone()), ("bias".to_string(), b)];
                let vb = VarBuilder::from_tensors(tensors.into(), DType::F32, &dev);
                let lin16 = with_matmul_precision(MatmulPrecision::Bf16, || linear(k, n, vb))?;
                Some(time(reps, || {
                    lin16.forward(&x).unwrap();
                }))
            } else {
                None
            };
            tc += c;
            tb += f;
            t16 += h.unwrap_or(f64::NAN);
            flops_all += flops;
            println!(
                "| {name} | {m} | {n} | {k} | {:.1} | {:.1} | {:.2} | {} |",
                flops / c / 1e9,
                flops / f / 1e9,
                c / f,
                h.map(|h| format!("{:.1}", flops / h / 1e9))
                    .unwrap_or("n/a".into())
            );
        }
    }
    println!(
        "| all | | | | {:.1} | {:.1} | {:.2} | {:.1} |",
        flops_all / tc / 1e9,
        flops_all / tb / 1e9,
        tc / tb,
        flops_all / t16 / 1e9
    );
    Ok(())
}
