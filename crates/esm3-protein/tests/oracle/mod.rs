//! Readers for the committed oracle tables in `shared/data/oracles` (mkdssp 4.2.2, FreeSASA
//! 2.1.2, TM-align), shared by the agreement tests and the `geometry_report` example.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    esm3_test_support::shared_data()
}

/// One residue row of `per_residue_dssp_freesasa.tsv.gz`.
#[derive(Clone, Debug)]
pub struct ResidueRow {
    pub chain: String,
    pub resnum: i32,
    pub icode: char,
    /// mkdssp's letter with loop as `-`; `None` where mkdssp did not report the residue.
    pub dssp: Option<char>,
    /// FreeSASA absolute area (Lee–Richards, ProtOr), Å².
    pub freesasa: Option<f64>,
}

/// Rows grouped by structure file (path relative to `structures/`), in table order.
pub fn per_residue_table() -> BTreeMap<String, Vec<ResidueRow>> {
    let path = data_dir().join("oracles/per_residue_dssp_freesasa.tsv.gz");
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .expect("oracle table is gzip text");
    let mut out: BTreeMap<String, Vec<ResidueRow>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let row = ResidueRow {
            chain: f[1].to_string(),
            resnum: f[2].parse().expect("residue number"),
            icode: f[3].chars().next().unwrap_or(' '),
            dssp: f[5].chars().next(),
            freesasa: f[9].parse().ok(),
        };
        out.entry(f[0].to_string()).or_default().push(row);
    }
    out
}

/// One row of `pairs_tmalign_tmscore_lddt.tsv`.
#[derive(Clone, Debug)]
pub struct PairRow {
    pub model_file: String,
    pub model_chain: String,
    pub ref_file: String,
    pub ref_chain: String,
    pub kind: String,
    pub tm_norm_model: f64,
    pub tm_norm_ref: f64,
    pub aligned_length: usize,
    pub rmsd: f64,
    /// TMscore program (residues paired by number after renumbering 1..N); same-sequence only.
    pub tmscore_tm: f64,
    /// OpenStructure `lddt -c` (CA) with the same pairing; same-sequence only.
    pub lddt_ca: f64,
}

pub fn pairs_table() -> Vec<PairRow> {
    let path = data_dir().join("oracles/pairs_tmalign_tmscore_lddt.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            PairRow {
                model_file: f[0].into(),
                model_chain: f[1].into(),
                ref_file: f[2].into(),
                ref_chain: f[3].into(),
                kind: f[4].into(),
                tm_norm_model: f[5].parse().unwrap_or(f64::NAN),
                tm_norm_ref: f[6].parse().unwrap_or(f64::NAN),
                aligned_length: f[7].parse().unwrap_or(0),
                rmsd: f[8].parse().unwrap_or(f64::NAN),
                tmscore_tm: f.get(10).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
                lddt_ca: f.get(14).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// mkdssp 4's ninth state (polyproline) and blank both read as `C` in the ESM3 alphabet.
pub fn to_ss8(letter: char) -> char {
    match letter {
        'P' | '-' | ' ' => 'C',
        c => c,
    }
}

/// (mkdssp letter, our letter) of every disagreeing residue.
pub type Confusion = Vec<(char, char)>;

/// HETATM residues (chain, number, insertion code) of a PDB-format file. mkdssp 4.2.2 reads a
/// PDB file without SEQRES records (as the oracle run fed it) as polymer = ATOM records only, so
/// a hetero MSE becomes a gap there, while the reference pipeline (biotite writes every atom as
/// ATOM) and our reader keep it. To compare like with like, the test removes them.
pub fn pdb_hetero_residues(file: &str) -> std::collections::HashSet<(String, i32, char)> {
    let mut out = std::collections::HashSet::new();
    if file.contains(".cif") {
        return out;
    }
    let raw = std::fs::read(data_dir().join("structures").join(file)).expect("structure file");
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut bytes)
        .expect("gzip");
    for line in String::from_utf8_lossy(&bytes).lines() {
        if line.starts_with("ENDMDL") {
            break;
        }
        // Only residues with a CA count: waters and ligands may reuse a protein residue number.
        if line.starts_with("HETATM") && line.len() >= 27 && &line[12..16] == " CA " {
            let chain = line[21..22].trim().to_string();
            let resnum = line[22..26].trim().parse().unwrap_or(i32::MIN);
            let icode = line[26..27].chars().next().unwrap_or(' ');
            out.insert((chain, resnum, icode));
        }
    }
    out
}

/// Agreement of our DSSP with mkdssp on one file: (agreeing, compared, confusion pairs).
pub fn dssp_agreement(file: &str, rows: &[ResidueRow]) -> Option<(usize, usize, Confusion)> {
    let path = data_dir().join("structures").join(file);
    let structure = esm3_protein::read_structure(&path).ok()?;
    let hetero = pdb_hetero_residues(file);
    let edited: Vec<esm3_protein::ProteinChain> = structure
        .chains()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            for k in 0..c.len() {
                if hetero.contains(&(c.chain_id.clone(), c.residue_index[k], c.insertion_code[k])) {
                    c.atom37[k] = [[f32::NAN; 3]; 37];
                }
            }
            c
        })
        .collect();
    let chains: Vec<&esm3_protein::ProteinChain> = edited.iter().collect();
    let ss = esm3_protein::dssp::assign_chains(&chains);
    let mut ours = std::collections::HashMap::new();
    for (chain, letters) in chains.iter().zip(&ss) {
        for (k, letter) in letters.chars().enumerate() {
            // The oracle run renamed a blank PDB chain id to `A`.
            let id = if chain.chain_id.trim().is_empty() {
                "A".to_string()
            } else {
                chain.chain_id.clone()
            };
            ours.insert(
                (id, chain.residue_index[k], chain.insertion_code[k]),
                letter,
            );
        }
    }
    let (mut agree, mut total, mut diffs) = (0, 0, Vec::new());
    let debug = std::env::var("GEOM_DEBUG_FILE").is_ok_and(|f| f == file);
    for r in rows {
        if debug {
            let mine = ours
                .get(&(r.chain.clone(), r.resnum, r.icode))
                .copied()
                .unwrap_or('?');
            eprintln!("{} {}{} {:?} {}", r.chain, r.resnum, r.icode, r.dssp, mine);
        }
        let Some(theirs) = r.dssp else { continue };
        let theirs = to_ss8(theirs);
        let mine = ours
            .get(&(r.chain.clone(), r.resnum, r.icode))
            .copied()
            .unwrap_or('?');
        total += 1;
        if mine == theirs {
            agree += 1;
        } else {
            diffs.push((theirs, mine));
        }
    }
    Some((agree, total, diffs))
}
