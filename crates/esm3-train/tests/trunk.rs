//! The trunk's training objective on a tiny random ESM3: a fixed batch is memorised, unmasked
//! positions get no gradient, and a resumed run is bit-for-bit the uninterrupted one.

use candle_core::{DType, Device, Tensor, Var, D};
use esm3_models::config::{Esm3Config, ModelConfig};
use esm3_models::{Esm3, Esm3Head, HostArray};
use esm3_train::loss::head_cross_entropy;
use esm3_train::noise::{collate, corrupt, NoiseConfig, TrainingProtein};
use esm3_train::optim::{AdamW, AdamWConfig};
use esm3_train::runner::train;
use esm3_train::trainable::Trainable;
use esm3_train::trunk::{
    batch_loss, zero_padding_rows, zero_rows, TrunkObjective, TrunkTrainConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny() -> ModelConfig {
    ModelConfig::Esm3(Esm3Config {
        d_model: 32,
        n_heads: 2,
        v_heads: 2,
        n_layers: 2,
    })
}

/// A helical backbone with a sequence, structure codes, SS8 and SASA.
fn protein(len: usize, seed: u64) -> TrainingProtein {
    let letters = b"ACDEFGHIKLMNPQRSTVWY";
    let mut backbone = Vec::new();
    for i in 0..len {
        let t = i as f32 * 1.745 + seed as f32;
        let ca = [2.3 * t.cos(), 2.3 * t.sin(), 1.5 * i as f32];
        backbone.push([
            [ca[0] - 1.2, ca[1] + 0.4, ca[2] - 0.5],
            ca,
            [ca[0] + 0.8, ca[1] + 1.1, ca[2] + 0.4],
        ]);
    }
    TrainingProtein {
        sequence: (0..len)
            .map(|i| letters[(i * 7 + seed as usize * 3) % 20] as char)
            .collect(),
        structure_tokens: Some(
            (0..len)
                .map(|i| ((i as u64 * 5 + seed) % 32) as i64)
                .collect(),
        ),
        backbone: Some(backbone),
        ss8: Some(
            (0..len)
                .map(|i| b"HHHEEC"[(i + seed as usize) % 6] as char)
                .collect(),
        ),
        sasa: Some(
            (0..len)
                .map(|i| (i as f32 * 13.0 + seed as f32) % 150.0)
                .collect(),
        ),
        ..Default::default()
    }
}

fn model(seed: u64) -> Trainable {
    let m = Trainable::random(tiny(), seed, &Device::Cpu).unwrap();
    zero_padding_rows(&m).unwrap();
    m
}

fn optimizer(m: &Trainable) -> AdamW {
    let params = m.params(|_| false, zero_rows);
    AdamW::new(
        params,
        AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn a_tiny_trunk_memorises_a_fixed_batch() {
    let m = model(1);
    let mut opt = optimizer(&m);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let noise = NoiseConfig::default();
    let samples: Vec<_> = [protein(14, 1), protein(11, 2)]
        .iter()
        .map(|p| corrupt(p, &noise, &mut rng).unwrap())
        .collect();
    let batch = collate(&samples).unwrap();
    let ModelConfig::Esm3(c) = m.config() else {
        unreachable!()
    };
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..200 {
        let esm3 = Esm3::new(c, m.var_builder()).unwrap();
        let (loss, _, _) = batch_loss(&esm3, &batch).unwrap();
        last = loss.to_scalar::<f32>().unwrap();
        first.get_or_insert(last);
        opt.step(&loss.backward().unwrap(), 3e-3).unwrap();
    }
    let first = first.unwrap();
    assert!(
        last < 0.05 && last < first / 50.0,
        "loss went from {first} to {last}"
    );
}

#[test]
fn unsupervised_positions_carry_no_gradient() {
    let m = model(2);
    let ModelConfig::Esm3(c) = m.config() else {
        unreachable!()
    };
    let esm3 = Esm3::new(c, m.var_builder()).unwrap();
    let (l, d) = (9, 32);
    let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, l, d), &Device::Cpu).unwrap()).unwrap();
    let targets: Vec<i64> = vec![-1, 5, -1, -1, 7, 9, -1, -1, -1];
    let t = HostArray::new(vec![1, l], targets.clone());
    let (loss, n, _) = head_cross_entropy(&esm3, Esm3Head::Sequence, h.as_tensor(), &t)
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);
    let grads = loss.backward().unwrap();
    let g = grads.get(h.as_tensor()).unwrap();
    let per_position = g
        .abs()
        .unwrap()
        .sum(D::Minus1)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (p, (&gp, &tp)) in per_position.iter().zip(&targets).enumerate() {
        if tp < 0 {
            assert_eq!(
                gp, 0.0,
                "position {p} is not supervised but has gradient {gp}"
            );
        } else {
            assert!(gp > 0.0, "supervised position {p} has no gradient");
        }
    }
    // And the loss is the mean CE of the supervised rows, computed independently.
    let logits = esm3.head(Esm3Head::Sequence, h.as_tensor()).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let want = -(lp[1][5] + lp[4][7] + lp[5][9]) / 3.0;
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    assert!((want - got).abs() < 1e-5, "{want} vs {got}");
}

fn config(steps: usize) -> TrunkTrainConfig {
    let toml = format!(
        r#"
        batch_size = 2
        valid_proteins = 2
        structure_fraction = 0.5
        [model]
        d_model = 32
        n_heads = 2
        v_heads = 2
        n_layers = 2
        [data]
        dataset = "unused"
        [run]
        steps = {steps}
        seed = 5
        log_every = 1
        validate_every = 100
        checkpoint_every = 2
        [schedule]
        peak = 1e-3
        warmup_steps = 2
        total_steps = 6
        "#
    );
    toml::from_str(&toml).unwrap()
}

fn run(dir: &std::path::Path, steps: usize, resume: bool) -> Vec<(String, Vec<f32>)> {
    let cfg = config(steps);
    let data: Vec<TrainingProtein> = (0..5).map(|i| protein(10 + i as usize, i)).collect();
    let m = model(4);
    let mut opt = optimizer(&m);
    let mut objective = TrunkObjective::new(cfg.clone(), data.clone(), data[..2].to_vec());
    train(
        &mut objective,
        &m,
        &mut opt,
        &cfg.schedule,
        &cfg.run,
        dir,
        resume,
        false,
    )
    .unwrap();
    m.named_vars()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let a = tempfile::tempdir().unwrap();
    let straight = run(a.path(), 6, false);
    let b = tempfile::tempdir().unwrap();
    let _ = run(b.path(), 4, false);
    let resumed = run(b.path(), 6, true);
    assert_eq!(straight.len(), resumed.len());
    for ((na, wa), (nb, wb)) in straight.iter().zip(&resumed) {
        assert_eq!(na, nb);
        assert!(
            wa.iter().zip(wb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{na} differs after resuming"
        );
    }
    // The resumed log continues the first one without duplicates.
    let log = std::fs::read_to_string(b.path().join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("\"train\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);
    assert!(b.path().join("curves.png").exists());
}
