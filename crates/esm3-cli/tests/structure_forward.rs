//! `esm3 forward` on the VQ-VAE structure encoder and decoder, through the real binary, against
//! the reference fixtures (tools/reference/make_vqvae_fixtures.py).

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use candle_core::{DType, Device, Tensor};
use esm3_test_support::{max_diff, reference_fixtures};

mod common;
use common::{esm3, s};

fn load(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn forward(model: &str, input: &Path, output: &Path) -> Output {
    esm3(&[
        "forward",
        "--model-dir",
        s(&reference_fixtures().join(model).join("model")),
        "--input",
        s(input),
        "--output",
        s(output),
    ])
}

#[test]
fn structure_encoder_and_decoder_run_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    // Single-protein cases: every position is real, so whole tensors are compared.
    for (model, case, outputs) in [
        (
            "esm3_structure_encoder_d64",
            "complex_chainbreak",
            &["z_q", "structure_tokens"][..],
        ),
        (
            "esm3_structure_decoder_d64",
            "random_codes",
            &["bb_pred", "plddt", "ptm", "predicted_aligned_error"][..],
        ),
    ] {
        let case_dir = reference_fixtures().join(model).join("cases").join(case);
        let out = tmp.path().join(format!("{model}.safetensors"));
        let o = forward(model, &case_dir.join("input.safetensors"), &out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ours = load(&out);
        let want = load(&case_dir.join("expected.safetensors"));
        for name in outputs {
            let (a, b) = (&ours[*name], &want[*name]);
            assert_eq!(a.dims(), b.dims(), "{model}/{case}: {name}");
            assert_eq!(a.dtype(), b.dtype(), "{model}/{case}: {name}");
            if a.dtype() == DType::I64 {
                assert_eq!(
                    a.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                    b.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                    "{model}/{case}: {name}"
                );
            } else {
                let diff = max_diff(a, b);
                assert!(diff <= 1e-4, "{model}/{case}: {name} differs by {diff}");
            }
        }
    }
}

#[test]
fn malformed_structure_inputs_are_refused_with_the_position() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.safetensors");
    let out = tmp.path().join("out.safetensors");

    // Decoder: a row that does not start with BOS.
    let tokens = Tensor::new(&[[5i64, 7, 4097]], &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &HashMap::from([("structure_tokens".to_string(), tokens)]),
        &input,
    )
    .unwrap();
    let o = forward("esm3_structure_decoder_d64", &input, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("`structure_tokens`[0, 0] = 5") && err.contains("BOS (4098)"),
        "{err}"
    );

    // Encoder: coordinates without the xyz axis.
    let coords = Tensor::zeros((1, 4, 37), DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("coords".to_string(), coords)]), &input)
        .unwrap();
    let o = forward("esm3_structure_encoder_d64", &input, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("`coords` has shape [1, 4, 37]"), "{err}");
}
