//! Per-forward inputs shared by every block: rotary tables, attention masks and frames.
//!
//! Built once per forward pass instead of once per layer.

use candle_core::{DType, Device, Result, Tensor};
use esm3_protein::{backbone_frames, Frame, Vec3};

use crate::rotary::rotary_tables;

/// What plain multi-head attention needs besides the stream.
pub struct AttentionContext {
    pub cos: Tensor,
    pub sin: Tensor,
    /// Additive mask `[B, 1, L, L]`: 0 where query i may attend key j, −∞ elsewhere.
    /// `None` means no masking at all (as in the reference when no `sequence_id` is given).
    pub mask: Option<Tensor>,
}

impl AttentionContext {
    /// `sequence_id`, if given, is `[B, L]` row-major: i attends j iff their ids are equal.
    pub fn new(
        d_head: usize,
        batch: usize,
        len: usize,
        sequence_id: Option<&[i64]>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (cos, sin) = rotary_tables(d_head, len, dtype, device)?;
        let mask = match sequence_id {
            None => None,
            Some(ids) => {
                let mut m = vec![0f32; batch * len * len];
                for b in 0..batch {
                    let row = &ids[b * len..(b + 1) * len];
                    for i in 0..len {
                        for j in 0..len {
                            if row[i] != row[j] {
                                m[(b * len + i) * len + j] = f32::NEG_INFINITY;
                            }
                        }
                    }
                }
                Some(Tensor::from_vec(m, (batch, 1, len, len), device)?.to_dtype(dtype)?)
            }
        };
        Ok(Self { cos, sin, mask })
    }
}

/// What geometric attention needs: frames, their validity, and the reference's attention bias.
pub struct GeometryContext {
    /// Rotations `[B, L, 3, 3]` (columns are local axes), always f32.
    pub rot: Tensor,
    /// Translations `[B, L, 1, 3]`, always f32.
    pub trans: Tensor,
    /// 1.0 where the residue has a frame, else 0.0: `[B, L, 1]` f32.
    pub frame_mask: Tensor,
    /// Bias `[B, 1, L, L]` f32: 1 for same sequence id, 0 otherwise; `f32::MIN` where the key
    /// has no frame or lies in another chain (spec §2.6 step 6).
    pub bias: Tensor,
    /// Whether any residue in the batch has a frame (when none does, ESM3's geometric
    /// attention outputs exactly zero and can be skipped).
    pub any_frame: bool,
}

impl GeometryContext {
    /// `backbone` holds N, CA, C per residue, `[B·L]` entries in row-major `[B, L]` order.
    pub fn new(
        batch: usize,
        len: usize,
        backbone: &[[Vec3; 3]],
        sequence_id: Option<&[i64]>,
        chain_id: &[i64],
        device: &Device,
    ) -> Result<Self> {
        let mut frames = Vec::with_capacity(batch * len);
        let mut mask = Vec::with_capacity(batch * len);
        for b in 0..batch {
            let (f, valid) = backbone_frames(&backbone[b * len..(b + 1) * len]);
            frames.extend(f);
            mask.extend(valid);
        }
        Self::from_frames(batch, len, &frames, &mask, sequence_id, chain_id, device)
    }

    /// From frames already built (e.g. gathered into neighbourhoods by the VQ-VAE encoder):
    /// `frames` and `mask` are `[B·L]` row-major.
    pub fn from_frames(
        batch: usize,
        len: usize,
        frames: &[Frame],
        mask: &[bool],
        sequence_id: Option<&[i64]>,
        chain_id: &[i64],
        device: &Device,
    ) -> Result<Self> {
        let mut rot: Vec<f32> = Vec::with_capacity(batch * len * 9);
        let mut trans: Vec<f32> = Vec::with_capacity(batch * len * 3);
        for f in frames {
            rot.extend(f.rot.iter().flatten());
            trans.extend(f.trans);
        }
        let mut bias = vec![0f32; batch * len * len];
        for b in 0..batch {
            for i in 0..len {
                for j in 0..len {
                    let (bi, bj) = (b * len + i, b * len + j);
                    let same_seq = sequence_id.is_none_or(|s| s[bi] == s[bj]);
                    let v = if chain_id[bi] != chain_id[bj] || !mask[bj] {
                        f32::MIN
                    } else if same_seq {
                        1.0
                    } else {
                        0.0
                    };
                    bias[(b * len + i) * len + j] = v;
                }
            }
        }
        let any_frame = mask.iter().any(|m| *m);
        let frame_mask: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
        Ok(Self {
            rot: Tensor::from_vec(rot, (batch, len, 3, 3), device)?,
            trans: Tensor::from_vec(trans, (batch, len, 1, 3), device)?,
            frame_mask: Tensor::from_vec(frame_mask, (batch, len, 1), device)?,
            bias: Tensor::from_vec(bias, (batch, 1, len, len), device)?,
            any_frame,
        })
    }
}
