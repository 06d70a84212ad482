//! What the workspace's tests share: where the fixtures and the shared data are, and how two
//! tensors are compared. A dev-dependency only; nothing here ships.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};

/// The repository root (this crate sits at `crates/esm3-test-support`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `fixtures/reference`: models and outputs made by the reference package (`tools/reference/`).
pub fn reference_fixtures() -> PathBuf {
    repo_root().join("fixtures/reference")
}

/// `../shared/data` beside the repository (or `$ESM3_SHARED_DATA`): real structures,
/// sequences and oracle outputs.
pub fn shared_data() -> PathBuf {
    std::env::var_os("ESM3_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
}

/// Largest |a − b| over all elements, as f32; panics when the shapes differ, so a shape bug
/// never passes as a small difference. NaN in either makes the result NaN (never "close").
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "compared tensors differ in shape");
    let flat = |t: &Tensor| {
        t.to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("a tensor readable as f32")
    };
    let (a, b) = (flat(a), flat(b));
    a.iter().zip(&b).fold(0.0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(d)
        }
    })
}

/// Per output of `expected` (a reference fixture): the largest |ours − reference| over the
/// positions its `position_mask` marks real (every position when it has none). Outputs start
/// with `[B, L]` (`hidden_states` with `[n_layers, B, L]`); `[B]` outputs are per protein and
/// compared whole; integer outputs must be identical and report their mismatch count. Panics on
/// a missing output, a shape or dtype difference, or NaN, naming the output.
pub fn compare_outputs(
    ours: &[(String, Tensor)],
    expected: &HashMap<String, Tensor>,
) -> Vec<(String, f32)> {
    let mask = expected
        .get("position_mask")
        .map(|m| m.to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap());
    let ours: HashMap<&str, &Tensor> = ours.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut report = Vec::new();
    for (name, want) in expected {
        if name == "position_mask" {
            continue;
        }
        let got = ours
            .get(name.as_str())
            .unwrap_or_else(|| panic!("output `{name}` missing"));
        assert_eq!(got.dims(), want.dims(), "shape of `{name}`");
        assert_eq!(got.dtype(), want.dtype(), "dtype of `{name}`");
        let dims = want.dims();
        let per_protein = dims.len() == 1;
        let lead = usize::from(name == "hidden_states");
        let (outer, b, l, inner) = if per_protein {
            (1, dims[0], 1, 1)
        } else {
            let p = |d: &[usize]| d.iter().product::<usize>();
            (
                p(&dims[..lead]),
                dims[lead],
                dims[lead + 1],
                p(&dims[lead + 2..]),
            )
        };
        let real =
            |bi: usize, li: usize| per_protein || mask.as_ref().is_none_or(|m| m[bi][li] != 0);
        let flat = |o: usize, bi: usize, li: usize| ((o * b + bi) * l + li) * inner;
        let worst = if want.dtype() == DType::I64 {
            let g = got.flatten_all().unwrap().to_vec1::<i64>().unwrap();
            let w = want.flatten_all().unwrap().to_vec1::<i64>().unwrap();
            let mut mismatches = 0usize;
            for o in 0..outer {
                for bi in 0..b {
                    for li in (0..l).filter(|&li| real(bi, li)) {
                        let base = flat(o, bi, li);
                        for k in base..base + inner {
                            if g[k] != w[k] {
                                eprintln!("`{name}`[{bi}, {li}]: ours {} reference {}", g[k], w[k]);
                                mismatches += 1;
                            }
                        }
                    }
                }
            }
            mismatches as f32
        } else {
            let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut worst = 0f32;
            for o in 0..outer {
                for bi in 0..b {
                    for li in (0..l).filter(|&li| real(bi, li)) {
                        let base = flat(o, bi, li);
                        for k in base..base + inner {
                            let diff = (g[k] - w[k]).abs();
                            assert!(
                                !diff.is_nan(),
                                "`{name}` NaN at flat index {k}: ours {} reference {}",
                                g[k],
                                w[k]
                            );
                            worst = worst.max(diff);
                        }
                    }
                }
            }
            worst
        };
        report.push((name.clone(), worst));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn max_diff_finds_the_largest_gap_and_never_hides_nan() {
        let a = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1.5f32, 2.0, 0.0], &Device::Cpu).unwrap();
        assert_eq!(max_diff(&a, &b), 3.0);
        let n = Tensor::new(&[1.0f32, f32::NAN, 3.0], &Device::Cpu).unwrap();
        assert!(max_diff(&a, &n).is_nan());
        assert!(reference_fixtures().join("MANIFEST.json").is_file());
    }

    #[test]
    fn compare_outputs_skips_masked_positions_and_counts_integer_mismatches() {
        let dev = Device::Cpu;
        let mask = Tensor::new(&[[1i64, 1, 0]], &dev).unwrap();
        let want = Tensor::new(&[[1.0f32, 2.0, 3.0]], &dev).unwrap();
        let got = Tensor::new(&[[1.0f32, 2.5, 99.0]], &dev).unwrap();
        let want_ids = Tensor::new(&[[4i64, 5, 6]], &dev).unwrap();
        let got_ids = Tensor::new(&[[4i64, 7, 0]], &dev).unwrap();
        let expected = HashMap::from([
            ("position_mask".to_string(), mask),
            ("logits".to_string(), want),
            ("tokens".to_string(), want_ids),
        ]);
        let ours = vec![("logits".to_string(), got), ("tokens".to_string(), got_ids)];
        let mut report = compare_outputs(&ours, &expected);
        report.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(report, vec![("logits".into(), 0.5), ("tokens".into(), 1.0)]);
    }

    #[test]
    #[should_panic(expected = "output `logits` missing")]
    fn compare_outputs_refuses_a_missing_output() {
        let want = Tensor::new(&[[1.0f32]], &Device::Cpu).unwrap();
        compare_outputs(&[], &HashMap::from([("logits".to_string(), want)]));
    }

    #[test]
    #[should_panic(expected = "differ in shape")]
    fn max_diff_refuses_different_shapes() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        max_diff(&a, &b);
    }
}
