//! Heap policy for training loops.
//!
//! A training step allocates and frees the same few hundred tensors every step, many of them
//! larger than glibc's mmap threshold (the pairwise head's activations are ~60 MB at 4 × 128).
//! By default each of those is a fresh `mmap` whose pages the kernel faults in and zeroes, then
//! an `munmap` at the end of the step: on a 2-core VM that was 30 % of a VQ-VAE step's samples
//! under `perf record` (`clear_page_erms`, `exc_page_fault`) and 1.3 M page faults in five
//! steps. Serving big blocks from the heap and never trimming it keeps the pages across steps
//! (0.25 M faults, the step 8–10 % faster, `tools/bench/train_step_bench.py`). The cost is that
//! the process keeps its peak heap until it exits, which a training run reaches anyway on its
//! first step; inference commands do not call this.

/// Keeps freed memory in the process for reuse instead of returning it to the kernel.
/// Idempotent; a no-op where the C library is not glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; every value is in range.
            let ok = unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                    && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
            };
            if !ok {
                tracing::debug!("mallopt refused the training heap policy; keeping the default");
            }
        });
    }
}
