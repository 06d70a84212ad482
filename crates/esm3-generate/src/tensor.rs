//! `ProteinTensor`: the SDK's `ESMProteinTensor`, token ids per track with BOS/EOS slots.

use crate::track::Track;

/// One protein as token ids, each track `L + 2` long (BOS and EOS slots included) or absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProteinTensor {
    pub sequence: Option<Vec<i64>>,
    pub structure: Option<Vec<i64>>,
    pub secondary_structure: Option<Vec<i64>>,
    pub sasa: Option<Vec<i64>>,
    pub function: Option<Vec<[i64; 8]>>,
    pub residue_annotations: Option<Vec<[i64; 16]>>,
    /// atom37 coordinates (Å); NaN = missing atom, +inf rows at BOS/EOS.
    pub coordinates: Option<Vec<[[f32; 3]; 37]>>,
}

impl ProteinTensor {
    /// All tracks masked, with BOS/EOS (`ESMProteinTensor.empty`); `len` counts residues.
    pub fn empty(len: usize) -> Self {
        let mut t = Self::default();
        for track in [
            Track::Sequence,
            Track::Structure,
            Track::SecondaryStructure,
            Track::Sasa,
        ] {
            t.set_ids(track, mocked_ids(track, len + 2));
        }
        t.function = Some(vec![[0; 8]; len + 2]);
        t.residue_annotations = Some(vec![[0; 16]; len + 2]);
        t
    }

    /// Slots including BOS/EOS, from the first track present.
    pub fn len(&self) -> usize {
        self.sequence
            .as_ref()
            .map(Vec::len)
            .or(self.structure.as_ref().map(Vec::len))
            .or(self.secondary_structure.as_ref().map(Vec::len))
            .or(self.sasa.as_ref().map(Vec::len))
            .or(self.function.as_ref().map(Vec::len))
            .or(self.residue_annotations.as_ref().map(Vec::len))
            .or(self.coordinates.as_ref().map(Vec::len))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks every present track has the same length.
    pub fn check_lengths(&self) -> Result<usize, String> {
        let n = self.len();
        let lens = [
            ("sequence", self.sequence.as_ref().map(Vec::len)),
            ("structure", self.structure.as_ref().map(Vec::len)),
            (
                "secondary_structure",
                self.secondary_structure.as_ref().map(Vec::len),
            ),
            ("sasa", self.sasa.as_ref().map(Vec::len)),
            ("function", self.function.as_ref().map(Vec::len)),
            (
                "residue_annotations",
                self.residue_annotations.as_ref().map(Vec::len),
            ),
            ("coordinates", self.coordinates.as_ref().map(Vec::len)),
        ];
        for (name, len) in lens {
            if let Some(len) = len {
                if len != n {
                    return Err(format!(
                        "track {name} has {len} slots, expected {n} like the others"
                    ));
                }
            }
        }
        if n < 2 {
            return Err("a protein tensor needs at least the BOS and EOS slots".into());
        }
        Ok(n)
    }

    /// Ids of an integer track (not function).
    pub fn ids(&self, track: Track) -> Option<&Vec<i64>> {
        match track {
            Track::Sequence => self.sequence.as_ref(),
            Track::Structure => self.structure.as_ref(),
            Track::SecondaryStructure => self.secondary_structure.as_ref(),
            Track::Sasa => self.sasa.as_ref(),
            Track::Function => None,
        }
    }

    pub fn ids_mut(&mut self, track: Track) -> Option<&mut Vec<i64>> {
        match track {
            Track::Sequence => self.sequence.as_mut(),
            Track::Structure => self.structure.as_mut(),
            Track::SecondaryStructure => self.secondary_structure.as_mut(),
            Track::Sasa => self.sasa.as_mut(),
            Track::Function => None,
        }
    }

    pub fn set_ids(&mut self, track: Track, ids: Vec<i64>) {
        match track {
            Track::Sequence => self.sequence = Some(ids),
            Track::Structure => self.structure = Some(ids),
            Track::SecondaryStructure => self.secondary_structure = Some(ids),
            Track::Sasa => self.sasa = Some(ids),
            Track::Function => panic!("function ids are [i64; 8] per position"),
        }
    }

    /// Whether position `i` of `track` is masked (function: all eight ids 0).
    pub fn is_masked(&self, track: Track, i: usize) -> bool {
        match track {
            Track::Function => self.function.as_ref().is_some_and(|f| f[i] == [0; 8]),
            _ => self.ids(track).is_some_and(|v| v[i] == track.mask_id()),
        }
    }

    pub fn has_track(&self, track: Track) -> bool {
        match track {
            Track::Function => self.function.is_some(),
            _ => self.ids(track).is_some(),
        }
    }
}

/// A fully masked track with BOS/EOS ids at the ends (the reference's mock for a missing track).
pub fn mocked_ids(track: Track, slots: usize) -> Vec<i64> {
    let mut v = vec![track.mask_id(); slots];
    if slots > 0 {
        v[0] = track.bos_id();
        v[slots - 1] = track.eos_id();
    }
    v
}
