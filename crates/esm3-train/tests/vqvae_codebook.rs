//! The EMA codebook: update arithmetic against the NumPy fixture, initialisation, dead-code
//! restarts, straight-through quantisation and checkpointable state.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use esm3_train::vqvae::codebook::{usage_stats, Codebook, CodebookConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const DEV: Device = Device::Cpu;

fn fixture() -> Value {
    let path = esm3_test_support::repo_root().join("fixtures/training/vqvae_losses.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn rows(flat: &[f32], d: usize) -> Vec<Vec<f32>> {
    flat.chunks(d).map(<[f32]>::to_vec).collect()
}

fn hand_made() -> (Codebook, Value) {
    let fx = fixture()["codebook"].clone();
    let cfg = CodebookConfig::new(4, 2);
    let counts = Tensor::from_vec(f32s(&fx["counts"]), 4, &DEV).unwrap();
    let sums = Tensor::from_vec(f32s(&fx["sums"]), (4, 2), &DEV).unwrap();
    let emb = Tensor::zeros((4, 2), DType::F32, &DEV).unwrap();
    (
        Codebook::from_tensors(cfg, emb, counts, sums, true).unwrap(),
        fx,
    )
}

fn assert_close(got: &Tensor, want: &[f32], what: &str) {
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{what}[{k}]: {g} vs {w}"
        );
    }
}

#[test]
fn ema_update_matches_the_numpy_example() {
    let (mut cb, fx) = hand_made();
    let z = rows(&f32s(&fx["z"]), 2);
    let codes: Vec<u32> = fx["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let stats = cb.update(&z, &codes, false, &mut rng).unwrap();
    assert_close(cb.counts(), &f32s(&fx["new_counts"]), "N");
    assert_close(cb.sums(), &f32s(&fx["new_sums"]), "z_avg");
    assert_close(cb.embeddings(), &f32s(&fx["new_embeddings"]), "embeddings");
    // Counts after the step: 2.0, 0.505, 1.198, 0.0 → codes 1 and 3 are dead.
    assert_eq!(stats.dead_codes, 2);
    assert_eq!(
        (stats.vectors, stats.codes_used, stats.restarted),
        (4, 3, 0)
    );
    // Batch distribution (2, 1, 1)/4: perplexity = exp(1.5 ln 2) = 2^1.5.
    assert!((stats.perplexity - 2f64.powf(1.5)).abs() < 1e-12);
}

#[test]
fn restarts_replace_only_dead_codes_with_batch_vectors() {
    let (mut cb, fx) = hand_made();
    let z = rows(&f32s(&fx["z"]), 2);
    let codes = [0u32, 0, 2, 1];
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let stats = cb.update(&z, &codes, true, &mut rng).unwrap();
    assert_eq!((stats.dead_codes, stats.restarted), (2, 2));
    let want = f32s(&fx["new_embeddings"]);
    let e = cb.embeddings().to_vec2::<f32>().unwrap();
    let n = cb.counts().to_vec1::<f32>().unwrap();
    // Codes 0 and 2 were alive: plain EMA values.
    for c in [0, 2] {
        assert!((e[c][0] - want[2 * c]).abs() < 1e-6 && (e[c][1] - want[2 * c + 1]).abs() < 1e-6);
    }
    assert!((n[0] - 2.0).abs() < 1e-6 && (n[2] - 1.198).abs() < 1e-6);
    // Dead codes now hold batch vectors (4 vectors ≥ 2 dead: drawn without replacement),
    // with N at the threshold and z_avg = N·e.
    let mut picked = Vec::new();
    for c in [1, 3] {
        let k = z
            .iter()
            .position(|r| r == &e[c])
            .unwrap_or_else(|| panic!("code {c}: {:?} not a batch vector", e[c]));
        picked.push(k);
        assert_eq!(n[c], 1.0);
    }
    picked.sort();
    picked.dedup();
    assert_eq!(picked.len(), 2, "distinct rows");
    let sums = cb.sums().to_vec2::<f32>().unwrap();
    assert_eq!((&sums[1], &sums[3]), (&e[1], &e[3]));
    // Same seed, same result: restarts are reproducible.
    let (mut again, _) = hand_made();
    again
        .update(&z, &codes, true, &mut ChaCha8Rng::seed_from_u64(42))
        .unwrap();
    assert_eq!(again.embeddings().to_vec2::<f32>().unwrap(), e);
}

#[test]
fn initialisation_tiles_small_batches_with_jitter() {
    let cfg = CodebookConfig::new(16, 3);
    let mut cb = Codebook::new(cfg, &DEV).unwrap();
    assert!(!cb.is_initialised());
    let z = vec![
        vec![1.0f32, 2.0, 3.0],
        vec![-1.0, 0.0, 4.0],
        vec![5.0, 5.0, 5.0],
    ];
    let err = cb.quantize(&Tensor::zeros((1, 3), DType::F32, &DEV).unwrap(), &[true]);
    assert!(err.is_err(), "quantising before initialisation is an error");
    cb.initialise(&z, &mut ChaCha8Rng::seed_from_u64(1))
        .unwrap();
    assert!(cb.is_initialised());
    let e = cb.embeddings().to_vec2::<f32>().unwrap();
    let jitter = 0.01 / 3f32.sqrt();
    for row in &e {
        let nearest = z
            .iter()
            .map(|r| {
                r.iter()
                    .zip(row)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
            })
            .fold(f32::INFINITY, f32::min);
        assert!(nearest < 6.0 * jitter, "{row:?} is a jittered batch vector");
    }
    assert_eq!(cb.counts().to_vec1::<f32>().unwrap(), vec![1.0; 16]);
    assert_eq!(cb.sums().to_vec2::<f32>().unwrap(), e);
}

#[test]
fn straight_through_quantisation_passes_gradients_to_the_latents() {
    let cfg = CodebookConfig::new(3, 2);
    let emb = Tensor::new(&[[0f32, 0.0], [1.0, 1.0], [-2.0, 0.5]], &DEV).unwrap();
    let cb = Codebook::from_tensors(
        cfg,
        emb,
        Tensor::ones(3, DType::F32, &DEV).unwrap(),
        Tensor::zeros((3, 2), DType::F32, &DEV).unwrap(),
        true,
    )
    .unwrap();
    let z =
        Var::from_tensor(&Tensor::new(&[[0.9f32, 1.2], [-1.5, 0.2], [0.1, -0.1]], &DEV).unwrap())
            .unwrap();
    let q = cb.quantize(z.as_tensor(), &[true, true, false]).unwrap();
    assert_eq!(q.codes, vec![1, 2, 0]);
    // Forward value: the codes.
    assert_eq!(
        q.z_q.to_vec2::<f32>().unwrap(),
        vec![vec![1.0, 1.0], vec![-2.0, 0.5], vec![0.0, 0.0]]
    );
    // Commitment: mean over the two masked-in rows of mean_d (z − e)².
    let want = ((0.01 + 0.04) / 2.0 + (0.25 + 0.09) / 2.0) / 2.0;
    let c = q.commitment_mse.to_scalar::<f32>().unwrap();
    assert!((c - want).abs() < 1e-6, "{c} vs {want}");
    // d(sum z_q)/dz = 1 everywhere (straight-through); commitment gradient = (z − e)/2/2.
    let g = q.z_q.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        g.get(z.as_tensor()).unwrap().to_vec2::<f32>().unwrap(),
        vec![vec![1.0; 2]; 3]
    );
    let g = q.commitment_mse.backward().unwrap();
    let g = g.get(z.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
    let want = [[-0.05, 0.1], [0.25, -0.15], [0.0, 0.0]];
    for (r, w) in g.iter().zip(want) {
        for (a, b) in r.iter().zip(w) {
            assert!((a - b).abs() < 1e-6, "{g:?}");
        }
    }
}

#[test]
fn state_round_trips_through_a_varmap_bit_for_bit() {
    let cfg = CodebookConfig::new(8, 4);
    let mut cb = Codebook::new(cfg.clone(), &DEV).unwrap();
    let z: Vec<Vec<f32>> = (0..20)
        .map(|i| {
            (0..4)
                .map(|k| ((i * 7 + k * 3) % 11) as f32 * 0.37 - 1.1)
                .collect()
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    cb.initialise(&z, &mut rng).unwrap();
    let zt = Tensor::from_vec(
        z.iter().flatten().copied().collect::<Vec<_>>(),
        (20, 4),
        &DEV,
    )
    .unwrap();
    let codes = cb.quantize(&zt, &[true; 20]).unwrap().codes;
    cb.update(&z, &codes, true, &mut rng).unwrap();
    let map = VarMap::new();
    cb.write_to_varmap(&map, "encoder.").unwrap();
    cb.write_to_varmap(&map, "encoder.").unwrap(); // second write updates in place
    let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, &DEV);
    let back = Codebook::from_var_builder(cfg, &vb.pp("encoder"), true).unwrap();
    for ((n1, a), (n2, b)) in cb.named_tensors().iter().zip(back.named_tensors().iter()) {
        assert_eq!(n1, n2);
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{n1}"
        );
    }
    let names: Vec<_> = cb.named_tensors().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["codebook.embeddings", "codebook.N", "codebook.z_avg"]
    );
}

#[test]
fn usage_statistics() {
    let s = usage_stats(&[3, 3, 3, 3], 8);
    assert_eq!((s.codes_used, s.vectors), (1, 4));
    assert!((s.perplexity - 1.0).abs() < 1e-12);
    let s = usage_stats(&[0, 1, 2, 3], 8);
    assert!((s.perplexity - 4.0).abs() < 1e-12);
}
