//! PDBx/mmCIF: a CIF 1.1 tokenizer and the `_atom_site` category.

use std::io::Write;

use super::{b_column, b_column_meaning, AtomRecord, ParseError, WriteError};
use crate::chain::ProteinChain;
use crate::residue_constants::{one_to_three, ATOM_TYPES};

/// One CIF value or keyword with the line it starts on.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    line: usize,
    /// Quoted strings and text fields are never keywords or tags.
    quoted: bool,
}

/// Splits CIF text into tokens: whitespace-separated words, `'…'`/`"…"` strings (closed by
/// a quote followed by whitespace), `;` text fields and `#` comments. Long because it is one
/// lexer loop: each token kind's arm advances the same cursor and line count.
fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut line = 1;
    let mut line_start = true;
    while pos < bytes.len() {
        let b = bytes[pos];
        if b == b'\n' {
            line += 1;
            line_start = true;
            pos += 1;
            continue;
        }
        if b.is_ascii_whitespace() {
            pos += 1;
            line_start = false;
            continue;
        }
        if b == b';' && line_start {
            let start_line = line;
            let body_start = pos + 1;
            // The field ends at the next line that starts with ';'.
            let mut search = body_start;
            let end = loop {
                match text[search..].find('\n') {
                    None => {
                        return Err(ParseError::new(
                            start_line,
                            "text field opened with ';' is never closed",
                        ))
                    }
                    Some(nl) => {
                        line += 1;
                        let next = search + nl + 1;
                        if bytes.get(next) == Some(&b';') {
                            break next;
                        }
                        search = next;
                    }
                }
            };
            tokens.push(Token {
                text: text[body_start..end].trim_end_matches(['\n', '\r']),
                line: start_line,
                quoted: true,
            });
            pos = end + 1;
            line_start = false;
            continue;
        }
        line_start = false;
        if b == b'#' {
            pos += text[pos..].find('\n').unwrap_or(bytes.len() - pos);
            continue;
        }
        if b == b'\'' || b == b'"' {
            let mut end = pos + 1;
            loop {
                match bytes.get(end) {
                    None | Some(b'\n') => {
                        return Err(ParseError::new(
                            line,
                            format!("quoted value opened with {} is never closed", b as char),
                        ))
                    }
                    Some(&c)
                        if c == b && bytes.get(end + 1).is_none_or(|n| n.is_ascii_whitespace()) =>
                    {
                        break
                    }
                    _ => end += 1,
                }
            }
            tokens.push(Token {
                text: &text[pos + 1..end],
                line,
                quoted: true,
            });
            pos = end + 1;
            continue;
        }
        let end = text[pos..]
            .find(|c: char| c.is_ascii_whitespace())
            .map_or(bytes.len(), |e| pos + e);
        tokens.push(Token {
            text: &text[pos..end],
            line,
            quoted: false,
        });
        pos = end;
    }
    Ok(tokens)
}

fn is_reserved(token: &Token) -> bool {
    if token.quoted {
        return false;
    }
    let lower = token.text.to_ascii_lowercase();
    token.text.starts_with('_')
        || lower == "loop_"
        || lower == "stop_"
        || lower == "global_"
        || lower.starts_with("data_")
        || lower.starts_with("save_")
}

/// The `_atom_site` table: column names (without the category) and rows of tokens.
struct Table<'a> {
    columns: Vec<String>,
    values: Vec<Token<'a>>,
}

fn atom_site_table<'a>(tokens: &[Token<'a>]) -> Result<Option<Table<'a>>, ParseError> {
    const PREFIX: &str = "_atom_site.";
    let is_atom_site = |t: &Token| {
        !t.quoted
            && t.text.len() > PREFIX.len()
            && t.text
                .get(..PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
    };
    let mut i = 0;
    let mut single = Table {
        columns: Vec::new(),
        values: Vec::new(),
    };
    while i < tokens.len() {
        let t = tokens[i];
        if !t.quoted && t.text.eq_ignore_ascii_case("loop_") {
            let mut j = i + 1;
            while j < tokens.len() && !tokens[j].quoted && tokens[j].text.starts_with('_') {
                j += 1;
            }
            let tags = &tokens[i + 1..j];
            let mut k = j;
            while k < tokens.len() && !is_reserved(&tokens[k]) {
                k += 1;
            }
            if tags.first().is_some_and(is_atom_site) {
                // A loop holds one category; a foreign tag here means a damaged file.
                if let Some(bad) = tags.iter().find(|t| !is_atom_site(t)) {
                    return Err(ParseError::new(
                        bad.line,
                        format!(
                            "tag {:?} inside the _atom_site loop: expected every tag of that loop \
                             to start with _atom_site.",
                            bad.text
                        ),
                    ));
                }
                let values = tokens[j..k].to_vec();
                if !values.len().is_multiple_of(tags.len()) {
                    let line = values.last().map_or(t.line, |v| v.line);
                    return Err(ParseError::new(
                        line,
                        format!(
                            "_atom_site loop has {} values, not a multiple of its {} columns (truncated?)",
                            values.len(),
                            tags.len()
                        ),
                    ));
                }
                return Ok(Some(Table {
                    columns: tags
                        .iter()
                        .map(|t| t.text[PREFIX.len()..].to_owned())
                        .collect(),
                    values,
                }));
            }
            i = k;
        } else if is_atom_site(&t) {
            // A structure with one atom writes `_atom_site.x value` pairs instead of a loop.
            match tokens.get(i + 1) {
                Some(v) if !is_reserved(v) => {
                    single.columns.push(t.text[PREFIX.len()..].to_owned());
                    single.values.push(*v);
                    i += 2;
                }
                _ => return Err(ParseError::new(t.line, format!("{} has no value", t.text))),
            }
        } else {
            i += 1;
        }
    }
    Ok((!single.columns.is_empty()).then_some(single))
}

/// Atom records of the first model (`pdbx_PDB_model_num`) of an mmCIF text, with author
/// chain ids, residue numbers and names where present (the label ones otherwise).
pub(crate) fn parse_mmcif(text: &str) -> Result<Vec<AtomRecord>, ParseError> {
    let tokens = tokenize(text)?;
    let Some(table) = atom_site_table(&tokens)? else {
        return Ok(Vec::new());
    };
    let columns = AtomSiteColumns::find(&table)?;
    let mut atoms = Vec::new();
    let mut first_model: Option<&str> = None;
    for row in table.values.chunks(table.columns.len()) {
        if let Some(m) = columns.model.map(|c| row[c].text).filter(|v| !missing(v)) {
            match first_model {
                None => first_model = Some(m),
                Some(f) if f != m => continue,
                _ => {}
            }
        }
        atoms.push(columns.record(row)?);
    }
    Ok(atoms)
}

/// `?` and `.`: CIF's unknown and inapplicable values.
fn missing(t: &str) -> bool {
    t == "?" || t == "."
}

/// Where each `_atom_site` item is among the table's columns: author names first, the label
/// ones where the author ones are absent.
struct AtomSiteColumns {
    x: usize,
    y: usize,
    z: usize,
    atom_name: usize,
    res_name: usize,
    chain: usize,
    auth_seq: Option<usize>,
    label_seq: Option<usize>,
    group: Option<usize>,
    ins: Option<usize>,
    occupancy: Option<usize>,
    b_factor: Option<usize>,
    model: Option<usize>,
}

impl AtomSiteColumns {
    fn find(table: &Table) -> Result<Self, ParseError> {
        let find = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| table.columns.iter().position(|c| c.eq_ignore_ascii_case(n)))
        };
        let first_line = table.values.first().map_or(1, |t| t.line);
        let required = |names: &[&str]| {
            find(names).ok_or_else(|| {
                ParseError::new(
                    first_line,
                    format!("_atom_site has no {} column", names.join(" or ")),
                )
            })
        };
        let columns = Self {
            x: required(&["Cartn_x"])?,
            y: required(&["Cartn_y"])?,
            z: required(&["Cartn_z"])?,
            atom_name: required(&["auth_atom_id", "label_atom_id"])?,
            res_name: required(&["auth_comp_id", "label_comp_id"])?,
            chain: required(&["auth_asym_id", "label_asym_id"])?,
            auth_seq: find(&["auth_seq_id"]),
            label_seq: find(&["label_seq_id"]),
            group: find(&["group_PDB"]),
            ins: find(&["pdbx_PDB_ins_code"]),
            occupancy: find(&["occupancy"]),
            b_factor: find(&["B_iso_or_equiv"]),
            model: find(&["pdbx_PDB_model_num"]),
        };
        if columns.auth_seq.is_none() && columns.label_seq.is_none() {
            required(&["auth_seq_id", "label_seq_id"])?;
        }
        Ok(columns)
    }

    /// One row of the table as an atom; a malformed value is an error naming its line.
    fn record(&self, row: &[Token]) -> Result<AtomRecord, ParseError> {
        let line = row[0].line;
        let value = |i: usize| row[i].text;
        let optional = |c: Option<usize>| c.map(value).filter(|v| !missing(v));
        let number = |c: usize, what: &str| -> Result<f32, ParseError> {
            match value(c).parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(ParseError::new(
                    row[c].line,
                    format!("{what} is '{}', expected a finite number", value(c)),
                )),
            }
        };
        let optional_number = |c: Option<usize>, what: &str, default: f32| match c {
            Some(c) if !missing(value(c)) => number(c, what),
            _ => Ok(default),
        };
        let seq_column = [self.auth_seq, self.label_seq]
            .into_iter()
            .flatten()
            .find(|&c| !missing(value(c)));
        let res_seq = match seq_column {
            Some(c) => value(c).parse::<i32>().map_err(|_| {
                ParseError::new(
                    row[c].line,
                    format!("residue number is '{}', expected an integer", value(c)),
                )
            })?,
            None => {
                return Err(ParseError::new(
                    line,
                    "atom has neither auth_seq_id nor label_seq_id",
                ))
            }
        };
        let ins_code = match optional(self.ins) {
            Some(code) => {
                let mut chars = code.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => c,
                    _ => {
                        return Err(ParseError::new(
                            line,
                            format!("insertion code '{code}' is not one character"),
                        ))
                    }
                }
            }
            None => ' ',
        };
        Ok(AtomRecord {
            hetero: self
                .group
                .is_some_and(|g| value(g).eq_ignore_ascii_case("HETATM")),
            atom_name: value(self.atom_name).to_owned(),
            res_name: value(self.res_name).to_owned(),
            chain_id: optional(Some(self.chain)).unwrap_or("").to_owned(),
            res_seq,
            ins_code,
            coord: [
                number(self.x, "Cartn_x")?,
                number(self.y, "Cartn_y")?,
                number(self.z, "Cartn_z")?,
            ],
            occupancy: optional_number(self.occupancy, "occupancy", 1.0)?,
            b_factor: optional_number(self.b_factor, "B_iso_or_equiv", 0.0)?,
            in_polymer: self.label_seq.is_none_or(|c| !missing(value(c))),
        })
    }
}

/// A CIF value: bare when it can be, otherwise quoted (`.` for an empty string).
fn cif_value(s: &str) -> String {
    if s.is_empty() {
        return ".".into();
    }
    let needs_quotes = s.contains(char::is_whitespace)
        || s.starts_with(['_', '#', '$', '\'', '"', ';', '[', ']'])
        || s == "?"
        || s == "."
        || is_reserved(&Token {
            text: s,
            line: 0,
            quoted: false,
        });
    if needs_quotes {
        if s.contains("' ") || s.ends_with('\'') {
            format!("\"{s}\"")
        } else {
            format!("'{s}'")
        }
    } else {
        s.to_owned()
    }
}

const ATOM_SITE_COLUMNS: [&str; 18] = [
    "group_PDB",
    "id",
    "type_symbol",
    "label_atom_id",
    "label_comp_id",
    "label_asym_id",
    "label_entity_id",
    "label_seq_id",
    "pdbx_PDB_ins_code",
    "Cartn_x",
    "Cartn_y",
    "Cartn_z",
    "occupancy",
    "B_iso_or_equiv",
    "auth_seq_id",
    "auth_asym_id",
    "pdbx_PDB_model_num",
    "auth_atom_id",
];

/// Writes one chain as an mmCIF `_atom_site` loop, with `plddt` (0–100) in `B_iso_or_equiv`
/// when given, else the chain's B-factors; a comment and `_pdbx_database_remark` say which.
pub fn write_mmcif(
    chain: &ProteinChain,
    plddt: Option<&[f32]>,
    w: &mut impl Write,
) -> Result<(), WriteError> {
    write_mmcif_chains(&[(chain, plddt)], w)
}

/// Writes chains of one model (a complex) as one `_atom_site` loop, as [`write_mmcif`] does for
/// one; the data block is named after the first chain's `id`.
pub fn write_mmcif_chains(
    chains: &[(&ProteinChain, Option<&[f32]>)],
    w: &mut impl Write,
) -> Result<(), WriteError> {
    let Some(&(first, plddt)) = chains.first() else {
        return Ok(());
    };
    let id = if first.id.is_empty() {
        "structure"
    } else {
        first.id.as_str()
    };
    let block: String = id
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    writeln!(w, "data_{block}")?;
    writeln!(w, "# {}", b_column_meaning(plddt))?;
    writeln!(w, "_pdbx_database_remark.id 3")?;
    writeln!(
        w,
        "_pdbx_database_remark.text {}",
        cif_value(b_column_meaning(plddt))
    )?;
    writeln!(w, "#\nloop_")?;
    for column in ATOM_SITE_COLUMNS {
        writeln!(w, "_atom_site.{column}")?;
    }
    let mut serial = 0usize;
    for &(chain, plddt) in chains {
        let b = b_column(chain, plddt)?;
        let chain_id = cif_value(&chain.chain_id);
        for (i, letter) in chain.sequence.chars().enumerate() {
            let res_name = one_to_three(letter);
            let ins = match chain.insertion_code[i] {
                ' ' => "?".to_owned(),
                c => cif_value(&c.to_string()),
            };
            for (slot, p) in chain.atom37[i].iter().enumerate() {
                if !p.iter().all(|v| v.is_finite()) {
                    continue;
                }
                serial += 1;
                let name = ATOM_TYPES[slot];
                writeln!(
                    w,
                    "ATOM {serial} {} {name} {res_name} {chain_id} 1 {} {ins} {:.3} {:.3} {:.3} 1.00 {:.2} {} {chain_id} 1 {name}",
                    &name[..1],
                    i + 1,
                    p[0],
                    p[1],
                    p[2],
                    b[i],
                    chain.residue_index[i],
                )?;
            }
        }
    }
    writeln!(w, "#")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_handles_quotes_text_fields_and_comments() {
        let text = "data_x\n_a.b 'it''s fine' # c\n;line one\nline two\n;\n\"C1'\" x\n";
        let tokens = tokenize(text).unwrap();
        let texts: Vec<&str> = tokens.iter().map(|t| t.text).collect();
        assert_eq!(
            texts,
            [
                "data_x",
                "_a.b",
                "it''s fine",
                "line one\nline two",
                "C1'",
                "x"
            ]
        );
        assert_eq!(tokens[5].line, 6);
    }

    #[test]
    fn a_foreign_tag_in_the_atom_site_loop_is_an_error_with_its_line() {
        // A corrupted byte inside a multi-byte character used to be sliced as if the tag
        // began with `_atom_site.` (found by the corrupted-bytes property test).
        let text = "data_x\nloop_\n_atom_site.group_PDB\n_atom_sit\u{fffd}.label_comp_id\n\
                    ATOM ALA\n";
        let err = parse_mmcif(text).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(
            err.message.contains("_atom_sit\u{fffd}.label_comp_id"),
            "{err:?}"
        );
        let mixed = "data_x\nloop_\n_atom_site.group_PDB\n_entity.id\nATOM 1\n";
        assert_eq!(parse_mmcif(mixed).unwrap_err().line, 4);
    }

    #[test]
    fn unterminated_strings_and_fields_are_errors_with_lines() {
        assert_eq!(tokenize("a\n'open\n").unwrap_err().line, 2);
        assert_eq!(tokenize("a\n;open\nmore\n").unwrap_err().line, 2);
    }

    #[test]
    fn values_that_look_like_syntax_are_quoted() {
        assert_eq!(cif_value(""), ".");
        assert_eq!(cif_value("A"), "A");
        assert_eq!(cif_value("A B"), "'A B'");
        assert_eq!(cif_value("_x"), "'_x'");
        assert_eq!(cif_value("loop_"), "'loop_'");
        let quoted = cif_value("it's x");
        let tokens = tokenize(&quoted).unwrap();
        assert_eq!(tokens[0].text, "it's x");
    }
}
