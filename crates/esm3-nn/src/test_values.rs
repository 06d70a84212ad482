//! Seeded test inputs for the kernels' property tests (candle's CPU device cannot be seeded).

/// `n` values uniform in [-1, 1) from `seed` (xorshift64).
pub(crate) fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A plain triple-loop GEMM in f64, so the kernels built on [`crate::blas::Gemm`] are checked
/// on machines without a BLAS too.
pub(crate) struct NaiveGemm;

impl crate::blas::Gemm for NaiveGemm {
    unsafe fn gemm(
        &self,
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let av = if trans_a {
                        *a.add(p * lda + i)
                    } else {
                        *a.add(i * lda + p)
                    };
                    let bv = if trans_b {
                        *b.add(j * ldb + p)
                    } else {
                        *b.add(p * ldb + j)
                    };
                    s += av as f64 * bv as f64;
                }
                let cv = c.add(i * ldc + j);
                *cv = alpha * s as f32 + if beta == 0.0 { 0.0 } else { beta * *cv };
            }
        }
    }
}

pub(crate) static NAIVE: NaiveGemm = NaiveGemm;

/// `n` values uniform in [-scale, scale) from `seed`.
pub(crate) fn scaled(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    uniform(n, seed).into_iter().map(|v| v * scale).collect()
}

/// A CPU tensor of `shape` with values uniform in [-1, 1) from `seed`.
pub(crate) fn tensor(shape: &[usize], seed: u64) -> candle_core::Tensor {
    let v = uniform(shape.iter().product(), seed);
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// Largest absolute difference of two tensors of the same shape.
pub(crate) fn max_abs(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest absolute difference of two slices of the same length.
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}
