//! Locality-sensitive hashing of TF-IDF vectors into 8 tokens (spec §5.4).
//!
//! Table t has 8 hyperplanes; bit b of its value is 1 when ⟨H[t][b], v⟩ ≥ 0 (an exact 0 counts
//! as 1, as in the reference's `np.where(similarity >= 0, 1, 0)`).
//!
//! Storage: the official `hyperplanes_8bit_58641.npz` holds arrays "0".."7" of shape
//! [8, dim]; our model directories hold `hyperplanes.safetensors` with one F64 tensor
//! `hyperplanes` of shape [8, 8, dim] (table, bit, keyword), written by `esm3 import` from the
//! npz or generated from a seed for our own models.

use std::io::Read;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::data::read_npy_f64;
use super::tfidf::SparseVector;
use super::{FunctionError, FunctionTokens, BITS_PER_TOKEN, DEPTH, LSH_OFFSET};

/// File name of the hyperplanes inside a model directory.
pub const HYPERPLANES_FILE: &str = "hyperplanes.safetensors";
const TENSOR_NAME: &str = "hyperplanes";

#[derive(Clone, Debug, PartialEq)]
pub struct Hyperplanes {
    dim: usize,
    /// Row-major [DEPTH, BITS_PER_TOKEN, dim].
    values: Vec<f64>,
}

fn error(source: &Path, message: impl Into<String>) -> FunctionError {
    FunctionError::Hyperplanes {
        source_name: source.display().to_string(),
        message: message.into(),
    }
}

impl Hyperplanes {
    /// `values` is row-major [8 tables, 8 bits, dim].
    pub fn new(dim: usize, values: Vec<f64>) -> Result<Self, String> {
        if dim == 0 || values.len() != DEPTH * BITS_PER_TOKEN * dim {
            return Err(format!(
                "expected {DEPTH}×{BITS_PER_TOKEN}×{dim} values, found {}",
                values.len()
            ));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "value {} at flat index {i} is not finite",
                values[i]
            ));
        }
        Ok(Self { dim, values })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The 8 ids `4 + h_t` of a non-zero vector.
    pub fn hash(&self, v: &SparseVector) -> FunctionTokens {
        let mut out = [0u16; DEPTH];
        for (t, slot) in out.iter_mut().enumerate() {
            let mut h = 0u16;
            for b in 0..BITS_PER_TOKEN {
                let row = &self.values[(t * BITS_PER_TOKEN + b) * self.dim..][..self.dim];
                let dot: f64 = v
                    .indices
                    .iter()
                    .zip(&v.values)
                    .map(|(&i, &x)| row[i as usize] * x)
                    .sum();
                if dot >= 0.0 {
                    h |= 1 << b;
                }
            }
            *slot = LSH_OFFSET + h;
        }
        out
    }

    /// Reads the official npz layout (arrays "0".."7", each [8, dim], float64 or float32).
    pub fn read_npz(path: &Path) -> Result<Self, FunctionError> {
        let file = std::fs::File::open(path).map_err(|e| error(path, e.to_string()))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| error(path, format!("not an npz (zip) file: {e}")))?;
        let mut values = Vec::new();
        let mut dim = None;
        for t in 0..DEPTH {
            let name = format!("{t}.npy");
            let mut bytes = Vec::new();
            zip.by_name(&name)
                .map_err(|_| {
                    error(
                        path,
                        format!("missing array \"{t}\" (expected \"0\"..\"7\")"),
                    )
                })?
                .read_to_end(&mut bytes)
                .map_err(|e| error(path, e.to_string()))?;
            let (shape, data) =
                read_npy_f64(&bytes).map_err(|m| error(path, format!("array \"{t}\": {m}")))?;
            let d = match shape.as_slice() {
                [bits, d] if *bits == BITS_PER_TOKEN as u64 => *d as usize,
                _ => {
                    return Err(error(
                        path,
                        format!(
                            "array \"{t}\" has shape {shape:?}, expected [{BITS_PER_TOKEN}, dim]"
                        ),
                    ))
                }
            };
            if dim.is_some_and(|x| x != d) {
                return Err(error(
                    path,
                    format!("array \"{t}\" has dim {d}, others {}", dim.unwrap()),
                ));
            }
            dim = Some(d);
            values.extend(data);
        }
        Self::new(dim.unwrap_or(0), values).map_err(|m| error(path, m))
    }

    pub fn read_safetensors(path: &Path) -> Result<Self, FunctionError> {
        let bytes = std::fs::read(path).map_err(|e| error(path, e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| error(path, format!("not a safetensors file: {e}")))?;
        let t = st
            .tensor(TENSOR_NAME)
            .map_err(|_| error(path, format!("missing tensor `{TENSOR_NAME}`")))?;
        let shape = t.shape();
        if t.dtype() != Dtype::F64
            || shape.len() != 3
            || shape[0] != DEPTH
            || shape[1] != BITS_PER_TOKEN
        {
            return Err(error(
                path,
                format!(
                    "tensor `{TENSOR_NAME}` is {:?} {shape:?}, expected F64 [{DEPTH}, {BITS_PER_TOKEN}, dim]",
                    t.dtype()
                ),
            ));
        }
        let values = t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Self::new(shape[2], values).map_err(|m| error(path, m))
    }

    /// `path` may be a model directory (holding `hyperplanes.safetensors`), a `.safetensors`
    /// file or an official `.npz`.
    pub fn read(path: &Path) -> Result<Self, FunctionError> {
        if path.is_dir() {
            let file = path.join(HYPERPLANES_FILE);
            if !file.is_file() {
                return Err(error(
                    path,
                    format!("model directory has no {HYPERPLANES_FILE}"),
                ));
            }
            return Self::read_safetensors(&file);
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => Self::read_npz(path),
            _ => Self::read_safetensors(path),
        }
    }

    pub fn write_safetensors(&self, path: &Path) -> Result<(), FunctionError> {
        let bytes: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F64, vec![DEPTH, BITS_PER_TOKEN, self.dim], &bytes)
            .map_err(|e| error(path, e.to_string()))?;
        safetensors::serialize_to_file([(TENSOR_NAME, view)], None, path)
            .map_err(|e| error(path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_b_is_row_b_and_zero_counts_as_one() {
        // Table t's row b is +1 on keyword 0 when bit b of t is set, −1 otherwise; keyword 1
        // has 0 everywhere.
        let dim = 2;
        let mut values = Vec::new();
        for t in 0..DEPTH {
            for b in 0..BITS_PER_TOKEN {
                values.push(if (t >> b) & 1 == 1 { 1.0 } else { -1.0 });
                values.push(0.0);
            }
        }
        let h = Hyperplanes::new(dim, values).unwrap();
        let v = SparseVector {
            indices: vec![0],
            values: vec![0.5],
        };
        let ids = h.hash(&v);
        for (t, id) in ids.iter().enumerate() {
            assert_eq!(*id, LSH_OFFSET + t as u16);
        }
        let zero_dot = SparseVector {
            indices: vec![1],
            values: vec![1.0],
        };
        assert_eq!(h.hash(&zero_dot), [LSH_OFFSET + 255; DEPTH]);
    }

    #[test]
    fn safetensors_roundtrip_and_shape_errors() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hyperplanes::new(3, (0..192).map(|i| i as f64 * 0.5 - 7.0).collect()).unwrap();
        let p = dir.path().join(HYPERPLANES_FILE);
        h.write_safetensors(&p).unwrap();
        assert_eq!(Hyperplanes::read(dir.path()).unwrap(), h);
        assert!(Hyperplanes::new(3, vec![0.0; 10]).is_err());
        let bad = dir.path().join("x.npz");
        std::fs::write(&bad, b"nope").unwrap();
        let e = Hyperplanes::read(&bad).unwrap_err().to_string();
        assert!(e.contains("x.npz") && e.contains("zip"), "{e}");
    }
}
