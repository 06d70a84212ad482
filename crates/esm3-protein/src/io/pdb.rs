//! PDB format: fixed columns (wwPDB format 3.3, `ATOM`/`HETATM` records).

use std::io::Write;

use super::{b_column, b_column_meaning, AtomRecord, ParseError, WriteError};
use crate::chain::ProteinChain;
use crate::residue_constants::{one_to_three, ATOM_TYPES};

/// Atom records of the first model of a PDB text (everything after the first `ENDMDL` is
/// ignored). Lines are numbered from 1 in errors.
pub(crate) fn parse_pdb(text: &str) -> Result<Vec<AtomRecord>, ParseError> {
    let mut atoms: Vec<AtomRecord> = Vec::new();
    let mut terminated: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let hetero = if line.starts_with("ATOM") {
            false
        } else if line.starts_with("HETATM") {
            true
        } else if line.starts_with("ENDMDL") {
            break;
        } else if line.starts_with("TER") {
            // TER names its chain in column 22; bare TER lines end the last atom's chain.
            let chain = match line.get(21..22).map(str::trim) {
                Some(c) if !c.is_empty() => Some(c.to_owned()),
                _ => atoms.last().map(|a| a.chain_id.clone()),
            };
            terminated.extend(chain);
            continue;
        } else {
            continue;
        };
        let mut atom = atom_line(line, number, hetero)?;
        atom.in_polymer = !terminated.contains(&atom.chain_id);
        atoms.push(atom);
    }
    Ok(atoms)
}

fn atom_line(line: &str, number: usize, hetero: bool) -> Result<AtomRecord, ParseError> {
    let err = |message: String| ParseError::new(number, message);
    if !line.is_ascii() {
        return Err(err("atom record contains a non-ASCII character".into()));
    }
    let line = line.trim_end_matches('\r');
    if line.len() < 54 {
        return Err(err(format!(
            "atom record is {} characters long; coordinates need columns 31-54",
            line.len()
        )));
    }
    let column = |from: usize, to: usize| line.get(from - 1..to.min(line.len())).unwrap_or("");
    let char_at = |col: usize| line.as_bytes().get(col - 1).map_or(' ', |b| *b as char);
    let coordinate = |from: usize, axis: &str| -> Result<f32, ParseError> {
        let field = column(from, from + 7);
        match field.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(err(format!(
                "{axis} coordinate (columns {}-{}) is '{field}', expected a finite number",
                from,
                from + 7
            ))),
        }
    };
    let optional_number = |from: usize, to: usize, what: &str, default: f32| {
        let field = column(from, to);
        if field.trim().is_empty() {
            return Ok(default);
        }
        match field.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(err(format!(
                "{what} (columns {from}-{to}) is '{field}', expected a number"
            ))),
        }
    };
    let res_seq_field = column(23, 26);
    let res_seq = res_seq_field.trim().parse::<i32>().map_err(|_| {
        err(format!(
            "residue number (columns 23-26) is '{res_seq_field}', expected an integer"
        ))
    })?;
    let coord = [
        coordinate(31, "x")?,
        coordinate(39, "y")?,
        coordinate(47, "z")?,
    ];
    Ok(AtomRecord {
        hetero,
        atom_name: column(13, 16).trim().to_owned(),
        // Column 21 is blank in the standard; some tools use it for 4-letter names.
        res_name: column(18, 21).trim().to_owned(),
        chain_id: column(22, 22).trim().to_owned(),
        res_seq,
        ins_code: char_at(27),
        coord,
        occupancy: optional_number(55, 60, "occupancy", 1.0)?,
        b_factor: optional_number(61, 66, "B-factor", 0.0)?,
        in_polymer: true,
    })
}

/// Writes one chain as PDB `ATOM` records, with `plddt` (0–100) in the B-factor column when
/// given, else the chain's B-factors. A `REMARK 3` line says which it is. Refuses values that
/// do not fit the fixed columns instead of truncating them.
pub fn write_pdb(
    chain: &ProteinChain,
    plddt: Option<&[f32]>,
    w: &mut impl Write,
) -> Result<(), WriteError> {
    write_pdb_chains(&[(chain, plddt)], w)
}

/// Writes chains of one model (a complex) as [`write_pdb`] does, each closed by `TER`, in one
/// file. The `plddt` of each chain is all given or all absent (one `REMARK 3` says which).
pub fn write_pdb_chains(
    chains: &[(&ProteinChain, Option<&[f32]>)],
    w: &mut impl Write,
) -> Result<(), WriteError> {
    let plddt = chains.first().and_then(|c| c.1);
    writeln!(w, "REMARK   3 {}", b_column_meaning(plddt))?;
    let mut serial = 0usize;
    for (chain, p) in chains {
        write_pdb_atoms(chain, *p, &mut serial, w)?;
    }
    writeln!(w, "END")?;
    Ok(())
}

/// One chain's `ATOM` records and its `TER`, atom serials continuing from `serial`.
/// The one-column PDB chain id of `id` (blank for none); `None` when it does not fit.
fn pdb_chain_char(id: &str) -> Option<char> {
    match id.chars().count() {
        0 => Some(' '),
        1 if id.is_ascii() => id.chars().next(),
        _ => None,
    }
}

/// What keeps residue `i` (with B-factor `b`) out of the PDB format's fixed columns, if anything.
fn residue_field_error(chain: &ProteinChain, i: usize, b: f32) -> Option<String> {
    let res_seq = chain.residue_index[i];
    let ins = chain.insertion_code[i];
    if !(-999..=9999).contains(&res_seq) {
        return Some(format!(
            "residue number {res_seq} at position {i} does not fit columns 23-26"
        ));
    }
    if !ins.is_ascii() || ins.is_ascii_control() {
        return Some(format!("insertion code {ins:?} at position {i}"));
    }
    let has_atoms = chain.atom37[i].iter().any(|p| p[0].is_finite());
    if has_atoms && (!b.is_finite() || format!("{b:.2}").len() > 6) {
        return Some(format!(
            "B-factor {b} at position {i} does not fit columns 61-66"
        ));
    }
    None
}

fn write_pdb_atoms(
    chain: &ProteinChain,
    plddt: Option<&[f32]>,
    serial: &mut usize,
    w: &mut impl Write,
) -> Result<(), WriteError> {
    let b = b_column(chain, plddt)?;
    let value_error = |message: String| WriteError::Value {
        chain: chain.chain_id.clone(),
        message,
    };
    let chain_char = pdb_chain_char(&chain.chain_id).ok_or_else(|| {
        value_error(format!(
            "chain id '{}' does not fit the PDB format's one ASCII column; write mmCIF",
            chain.chain_id
        ))
    })?;
    let mut last: Option<(String, i32, char)> = None;
    for (i, letter) in chain.sequence.chars().enumerate() {
        let res_name = one_to_three(letter);
        let res_seq = chain.residue_index[i];
        let ins = chain.insertion_code[i];
        if let Some(message) = residue_field_error(chain, i, b[i]) {
            return Err(value_error(message));
        }
        for (slot, p) in chain.atom37[i].iter().enumerate() {
            if !p.iter().all(|v| v.is_finite()) {
                continue;
            }
            if let Some(v) = p.iter().find(|v| format!("{v:.3}").len() > 8) {
                return Err(value_error(format!(
                    "coordinate {v} at position {i} does not fit the 8-column field"
                )));
            }
            *serial += 1;
            let name = ATOM_TYPES[slot];
            // Names shorter than four characters start in column 14 (element right-aligned).
            let padded = if name.len() < 4 {
                format!(" {name:<3}")
            } else {
                name.to_owned()
            };
            writeln!(
                w,
                "ATOM  {:>5} {} {:>3} {}{:>4}{}   {:>8.3}{:>8.3}{:>8.3}{:>6.2}{:>6.2}          {:>2}",
                *serial % 100_000,
                padded,
                res_name,
                chain_char,
                res_seq,
                ins,
                p[0],
                p[1],
                p[2],
                1.0,
                b[i],
                &name[..1],
            )?;
        }
        last = Some((res_name.to_owned(), res_seq, ins));
    }
    if let Some((res_name, res_seq, ins)) = last {
        // The TER record takes a serial number too.
        *serial += 1;
        writeln!(
            w,
            "TER   {:>5}      {:>3} {}{:>4}{}",
            *serial % 100_000,
            res_name,
            chain_char,
            res_seq,
            ins
        )?;
    }
    Ok(())
}
