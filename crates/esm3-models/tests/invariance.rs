//! Properties of the forward pass that hold for any weights and shapes, checked on seeded random
//! models of sizes the reference fixtures do not cover.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use esm3_models::init::{random_weights, Normal};
use esm3_models::{
    Esm3, Esm3Config, Esm3Input, Esmc, EsmcConfig, EsmcInput, HostArray, ModelConfig,
};
use esm3_test_support::max_diff;

fn esm3(config: Esm3Config, seed: u64, dtype: DType) -> Esm3 {
    let w = random_weights(&ModelConfig::Esm3(config.clone()), seed).unwrap();
    Esm3::new(&config, VarBuilder::from_tensors(w, dtype, &Device::Cpu)).unwrap()
}

/// A chain-like backbone: N, CA, C per residue along a random walk (≈3.8 Å CA–CA).
fn backbone(len: usize, rng: &mut Normal) -> Vec<[[f32; 3]; 3]> {
    let mut ca = [0f32; 3];
    (0..len)
        .map(|_| {
            let step = [rng.sample(), rng.sample(), rng.sample()];
            let n = (step.iter().map(|x| x * x).sum::<f32>()).sqrt().max(1e-3);
            for k in 0..3 {
                ca[k] += 3.8 * step[k] / n;
            }
            let jitter =
                |rng: &mut Normal| [rng.sample() * 0.8, rng.sample() * 0.8, rng.sample() * 0.8];
            let (a, c) = (jitter(rng), jitter(rng));
            [
                [ca[0] + 1.2 + a[0], ca[1] + a[1], ca[2] + a[2]],
                ca,
                [ca[0] - 0.5 + c[0], ca[1] + 1.4 + c[1], ca[2] + c[2]],
            ]
        })
        .collect()
}

fn coords_array(batch: usize, len: usize, bb: &[[[f32; 3]; 3]]) -> HostArray<f32> {
    HostArray::new(
        vec![batch, len, 3, 3],
        bb.iter().flatten().flatten().copied().collect(),
    )
}

fn tokens(batch: usize, len: usize, lo: i64, hi: i64, rng: &mut Normal) -> HostArray<i64> {
    let data = (0..batch * len)
        .map(|_| lo + (rng.uniform() * (hi - lo) as f64) as i64 % (hi - lo))
        .collect();
    HostArray::new(vec![batch, len], data)
}

fn full_input(batch: usize, len: usize, rng: &mut Normal) -> Esm3Input {
    let mut seq = tokens(batch, len, 4, 24, rng);
    for b in 0..batch {
        seq.data[b * len] = 0;
        seq.data[b * len + len - 1] = 2;
    }
    Esm3Input {
        sequence_tokens: Some(seq),
        structure_tokens: Some(tokens(batch, len, 0, 4096, rng)),
        ss8_tokens: Some(tokens(batch, len, 3, 11, rng)),
        sasa_tokens: Some(tokens(batch, len, 3, 19, rng)),
        structure_coords: Some(coords_array(batch, len, &backbone(batch * len, rng))),
        ..Default::default()
    }
}

fn rotation(rng: &mut Normal) -> [[f32; 3]; 3] {
    let a = [rng.sample(), rng.sample(), rng.sample()];
    let b = [rng.sample(), rng.sample(), rng.sample()];
    esm3_protein::gram_schmidt(a, b, 1e-10)
}

#[test]
fn esm3_is_invariant_to_rigid_motions_of_the_coordinates() {
    let model = esm3(
        Esm3Config {
            d_model: 40,
            n_heads: 5,
            v_heads: 3,
            n_layers: 2,
        },
        11,
        DType::F32,
    );
    let mut rng = Normal::new(3);
    let (b, l) = (2, 37);
    let input = full_input(b, l, &mut rng);
    let base = model.forward(&input).unwrap();
    let r = rotation(&mut rng);
    let t = [31.0, -12.5, 7.25];
    let mut moved = input.clone();
    let c = moved.structure_coords.as_mut().unwrap();
    for p in c.data.chunks_exact_mut(3) {
        let q = [p[0], p[1], p[2]];
        for i in 0..3 {
            p[i] = r[i][0] * q[0] + r[i][1] * q[1] + r[i][2] * q[2] + t[i];
        }
    }
    let out = model.forward(&moved).unwrap();
    for ((name, x), (_, y)) in base.named().into_iter().zip(out.named()) {
        let d = max_diff(x, y);
        assert!(d < 2e-3, "{name} changed by {d} under a rigid motion");
    }
    // And the coordinates do matter: scrambling them changes the output.
    let mut scrambled = input.clone();
    scrambled.structure_coords.as_mut().unwrap().data.reverse();
    let out = model.forward(&scrambled).unwrap();
    assert!(max_diff(&base.sequence_logits, &out.sequence_logits) > 1e-2);
}

#[test]
fn padding_with_sequence_id_does_not_change_real_positions() {
    let model = esm3(
        Esm3Config {
            d_model: 32,
            n_heads: 2,
            v_heads: 2,
            n_layers: 3,
        },
        5,
        DType::F32,
    );
    let mut rng = Normal::new(9);
    let (l, pad) = (21, 6);
    let alone = full_input(1, l, &mut rng);
    let expect = model.forward(&alone).unwrap();
    // The same protein right-padded, with pads in their own sequence id and +inf coordinates.
    let padded_len = l + pad;
    let extend = |a: &HostArray<i64>, v: i64| {
        let mut d = a.data.clone();
        d.extend(std::iter::repeat_n(v, pad));
        HostArray::new(vec![1, padded_len], d)
    };
    let mut coords = alone.structure_coords.clone().unwrap().data;
    coords.extend(std::iter::repeat_n(f32::INFINITY, pad * 9));
    let padded = Esm3Input {
        sequence_tokens: Some(extend(alone.sequence_tokens.as_ref().unwrap(), 1)),
        structure_tokens: Some(extend(alone.structure_tokens.as_ref().unwrap(), 4099)),
        ss8_tokens: Some(extend(alone.ss8_tokens.as_ref().unwrap(), 0)),
        sasa_tokens: Some(extend(alone.sasa_tokens.as_ref().unwrap(), 0)),
        structure_coords: Some(HostArray::new(vec![1, padded_len, 3, 3], coords)),
        sequence_id: Some(HostArray::new(
            vec![1, padded_len],
            (0..padded_len).map(|i| i64::from(i >= l)).collect(),
        )),
        ..Default::default()
    };
    let got = model.forward(&padded).unwrap();
    for ((name, x), (_, y)) in expect.named().into_iter().zip(got.named()) {
        let y = y.narrow(1, 0, l).unwrap();
        let d = max_diff(x, &y);
        assert!(d < 1e-4, "{name}: padding changed real positions by {d}");
    }
}

#[test]
fn missing_tracks_equal_their_explicit_defaults() {
    let model = esm3(
        Esm3Config {
            d_model: 24,
            n_heads: 3,
            v_heads: 2,
            n_layers: 1,
        },
        2,
        DType::F32,
    );
    let (b, l) = (2, 9);
    let mut rng = Normal::new(1);
    let seq = tokens(b, l, 4, 24, &mut rng);
    let implicit = model
        .forward(&Esm3Input {
            sequence_tokens: Some(seq.clone()),
            ..Default::default()
        })
        .unwrap();
    let explicit = model
        .forward(&Esm3Input {
            sequence_tokens: Some(seq),
            structure_tokens: Some(HostArray::filled(vec![b, l], -1)),
            ss8_tokens: Some(HostArray::filled(vec![b, l], 0)),
            sasa_tokens: Some(HostArray::filled(vec![b, l], 0)),
            function_tokens: Some(HostArray::filled(vec![b, l, 8], 0)),
            residue_annotation_tokens: Some(HostArray::filled(vec![b, l, 16], 0)),
            average_plddt: Some(HostArray::filled(vec![b, l], 1.0)),
            per_res_plddt: Some(HostArray::filled(vec![b, l], 0.0)),
            structure_coords: Some(HostArray::filled(vec![b, l, 37, 3], f32::NAN)),
            chain_id: Some(HostArray::filled(vec![b, l], 0)),
            sequence_id: None,
        })
        .unwrap();
    for ((name, x), (_, y)) in implicit.named().into_iter().zip(explicit.named()) {
        // Not bit-exact only because a [1, L] default takes a different matmul shape than [B, L].
        let d = max_diff(x, y);
        assert!(d < 1e-5, "{name}: {d}");
    }
}

#[test]
fn long_inputs_and_bf16_run() {
    let model = esm3(
        Esm3Config {
            d_model: 16,
            n_heads: 1,
            v_heads: 1,
            n_layers: 1,
        },
        4,
        DType::F32,
    );
    let mut rng = Normal::new(5);
    let input = full_input(1, 1024, &mut rng);
    let out = model.forward(&input).unwrap();
    assert_eq!(out.function_logits.dims(), &[1, 1024, 8, 260]);
    let half = esm3(
        Esm3Config {
            d_model: 16,
            n_heads: 1,
            v_heads: 1,
            n_layers: 1,
        },
        4,
        DType::BF16,
    );
    let input = full_input(2, 50, &mut rng);
    let (x, y) = (
        model.forward(&input).unwrap(),
        half.forward(&input).unwrap(),
    );
    let scale = max_diff(&x.sequence_logits, &x.sequence_logits.zeros_like().unwrap());
    let d = max_diff(&x.sequence_logits, &y.sequence_logits);
    assert!(
        y.sequence_logits.dtype() == DType::F32 && d < 0.1 * scale.max(1.0),
        "bf16 off by {d}"
    );
}

#[test]
fn esmc_any_shape_and_padding_invariance() {
    for (d, h, n) in [(8, 1, 1), (48, 6, 4), (72, 3, 2)] {
        let config = EsmcConfig {
            d_model: d,
            n_heads: h,
            n_layers: n,
        };
        let w = random_weights(&ModelConfig::Esmc(config.clone()), n as u64).unwrap();
        let model = Esmc::new(
            &config,
            VarBuilder::from_tensors(w, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let mut rng = Normal::new(d as u64);
        let seq = tokens(1, 13, 4, 24, &mut rng);
        let alone = model
            .forward(&EsmcInput {
                sequence_tokens: Some(seq.clone()),
                sequence_id: None,
            })
            .unwrap();
        let mut padded = seq.data.clone();
        padded.extend([1, 1, 1]);
        let padded = model
            .forward(&EsmcInput {
                sequence_tokens: Some(HostArray::new(vec![1, 16], padded)),
                sequence_id: None,
            })
            .unwrap();
        assert_eq!(padded.hidden_states.dims(), &[n, 1, 16, d]);
        let diff = max_diff(
            &alone.sequence_logits,
            &padded.sequence_logits.narrow(1, 0, 13).unwrap(),
        );
        assert!(diff < 1e-4, "d={d}: {diff}");
    }
}
