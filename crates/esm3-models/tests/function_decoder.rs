//! FunctionTokenDecoder against the reference (`tools/reference/make_function_fixtures.py`): a
//! random-weight d_model=32 decoder over a 40-keyword / 24-entry vocabulary, every parameter
//! perturbed. Outputs within 1e-4; decoded annotations identical.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use esm3_models::forward::{forward_named, function_decoder_input, read_inputs};
use esm3_models::function_decoder::{decode_function_tokens, DecoderVocabulary};
use esm3_models::import::import_pth;
use esm3_models::model_dir::LoadedModel;
use esm3_models::{LoadOptions, ModelConfig, ModelDir};
use esm3_test_support::{max_diff, reference_fixtures};
use esm3_tokens::function::annotation::decode_function_logits;
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;
const NAME: &str = "esm3_function_decoder_d32";

fn fixture() -> PathBuf {
    reference_fixtures().join(NAME)
}

fn load(dir: &Path) -> LoadedModel {
    ModelDir::open(dir)
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn check_outputs(model: &LoadedModel) {
    let cases = cases();
    assert!(cases.len() >= 4);
    for case in cases {
        let inputs = read_inputs(&case.join("input.safetensors")).unwrap();
        let expected = candle_core::safetensors::load(
            case.join("expected.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let outputs = forward_named(model, &inputs).unwrap();
        assert_eq!(outputs.len(), 3);
        for (name, got) in &outputs {
            let d = max_diff(got, &expected[name]);
            eprintln!("{}: {name}: max |diff| = {d:.3e}", case.display());
            assert!(d <= TOLERANCE, "{}: {name}: {d:.3e}", case.display());
        }
    }
}

#[test]
fn outputs_match_the_reference() {
    check_outputs(&load(&fixture().join("model")));
}

#[test]
fn pth_import_then_forward_matches_the_reference() {
    let config = ModelConfig::load(&fixture().join("model/config.json")).unwrap();
    let out = tempfile::tempdir().unwrap();
    import_pth(
        &fixture().join(format!("{NAME}.pth")),
        out.path(),
        Some(config),
    )
    .unwrap();
    check_outputs(&load(out.path()));
}

#[derive(Deserialize)]
struct Decoded {
    function_keywords: Vec<(String, usize, usize)>,
    interpro_annotations: Vec<(String, usize, usize)>,
    annotations: Vec<(String, usize, usize)>,
}

#[test]
fn decoded_annotations_match_the_reference() {
    let LoadedModel::FunctionDecoder(model) = load(&fixture().join("model")) else {
        panic!("not a function decoder");
    };
    let keywords: Vec<String> = std::fs::read_to_string(fixture().join("vocab/keywords.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut entries: Vec<(String, String)> =
        std::fs::read_to_string(fixture().join("vocab/entries.tsv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].to_string(), f[2].to_string())
            })
            .collect();
    entries.sort();
    let ids: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
    let mut checked = 0;
    for case in cases() {
        let Ok(text) = std::fs::read_to_string(case.join("decoded.json")) else {
            continue;
        };
        let want: Decoded = serde_json::from_str(&text).unwrap();
        let inputs = read_inputs(&case.join("input.safetensors")).unwrap();
        let tokens = function_decoder_input(&inputs).unwrap();
        let rows: Vec<[i64; 8]> = tokens
            .data
            .chunks(8)
            .map(|c| c.try_into().unwrap())
            .collect();
        let (kw, ipr) = model.logits(&tokens).unwrap();
        let got = decode_function_logits(&rows, &kw, &ipr, &keywords, &ids);
        let tuples =
            |v: &[esm3_tokens::function::FunctionAnnotation]| -> Vec<(String, usize, usize)> {
                v.iter()
                    .map(|a| (a.label.clone(), a.start, a.end))
                    .collect()
            };
        assert_eq!(
            tuples(&got.keywords),
            want.function_keywords,
            "{}",
            case.display()
        );
        assert_eq!(
            tuples(&got.interpro),
            want.interpro_annotations,
            "{}",
            case.display()
        );
        let vocab = DecoderVocabulary {
            keywords: keywords.clone(),
            interpro: entries.clone(),
        };
        let all: Vec<(String, usize, usize)> = decode_function_tokens(&model, &vocab, &rows)
            .unwrap()
            .into_iter()
            .map(|a| (a.label, a.start, a.end))
            .collect();
        assert_eq!(all, want.annotations, "{}", case.display());
        assert!(
            !want.annotations.is_empty(),
            "{}: nothing decoded",
            case.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn bad_token_ids_are_named() {
    let model = load(&fixture().join("model"));
    let run = |t: Tensor| {
        let inputs = [("token_ids".to_string(), t)].into_iter().collect();
        forward_named(&model, &inputs).unwrap_err().to_string()
    };
    let dev = candle_core::Device::Cpu;
    let e = run(Tensor::new(&[[4i64, 5, 6, 7, 8, 9, 10, 260]], &dev).unwrap());
    assert!(e.contains("token_ids") && e.contains("260"), "{e}");
    let e = run(Tensor::new(&[[4i64, 5, 6, 7]], &dev).unwrap());
    assert!(e.contains("token_ids"), "{e}");
    let e = run(Tensor::new(&[[4f32; 8]], &dev).unwrap());
    assert!(e.contains("integer"), "{e}");
}
