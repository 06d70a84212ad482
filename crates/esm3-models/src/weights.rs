//! Memory-mapped safetensors weights that give their pages back as soon as they are copied.
//!
//! candle's CPU tensors own their memory, so every weight is copied out of the mapping. With
//! candle's own mmap backend the mapped pages stay resident until the whole model is built, so a
//! load peaks at twice the model size. This backend tells the kernel after each copy that the
//! pages are no longer needed (`MADV_DONTNEED`; they are re-read from the file if touched again),
//! which keeps the peak near one copy of the weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
        // truncated while it is mapped (only during loading: the mapping is dropped after).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let _ = mmap.advise(Advice::Sequential);
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
        // SAFETY: DONTNEED on a private read-only file mapping only drops resident pages; any
        // later access re-reads them from the file, so no live data is lost.
        unsafe {
            let _ = self
                .mmap
                .unchecked_advise_range(UncheckedAdvice::DontNeed, e.start, e.len);
        }
        t.to_dtype(dtype)?.to_device(dev)
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
