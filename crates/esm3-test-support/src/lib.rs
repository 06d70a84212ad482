//! What the workspace's tests share: where the fixtures and the shared data are, and how two
//! tensors are compared. A dev-dependency only; nothing here ships.

use std::path::PathBuf;

use candle_core::Tensor;

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
    #[should_panic(expected = "differ in shape")]
    fn max_diff_refuses_different_shapes() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        max_diff(&a, &b);
    }
}
