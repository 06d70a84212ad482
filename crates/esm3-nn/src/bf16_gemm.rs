//! bf16 × bf16 → f32 matrix products on AVX512-BF16 (`vdpbf16ps`), for
//! [`crate::MatmulPrecision::Bf16`].
//!
//! Why written here: candle has no bf16 CPU matmul (it converts to f32 and is slower than f32),
//! the system OpenBLAS that Debian ships (0.3.21) has no `sbgemm`, and no maintained crate
//! offers one. `vdpbf16ps` does twice the multiply-adds of an f32 FMA per instruction, and bf16
//! weights halve the bytes a forward streams from memory.
//!
//! Where the CPU has AMX (Intel Xeon since Sapphire Rapids) and Linux grants the tile state, the
//! same packed weights go through `tdpbf16ps` tile products instead, written in inline assembly
//! because Rust's AMX intrinsics are not stable. `ESM3_AMX=off` keeps the AVX512 kernel.
//!
//! The weights are packed once, at load, into panels of [`NR`] output columns in which each
//! 32-bit lane holds the bf16 pair (w[c, 2j], w[c, 2j+1]) — the operand layout `vdpbf16ps`
//! multiplies against a broadcast activation pair, and row j of an AMX B tile. k is padded with
//! zeros to whole AMX tiles (32 values). Products accumulate in f32.

use rayon::prelude::*;

use crate::disjoint::SendPtr;

/// Output columns per packed panel: two 16-lane registers.
pub const NR: usize = 32;
/// Rows of the activation per micro-kernel call.
const MR: usize = 8;
/// k-pairs per AMX tile row; packed k is padded to a multiple of it.
const KPAD: usize = 16;
/// Rows per AMX block (two 16-row tiles).
const MT: usize = 32;
/// k-pairs per block, so a panel's block (KC·NR·4 bytes = 32 KiB) stays in L1/L2 while every
/// row block of the activation runs against it.
const KC: usize = 256;

/// Whether this CPU has the instructions (checked once per call site; cheap).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// f32 → bf16 bits, round to nearest even (what torch's `.to(torch.bfloat16)` does).
#[inline]
fn bf16(v: f32) -> u32 {
    half::bf16::from_f32(v).to_bits() as u32
}

/// One k-pair (the second value absent at an odd k's end) as the 32-bit lane the kernels take:
/// first value in the low half.
#[inline]
fn pair_bits(pair: &[f32]) -> u32 {
    let hi = pair.get(1).map_or(0, |&v| bf16(v));
    bf16(pair[0]) | (hi << 16)
}

/// A weight `[n, k]` rounded to bf16 and packed for [`PackedBf16::matmul_nt`].
#[derive(Clone)]
pub struct PackedBf16 {
    n: usize,
    k: usize,
    /// k-pairs: ⌈k/2⌉ rounded up to [`KPAD`], the tail zeros.
    kp: usize,
    data: Vec<u32>,
}

impl std::fmt::Debug for PackedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedBf16([{}, {}])", self.n, self.k)
    }
}

impl PackedBf16 {
    /// Packs the row-major f32 weight `w` of shape `[n, k]`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight length does not match its shape");
        let kp = k.div_ceil(2).div_ceil(KPAD) * KPAD;
        let panels = n.div_ceil(NR);
        let mut data = vec![0u32; panels * kp * NR];
        if kp > 0 {
            data.par_chunks_mut(kp * NR)
                .enumerate()
                .for_each(|(p, panel)| {
                    for c in 0..NR.min(n - p * NR) {
                        let row = &w[(p * NR + c) * k..][..k];
                        for (j, pair) in row.chunks(2).enumerate() {
                            panel[j * NR + c] = pair_bits(pair);
                        }
                    }
                });
        }
        Self { n, k, kp, data }
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The rounded weight back as row-major f32 `[n, k]` (for candle's path and tests).
    pub fn unpack(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for (r, row) in w.chunks_mut(self.k.max(1)).enumerate().take(self.n) {
            let panel = &self.data[(r / NR) * self.kp * NR..];
            for (i, v) in row.iter_mut().enumerate() {
                let pair = panel[(i / 2) * NR + r % NR];
                let bits = if i % 2 == 0 {
                    pair & 0xffff
                } else {
                    pair >> 16
                };
                *v = f32::from_bits(bits << 16);
            }
        }
        w
    }

    /// `c[m×n] += a[m×k] · wᵀ`, `a` rounded to bf16 first, all row-major; `c` holds the bias
    /// (or zeros) on entry. Panics if the CPU lacks AVX512-BF16 (check [`available`]).
    pub fn matmul_nt(&self, a: &[f32], m: usize, c: &mut [f32]) {
        self.matmul_with(a, m, c, amx::enabled())
    }

    fn matmul_with(&self, a: &[f32], m: usize, c: &mut [f32], amx: bool) {
        let (n, k, kp) = (self.n, self.k, self.kp);
        assert!(a.len() == m * k && c.len() == m * n, "GEMM operand lengths");
        assert!(available(), "bf16 GEMM needs AVX512-BF16");
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        // Activation pairs, row-major, kp per row (zero tail), rows padded to whole AMX blocks.
        let rows = if amx { m.div_ceil(MT) * MT } else { m };
        let mut a16 = vec![0u32; rows * kp];
        a16.par_chunks_mut(kp)
            .zip(a.par_chunks(k))
            .for_each(|(dst, row)| {
                for (d, pair) in dst.iter_mut().zip(row.chunks(2)) {
                    *d = pair_bits(pair);
                }
            });
        let c_ptr = SendPtr(c.as_mut_ptr());
        let c_ptr = &c_ptr;
        let a16 = &a16;
        (0..n.div_ceil(NR)).into_par_iter().for_each(|p| {
            let cols = NR.min(n - p * NR);
            let mask = if cols == NR {
                u32::MAX
            } else {
                (1u32 << cols) - 1
            };
            let panel = &self.data[p * kp * NR..(p + 1) * kp * NR];
            if amx {
                // SAFETY: a16 has rows (a multiple of MT) rows of kp pairs; the panel kp·NR
                // values; this task writes only its own columns of c's first m rows.
                unsafe { amx::panel(a16, kp, m, panel, c_ptr.0.add(p * NR), n, cols) };
                return;
            }
            for kb in (0..kp).step_by(KC) {
                let kl = KC.min(kp - kb);
                let w = panel[kb * NR..].as_ptr();
                let mut r = 0;
                while r < m {
                    let rows = MR.min(m - r);
                    // SAFETY: rows r..r+rows of a16 (kp each) and of c (n each) exist; this
                    // panel writes only its columns p·NR..p·NR+cols (masked), disjoint from
                    // every other panel's; w has kl·NR values from kb.
                    unsafe {
                        let a = a16.as_ptr().add(r * kp + kb);
                        let c = c_ptr.0.add(r * n + p * NR);
                        kernel_rows(rows, a, kp, w, kl, c, n, mask);
                    }
                    r += rows;
                }
            }
        });
    }
}

/// The AMX path: `tdpbf16ps` on 16×16 f32 tiles.
mod amx {
    use super::{KPAD, MT, NR};
    use std::sync::OnceLock;

    /// Whether the CPU has AMX-BF16 and the kernel let this process use the tile state.
    pub fn enabled() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var("ESM3_AMX").as_deref() != Ok("off") && request())
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn request() -> bool {
        // CPUID.(7,0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let cpu = super::available() && (leaf7.edx >> 22) & 1 == 1 && (leaf7.edx >> 24) & 1 == 1;
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain request for a permission; failure leaves the process unchanged.
        cpu && unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        } == 0
    }

    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    fn request() -> bool {
        false
    }

    /// Palette 1: tmm0–3 the 2×2 f32 accumulators, tmm4–5 activation rows, tmm6–7 weight
    /// columns; each 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        _reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// `c[0..m, 0..cols] += a16[0..m] · panelᵀ` for one panel of NR = 32 columns.
    ///
    /// # Safety
    /// [`enabled`] is true; `a` holds ⌈m/MT⌉·MT rows of `kp` pairs (kp a multiple of KPAD);
    /// `panel` holds kp·NR values; `c` has m rows of stride `ldc` with `cols` ≤ NR columns each.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn panel(
        a: &[u32],
        kp: usize,
        m: usize,
        panel: &[u32],
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        use std::arch::asm;
        debug_assert!(
            kp.is_multiple_of(KPAD)
                && a.len() >= m.div_ceil(MT) * MT * kp
                && panel.len() >= kp * NR
        );
        let mut cfg = TileConfig {
            palette: 1,
            start_row: 0,
            _reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            cfg.colsb[t] = 64;
            cfg.rows[t] = 16;
        }
        asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly));
        let mut out = [0f32; MT * NR];
        let (sa, sb, so) = (kp * 4, NR * 4, NR * 4);
        for r0 in (0..m).step_by(MT) {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for j in (0..kp).step_by(KPAD) {
                let a0 = a.as_ptr().add(r0 * kp + j);
                let a1 = a0.add(16 * kp);
                let b0 = panel.as_ptr().add(j * NR);
                let b1 = b0.add(16);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1,
                    sa = in(reg) sa, sb = in(reg) sb,
                    options(nostack, readonly),
                );
            }
            let o = out.as_mut_ptr();
            asm!(
                "tilestored [{o0} + {so}*1], tmm0",
                "tilestored [{o1} + {so}*1], tmm1",
                "tilestored [{o2} + {so}*1], tmm2",
                "tilestored [{o3} + {so}*1], tmm3",
                o0 = in(reg) o, o1 = in(reg) o.add(16), o2 = in(reg) o.add(16 * NR),
                o3 = in(reg) o.add(16 * NR + 16), so = in(reg) so,
                options(nostack),
            );
            for r in 0..MT.min(m - r0) {
                let row = c.add((r0 + r) * ldc);
                for (i, v) in out[r * NR..r * NR + cols].iter().enumerate() {
                    *row.add(i) += v;
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub unsafe fn panel(_: &[u32], _: usize, _: usize, _: &[u32], _: *mut f32, _: usize, _: usize) {
        unreachable!("enabled() is false off x86_64")
    }
}

/// Which bf16 kernel runs here, for logs and benchmarks.
pub fn kernel_name() -> &'static str {
    if !available() {
        "none (no AVX512-BF16)"
    } else if amx::enabled() {
        "AMX tdpbf16ps"
    } else {
        "AVX512-BF16 vdpbf16ps"
    }
}

/// Dispatches a row block of 1..=MR rows to the kernel compiled for that height.
///
/// # Safety
/// As [`kernel`].
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_rows(
    rows: usize,
    a: *const u32,
    lda: usize,
    w: *const u32,
    kl: usize,
    c: *mut f32,
    ldc: usize,
    mask: u32,
) {
    #[cfg(target_arch = "x86_64")]
    match rows {
        8 => kernel::<8>(a, lda, w, kl, c, ldc, mask),
        7 => kernel::<7>(a, lda, w, kl, c, ldc, mask),
        6 => kernel::<6>(a, lda, w, kl, c, ldc, mask),
        5 => kernel::<5>(a, lda, w, kl, c, ldc, mask),
        4 => kernel::<4>(a, lda, w, kl, c, ldc, mask),
        3 => kernel::<3>(a, lda, w, kl, c, ldc, mask),
        2 => kernel::<2>(a, lda, w, kl, c, ldc, mask),
        1 => kernel::<1>(a, lda, w, kl, c, ldc, mask),
        _ => unreachable!("row blocks are 1..=MR"),
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, a, lda, w, kl, c, ldc, mask);
        unreachable!("matmul_nt checks available() first")
    }
}

/// `c[R × 32] += a[R × kl pairs] · panel[kl pairs × 32]`, columns outside `mask` untouched.
///
/// # Safety
/// The CPU has AVX512F and AVX512-BF16; `a` has R rows of stride `lda` u32 with kl readable
/// pairs each; `w` has kl·NR u32; `c` has R rows of stride `ldc` whose masked columns exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel<const R: usize>(
    a: *const u32,
    lda: usize,
    w: *const u32,
    kl: usize,
    c: *mut f32,
    ldc: usize,
    mask: u32,
) {
    use std::arch::x86_64::*;
    use std::mem::transmute;
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for j in 0..kl {
        let w0: __m512bh = transmute(_mm512_loadu_si512(w.add(j * NR) as *const __m512i));
        let w1: __m512bh = transmute(_mm512_loadu_si512(w.add(j * NR + 16) as *const __m512i));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av: __m512bh = transmute(_mm512_set1_epi32(*a.add(r * lda + j) as i32));
            acc[0] = _mm512_dpbf16_ps(acc[0], av, w0);
            acc[1] = _mm512_dpbf16_ps(acc[1], av, w1);
        }
    }
    let (m0, m1) = (mask as u16, (mask >> 16) as u16);
    for (r, acc) in acc.iter().enumerate() {
        let row = c.add(r * ldc);
        _mm512_mask_storeu_ps(
            row,
            m0,
            _mm512_add_ps(_mm512_maskz_loadu_ps(m0, row), acc[0]),
        );
        let row = row.add(16);
        _mm512_mask_storeu_ps(
            row,
            m1,
            _mm512_add_ps(_mm512_maskz_loadu_ps(m1, row), acc[1]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::test_values::uniform as values;

    fn rounded(v: &[f32]) -> Vec<f32> {
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        /// Packing keeps every value, rounded to bf16, in place (any shape, odd k, partial panels).
        #[test]
        fn unpack_inverts_pack(n in 1usize..80, k in 1usize..40, seed in 0u64..1000) {
            let w = values(n * k, seed);
            prop_assert_eq!(PackedBf16::pack(&w, n, k).unpack(), rounded(&w));
        }

        /// The product against a plain f64 triple loop over the bf16-rounded operands; only the
        /// f32 accumulation order differs.
        #[test]
        fn matmul_matches_plain_product_of_rounded_operands(m in 1usize..70, n in 1usize..100,
                k in 1usize..600, seed in 0u64..1000) {
            if !available() {
                eprintln!("skipping: no AVX512-BF16 on this CPU");
                return Ok(());
            }
            let (a, w) = (values(m * k, seed), values(n * k, seed + 1));
            let bias = values(n, seed + 2);
            let packed = PackedBf16::pack(&w, n, k);
            let (ar, wr) = (rounded(&a), rounded(&w));
            // Both kernels: AMX where this machine has it, the AVX512 one always.
            for use_amx in [false, amx::enabled()].into_iter().collect::<std::collections::BTreeSet<_>>() {
            let mut c: Vec<f32> = (0..m).flat_map(|_| bias.iter().copied()).collect();
            packed.matmul_with(&a, m, &mut c, use_amx);
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = bias[j] as f64
                        + (0..k).map(|t| ar[i * k + t] as f64 * wr[j * k + t] as f64).sum::<f64>();
                    let tol = 1e-6 * (k as f64).sqrt() * 8.0 + 1e-6;
                    prop_assert!((c[i * n + j] as f64 - exact).abs() <= tol,
                        "amx {} row {} col {}: {} vs {}", use_amx, i, j, c[i * n + j], exact);
                }
            }
            }
        }
    }
}
