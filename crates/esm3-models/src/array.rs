//! Host-side arrays for model inputs: plain data with a shape, validated before any tensor exists.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct HostArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Copy> HostArray<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape/data mismatch"
        );
        Self { shape, data }
    }

    pub fn filled(shape: Vec<usize>, value: T) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            data: vec![value; n],
        }
    }

    /// Multi-index of a flat position, for error messages.
    pub fn index_of(&self, flat: usize) -> Vec<usize> {
        let mut idx = vec![0; self.shape.len()];
        let mut rest = flat;
        for (i, dim) in self.shape.iter().enumerate().rev() {
            idx[i] = rest % dim;
            rest /= dim;
        }
        idx
    }
}

impl HostArray<i64> {
    /// Reads an integer tensor of any integer dtype; floats are refused (tokens must be exact).
    pub fn ids_from_tensor(name: &str, t: &Tensor) -> Result<Self> {
        let data = match t.dtype() {
            DType::I64 => t.flatten_all()?.to_vec1::<i64>()?,
            DType::U32 | DType::U8 | DType::I32 | DType::I16 => {
                t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?
            }
            other => {
                return Err(ModelError::Input(format!(
                    "`{name}` has dtype {other:?}: expected an integer tensor (i64)"
                )))
            }
        };
        Ok(Self::new(t.dims().to_vec(), data))
    }

    pub fn to_tensor_u32(&self, device: &Device) -> Result<Tensor> {
        let v: Vec<u32> = self.data.iter().map(|&x| x as u32).collect();
        Ok(Tensor::from_vec(v, self.shape.clone(), device)?)
    }

    /// Checks every id lies in `0..limit`; names the first offender by index.
    pub fn check_range(&self, name: &str, limit: i64, what: &str) -> Result<()> {
        if let Some((i, v)) = self
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| **v < 0 || **v >= limit)
        {
            return Err(ModelError::Input(format!(
                "`{name}`{:?} = {v} is out of range: expected {what} in 0..{limit}",
                self.index_of(i)
            )));
        }
        Ok(())
    }
}

impl HostArray<f32> {
    /// Reads a float tensor (f32, f16, bf16, f64).
    pub fn reals_from_tensor(name: &str, t: &Tensor) -> Result<Self> {
        let data = match t.dtype() {
            DType::F32 => t.flatten_all()?.to_vec1::<f32>()?,
            DType::F16 | DType::BF16 | DType::F64 => {
                t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?
            }
            other => {
                return Err(ModelError::Input(format!(
                    "`{name}` has dtype {other:?}: expected a floating-point tensor (f32)"
                )))
            }
        };
        Ok(Self::new(t.dims().to_vec(), data))
    }
}

/// Checks `shape` is `[B, L, rest...]` for the batch and length fixed by earlier inputs.
pub fn expect_shape(name: &str, shape: &[usize], want: &[Option<usize>]) -> Result<()> {
    let ok = shape.len() == want.len()
        && shape
            .iter()
            .zip(want)
            .all(|(s, w)| w.is_none_or(|w| w == *s));
    if ok {
        return Ok(());
    }
    let want: Vec<String> = want
        .iter()
        .map(|w| w.map_or("_".to_string(), |v| v.to_string()))
        .collect();
    Err(ModelError::Input(format!(
        "`{name}` has shape {shape:?}, expected [{}]",
        want.join(", ")
    )))
}
