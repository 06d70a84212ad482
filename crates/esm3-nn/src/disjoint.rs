//! Handing one output buffer to the rayon tasks of a product, each writing its own columns.

/// A raw output pointer shared by tasks whose writes are disjoint.
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used for disjoint writes inside one `rayon::scope` / parallel iterator, while
// the buffer it points into is borrowed mutably by the caller.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}
