//! ESM3's inputs and their defaulting: any subset of tracks may be given, and what is missing
//! is filled in exactly as the reference's `ESM3.forward` fills it (spec §1.9a;
//! `esm/models/esm3.py`, `ESM3.forward`), after every given array's shape and id range are checked.

use esm3_protein::Vec3;
use esm3_tokens::sequence as seq_vocab;

use super::structure_ids;
use crate::array::{expect_shape, HostArray};
use crate::error::{ModelError, Result};
use crate::schema::vocab;

/// Inputs named like the reference `ESM3.forward` arguments. Any subset may be given; missing
/// ones are defaulted exactly as the reference does (spec §1.9a).
#[derive(Clone, Debug, Default)]
pub struct Esm3Input {
    /// `[B, L]` sequence ids (0..64).
    pub sequence_tokens: Option<HostArray<i64>>,
    /// `[B, L]` structure ids (0..4101, −1 = mask).
    pub structure_tokens: Option<HostArray<i64>>,
    /// `[B, L]` SS8 ids (0..11).
    pub ss8_tokens: Option<HostArray<i64>>,
    /// `[B, L]` SASA ids (0..19).
    pub sasa_tokens: Option<HostArray<i64>>,
    /// `[B, L, 8]` function ids (0..260).
    pub function_tokens: Option<HostArray<i64>>,
    /// `[B, L, 16]` residue-annotation ids (0..1478), 0 = empty slot.
    pub residue_annotation_tokens: Option<HostArray<i64>>,
    /// `[B, L]` average pLDDT in 0..1, or 1 in either dimension to broadcast (default 1.0).
    pub average_plddt: Option<HostArray<f32>>,
    /// `[B, L]` per-residue pLDDT in 0..1 (default 0.0).
    pub per_res_plddt: Option<HostArray<f32>>,
    /// `[B, L, A, 3]` with A ≥ 3 (N, CA, C first: atom3, atom14 or atom37), Å; NaN = missing.
    pub structure_coords: Option<HostArray<f32>>,
    /// `[B, L]` chain ids; geometric attention never crosses chains (default: all 0).
    pub chain_id: Option<HostArray<i64>>,
    /// `[B, L]` sequence ids; attention only within equal ids (default: no masking).
    pub sequence_id: Option<HostArray<i64>>,
}

/// Inputs with every default filled in, ids validated and the structure track overwritten
/// from the sequence's special tokens, all on the host.
pub(super) struct Prepared {
    pub batch: usize,
    pub len: usize,
    pub sequence: HostArray<i64>,
    pub structure: HostArray<i64>,
    pub ss8: HostArray<i64>,
    pub sasa: HostArray<i64>,
    pub function: HostArray<i64>,
    pub residue: HostArray<i64>,
    pub average_plddt: HostArray<f32>,
    pub per_res_plddt: HostArray<f32>,
    pub backbone: Vec<[Vec3; 3]>,
    pub chain_id: Vec<i64>,
    pub sequence_id: Option<HostArray<i64>>,
}

impl Prepared {
    pub fn new(input: &Esm3Input) -> Result<Self> {
        let shape = BatchShape::of(input)?;
        let sequence = shape.id_track(
            "sequence_tokens",
            &input.sequence_tokens,
            None,
            seq_vocab::MASK as i64,
            vocab::SEQUENCE,
            "sequence ids",
        )?;
        let ss8 = shape.id_track(
            "ss8_tokens",
            &input.ss8_tokens,
            None,
            0,
            vocab::SS8,
            "SS8 ids",
        )?;
        let sasa = shape.id_track(
            "sasa_tokens",
            &input.sasa_tokens,
            None,
            0,
            vocab::SASA,
            "SASA ids",
        )?;
        let structure = shape.structure_track(&input.structure_tokens, &sequence)?;
        let function = shape.id_track(
            "function_tokens",
            &input.function_tokens,
            Some(vocab::FUNCTION_DEPTH),
            0,
            vocab::FUNCTION,
            "function ids",
        )?;
        let residue = shape.id_track(
            "residue_annotation_tokens",
            &input.residue_annotation_tokens,
            Some(vocab::RESIDUE_SLOTS),
            0,
            vocab::RESIDUE,
            "residue-annotation ids",
        )?;
        let per_res_plddt = match &input.per_res_plddt {
            Some(a) => shape.checked("per_res_plddt", a)?.clone(),
            None => HostArray::filled(vec![shape.batch, shape.len], 0.0),
        };
        let chain_id = match &input.chain_id {
            Some(a) => shape.checked("chain_id", a)?.data.clone(),
            None => vec![0; shape.batch * shape.len],
        };
        let sequence_id = match &input.sequence_id {
            Some(a) => Some(shape.checked("sequence_id", a)?.clone()),
            None => None,
        };
        Ok(Self {
            batch: shape.batch,
            len: shape.len,
            sequence,
            structure,
            ss8,
            sasa,
            function,
            residue,
            average_plddt: shape.average_plddt(&input.average_plddt)?,
            per_res_plddt,
            backbone: shape.backbone(&input.structure_coords)?,
            chain_id,
            sequence_id,
        })
    }
}

/// `B` and `L` of one forward call, which every given array must match.
#[derive(Clone, Copy)]
struct BatchShape {
    batch: usize,
    len: usize,
}

impl BatchShape {
    /// B and L come from the first track given, in the reference's order.
    fn of(input: &Esm3Input) -> Result<Self> {
        let (batch, len) = [
            input.sequence_tokens.as_ref().map(|a| &a.shape),
            input.structure_tokens.as_ref().map(|a| &a.shape),
            input.ss8_tokens.as_ref().map(|a| &a.shape),
            input.sasa_tokens.as_ref().map(|a| &a.shape),
            input.structure_coords.as_ref().map(|a| &a.shape),
            input.function_tokens.as_ref().map(|a| &a.shape),
            input.residue_annotation_tokens.as_ref().map(|a| &a.shape),
        ]
        .into_iter()
        .flatten()
        .find_map(|s| (s.len() >= 2).then(|| (s[0], s[1])))
        .ok_or_else(|| {
            ModelError::Input(
                "no input track given: need at least one of sequence_tokens, structure_tokens, \
                 ss8_tokens, sasa_tokens, structure_coords, function_tokens, \
                 residue_annotation_tokens (each [B, L, ...])"
                    .into(),
            )
        })?;
        if batch == 0 || len == 0 {
            return Err(ModelError::Input(format!(
                "empty input: batch {batch}, length {len}"
            )));
        }
        Ok(Self { batch, len })
    }

    /// `a`, once its shape is checked to be `[B, L]`.
    fn checked<'a, T>(&self, name: &str, a: &'a HostArray<T>) -> Result<&'a HostArray<T>> {
        expect_shape(name, &a.shape, &[Some(self.batch), Some(self.len)])?;
        Ok(a)
    }

    /// A token track, `[B, L]` or with `depth` ids per position `[B, L, depth]`: the given ids
    /// (shape and range checked) or all `default`.
    fn id_track(
        &self,
        name: &str,
        given: &Option<HostArray<i64>>,
        depth: Option<usize>,
        default: i64,
        limit: usize,
        what: &str,
    ) -> Result<HostArray<i64>> {
        let mut shape = vec![self.batch, self.len];
        shape.extend(depth);
        match given {
            Some(a) => {
                let expected: Vec<Option<usize>> = shape.iter().map(|&d| Some(d)).collect();
                expect_shape(name, &a.shape, &expected)?;
                a.check_range(name, limit as i64, what)?;
                Ok(a.clone())
            }
            None => Ok(HostArray::filled(shape, default)),
        }
    }

    /// Structure ids with −1 read as mask (all mask by default), then BOS/PAD/EOS/chain-break
    /// copied from the sequence track as the reference overwrites them.
    fn structure_track(
        &self,
        given: &Option<HostArray<i64>>,
        sequence: &HostArray<i64>,
    ) -> Result<HostArray<i64>> {
        let mut structure = match given {
            Some(a) => {
                let mut a = self.checked("structure_tokens", a)?.clone();
                for v in a.data.iter_mut() {
                    if *v == -1 {
                        *v = structure_ids::MASK;
                    }
                }
                a.check_range(
                    "structure_tokens",
                    vocab::STRUCTURE_EMBED as i64,
                    "structure ids (or -1 for mask)",
                )?;
                a
            }
            None => HostArray::filled(vec![self.batch, self.len], structure_ids::MASK),
        };
        for (s, &q) in structure.data.iter_mut().zip(&sequence.data) {
            match q as u32 {
                seq_vocab::BOS => *s = structure_ids::BOS,
                seq_vocab::PAD => *s = structure_ids::PAD,
                seq_vocab::EOS => *s = structure_ids::EOS,
                seq_vocab::CHAINBREAK => *s = structure_ids::CHAINBREAK,
                _ => {}
            }
        }
        Ok(structure)
    }

    /// Average pLDDT, `[B, L]` or 1 in either place to broadcast; `[1, L]` of 1.0 by default.
    fn average_plddt(&self, given: &Option<HostArray<f32>>) -> Result<HostArray<f32>> {
        let Some(a) = given else {
            return Ok(HostArray::filled(vec![1, self.len], 1.0));
        };
        let fits = |dim: usize, full: usize| dim == full || dim == 1;
        if a.shape.len() != 2 || !fits(a.shape[0], self.batch) || !fits(a.shape[1], self.len) {
            return Err(ModelError::Input(format!(
                "`average_plddt` has shape {:?}, expected [{}, {}] (or 1 in either \
                 place to broadcast)",
                a.shape, self.batch, self.len
            )));
        }
        Ok(a.clone())
    }

    /// N, CA, C of every position from `[B, L, A, 3]` coordinates (A ≥ 3), NaN by default.
    fn backbone(&self, given: &Option<HostArray<f32>>) -> Result<Vec<[Vec3; 3]>> {
        let Some(a) = given else {
            return Ok(vec![[[f32::NAN; 3]; 3]; self.batch * self.len]);
        };
        if a.shape.len() != 4
            || a.shape[0] != self.batch
            || a.shape[1] != self.len
            || a.shape[2] < 3
            || a.shape[3] != 3
        {
            return Err(ModelError::Input(format!(
                "`structure_coords` has shape {:?}, expected [{}, {}, A, 3] with A ≥ 3 atoms (N, CA, C first; atom37 or atom3)",
                a.shape, self.batch, self.len
            )));
        }
        let atoms = a.shape[2];
        Ok(a.data
            .chunks_exact(atoms * 3)
            .map(|r| [[r[0], r[1], r[2]], [r[3], r[4], r[5]], [r[6], r[7], r[8]]])
            .collect())
    }
}
