//! Safetensors shards of chain records: flat per-residue arrays plus offsets, so a reader does
//! one read and a few slice copies per shard (no per-record parsing).
//!
//! Tensors of a shard with `n` chains and `R` residues (`B` of them with backbone):
//! `sequence` u8 [R], `ss8` u8 [R] (0 where absent), `sasa` f32 [R] (NaN where absent),
//! `offsets` i64 [n+1] (residue ranges), `backbone` f32 [B,3,3], `backbone_offsets` i64 [n+1],
//! `has_ss8`, `has_sasa` u8 [n], `cluster` u32 [n]. Names, PDB ids and sources are JSON lists in
//! the header metadata. Structure tokens live in side files `<split>-structure_tokens.safetensors`
//! (`tokens` i64 [T], `offsets` i64 [m+1], names in metadata) written after tokenization.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::{format_err, io_err, ChainRecord, Result};

fn bytes_of<T: Copy>(v: &[T]) -> Vec<u8> {
    // Little-endian hosts only (as the rest of the project's safetensors code).
    let n = std::mem::size_of_val(v);
    // SAFETY: T is a plain numeric type (u8/u32/i64/f32); the bytes are copied out at once.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, n) }.to_vec()
}

fn json_list(v: impl Iterator<Item = String>) -> String {
    serde_json::to_string(&v.collect::<Vec<_>>()).expect("strings serialize")
}

fn write(
    path: &Path,
    tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
) -> Result<()> {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (
                *name,
                TensorView::new(*dtype, shape.clone(), data).expect("shape matches data"),
            )
        })
        .collect();
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::tensor::serialize_to_file(views, Some(meta), &tmp)
        .map_err(|e| format_err(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes records to one shard (written to a temporary name, then renamed).
pub fn write_shard(path: &Path, records: &[ChainRecord]) -> Result<()> {
    let n = records.len();
    let (mut seq, mut ss8, mut sasa, mut bb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut offsets, mut bb_offsets) = (vec![0i64], vec![0i64]);
    let (mut has_ss8, mut has_sasa, mut cluster) = (Vec::new(), Vec::new(), Vec::new());
    for r in records {
        let len = r.sequence.len();
        seq.extend_from_slice(r.sequence.as_bytes());
        match &r.ss8 {
            Some(s) if s.len() == len => ss8.extend_from_slice(s.as_bytes()),
            _ => ss8.extend(std::iter::repeat_n(0u8, len)),
        }
        has_ss8.push(r.ss8.as_ref().is_some_and(|s| s.len() == len) as u8);
        match &r.sasa {
            Some(s) if s.len() == len => sasa.extend_from_slice(s),
            _ => sasa.extend(std::iter::repeat_n(f32::NAN, len)),
        }
        has_sasa.push(r.sasa.as_ref().is_some_and(|s| s.len() == len) as u8);
        if let Some(b) = &r.backbone {
            if b.len() != len {
                return Err(format_err(
                    path,
                    format!(
                        "{}: backbone has {} residues, sequence {len}",
                        r.name,
                        b.len()
                    ),
                ));
            }
            bb.extend(b.iter().flatten().flatten().copied());
        }
        offsets.push(seq.len() as i64);
        bb_offsets.push((bb.len() / 9) as i64);
        cluster.push(r.cluster);
    }
    let r = seq.len();
    let b = bb.len() / 9;
    let tensors = vec![
        ("sequence", Dtype::U8, vec![r], seq),
        ("ss8", Dtype::U8, vec![r], ss8),
        ("sasa", Dtype::F32, vec![r], bytes_of(&sasa)),
        ("offsets", Dtype::I64, vec![n + 1], bytes_of(&offsets)),
        ("backbone", Dtype::F32, vec![b, 3, 3], bytes_of(&bb)),
        (
            "backbone_offsets",
            Dtype::I64,
            vec![n + 1],
            bytes_of(&bb_offsets),
        ),
        ("has_ss8", Dtype::U8, vec![n], has_ss8),
        ("has_sasa", Dtype::U8, vec![n], has_sasa),
        ("cluster", Dtype::U32, vec![n], bytes_of(&cluster)),
    ];
    let meta = HashMap::from([
        ("format".to_owned(), "esm3-data-shard-v1".to_owned()),
        (
            "names".to_owned(),
            json_list(records.iter().map(|r| r.name.clone())),
        ),
        (
            "pdb_ids".to_owned(),
            json_list(records.iter().map(|r| r.pdb_id.clone())),
        ),
        (
            "sources".to_owned(),
            json_list(records.iter().map(|r| r.source.clone())),
        ),
    ]);
    write(path, tensors, meta)
}

fn tensor<'a>(
    st: &SafeTensors<'a>,
    path: &Path,
    name: &str,
    dtype: Dtype,
) -> Result<TensorView<'a>> {
    let t = st
        .tensor(name)
        .map_err(|_| format_err(path, format!("missing tensor '{name}'")))?;
    if t.dtype() != dtype {
        return Err(format_err(
            path,
            format!("tensor '{name}': expected {dtype:?}, found {:?}", t.dtype()),
        ));
    }
    Ok(t)
}

fn le<T: Copy, const W: usize>(data: &[u8], f: fn([u8; W]) -> T) -> Vec<T> {
    data.chunks_exact(W)
        .map(|c| f(c.try_into().expect("chunk width")))
        .collect()
}

fn meta_list(
    meta: &HashMap<String, String>,
    path: &Path,
    key: &str,
    n: usize,
) -> Result<Vec<String>> {
    let v: Vec<String> = meta
        .get(key)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| format_err(path, format!("header metadata lacks a JSON list '{key}'")))?;
    if v.len() != n {
        return Err(format_err(
            path,
            format!("metadata '{key}' has {} entries, expected {n}", v.len()),
        ));
    }
    Ok(v)
}

fn check_offsets(path: &Path, name: &str, offsets: &[i64], end: usize) -> Result<()> {
    let ok = offsets.first() == Some(&0)
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets.last().map(|&x| x as usize) == Some(end);
    if ok {
        Ok(())
    } else {
        Err(format_err(
            path,
            format!("tensor '{name}' is not a non-decreasing 0..{end} offset list"),
        ))
    }
}

/// Reads a shard written by [`write_shard`].
pub fn read_shard(path: &Path) -> Result<Vec<ChainRecord>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(path, format!("not a safetensors file: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| format_err(path, e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let seq = tensor(&st, path, "sequence", Dtype::U8)?.data();
    let ss8 = tensor(&st, path, "ss8", Dtype::U8)?.data();
    let sasa: Vec<f32> = le(
        tensor(&st, path, "sasa", Dtype::F32)?.data(),
        f32::from_le_bytes,
    );
    let offsets: Vec<i64> = le(
        tensor(&st, path, "offsets", Dtype::I64)?.data(),
        i64::from_le_bytes,
    );
    let bb: Vec<f32> = le(
        tensor(&st, path, "backbone", Dtype::F32)?.data(),
        f32::from_le_bytes,
    );
    let bb_offsets: Vec<i64> = le(
        tensor(&st, path, "backbone_offsets", Dtype::I64)?.data(),
        i64::from_le_bytes,
    );
    let has_ss8 = tensor(&st, path, "has_ss8", Dtype::U8)?.data();
    let has_sasa = tensor(&st, path, "has_sasa", Dtype::U8)?.data();
    let cluster: Vec<u32> = le(
        tensor(&st, path, "cluster", Dtype::U32)?.data(),
        u32::from_le_bytes,
    );
    let n = offsets.len().saturating_sub(1);
    check_offsets(path, "offsets", &offsets, seq.len())?;
    check_offsets(path, "backbone_offsets", &bb_offsets, bb.len() / 9)?;
    if ss8.len() != seq.len()
        || sasa.len() != seq.len()
        || [
            has_ss8.len(),
            has_sasa.len(),
            cluster.len(),
            bb_offsets.len() - 1,
        ]
        .iter()
        .any(|&x| x != n)
    {
        return Err(format_err(path, "tensor lengths disagree with 'offsets'"));
    }
    let names = meta_list(&meta, path, "names", n)?;
    let pdb_ids = meta_list(&meta, path, "pdb_ids", n)?;
    let sources = meta_list(&meta, path, "sources", n)?;
    let mut out = Vec::with_capacity(n);
    for (k, ((name, pdb_id), source)) in names.into_iter().zip(pdb_ids).zip(sources).enumerate() {
        let (s, e) = (offsets[k] as usize, offsets[k + 1] as usize);
        let (bs, be) = (bb_offsets[k] as usize, bb_offsets[k + 1] as usize);
        let backbone = if be > bs {
            if be - bs != e - s {
                return Err(format_err(
                    path,
                    format!(
                        "{name}: backbone length {} differs from sequence length {}",
                        be - bs,
                        e - s
                    ),
                ));
            }
            Some(
                bb[bs * 9..be * 9]
                    .chunks_exact(9)
                    .map(|c| [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], c[8]]])
                    .collect(),
            )
        } else {
            None
        };
        out.push(ChainRecord {
            name,
            pdb_id,
            source,
            sequence: String::from_utf8_lossy(&seq[s..e]).into_owned(),
            ss8: (has_ss8[k] != 0).then(|| String::from_utf8_lossy(&ss8[s..e]).into_owned()),
            sasa: (has_sasa[k] != 0).then(|| sasa[s..e].to_vec()),
            backbone,
            structure_tokens: None,
            cluster: cluster[k],
        });
    }
    Ok(out)
}

/// Writes structure tokens (name, codes) to a side file.
pub fn write_tokens(path: &Path, tokens: &[(String, Vec<i64>)]) -> Result<()> {
    let mut flat = Vec::new();
    let mut offsets = vec![0i64];
    for (_, t) in tokens {
        flat.extend_from_slice(t);
        offsets.push(flat.len() as i64);
    }
    let tensors = vec![
        ("tokens", Dtype::I64, vec![flat.len()], bytes_of(&flat)),
        (
            "offsets",
            Dtype::I64,
            vec![offsets.len()],
            bytes_of(&offsets),
        ),
    ];
    let meta = HashMap::from([
        (
            "format".to_owned(),
            "esm3-data-structure-tokens-v1".to_owned(),
        ),
        (
            "names".to_owned(),
            json_list(tokens.iter().map(|t| t.0.clone())),
        ),
    ]);
    write(path, tensors, meta)
}

/// Reads a side file of [`write_tokens`]: name → codes.
pub fn read_tokens(path: &Path) -> Result<HashMap<String, Vec<i64>>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(path, format!("not a safetensors file: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| format_err(path, e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let flat: Vec<i64> = le(
        tensor(&st, path, "tokens", Dtype::I64)?.data(),
        i64::from_le_bytes,
    );
    let offsets: Vec<i64> = le(
        tensor(&st, path, "offsets", Dtype::I64)?.data(),
        i64::from_le_bytes,
    );
    check_offsets(path, "offsets", &offsets, flat.len())?;
    let names = meta_list(&meta, path, "names", offsets.len() - 1)?;
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(k, n)| {
            (
                n,
                flat[offsets[k] as usize..offsets[k + 1] as usize].to_vec(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, seq: &str, coords: bool) -> ChainRecord {
        let n = seq.len();
        ChainRecord {
            name: name.into(),
            pdb_id: name[..4].into(),
            source: "promod3".into(),
            sequence: seq.into(),
            ss8: coords.then(|| "C".repeat(n)),
            sasa: Some(
                (0..n)
                    .map(|i| if i == 1 { f32::NAN } else { i as f32 * 1.5 })
                    .collect(),
            ),
            backbone: coords.then(|| {
                (0..n)
                    .map(|i| [[i as f32, 1.0, 2.0], [3.0, f32::NAN, 5.0], [6.0, 7.0, 8.0]])
                    .collect()
            }),
            structure_tokens: None,
            cluster: n as u32,
        }
    }

    fn same(a: &ChainRecord, b: &ChainRecord) -> bool {
        // NaN-aware comparison through the bit patterns of the floats.
        let bits = |r: &ChainRecord| {
            (
                r.sasa
                    .as_ref()
                    .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
                r.backbone.as_ref().map(|v| {
                    v.iter()
                        .flatten()
                        .flatten()
                        .map(|x| x.to_bits())
                        .collect::<Vec<_>>()
                }),
            )
        };
        a.name == b.name
            && a.pdb_id == b.pdb_id
            && a.source == b.source
            && a.sequence == b.sequence
            && a.ss8 == b.ss8
            && a.cluster == b.cluster
            && bits(a) == bits(b)
    }

    #[test]
    fn shard_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![
            record("1ABC_A", "MKVL", true),
            record("2XYZ_B", "GGSAG", false),
            record("3DEF_C", "W", true),
        ];
        let p = dir.path().join("train-00000.safetensors");
        write_shard(&p, &recs).unwrap();
        let back = read_shard(&p).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in recs.iter().zip(&back) {
            assert!(same(a, b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn token_round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let toks = vec![
            ("A".to_owned(), vec![1, 2, 3]),
            ("B".to_owned(), vec![4095]),
        ];
        write_tokens(&p, &toks).unwrap();
        let back = read_tokens(&p).unwrap();
        assert_eq!(back["A"], vec![1, 2, 3]);
        assert_eq!(back["B"], vec![4095]);
        std::fs::write(&p, b"garbage").unwrap();
        let e = read_shard(&p).unwrap_err().to_string();
        assert!(
            e.contains("t.safetensors") && e.contains("not a safetensors"),
            "{e}"
        );
    }
}
