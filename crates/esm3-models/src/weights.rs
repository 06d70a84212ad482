//! Memory-mapped safetensors weights: Linear matrices are read in place, the rest is copied.
//!
//! The Linear weights (>99% of a trunk's bytes) stay in the mapping when the BLAS path will use
//! them (see `esm3_nn::mapped`), so loading costs the mapping, not a copy of the model, and the
//! pages are the page cache's rather than a second copy. Every other tensor becomes an ordinary
//! candle tensor; after copying one, its pages are given back (`MADV_DONTNEED`; re-read from the
//! file if touched again), so a load never holds the file twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use memmap2::{Advice, Mmap, UncheckedAdvice};

use crate::error::{ModelError, Result};

struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    start: usize,
    len: usize,
}

pub struct MmapWeights {
    mmap: Mmap,
    entries: HashMap<String, Entry>,
    path: PathBuf,
}

impl MmapWeights {
    pub fn open(path: &Path) -> Result<Self> {
        let unreadable = |message: String| ModelError::Unreadable {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: mapped read-only; like every mmap-based loader we rely on the file not being
        // truncated or rewritten while it is mapped, which is for as long as a model built from
        // it lives (its Linear weights are read in place). Replacing the file by a rename, as
        // `esm3 import` and the trainer do, leaves this mapping on the old contents.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let st =
            safetensors::SafeTensors::deserialize(&mmap).map_err(|e| unreadable(e.to_string()))?;
        let base = mmap.as_ptr() as usize;
        let mut entries = HashMap::new();
        for (name, view) in st.tensors() {
            let dtype = match view.dtype() {
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                safetensors::Dtype::F64 => DType::F64,
                other => {
                    return Err(unreadable(format!(
                        "tensor `{name}` has dtype {other:?}, expected F32, BF16 or F16"
                    )))
                }
            };
            let data = view.data();
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape: view.shape().to_vec(),
                    start: data.as_ptr() as usize - base,
                    len: data.len(),
                },
            );
        }
        Ok(Self {
            mmap,
            entries,
            path: path.to_path_buf(),
        })
    }

    /// Every tensor's name, shape and dtype, for checking against a schema.
    pub fn infos(&self) -> impl Iterator<Item = (&str, &[usize], DType)> {
        self.entries
            .iter()
            .map(|(n, e)| (n.as_str(), e.shape.as_slice(), e.dtype))
    }

    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: no tensor `{name}`", self.path.display()))
        })?;
        // Ask for the whole tensor at once rather than faulting it in page by page.
        let _ = self.mmap.advise_range(Advice::WillNeed, e.start, e.len);
        let bytes = &self.mmap[e.start..e.start + e.len];
        let t = Tensor::from_raw_buffer(bytes, e.dtype, &e.shape, &Device::Cpu)?;
        self.dont_need(e);
        t.to_dtype(dtype)?.to_device(dev)
    }

    /// Drops the resident pages of a tensor that has been copied.
    fn dont_need(&self, e: &Entry) {
        // SAFETY: DONTNEED on a private read-only file mapping only drops resident pages; any
        // later access re-reads them from the file, so no live data is lost (a Linear weight
        // read in place shares no page contents that could be lost, only re-faulted).
        unsafe {
            let _ = self
                .mmap
                .unchecked_advise_range(UncheckedAdvice::DontNeed, e.start, e.len);
        }
    }
}

impl esm3_nn::MappedWeights for MmapWeights {
    fn f32_values(&self, name: &str, shape: &[usize]) -> Option<&[f32]> {
        let e = self.entries.get(name)?;
        let bytes = &self.mmap[e.start..e.start + e.len];
        if e.dtype != DType::F32 || e.shape != shape || !(bytes.as_ptr() as usize).is_multiple_of(4)
        {
            return None;
        }
        // Start reading it in now (a no-op when the file is in the page cache).
        let _ = self.mmap.advise_range(Advice::WillNeed, e.start, e.len);
        // SAFETY: 4-byte aligned (checked), length a multiple of 4 (f32 entry validated by
        // safetensors), every bit pattern is a valid f32, and the mapping is read-only.
        Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const f32, e.len / 4) })
    }

    fn release(&self, name: &str) {
        if let Some(e) = self.entries.get(name) {
            self.dont_need(e);
        }
    }
}

/// The VarBuilder backend over weights that Linear layers may also hold on to.
pub(crate) struct SharedWeights(pub Arc<MmapWeights>);

impl candle_nn::var_builder::SimpleBackend for SharedWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, init, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

impl candle_nn::var_builder::SimpleBackend for MmapWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.load(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: t.shape().clone(),
            });
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::var_builder::SimpleBackend;

    #[test]
    fn loads_what_was_saved_in_every_float_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = a.to_dtype(DType::BF16).unwrap();
        let map: HashMap<String, Tensor> =
            [("a".to_string(), a.clone()), ("b".to_string(), b)].into();
        candle_core::safetensors::save(&map, &path).unwrap();
        let w = MmapWeights::open(&path).unwrap();
        assert!(w.contains_tensor("a") && !w.contains_tensor("c"));
        let got = w
            .get(
                (3, 4).into(),
                "a",
                candle_nn::Init::Const(0.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        // Read twice: pages given back are read again from the file.
        let again = w.get_unchecked("a", DType::F32, &Device::Cpu).unwrap();
        assert_eq!(again.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        let b = w.get_unchecked("b", DType::F32, &Device::Cpu).unwrap();
        assert_eq!(b.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        assert!(w
            .get(
                (4, 3).into(),
                "a",
                candle_nn::Init::Const(0.0),
                DType::F32,
                &Device::Cpu
            )
            .is_err());
    }
}
