//! Padding corrupted samples into one batch of model inputs and targets.

use esm3_models::esm3::{structure_ids, Esm3Input};
use esm3_models::schema::vocab;
use esm3_models::HostArray;
use esm3_tokens::sequence as seq_vocab;

use super::{CorruptedSample, NoiseError, Result, IGNORE};

/// Per-track targets `[B, L]` (function `[B, L, 8]`); [`IGNORE`] (−1) where not supervised,
/// padding included.
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    pub sequence: HostArray<i64>,
    pub structure: HostArray<i64>,
    pub ss8: HostArray<i64>,
    pub sasa: HostArray<i64>,
    pub function: HostArray<i64>,
    /// `[B, L, 1478]` multi-hot (1 present, 0 absent, −1 not supervised); `None` when no
    /// sample of the batch has residue annotations.
    pub residue_annotations: Option<HostArray<f32>>,
}

/// Supervised positions per track (a function position counts once for its 8 slots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SupervisedCounts {
    pub sequence: usize,
    pub structure: usize,
    pub ss8: usize,
    pub sasa: usize,
    pub function: usize,
    pub residue_annotations: usize,
}

#[derive(Clone, Debug)]
pub struct TrainingBatch {
    pub input: Esm3Input,
    pub targets: Targets,
    pub n_supervised: SupervisedCounts,
    /// Unpadded length of each sample.
    pub lengths: Vec<usize>,
}

/// Pads samples to the longest with each track's pad id and builds the model input.
///
/// `sequence_id` is 0 on real positions and 1 on padding, so attention never mixes the two;
/// it is `None` when nothing is padded (equivalent, and skips building the mask).
/// Padding gets NaN coordinates (no frame) and pLDDT 0.
pub fn collate(samples: &[CorruptedSample]) -> Result<TrainingBatch> {
    if samples.is_empty() {
        return Err(NoiseError::Collate("no samples".into()));
    }
    if let Some(i) = samples.iter().position(|s| s.is_empty()) {
        return Err(NoiseError::Collate(format!("sample {i} is empty")));
    }
    let pad = Padder {
        samples,
        b: samples.len(),
        l: samples.iter().map(|s| s.len()).max().unwrap_or(0),
    };
    let input = pad.model_input();
    let targets = pad.targets();
    let count = |a: &HostArray<i64>| a.data.iter().filter(|&&v| v != IGNORE).count();
    let n_supervised = SupervisedCounts {
        sequence: count(&targets.sequence),
        structure: count(&targets.structure),
        ss8: count(&targets.ss8),
        sasa: count(&targets.sasa),
        function: count(&targets.function) / vocab::FUNCTION_DEPTH,
        residue_annotations: samples
            .iter()
            .map(|s| s.record.residue_annotations.n_supervised)
            .sum(),
    };
    Ok(TrainingBatch {
        input,
        targets,
        n_supervised,
        lengths: samples.iter().map(|s| s.len()).collect(),
    })
}

/// Right-pads per-sample tracks to `[b, l, …]` arrays.
struct Padder<'a> {
    samples: &'a [CorruptedSample],
    b: usize,
    l: usize,
}

impl Padder<'_> {
    fn ids(&self, pad: i64, get: &dyn Fn(&CorruptedSample) -> &[i64]) -> HostArray<i64> {
        let (b, l) = (self.b, self.l);
        let mut data = vec![pad; b * l];
        for (i, s) in self.samples.iter().enumerate() {
            let v = get(s);
            data[i * l..i * l + v.len()].copy_from_slice(v);
        }
        HostArray::new(vec![b, l], data)
    }

    fn deep(
        &self,
        depth: usize,
        pad: i64,
        get: &dyn Fn(&CorruptedSample, usize) -> &[i64],
    ) -> HostArray<i64> {
        let (b, l) = (self.b, self.l);
        let mut data = vec![pad; b * l * depth];
        for (i, s) in self.samples.iter().enumerate() {
            for p in 0..s.len() {
                let at = (i * l + p) * depth;
                data[at..at + depth].copy_from_slice(get(s, p));
            }
        }
        HostArray::new(vec![b, l, depth], data)
    }

    fn reals(&self, pad: f32, get: &dyn Fn(&CorruptedSample) -> Vec<f32>) -> HostArray<f32> {
        let (b, l) = (self.b, self.l);
        let mut data = vec![pad; b * l];
        for (i, s) in self.samples.iter().enumerate() {
            let v = get(s);
            data[i * l..i * l + v.len()].copy_from_slice(&v);
        }
        HostArray::new(vec![b, l], data)
    }

    /// `[b, l, 3, 3]` backbone coordinates, NaN on padding (no frame).
    fn coordinates(&self) -> HostArray<f32> {
        let (b, l) = (self.b, self.l);
        let mut coords = vec![f32::NAN; b * l * 9];
        for (i, s) in self.samples.iter().enumerate() {
            for (p, c) in s.coordinates.iter().enumerate() {
                let at = (i * l + p) * 9;
                for (dst, src) in coords[at..at + 9].iter_mut().zip(c.iter().flatten()) {
                    *dst = *src;
                }
            }
        }
        HostArray::new(vec![b, l, 3, 3], coords)
    }

    /// 0 on real positions and 1 on padding; `None` when nothing is padded.
    fn sequence_id(&self) -> Option<HostArray<i64>> {
        let (b, l) = (self.b, self.l);
        let padded = self.samples.iter().any(|s| s.len() < l);
        padded.then(|| {
            let mut data = vec![1i64; b * l];
            for (i, s) in self.samples.iter().enumerate() {
                data[i * l..i * l + s.len()].fill(0);
            }
            HostArray::new(vec![b, l], data)
        })
    }

    fn model_input(&self) -> Esm3Input {
        Esm3Input {
            sequence_tokens: Some(self.ids(seq_vocab::PAD as i64, &|s| &s.sequence)),
            structure_tokens: Some(self.ids(structure_ids::PAD, &|s| &s.structure)),
            ss8_tokens: Some(self.ids(0, &|s| &s.ss8)),
            sasa_tokens: Some(self.ids(0, &|s| &s.sasa)),
            function_tokens: Some(self.deep(vocab::FUNCTION_DEPTH, 0, &|s, p| &s.function[p])),
            residue_annotation_tokens: Some(
                self.deep(vocab::RESIDUE_SLOTS, 0, &|s, p| &s.residue_annotations[p]),
            ),
            average_plddt: Some(self.reals(1.0, &|s| vec![s.average_plddt; s.len()])),
            per_res_plddt: Some(self.reals(0.0, &|s| s.per_res_plddt.clone())),
            structure_coords: Some(self.coordinates()),
            chain_id: Some(self.ids(0, &|s| &s.chain_id)),
            sequence_id: self.sequence_id(),
        }
    }

    fn targets(&self) -> Targets {
        let (b, l) = (self.b, self.l);
        let residue_annotations = if self
            .samples
            .iter()
            .any(|s| s.targets.residue_annotations.is_some())
        {
            let r = vocab::RESIDUE;
            let mut data = vec![-1.0f32; b * l * r];
            for (i, s) in self.samples.iter().enumerate() {
                if let Some(dense) = s.targets.residue_multi_hot() {
                    data[i * l * r..(i * l + s.len()) * r].copy_from_slice(&dense);
                }
            }
            Some(HostArray::new(vec![b, l, r], data))
        } else {
            None
        };
        Targets {
            sequence: self.ids(IGNORE, &|s| &s.targets.sequence),
            structure: self.ids(IGNORE, &|s| &s.targets.structure),
            ss8: self.ids(IGNORE, &|s| &s.targets.ss8),
            sasa: self.ids(IGNORE, &|s| &s.targets.sasa),
            function: self.deep(vocab::FUNCTION_DEPTH, IGNORE, &|s, p| {
                &s.targets.function[p]
            }),
            residue_annotations,
        }
    }
}
