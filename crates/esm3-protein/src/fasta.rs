//! FASTA records in and out.
//!
//! Hand-written because the format is a few lines of logic and the crates that read it (bio,
//! noodles) bring far more than we need; the reader keeps every character of the sequence lines
//! (minus whitespace) so that validation happens in one place, the tokenizer, with positions.

use std::io::{BufRead, Write};
use std::path::Path;

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastaRecord {
    /// The first word of the header line.
    pub id: String,
    /// The rest of the header line.
    pub description: String,
    pub sequence: String,
}

#[derive(Debug, Error)]
pub enum FastaError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: sequence data before the first '>' header line")]
    NoHeader { path: String, line: usize },
    #[error("{path}:{line}: header line has no record id after '>'")]
    EmptyId { path: String, line: usize },
    #[error("{path}: record `{id}` (line {line}) has an empty sequence")]
    EmptySequence {
        path: String,
        id: String,
        line: usize,
    },
    #[error("{path}: no FASTA records found")]
    Empty { path: String },
}

/// Reads every record; `name` is used in messages (a path, or `-` for standard input).
pub fn read_fasta(reader: impl BufRead, name: &str) -> Result<Vec<FastaRecord>, FastaError> {
    let mut records: Vec<(FastaRecord, usize)> = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| FastaError::Io {
            path: name.into(),
            source,
        })?;
        let line_no = i + 1;
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(header) = line.strip_prefix('>') {
            let header = header.trim();
            let (id, description) = header
                .split_once(char::is_whitespace)
                .unwrap_or((header, ""));
            if id.is_empty() {
                return Err(FastaError::EmptyId {
                    path: name.into(),
                    line: line_no,
                });
            }
            records.push((
                FastaRecord {
                    id: id.to_string(),
                    description: description.trim().to_string(),
                    sequence: String::new(),
                },
                line_no,
            ));
        } else if line.trim().is_empty() || line.starts_with(';') {
            continue;
        } else {
            let (record, _) = records.last_mut().ok_or(FastaError::NoHeader {
                path: name.into(),
                line: line_no,
            })?;
            record
                .sequence
                .extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    if records.is_empty() {
        return Err(FastaError::Empty { path: name.into() });
    }
    if let Some((r, line)) = records.iter().find(|(r, _)| r.sequence.is_empty()) {
        return Err(FastaError::EmptySequence {
            path: name.into(),
            id: r.id.clone(),
            line: *line,
        });
    }
    Ok(records.into_iter().map(|(r, _)| r).collect())
}

/// Reads a FASTA file (plain or `.gz`), or standard input for `-`.
pub fn read_fasta_file(path: &Path) -> Result<Vec<FastaRecord>, FastaError> {
    let name = path.display().to_string();
    if name == "-" {
        return read_fasta(std::io::stdin().lock(), "<stdin>");
    }
    let file = std::fs::File::open(path).map_err(|source| FastaError::Io {
        path: name.clone(),
        source,
    })?;
    if name.ends_with(".gz") {
        read_fasta(
            std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file)),
            &name,
        )
    } else {
        read_fasta(std::io::BufReader::new(file), &name)
    }
}

/// Writes records with sequence lines wrapped at 80 characters.
pub fn write_fasta(mut w: impl Write, records: &[FastaRecord]) -> std::io::Result<()> {
    for r in records {
        if r.description.is_empty() {
            writeln!(w, ">{}", r.id)?;
        } else {
            writeln!(w, ">{} {}", r.id, r.description)?;
        }
        let bytes = r.sequence.as_bytes();
        for chunk in bytes.chunks(80) {
            w.write_all(chunk)?;
            writeln!(w)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_multi_line_records_and_descriptions() {
        let text = ">sp|P1 Example protein\nMKT\nAYI\n\n>two\r\nGG\n";
        let r = read_fasta(text.as_bytes(), "x.fa").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].id, "sp|P1");
        assert_eq!(r[0].description, "Example protein");
        assert_eq!(r[0].sequence, "MKTAYI");
        assert_eq!(r[1].sequence, "GG");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = read_fasta("MKT\n>a\nG\n".as_bytes(), "x.fa")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "x.fa:1: sequence data before the first '>' header line");
        let e = read_fasta(">a\n>b\nG\n".as_bytes(), "x.fa")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("record `a` (line 1) has an empty sequence"),
            "{e}"
        );
        assert!(read_fasta("".as_bytes(), "x.fa").is_err());
        assert!(read_fasta(">\nG".as_bytes(), "x.fa").is_err());
    }

    #[test]
    fn reads_the_shared_hbb_example() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/sequences/small_sets/hmmer-examples__HBB_HUMAN.fa.gz");
        let r = read_fasta_file(&path).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, "HBB_HUMAN");
        assert_eq!(r[0].sequence.len(), 146);
        assert!(r[0].sequence.starts_with("VHLTPEEK") && r[0].sequence.ends_with("KYH"));
    }

    proptest! {
        #[test]
        fn write_then_read_roundtrips(seqs in prop::collection::vec("[A-Z]{1,200}", 1..5)) {
            let records: Vec<FastaRecord> = seqs.iter().enumerate().map(|(i, s)| FastaRecord {
                id: format!("r{i}"), description: if i % 2 == 0 { String::new() } else { "d e".into() }, sequence: s.clone()
            }).collect();
            let mut buf = Vec::new();
            write_fasta(&mut buf, &records).unwrap();
            prop_assert_eq!(read_fasta(buf.as_slice(), "t").unwrap(), records);
        }
    }
}
