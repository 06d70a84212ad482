//! Vectorisable f32 math for the CPU kernels: `exp` and `erf` without a libm call and
//! reductions with independent accumulators.
//!
//! Why by hand: libm's `expf` is a scalar call, so a loop over it cannot vectorise (candle's
//! softmax and SiLU spend most of their time there), and a plain `iter().sum()` is a serial
//! chain of dependent adds that the compiler may not reorder. Callers compile these inline in a
//! function built for AVX-512 (`#[target_feature]`, chosen at run time) to get 16 lanes.

const LANES: usize = 16;

/// Maximum with 16 independent accumulators, so the loop vectorises.
#[inline(always)]
pub(crate) fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = tail
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

#[inline(always)]
pub(crate) fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `eˣ` to within 2 ulp over f32's range, branch-free so that loops over it vectorise; exactly 0
/// below −87 (where eˣ < 1.7·10⁻³⁸) and for −∞, NaN for NaN.
///
/// `eˣ = 2ⁿ · eʳ` with `n = round(x / ln 2)`, `|r| ≤ ln 2 / 2`, and `eʳ` by its Taylor series
/// to r⁷ (truncation error < 5·10⁻⁹ relative); 2ⁿ is built from its exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n · LN2_HI is exact for |n| < 2⁸.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let xc = if x > 88.0 { 88.0 } else { x };
    let xc = if xc < -87.0 { -87.0 } else { xc };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let y = p * f32::from_bits(((n_int + 127) as u32) << 23);
    let y = if x < -87.0 { 0.0 } else { y };
    let y = if x > 88.0 { f32::INFINITY } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `erf(x)` to within 3·10⁻⁷ absolute, branch-free so that loops over it vectorise (libm's
/// `erff`, which candle calls, is a scalar call with branches per range).
///
/// The Chebyshev fit of `erfc` from Numerical Recipes (§6.2: fractional error < 1.2·10⁻⁷):
/// `erfc(z) = t · exp(−z² + P(t))` with `t = 1 / (1 + z/2)`, `z = |x|`, and
/// `erf(x) = ±(1 − erfc(|x|))`; NaN for NaN.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    // Beyond |x| = 10, erfc underflows: the product is exactly 0 there.
    let erfc = t * exp(p - z * z);
    let magnitude = 1.0 - erfc;
    if x < 0.0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_f64_value() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_within_3e_7_of_the_f64_value() {
        let mut worst = 0f64;
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = candle_core::cpu::erf::erf_f64(x as f64);
            worst = worst.max((erf(x) as f64 - want).abs());
            x += 0.000_71;
        }
        assert!(worst < 3e-7, "worst absolute error {worst:e}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn reductions_equal_the_serial_ones() {
        for n in [0usize, 1, 15, 16, 17, 100, 1000] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
            let serial_max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(lane_max(&x), serial_max);
            // Integers: every order of summation is exact.
            assert_eq!(lane_sum(&x), x.iter().sum::<f32>());
        }
    }
}
