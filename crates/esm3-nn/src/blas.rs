//! The system BLAS (OpenBLAS), loaded at run time, for the inference GEMMs.
//!
//! Why: candle's CPU matmul goes through the `gemm` crate, which on the trunk's shapes reaches
//! well under OpenBLAS's throughput on this CPU (`cargo run --release -p esm3-nn --example
//! gemm_bench` prints the side-by-side GFLOP/s). (bf16 products have their own kernel,
//! `bf16_gemm`: Debian's OpenBLAS has no `sbgemm`.)
//!
//! Why loaded at run time rather than linked: the binary must build and run on a machine without
//! OpenBLAS (CI, a fresh clone); there it falls back to candle's matmul with identical results
//! up to rounding. The two symbols used are declared here rather than through a `-sys` crate, which would link.
//!
//! `ESM3_BLAS=off` disables it; `ESM3_BLAS=/path/libopenblas.so` picks a library.

use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

use crate::disjoint::SendPtr;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);
type SetThreads = unsafe extern "C" fn(c_int);
type CoreName = unsafe extern "C" fn() -> *const c_char;

/// A loaded BLAS: the library handle is kept alive for the process.
pub struct Blas {
    _lib: libloading::Library,
    sgemm: Sgemm,
    set_threads: Option<SetThreads>,
    /// What the library reports about itself, e.g. `OpenBLAS (SkylakeX)`.
    pub description: String,
}

const DEFAULT_NAMES: [&str; 2] = ["libopenblas.so.0", "libopenblas.so"];

fn load() -> Option<Blas> {
    let choice = std::env::var("ESM3_BLAS").ok();
    let names: Vec<String> = match choice.as_deref() {
        Some("off") | Some("none") | Some("0") => return None,
        Some(path) if !path.is_empty() => vec![path.to_string()],
        _ => DEFAULT_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    for name in names {
        // SAFETY: loading a shared library runs its initialisers; OpenBLAS's only start its
        // thread pool. The symbols are checked against the CBLAS prototypes declared above.
        let Ok(lib) = (unsafe { libloading::Library::new(&name) }) else {
            continue;
        };
        unsafe {
            let Ok(sgemm) = lib.get::<Sgemm>(b"cblas_sgemm\0").map(|s| *s) else {
                continue;
            };
            let set_threads = lib
                .get::<SetThreads>(b"openblas_set_num_threads\0")
                .map(|s| *s)
                .ok();
            let core = lib
                .get::<CoreName>(b"openblas_get_corename\0")
                .ok()
                .and_then(|f| {
                    let p = f();
                    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
                });
            let description = match core {
                Some(core) => format!("OpenBLAS ({core}) from {name}"),
                None => format!("BLAS from {name}"),
            };
            let blas = Blas {
                _lib: lib,
                sgemm,
                set_threads,
                description,
            };
            // Parallelism comes from rayon (see `sgemm_nt`): one library thread per call.
            blas.single_threaded();
            return Some(blas);
        }
    }
    None
}

/// The process's BLAS, if one could be loaded (once).
pub fn get() -> Option<&'static Blas> {
    static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
    BLAS.get_or_init(load).as_ref()
}

/// Which GEMM the inference path uses, for `--timings` and logs.
pub fn backend_name() -> String {
    match get() {
        Some(b) => b.description.clone(),
        None => "gemm crate (via candle)".into(),
    }
}

impl Blas {
    fn single_threaded(&self) {
        if let Some(f) = self.set_threads {
            // SAFETY: plain setter of the library's pool size.
            unsafe { f(1) }
        }
    }

    /// `c[m×n] = a[m×k] · w[n×k]ᵀ + beta·c`, all row-major and dense.
    ///
    /// Split over candle's rayon pool by column blocks, each block a single-threaded BLAS call:
    /// with the library's own pool, its idle workers spin (`sched_yield`) through every candle
    /// op between two products and take the cores from it (13% of the samples of a 2-core forward at L = 256 under `perf record`).
    #[allow(clippy::too_many_arguments)]
    pub fn sgemm_nt(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        w: &[f32],
        beta: f32,
        c: &mut [f32],
    ) {
        check_dims(m, n, k, a.len(), w.len(), c.len());
        let threads = rayon::current_num_threads().max(1);
        // Column blocks of whole 64-wide panels, so each call keeps the kernel's full width.
        let block = n.div_ceil(threads).div_ceil(64) * 64;
        if threads == 1 || block >= n || m * n * k < 1 << 18 {
            // SAFETY: the slices' lengths were checked against m, n, k just above.
            unsafe { self.sgemm_raw(m, n, k, a.as_ptr(), w.as_ptr(), beta, c.as_mut_ptr(), n) };
            return;
        }
        let c_ptr = SendPtr(c.as_mut_ptr());
        let blocks = n.div_ceil(block);
        rayon::scope(|s| {
            for b in 0..blocks {
                let (n0, nb) = (b * block, block.min(n - b * block));
                let c_ptr = &c_ptr;
                s.spawn(move |_| {
                    // SAFETY: block b writes only columns n0..n0+nb of c's rows (disjoint
                    // between blocks), reads rows n0..n0+nb of w; all within the checked lengths.
                    unsafe {
                        self.sgemm_raw(
                            m,
                            nb,
                            k,
                            a.as_ptr(),
                            w.as_ptr().add(n0 * k),
                            beta,
                            c_ptr.0.add(n0),
                            n,
                        )
                    }
                });
            }
        });
    }

    /// One single-threaded row-major `c[m×n] = alpha · op(a) · op(b) + beta · c`, `op` a
    /// transpose where asked: `a` is m×k (k×m when `trans_a`), `b` k×n (n×k when `trans_b`).
    ///
    /// # Safety
    /// The pointers address matrices of those sizes with the given leading dimensions; `c`
    /// overlaps neither operand.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn sgemm_general(
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
        assert!(
            m.max(n).max(k).max(lda).max(ldb).max(ldc) <= c_int::MAX as usize,
            "GEMM dimension beyond the BLAS's 32-bit indices"
        );
        let t = |yes: bool| if yes { TRANS } else { NO_TRANS };
        (self.sgemm)(
            ROW_MAJOR,
            t(trans_a),
            t(trans_b),
            m as c_int,
            n as c_int,
            k as c_int,
            alpha,
            a,
            lda as c_int,
            b,
            ldb as c_int,
            beta,
            c,
            ldc as c_int,
        )
    }

    /// One row-major `c = a · wᵀ + beta·c` call with leading dimensions k, k, ldc.
    ///
    /// # Safety
    /// `a` holds m×k, `w` n×k, and `c` rows of ldc ≥ n values, m of them.
    #[allow(clippy::too_many_arguments)]
    unsafe fn sgemm_raw(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        w: *const f32,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    ) {
        (self.sgemm)(
            ROW_MAJOR,
            NO_TRANS,
            TRANS,
            m as c_int,
            n as c_int,
            k as c_int,
            1.0,
            a,
            k as c_int,
            w,
            k as c_int,
            beta,
            c,
            ldc as c_int,
        )
    }
}

/// A row-major single-threaded GEMM `c[m×n] = alpha · op(a) · op(b) + beta · c`: the system
/// BLAS in use, a plain loop in the tests (so the ops are checked without a BLAS too).
pub trait Gemm: Sync {
    /// # Safety
    /// `a` is m×k (k×m when `trans_a`), `b` k×n (n×k when `trans_b`), `c` m×n, each with the
    /// given leading dimension; `c` overlaps neither operand.
    #[allow(clippy::too_many_arguments)]
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
    );
}

impl Gemm for Blas {
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
        self.sgemm_general(
            trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
        )
    }
}

fn check_dims(m: usize, n: usize, k: usize, a: usize, w: usize, c: usize) {
    assert!(
        a >= m * k && w >= n * k && c >= m * n,
        "GEMM operand too short"
    );
    assert!(
        m.max(n).max(k) <= c_int::MAX as usize,
        "GEMM dimension beyond the BLAS's 32-bit indices"
    );
}
