//! Seconds per training step of the trunk objective at a given size, on synthetic helices:
//! `cargo run --release -p esm3-train --example trunk_step_bench -- D_MODEL N_LAYERS BATCH LEN [STEPS]`
//! (4 steps unless STEPS is given).

use std::time::Instant;

use candle_core::Device;
use esm3_models::config::{Esm3Config, ModelConfig};
use esm3_models::Esm3;
use esm3_train::noise::{collate, corrupt, NoiseConfig, TrainingProtein};
use esm3_train::optim::{AdamW, AdamWConfig};
use esm3_train::trainable::Trainable;
use esm3_train::trunk::{batch_loss, zero_rows};
use rand::SeedableRng;

fn main() {
    if std::env::var("BENCH_INSTALL").is_ok() {
        return rayon::ThreadPoolBuilder::new()
            .build()
            .unwrap()
            .install(run);
    }
    run()
}

fn run() {
    // As `esm3 train` does (runner::train), so the bench times the same heap policy.
    esm3_train::heap::retain_freed_memory();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (d, layers, batch, len) = (args[0], args[1], args[2], args[3]);
    let steps = args.get(4).copied().unwrap_or(4);
    let cfg = Esm3Config {
        d_model: d,
        n_heads: d / 64,
        v_heads: d / 32,
        n_layers: layers,
    };
    let m = Trainable::random(ModelConfig::Esm3(cfg.clone()), 0, &Device::Cpu).unwrap();
    let params: usize = m.named_vars().iter().map(|(_, v)| v.elem_count()).sum();
    let mut opt = AdamW::new(m.params(|_| false, zero_rows), AdamWConfig::default()).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let letters = b"ACDEFGHIKLMNPQRSTVWY";
    let proteins: Vec<TrainingProtein> = (0..batch)
        .map(|s| {
            let bb = (0..len)
                .map(|i| {
                    let t = i as f32 * 1.745 + s as f32;
                    let ca = [2.3 * t.cos(), 2.3 * t.sin(), 1.5 * i as f32];
                    [
                        [ca[0] - 1.2, ca[1] + 0.4, ca[2] - 0.5],
                        ca,
                        [ca[0] + 0.8, ca[1] + 1.1, ca[2] + 0.4],
                    ]
                })
                .collect();
            TrainingProtein {
                sequence: (0..len)
                    .map(|i| letters[(i * 7 + s) % 20] as char)
                    .collect(),
                structure_tokens: Some((0..len).map(|i| (i % 512) as i64).collect()),
                backbone: Some(bb),
                ..Default::default()
            }
        })
        .collect();
    let noise = NoiseConfig {
        crop_length: len + 2,
        ..Default::default()
    };
    for step in 0..steps {
        let t0 = Instant::now();
        let samples: Vec<_> = proteins
            .iter()
            .map(|p| corrupt(p, &noise, &mut rng).unwrap())
            .collect();
        let batch = collate(&samples).unwrap();
        let esm3 = Esm3::new(&cfg, m.var_builder()).unwrap();
        let t1 = Instant::now();
        let (loss, _, tokens) = batch_loss(&esm3, &batch).unwrap();
        let t2 = Instant::now();
        let grads = loss.backward().unwrap();
        let t3 = Instant::now();
        opt.step(&grads, 1e-3).unwrap();
        let t4 = Instant::now();
        println!(
            "step {step}: params {params}, tokens {tokens}, prep {:.3}s forward {:.3}s backward {:.3}s update {:.3}s total {:.3}s",
            (t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64(), (t4 - t3).as_secs_f64(), (t4 - t0).as_secs_f64()
        );
    }
}
