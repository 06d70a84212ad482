//! Seconds per VQ-VAE training step at the bundled model's stage-2b shape (`configs/vqvae-stage2b.toml`:
//! encoder 96/1/8/2 → 32 × 256 codes, decoder 128/4/3, confidence heads on), on synthetic chains:
//! `cargo run --release -p esm3-train --example vqvae_step_bench -- [STAGE] [BATCH] [LEN] [STEPS]`
//! (defaults 2 4 128 5). Prints one line per step with forward / backward / update apart; the
//! first step includes one-off allocation and is not representative.

use std::time::Instant;

use candle_core::Device;
use esm3_models::config::{ModelConfig, StructureDecoderConfig, StructureEncoderConfig};
use esm3_models::init::random_weights;
use esm3_train::optim::{AdamW, AdamWConfig};
use esm3_train::trainable::{Part, Trainable};
use esm3_train::vqvae::objective::{frozen, DECODER_PREFIX, ENCODER_PREFIX};
use esm3_train::vqvae::{
    Codebook, CodebookConfig, Stage, VqVae, VqVaeBatch, VqVaeConfig, VqVaeExample,
};

/// A compact random-walk chain with bond-length Cα steps (not a real fold: timing does not depend
/// on the geometry, only on the shapes).
fn chain(seed: u64, len: usize) -> VqVaeExample {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let mut ca = [0f32; 3];
    let backbone = (0..len)
        .map(|i| {
            let t = i as f32 * 1.745;
            let step = [
                2.3 * t.cos() + 0.3 * next(),
                2.3 * t.sin() + 0.3 * next(),
                1.5,
            ];
            for k in 0..3 {
                ca[k] += step[k] * 0.6;
            }
            [
                [ca[0] - 1.2, ca[1] + 0.4, ca[2] - 0.5],
                ca,
                [ca[0] + 0.8, ca[1] + 1.1, ca[2] + 0.4],
            ]
        })
        .collect();
    VqVaeExample {
        backbone,
        sequence: (0..len)
            .map(|i| 4 + (i as u32 * 7 + seed as u32) % 20)
            .collect(),
        residue_index: None,
    }
}

fn main() -> anyhow::Result<()> {
    // As `esm3 train` does (runner::train), so the bench times the same heap policy.
    esm3_train::heap::retain_freed_memory();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are integers"))
        .collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (stage_n, batch, len, steps) = (arg(0, 2), arg(1, 4), arg(2, 128), arg(3, 5));
    let enc_cfg = StructureEncoderConfig {
        d_model: 96,
        n_heads: 1,
        v_heads: 8,
        n_layers: 2,
        d_out: 32,
        n_codes: 256,
    };
    let dec_cfg = StructureDecoderConfig {
        d_model: 128,
        n_heads: 4,
        n_layers: 3,
    };
    let enc_model = ModelConfig::StructureEncoder(enc_cfg.clone());
    let dec_model = ModelConfig::StructureDecoder(dec_cfg.clone());
    let parts = vec![
        (
            Part {
                prefix: ENCODER_PREFIX.into(),
                config: enc_model.clone(),
            },
            random_weights(&enc_model, 1)?,
        ),
        (
            Part {
                prefix: DECODER_PREFIX.into(),
                config: dec_model.clone(),
            },
            random_weights(&dec_model, 2)?,
        ),
    ];
    let dev = Device::Cpu;
    let model = Trainable::from_parts(parts, &dev)?;
    let vb = model.var_builder();
    let vq_cfg = VqVaeConfig::new(enc_cfg.clone(), dec_cfg);
    let codebook = Codebook::from_var_builder(
        CodebookConfig::new(enc_cfg.n_codes, enc_cfg.d_out),
        &vb.pp("encoder"),
        true,
    )?;
    // As the objective does (`VqVaeObjective::new`): stage 2's encoder is frozen.
    let encoder_vb = match stage_n {
        1 => vb.pp("encoder"),
        _ => model.frozen_var_builder("encoder"),
    };
    let vq = VqVae::new(
        vq_cfg,
        encoder_vb,
        vb.pp("decoder"),
        vb.pp("training"),
        codebook,
    )?;
    let stage = if stage_n == 1 {
        Stage::One
    } else {
        Stage::Two { confidence: true }
    };
    let mut opt = AdamW::new(
        model.params(frozen(stage_n as u8), |_| Vec::new()),
        AdamWConfig::default(),
    )?;
    let examples: Vec<_> = (0..batch).map(|s| chain(s as u64, len)).collect();
    let data = VqVaeBatch::from_examples(&examples)?;
    for step in 0..steps {
        let t0 = Instant::now();
        let losses = vq.losses(&data, stage)?;
        let t1 = Instant::now();
        let grads = losses.total.backward()?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-4)?;
        let t3 = Instant::now();
        println!(
            "step {step}: stage {stage_n}, {batch} × {len}, loss {:.4}, forward {:.3}s backward {:.3}s update {:.3}s total {:.3}s",
            losses.values["total"],
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t3 - t0).as_secs_f64()
        );
    }
    Ok(())
}
