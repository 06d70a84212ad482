//! The ProMod3 structure-DB export (`shared/data/promod3_structdb`, written by its
//! `export_promod3_structdb.py`): `chains.tsv.gz` with sequence, DSSP-8 and SASA of every entry,
//! and optionally `backbone.tsv` + `backbone_f32le.bin[.gz]` with N, CA, C, O, CB coordinates
//! of some entries (every 10th in the shared copy, all in a full export).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::{format_err, io_err, ChainRecord, DataError, Result};

/// Value of [`ChainRecord::source`] for ProMod3 entries.
pub const SOURCE: &str = "promod3";
const DSSP_LETTERS: &str = "HGIEBTSC";

/// Opens a text file, transparently gunzipping `.gz`.
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

fn parse_err(path: &Path, line: usize, message: impl Into<String>) -> DataError {
    DataError::Parse {
        path: path.to_owned(),
        line,
        message: message.into(),
    }
}

/// Reads the lines of a TSV file with the expected header; yields (1-based line, fields).
fn read_tsv(path: &Path, header: &[&str]) -> Result<Vec<(usize, Vec<String>)>> {
    let mut rows = Vec::new();
    let reader = open_text(path)?;
    for (k, line) in reader.lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        let fields: Vec<String> = line.split('\t').map(str::to_owned).collect();
        if k == 0 {
            if fields != header {
                return Err(parse_err(
                    path,
                    1,
                    format!("expected header '{}', found '{line}'", header.join("\\t")),
                ));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if fields.len() != header.len() {
            return Err(parse_err(
                path,
                k + 1,
                format!(
                    "expected {} tab-separated fields ({}), found {}",
                    header.len(),
                    header.join(", "),
                    fields.len()
                ),
            ));
        }
        rows.push((k + 1, fields));
    }
    if rows.is_empty() {
        return Err(format_err(path, "no data rows"));
    }
    Ok(rows)
}

fn parse_num<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    field: &str,
    value: &str,
) -> Result<T> {
    value.parse().map_err(|_| {
        parse_err(
            path,
            line,
            format!("field '{field}': expected a non-negative integer, found '{value}'"),
        )
    })
}

/// Parses `chains.tsv[.gz]` into records without coordinates, keyed by ProMod3 index.
pub fn read_chains(path: &Path, limit: Option<usize>) -> Result<Vec<(usize, ChainRecord)>> {
    const HEADER: [&str; 8] = [
        "idx",
        "pdb_id",
        "chain",
        "seqres_start",
        "length",
        "sequence",
        "dssp8",
        "sasa",
    ];
    let mut out = Vec::new();
    for (line, f) in read_tsv(path, &HEADER)? {
        if limit.is_some_and(|n| out.len() >= n) {
            break;
        }
        let idx: usize = parse_num(path, line, "idx", &f[0])?;
        let _: i64 = f[3].parse().map_err(|_| {
            parse_err(
                path,
                line,
                format!(
                    "field 'seqres_start': expected an integer, found '{}'",
                    f[3]
                ),
            )
        })?;
        let length: usize = parse_num(path, line, "length", &f[4])?;
        let (sequence, dssp) = (&f[5], &f[6]);
        if sequence.len() != length || !sequence.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(parse_err(
                path,
                line,
                format!(
                    "field 'sequence': expected {length} upper-case letters, found {} characters",
                    sequence.len()
                ),
            ));
        }
        if dssp.len() != length || !dssp.chars().all(|c| DSSP_LETTERS.contains(c)) {
            return Err(parse_err(
                path,
                line,
                format!(
                    "field 'dssp8': expected {length} letters of {DSSP_LETTERS}, found '{dssp}'"
                ),
            ));
        }
        let sasa: Vec<f32> = f[7]
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| parse_err(path, line, "field 'sasa': expected comma-separated numbers"))?;
        if sasa.len() != length {
            return Err(parse_err(
                path,
                line,
                format!(
                    "field 'sasa': expected {length} values, found {}",
                    sasa.len()
                ),
            ));
        }
        let (pdb_id, chain) = (f[1].to_ascii_uppercase(), f[2].clone());
        out.push((
            idx,
            ChainRecord {
                name: format!("{pdb_id}_{chain}"),
                pdb_id,
                source: SOURCE.to_owned(),
                sequence: sequence.clone(),
                ss8: Some(dssp.clone()),
                sasa: Some(sasa),
                backbone: None,
                structure_tokens: None,
                cluster: 0,
            },
        ));
    }
    Ok(out)
}

/// Bytes per residue in the backbone file: 5 atoms × xyz × f32.
const RESIDUE_BYTES: usize = 5 * 3 * 4;

/// Reads `backbone.tsv` and the coordinate file; returns ProMod3 index → N, CA, C per residue.
/// Rows are checked against the chains already read (same PDB id, chain and length).
pub fn read_backbones(
    index_path: &Path,
    bin_path: &Path,
    chains: &HashMap<usize, (&str, &str, usize)>,
) -> Result<HashMap<usize, Vec<[[f32; 3]; 3]>>> {
    let rows = read_tsv(
        index_path,
        &["idx", "pdb_id", "chain", "length", "residue_offset"],
    )?;
    let mut bytes = Vec::new();
    let file = std::fs::File::open(bin_path).map_err(io_err(bin_path))?;
    if bin_path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(io_err(bin_path))?;
    } else {
        BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io_err(bin_path))?;
    }
    if bytes.len() % RESIDUE_BYTES != 0 {
        return Err(format_err(
            bin_path,
            format!(
                "size {} is not a multiple of {RESIDUE_BYTES} bytes (5 atoms × xyz × f32)",
                bytes.len()
            ),
        ));
    }
    let n_res = bytes.len() / RESIDUE_BYTES;
    let mut out = HashMap::new();
    for (line, f) in rows {
        let idx: usize = parse_num(index_path, line, "idx", &f[0])?;
        let length: usize = parse_num(index_path, line, "length", &f[3])?;
        let offset: usize = parse_num(index_path, line, "residue_offset", &f[4])?;
        match chains.get(&idx) {
            Some(&(pdb, chain, len)) if pdb.eq_ignore_ascii_case(&f[1]) && chain == f[2] && len == length => {}
            Some(&(pdb, chain, len)) => {
                return Err(parse_err(
                    index_path,
                    line,
                    format!("entry {idx} is {pdb} {chain} with {len} residues in chains.tsv, but {} {} with {length} here", f[1], f[2]),
                ))
            }
            None => continue, // not loaded (row limit)
        }
        if offset + length > n_res {
            return Err(parse_err(
                index_path,
                line,
                format!(
                    "residues {offset}..{} lie beyond the end of {} ({n_res} residues)",
                    offset + length,
                    bin_path.display()
                ),
            ));
        }
        let coords = (offset..offset + length)
            .map(|r| {
                let at = |atom: usize, xyz: usize| {
                    let b = r * RESIDUE_BYTES + (atom * 3 + xyz) * 4;
                    f32::from_le_bytes(bytes[b..b + 4].try_into().expect("4 bytes"))
                };
                [0, 1, 2].map(|atom| [0, 1, 2].map(|xyz| at(atom, xyz)))
            })
            .collect();
        out.insert(idx, coords);
    }
    Ok(out)
}

/// Reads a ProMod3 export directory: every chain, with coordinates where exported.
/// `limit` keeps only the first rows of `chains.tsv.gz` (tests, quick runs).
pub fn read_dir(dir: &Path, limit: Option<usize>) -> Result<Vec<ChainRecord>> {
    let chains_path = ["chains.tsv.gz", "chains.tsv"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .ok_or_else(|| {
            format_err(
                dir,
                "no chains.tsv.gz or chains.tsv (ProMod3 structure DB export)",
            )
        })?;
    let mut chains = read_chains(&chains_path, limit)?;
    let index_path = dir.join("backbone.tsv");
    let bin: Option<PathBuf> = ["backbone_f32le.bin", "backbone_f32le.bin.gz"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists());
    match (index_path.exists(), bin) {
        (true, Some(bin)) => {
            let keys: HashMap<usize, (&str, &str, usize)> = chains
                .iter()
                .map(|(idx, r)| {
                    let chain = r.name[r.pdb_id.len() + 1..].as_ref();
                    (*idx, (r.pdb_id.as_str(), chain, r.sequence.len()))
                })
                .collect();
            let mut coords = read_backbones(&index_path, &bin, &keys)?;
            for (idx, r) in chains.iter_mut() {
                r.backbone = coords.remove(idx);
            }
        }
        (true, None) => {
            return Err(format_err(
                dir,
                "backbone.tsv present but no backbone_f32le.bin[.gz]",
            ))
        }
        _ => tracing::info!(
            "{}: no backbone.tsv; ProMod3 chains without coordinates",
            dir.display()
        ),
    }
    Ok(chains.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEADER: &str = "idx\tpdb_id\tchain\tseqres_start\tlength\tsequence\tdssp8\tsasa\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_rows_and_coordinates() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "chains.tsv",
            &format!(
                "{HEADER}0\t1abc\tA\t1\t3\tMKV\tCHH\t10,20,30\n1\t2XYZ\tB\t5\t2\tGG\tCC\t1,2\n"
            ),
        );
        write(
            dir.path(),
            "backbone.tsv",
            "idx\tpdb_id\tchain\tlength\tresidue_offset\n1\t2XYZ\tB\t2\t0\n",
        );
        let mut bin = Vec::new();
        for v in 0..30 {
            bin.extend_from_slice(&(v as f32).to_le_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bin).unwrap();
        std::fs::write(
            dir.path().join("backbone_f32le.bin.gz"),
            gz.finish().unwrap(),
        )
        .unwrap();
        let recs = read_dir(dir.path(), None).unwrap();
        assert_eq!(recs[0].name, "1ABC_A");
        assert_eq!(recs[0].sasa.as_deref(), Some(&[10.0, 20.0, 30.0][..]));
        assert!(recs[0].backbone.is_none());
        let bb = recs[1].backbone.as_ref().unwrap();
        assert_eq!(bb[0][1], [3.0, 4.0, 5.0]); // CA of residue 0
        assert_eq!(bb[1][0], [15.0, 16.0, 17.0]); // N of residue 1
    }

    fn error_of(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "chains.tsv", text);
        read_chains(&p, None).unwrap_err().to_string()
    }

    #[test]
    fn garbled_rows_name_file_and_line() {
        let e = error_of(&format!(
            "{HEADER}0\t1ABC\tA\t1\t3\tMKV\tCHH\t10,20,30\n1\t1ABC\tB\t1\t3\tMKV\tCHH\n"
        ));
        assert!(
            e.contains("chains.tsv: line 3") && e.contains("8 tab-separated fields"),
            "{e}"
        );
        let e = error_of(&format!("{HEADER}0\t1ABC\tA\t1\t3\tMKV\tCHH\t10,20\n"));
        assert!(
            e.contains("line 2") && e.contains("expected 3 values"),
            "{e}"
        );
        let e = error_of(&format!("{HEADER}0\t1ABC\tA\t1\t3\tMKV\tCXH\t10,20,30\n"));
        assert!(e.contains("line 2") && e.contains("dssp8"), "{e}");
        let e = error_of(&format!("{HEADER}0\t1ABC\tA\t1\tthree\tMKV\tCHH\t1,2,3\n"));
        assert!(e.contains("line 2") && e.contains("'length'"), "{e}");
        let e = error_of("idx\tpdb\n");
        assert!(e.contains("line 1") && e.contains("expected header"), "{e}");
    }

    #[test]
    fn truncated_coordinate_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "chains.tsv",
            &format!("{HEADER}0\t1ABC\tA\t1\t3\tMKV\tCHH\t1,2,3\n"),
        );
        write(
            dir.path(),
            "backbone.tsv",
            "idx\tpdb_id\tchain\tlength\tresidue_offset\n0\t1ABC\tA\t3\t0\n",
        );
        std::fs::write(dir.path().join("backbone_f32le.bin"), vec![0u8; 120]).unwrap();
        let e = read_dir(dir.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("backbone.tsv: line 2") && e.contains("beyond the end"),
            "{e}"
        );
        std::fs::write(dir.path().join("backbone_f32le.bin"), vec![0u8; 100]).unwrap();
        let e = read_dir(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("not a multiple of 60"), "{e}");
    }
}
