//! Linear weights read in place from a memory-mapped checkpoint.
//!
//! Why: candle's CPU tensors own their memory, so building a model copies every weight out of
//! the file into freshly zeroed pages. For a 1.4B model that copy (5.6 GB of page faults and
//! memmove) was nearly all of the 4–60 s load. The Linear matrices are >99% of the bytes and the
//! BLAS path only needs a slice, so they stay in the mapping: the load is the time to map the
//! file, and the pages are shared with the page cache instead of duplicated.
//!
//! The source is passed by a scoped thread-local (as [`crate::with_matmul_precision`]) so every
//! model constructor keeps its reference-shaped `VarBuilder` signature.

use std::cell::RefCell;
use std::sync::Arc;

/// A checkpoint whose f32 tensors can be borrowed in place.
pub trait MappedWeights: Send + Sync {
    /// The values of tensor `name` when it is stored as f32 with exactly `shape` and aligned
    /// for f32 reads; `None` makes the caller load it the ordinary way.
    fn f32_values(&self, name: &str, shape: &[usize]) -> Option<&[f32]>;

    /// Tells the source that tensor `name` has been copied and is not read in place, so its
    /// pages need not stay resident.
    fn release(&self, _name: &str) {}
}

thread_local! {
    static SOURCE: RefCell<Option<Arc<dyn MappedWeights>>> = const { RefCell::new(None) };
}

/// Builds with `source` available: Linear layers constructed inside `f` (on this thread) whose
/// weight is in `source` keep it there instead of copying it.
pub fn with_mapped_weights<R>(source: Arc<dyn MappedWeights>, f: impl FnOnce() -> R) -> R {
    let before = SOURCE.with(|s| s.replace(Some(source)));
    let out = f();
    SOURCE.with(|s| *s.borrow_mut() = before);
    out
}

/// A read-only f32 matrix inside a mapping that it keeps alive.
#[derive(Clone)]
pub(crate) struct MappedMatrix {
    owner: Arc<dyn MappedWeights>,
    ptr: *const f32,
    len: usize,
}

// SAFETY: the values are never written (a read-only mapping) and `owner` keeps them alive and
// in place for as long as any clone of this matrix exists.
unsafe impl Send for MappedMatrix {}
unsafe impl Sync for MappedMatrix {}

impl MappedMatrix {
    pub(crate) fn values(&self) -> &[f32] {
        // SAFETY: see the Send/Sync note; ptr/len came from a live `&[f32]` of `owner`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Gives the pages back to the source once this matrix has been copied (see
    /// [`MappedWeights::release`]).
    pub(crate) fn release(self, name: &str) {
        self.owner.release(name);
    }
}

impl std::fmt::Debug for MappedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedMatrix({} values)", self.len)
    }
}

/// The tensor `name` of the current source, if there is one holding it as f32 `shape`.
pub(crate) fn lookup(name: &str, shape: &[usize]) -> Option<MappedMatrix> {
    SOURCE.with(|s| {
        let owner = s.borrow().clone()?;
        let values = owner.f32_values(name, shape)?;
        let (ptr, len) = (values.as_ptr(), values.len());
        Some(MappedMatrix { owner, ptr, len })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<f32>);
    impl MappedWeights for Fixed {
        fn f32_values(&self, name: &str, shape: &[usize]) -> Option<&[f32]> {
            (name == "w" && shape.iter().product::<usize>() == self.0.len()).then_some(&self.0)
        }
    }

    #[test]
    fn lookup_sees_the_source_only_inside_the_scope() {
        assert!(lookup("w", &[2]).is_none());
        let src: Arc<dyn MappedWeights> = Arc::new(Fixed(vec![1.0, 2.0]));
        let m = with_mapped_weights(src, || {
            assert!(lookup("w", &[3]).is_none(), "shape must match");
            assert!(lookup("v", &[2]).is_none());
            lookup("w", &[2]).unwrap()
        });
        assert!(lookup("w", &[2]).is_none());
        // The matrix outlives the scope: it holds the source.
        assert_eq!(m.values(), &[1.0, 2.0]);
    }
}
