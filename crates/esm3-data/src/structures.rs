//! PDB/mmCIF directories as a source: one record per protein chain, with SS8 from our DSSP and
//! SASA from our Shrake–Rupley, each chain computed alone as the reference's
//! `ProteinChain.dssp()` / `.sasa()` (and `esm3 annotate`) see it, so training labels match
//! what conditioning inputs look like at inference.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use esm3_protein::residue_constants::{C, CA, N};
use esm3_protein::ProteinChain;
use rayon::prelude::*;

use crate::{io_err, ChainRecord, Result};

/// Chains shorter than this are skipped (peptides carry little structure signal).
pub const MIN_LENGTH: usize = 20;
/// Chains where fewer than this fraction of residues have N, CA and C are skipped (CA-only
/// traces and fragments).
pub const MIN_BACKBONE_FRACTION: f32 = 0.5;

/// Why a file or chain was left out.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub what: String,
    pub reason: String,
}

/// Structure files under `dir` (recursive), sorted: `.pdb`, `.ent`, `.cif`, `.mmcif`, each
/// optionally `.gz`.
pub fn find_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_err(&d))? {
            let path = entry.map_err(io_err(&d))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_structure_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_structure_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    [".pdb", ".ent", ".cif", ".mmcif"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// File (relative to `dir`) → PDB id, from a `MANIFEST.tsv` with `file` and `pdb_id` columns
/// when the directory has one (as `shared/data/structures` does).
fn manifest_ids(dir: &Path) -> HashMap<String, String> {
    let path = dir.join("MANIFEST.tsv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let (Some(f), Some(p)) = (
        header.iter().position(|h| *h == "file"),
        header.iter().position(|h| *h == "pdb_id"),
    ) else {
        return HashMap::new();
    };
    lines
        .filter_map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            Some((v.get(f)?.to_string(), v.get(p)?.to_ascii_uppercase()))
        })
        .filter(|(_, id)| !id.is_empty())
        .collect()
}

/// A PDB id guessed from a file stem: `1abc`, `pdb1abc`, `1abc_A`, `mmcif_1abc` → `1ABC`;
/// otherwise the upper-cased stem.
pub fn guess_pdb_id(stem: &str) -> String {
    let lower = stem.to_ascii_lowercase();
    let is_id = |t: &str| {
        t.len() == 4
            && t.as_bytes()[0].is_ascii_digit()
            && t.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    for token in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
        let t = token.strip_prefix("pdb").unwrap_or(token);
        if is_id(t) {
            return t.to_ascii_uppercase();
        }
    }
    stem.to_ascii_uppercase()
}

fn backbone_of(chain: &ProteinChain) -> Vec<[[f32; 3]; 3]> {
    chain
        .atom37
        .iter()
        .map(|atoms| [atoms[N], atoms[CA], atoms[C]])
        .collect()
}

/// Records of one file's protein chains, plus the chains skipped and why.
pub fn read_file(path: &Path, pdb_id: &str, source: &str) -> (Vec<ChainRecord>, Vec<Skipped>) {
    let structure = match esm3_protein::read_structure(path) {
        Ok(s) => s,
        Err(e) => {
            return (
                Vec::new(),
                vec![Skipped {
                    what: path.display().to_string(),
                    reason: e.to_string(),
                }],
            )
        }
    };
    let (mut records, mut skipped) = (Vec::new(), Vec::new());
    for chain in structure.chains() {
        let what = format!("{} chain '{}'", path.display(), chain.chain_id);
        let len = chain.sequence.len();
        let with_backbone = backbone_of(chain)
            .iter()
            .filter(|r| r.iter().flatten().all(|v| v.is_finite()))
            .count();
        let reason = if len < MIN_LENGTH {
            Some(format!("{len} residues, fewer than {MIN_LENGTH}"))
        } else if (with_backbone as f32) < MIN_BACKBONE_FRACTION * len as f32 {
            Some(format!(
                "CA-only or fragmentary: {with_backbone} of {len} residues have N, CA and C"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::info!("skipping {what}: {reason}");
            skipped.push(Skipped { what, reason });
            continue;
        }
        let sasa = esm3_protein::sasa::chains_sasa(&[chain]).remove(0);
        let ss = esm3_protein::dssp::assign_chains(&[chain]).remove(0);
        let ss8: String = ss
            .chars()
            .map(|c| {
                if c == esm3_protein::dssp::UNASSIGNED as char {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        records.push(ChainRecord {
            name: format!("{pdb_id}_{}", chain.chain_id),
            pdb_id: pdb_id.to_owned(),
            source: source.to_owned(),
            sequence: chain.sequence.clone(),
            ss8: Some(ss8),
            sasa: Some(sasa.into_iter().map(|v| v as f32).collect()),
            backbone: Some(backbone_of(chain)),
            structure_tokens: None,
            cluster: 0,
        });
    }
    (records, skipped)
}

/// Every protein chain under `dir` (files in parallel). Chains seen before with the same PDB
/// id, chain id and sequence (the same entry in two formats) are dropped as duplicates.
/// `progress` is called once per file.
pub fn read_dir(
    dir: &Path,
    source: &str,
    max_files: Option<usize>,
    progress: &(dyn Fn() + Sync),
) -> Result<(Vec<ChainRecord>, Vec<Skipped>)> {
    let mut files = find_files(dir)?;
    if let Some(n) = max_files {
        files.truncate(n);
    }
    let ids = manifest_ids(dir);
    let per_file: Vec<(Vec<ChainRecord>, Vec<Skipped>)> = files
        .par_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned();
            let pdb_id = ids.get(&rel).cloned().unwrap_or_else(|| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                guess_pdb_id(name.split('.').next().unwrap_or(&name))
            });
            let out = read_file(path, &pdb_id, source);
            progress();
            out
        })
        .collect();
    let (mut records, mut skipped) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for (recs, skips) in per_file {
        skipped.extend(skips);
        for r in recs {
            if seen.insert((r.name.clone(), r.sequence.clone())) {
                records.push(r);
            } else {
                tracing::debug!("{}: duplicate of an earlier file, dropped", r.name);
            }
        }
    }
    Ok((records, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdb_ids_from_file_names() {
        assert_eq!(guess_pdb_id("1abc"), "1ABC");
        assert_eq!(guess_pdb_id("pdb1abc"), "1ABC");
        assert_eq!(guess_pdb_id("mmcif_6zu5"), "6ZU5");
        assert_eq!(guess_pdb_id("1ubq_A"), "1UBQ");
        assert_eq!(guess_pdb_id("lysozyme"), "LYSOZYME");
    }

    #[test]
    fn recognises_structure_extensions() {
        for n in ["a.pdb", "a.ENT.gz", "a.cif", "b.mmcif.gz"] {
            assert!(is_structure_file(Path::new(n)), "{n}");
        }
        for n in ["a.tsv", "a.fasta.gz", "pdb"] {
            assert!(!is_structure_file(Path::new(n)), "{n}");
        }
    }

    #[test]
    fn short_and_ca_only_chains_are_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        let mut serial = 1;
        // Chain A: 25 CA-only residues; chain B: 5 full-backbone residues.
        for i in 0..25 {
            text += &format!(
                "ATOM  {serial:>5}  CA  ALA A{:>4}    {:>8.3}{:>8.3}{:>8.3}  1.00  0.00           C\n",
                i + 1,
                i as f32 * 3.8,
                0.0,
                0.0
            );
            serial += 1;
        }
        for i in 0..5 {
            for (k, atom) in ["N ", "CA", "C ", "O "].iter().enumerate() {
                text += &format!(
                    "ATOM  {serial:>5}  {atom}  GLY B{:>4}    {:>8.3}{:>8.3}{:>8.3}  1.00  0.00           C\n",
                    i + 1,
                    i as f32 * 3.8 + k as f32,
                    10.0,
                    0.0
                );
                serial += 1;
            }
        }
        let path = dir.path().join("9xyz.pdb");
        std::fs::write(&path, text).unwrap();
        let (recs, skipped) = read_file(&path, "9XYZ", "structures:test");
        assert!(recs.is_empty());
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].reason.contains("CA-only"), "{:?}", skipped[0]);
        assert!(
            skipped[1].reason.contains("fewer than 20"),
            "{:?}",
            skipped[1]
        );
    }
}
