//! `EsmProtein`: a protein as people hold it (strings, coordinates, values), and its conversion
//! to and from token tensors (spec §6.8–6.9).

use esm3_protein::residue_constants::{ATOM_TYPE_NUM, C, CA, N};
use esm3_protein::{ProteinChain, Vec3};
use esm3_tokens::function::FunctionAnnotation;

/// The SDK's `ESMProtein`: every field optional; `_` marks an unknown position in strings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EsmProtein {
    pub sequence: Option<String>,
    /// DSSP 8-state letters `GHITEBSC`, `_` unknown.
    pub secondary_structure: Option<String>,
    /// Å² per residue, `None` unknown.
    pub sasa: Option<Vec<Option<f32>>>,
    /// atom37 (Å), NaN = missing atom.
    pub coordinates: Option<Vec<[Vec3; ATOM_TYPE_NUM]>>,
    /// InterPro ids or keywords over 1-based inclusive residue spans.
    pub function_annotations: Option<Vec<FunctionAnnotation>>,
    /// Residue-level annotations (binding and active sites, …) over 1-based inclusive spans,
    /// labels from the model directory's `residue_annotations.csv`. The SDK keeps these in
    /// `function_annotations`; here they have their own field because they feed their own
    /// track (`[L+2, 16]` ids) and come back from their own head.
    pub residue_annotations: Option<Vec<FunctionAnnotation>>,
    /// Per-residue confidence in 0..1 from the structure decoder.
    pub plddt: Option<Vec<f32>>,
    pub ptm: Option<f32>,
    /// Predicted aligned error `[L, L]` row-major in Å, from the structure decoder. Not a field
    /// of the SDK's `ESMProtein` (its decoder discards it); kept for the pictures.
    pub predicted_aligned_error: Option<Vec<f32>>,
}

impl EsmProtein {
    /// Residues, from the first track present (sequence, SS8, SASA, coordinates).
    pub fn len(&self) -> Option<usize> {
        self.sequence
            .as_ref()
            .map(|s| s.chars().count())
            .or(self.secondary_structure.as_ref().map(|s| s.chars().count()))
            .or(self.sasa.as_ref().map(Vec::len))
            .or(self.coordinates.as_ref().map(Vec::len))
    }

    pub fn is_empty(&self) -> bool {
        self.len().is_none_or(|n| n == 0)
    }

    /// Checks every track has the same number of residues.
    pub fn check(&self) -> Result<usize, String> {
        let n = self
            .len()
            .ok_or("the protein has no track to take its length from")?;
        let check = |what: &str, len: Option<usize>| match len {
            Some(l) if l != n => Err(format!(
                "{what} has {l} residues, expected {n} like the sequence"
            )),
            _ => Ok(()),
        };
        check(
            "secondary_structure",
            self.secondary_structure.as_ref().map(|s| s.chars().count()),
        )?;
        check("sasa", self.sasa.as_ref().map(Vec::len))?;
        check("coordinates", self.coordinates.as_ref().map(Vec::len))?;
        check("plddt", self.plddt.as_ref().map(Vec::len))?;
        if let Some(pae) = &self.predicted_aligned_error {
            if pae.len() != n * n {
                return Err(format!(
                    "predicted_aligned_error has {} values, expected {n}×{n} for {n} residues",
                    pae.len()
                ));
            }
        }
        if n == 0 {
            return Err("the protein has length 0".into());
        }
        Ok(n)
    }

    pub fn from_chain(chain: &ProteinChain) -> Self {
        Self {
            sequence: Some(chain.sequence.clone()),
            coordinates: Some(chain.atom37.clone()),
            ..Default::default()
        }
    }

    /// pLDDT × 100 of the positions in `range`, as structure files carry it in the B-factor.
    pub fn plddt_percent(&self, range: std::ops::Range<usize>) -> Option<Vec<f32>> {
        self.plddt
            .as_ref()
            .map(|p| p[range].iter().map(|v| v * 100.0).collect())
    }

    /// A chain for writing files: residues numbered 1..L, chain `A`, pLDDT (×100) as B-factor.
    pub fn to_chain(&self, id: &str) -> Result<ProteinChain, String> {
        let n = self.check()?;
        let sequence = self
            .sequence
            .clone()
            .unwrap_or_else(|| "X".repeat(n))
            .replace('_', "X");
        let atom37 = self
            .coordinates
            .clone()
            .unwrap_or_else(|| vec![[[f32::NAN; 3]; ATOM_TYPE_NUM]; n]);
        let b = self
            .plddt
            .as_ref()
            .map(|p| p.iter().map(|v| v * 100.0).collect())
            .unwrap_or_else(|| vec![0.0; n]);
        ProteinChain::new(
            id,
            "A",
            sequence,
            atom37,
            (1..=n as i32).collect(),
            vec![' '; n],
            b,
        )
        .map_err(|e| e.to_string())
    }

    /// Whether residue `i` has N, CA and C.
    pub fn has_backbone(&self, i: usize) -> bool {
        self.coordinates.as_ref().is_some_and(|c| {
            [N, CA, C]
                .iter()
                .all(|&a| c[i][a].iter().all(|v| v.is_finite()))
        })
    }
}
