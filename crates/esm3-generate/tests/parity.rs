//! Token-for-token parity with the reference's iterative sampling on the deterministic path
//! (entropy strategy, temperature 0), on the random-weight `esm3_d64` fixture model.
//! Fixtures: tools/reference/make_generation_fixtures.py.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use esm3_generate::{
    iterative_sampling, GenerationConfig, PaddingAttention, ProteinTensor, Schedule, Strategy,
    Track,
};
use esm3_models::model_dir::LoadedModel;
use esm3_models::{LoadOptions, ModelDir};
use esm3_test_support::reference_fixtures;
use rand::SeedableRng;

fn ids(t: &Tensor) -> Vec<i64> {
    t.to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap()
}

fn read_prompt(path: &Path) -> ProteinTensor {
    let m: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let mut p = ProteinTensor::default();
    for (name, t) in &m {
        match name.as_str() {
            "sequence" => p.sequence = Some(ids(t)),
            "structure" => p.structure = Some(ids(t)),
            "secondary_structure" => p.secondary_structure = Some(ids(t)),
            "sasa" => p.sasa = Some(ids(t)),
            "coordinates" => {
                let v = t.to_vec3::<f32>().unwrap();
                p.coordinates = Some(
                    v.into_iter()
                        .map(|res| std::array::from_fn(|a| [res[a][0], res[a][1], res[a][2]]))
                        .collect(),
                );
            }
            other => panic!("unexpected prompt track {other}"),
        }
    }
    p
}

fn read_config(v: &serde_json::Value) -> GenerationConfig {
    GenerationConfig {
        track: Track::from_name(v["track"].as_str().unwrap()).unwrap(),
        invalid_ids: v["invalid_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect(),
        schedule: match v["schedule"].as_str().unwrap() {
            "cosine" => Schedule::Cosine,
            _ => Schedule::Linear,
        },
        strategy: match v["strategy"].as_str().unwrap() {
            "entropy" => Strategy::Entropy,
            _ => Strategy::Random,
        },
        num_steps: v["num_steps"].as_u64().unwrap() as usize,
        temperature: v["temperature"].as_f64().unwrap() as f32,
        temperature_annealing: v["temperature_annealing"].as_bool().unwrap(),
        top_p: v["top_p"].as_f64().unwrap() as f32,
        condition_on_coordinates_only: v["condition_on_coordinates_only"].as_bool().unwrap(),
    }
}

#[test]
fn deterministic_generation_matches_the_reference_token_for_token() {
    let dir = ModelDir::open(reference_fixtures().join("esm3_d64/model")).unwrap();
    let LoadedModel::Esm3(model) = dir.load(&LoadOptions::default()).unwrap() else {
        panic!("esm3 expected")
    };
    let root = reference_fixtures().join("generation");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "generation fixtures missing in {}",
        root.display()
    );
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("config.json")).unwrap())
                .unwrap();
        let mut configs: Vec<GenerationConfig> = cfg["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(read_config)
            .collect();
        let prompts: Vec<ProteinTensor> = (0..configs.len())
            .map(|i| read_prompt(&case.join(format!("prompt_{i}.safetensors"))))
            .collect();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
        // The reference attends to batch padding; reproduce that for parity.
        let results = iterative_sampling(
            &model,
            &prompts,
            &mut configs,
            PaddingAttention::Reference,
            &mut rng,
            |_, _| {},
        )
        .unwrap();
        for (i, (r, c)) in results.into_iter().zip(&configs).enumerate() {
            let r = r.unwrap_or_else(|e| panic!("{name}[{i}]: {e}"));
            let want: HashMap<String, Tensor> = candle_core::safetensors::load(
                case.join(format!("expected_{i}.safetensors")),
                &Device::Cpu,
            )
            .unwrap();
            let want = ids(&want[c.track.name()]);
            let got = r.ids(c.track).unwrap();
            let differing: Vec<usize> = (0..want.len()).filter(|&k| want[k] != got[k]).collect();
            assert!(
                differing.is_empty(),
                "{name}[{i}] {}: positions {differing:?} differ\nours {got:?}\nref  {want:?}",
                c.track.name()
            );
            eprintln!("{name}[{i}]: {} tokens identical", want.len());
        }
    }
}

/// With proper padding masks a batched prompt generates exactly what it generates alone; the
/// reference's unmasked batch (kept as a switch) does not.
#[test]
fn masked_batches_generate_as_if_alone() {
    let dir = ModelDir::open(reference_fixtures().join("esm3_d64/model")).unwrap();
    let LoadedModel::Esm3(model) = dir.load(&LoadOptions::default()).unwrap() else {
        panic!("esm3 expected")
    };
    let case = reference_fixtures().join("generation/batch_two_lengths");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("config.json")).unwrap()).unwrap();
    let configs: Vec<GenerationConfig> = cfg["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(read_config)
        .collect();
    let prompts: Vec<ProteinTensor> = (0..2)
        .map(|i| read_prompt(&case.join(format!("prompt_{i}.safetensors"))))
        .collect();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
    let run =
        |p: &[ProteinTensor], c: &[GenerationConfig], mode, rng: &mut rand_chacha::ChaCha20Rng| {
            let mut c = c.to_vec();
            iterative_sampling(&model, p, &mut c, mode, rng, |_, _| {})
                .unwrap()
                .into_iter()
                .map(|r| r.unwrap().sequence.unwrap())
                .collect::<Vec<_>>()
        };
    let batched = run(&prompts, &configs, PaddingAttention::Masked, &mut rng);
    let reference = run(&prompts, &configs, PaddingAttention::Reference, &mut rng);
    // Prompt 0 is the shorter one: only it sees padding.
    let alone = run(
        &prompts[..1],
        &configs[..1],
        PaddingAttention::Masked,
        &mut rng,
    );
    assert_eq!(batched[0], alone[0]);
    assert_eq!(
        reference[1],
        run(
            &prompts[1..],
            &configs[1..],
            PaddingAttention::Masked,
            &mut rng
        )[0]
    );
    // In reference mode the padded prompt's logits depend on the padding; masked, they do not.
    let n = prompts[0].len();
    let logits = |batch: &[ProteinTensor], mode| {
        esm3_generate::batch_logits(&model, batch, mode)
            .unwrap()
            .sequence_logits
            .get(0)
            .unwrap()
            .narrow(0, 0, n)
            .unwrap()
    };
    let single = logits(&prompts[..1], PaddingAttention::Masked);
    let diff = |t: Tensor| {
        (t - &single)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    assert!(diff(logits(&prompts, PaddingAttention::Masked)) < 1e-4);
    assert!(diff(logits(&prompts, PaddingAttention::Reference)) > 1e-3);
}
