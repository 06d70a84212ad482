//! `esm3 data purge`: the held-out purge ([`crate::purge`]) rerun over a dataset folder that is
//! already built, rewriting only what the moved chains change. The purge itself (search, link
//! rule, where a chain goes) lives in [`crate::purge`]; this module is the dataset-folder I/O
//! around it, so the purge algorithm does not depend on the dataset layout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::dataset::{Dataset, Excluded, Manifest, SplitCounts};
use crate::purge::{find_moves, reason, record, PurgeParams, PurgeStats, PurgedChain, HELD_OUT};
use crate::split::{EXCLUDED, EXTERNAL, EXTERNAL_HOMOLOGOUS};
use crate::{io_err, shards, ChainRecord, DataError, Result};

/// What [`purge_dataset`] did.
#[derive(Clone, Debug)]
pub struct PurgeReport {
    pub moved: Vec<PurgedChain>,
    pub stats: PurgeStats,
    pub counts_before: BTreeMap<String, SplitCounts>,
    pub counts_after: BTreeMap<String, SplitCounts>,
    pub seconds: f64,
}

/// Purges a dataset directory in place: reads `train` (not modified) and the held-out splits,
/// moves linked chains, and rewrites only the held-out splits' shards and FASTA files,
/// `excluded.fasta`, `chains.tsv` and `manifest.json`. Structure tokens of external chains moved
/// to [`EXTERNAL_HOMOLOGOUS`] are copied to its side file; other side files are left as they are
/// (tokens are looked up by name, so stale names are harmless).
pub fn purge_dataset(dir: &Path, params: &PurgeParams, shard_size: usize) -> Result<PurgeReport> {
    let started = Instant::now();
    let ds = Dataset::open(dir)?;
    let mut manifest: Manifest = ds.manifest().clone();
    let train = ds.split("train")?;
    let mut held: BTreeMap<&str, Vec<ChainRecord>> = BTreeMap::new();
    for s in HELD_OUT {
        if manifest.shards.contains_key(s) {
            held.insert(s, ds.split(s)?);
        }
    }
    let tsv_path = dir.join("chains.tsv");
    let mut rows = read_chain_table(&tsv_path)?;
    // The clustering's search space: every chain of the dataset, excluded ones included.
    let search_space: usize = rows
        .iter()
        .map(|f| f[3].parse::<usize>().unwrap_or(0))
        .sum();

    let queries: Vec<(&ChainRecord, &str)> = held
        .iter()
        .flat_map(|(s, recs)| recs.iter().map(move |r| (r, *s)))
        .collect();
    let train_refs: Vec<&ChainRecord> = train.iter().collect();
    let (moved, stats) = find_moves(
        &queries,
        &train_refs,
        &manifest.cluster_params,
        params,
        search_space,
    );
    let counts_before = manifest.counts.clone();
    let moved_to: HashMap<&str, &PurgedChain> =
        moved.iter().map(|m| (m.name.as_str(), m)).collect();

    if !moved.is_empty() {
        let (new_splits, to_excluded) = regroup(dir, &manifest, &held, &moved_to)?;
        rewrite_splits(dir, &mut manifest, &new_splits, shard_size)?;
        write_fasta(&dir.join(format!("{EXCLUDED}.fasta")), &to_excluded, true)?;
        carry_external_tokens(dir, &new_splits)?;
        for f in rows.iter_mut() {
            if let Some(m) = moved_to.get(f[0].as_str()) {
                if f[5] == m.from {
                    f[5] = m.to.clone();
                }
            }
        }
        write_chain_table(&tsv_path, &rows)?;
        manifest.counts = counts_from_rows(&rows);
        for m in moved.iter().filter(|m| m.to == EXCLUDED) {
            manifest.excluded.push(Excluded {
                name: m.name.clone(),
                reason: reason(m),
            });
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    manifest.purge = Some(record(
        manifest.purge.take(),
        &manifest.cluster_params,
        params,
        search_space,
        stats.clone(),
        moved.clone(),
    ));
    manifest.seconds.insert("purge".to_owned(), seconds);
    write_manifest(dir, &manifest)?;
    Ok(PurgeReport {
        moved,
        stats,
        counts_before,
        counts_after: manifest.counts.clone(),
        seconds,
    })
}

/// The rows of `chains.tsv` (header skipped), each checked to have 7 fields and a numeric length.
fn read_chain_table(tsv_path: &Path) -> Result<Vec<Vec<String>>> {
    let tsv = std::fs::read_to_string(tsv_path).map_err(io_err(tsv_path))?;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (k, line) in tsv.lines().enumerate().skip(1) {
        let f: Vec<String> = line.split('\t').map(str::to_owned).collect();
        if f.len() != 7 || f[3].parse::<usize>().is_err() {
            return Err(DataError::Parse {
                path: tsv_path.to_path_buf(),
                line: k + 1,
                message: "expected 7 tab-separated fields with a numeric length".into(),
            });
        }
        rows.push(f);
    }
    Ok(rows)
}

/// The new contents of every split the moves change (the held-out splits that lose chains and
/// the splits that gain them, [`EXTERNAL_HOMOLOGOUS`] starting from what it holds), and the
/// chains moved out of the dataset.
fn regroup(
    dir: &Path,
    manifest: &Manifest,
    held: &BTreeMap<&str, Vec<ChainRecord>>,
    moved_to: &HashMap<&str, &PurgedChain>,
) -> Result<(BTreeMap<String, Vec<ChainRecord>>, Vec<ChainRecord>)> {
    let mut new_splits: BTreeMap<String, Vec<ChainRecord>> = BTreeMap::new();
    let mut to_excluded: Vec<ChainRecord> = Vec::new();
    if let Some(prev) = manifest.shards.get(EXTERNAL_HOMOLOGOUS) {
        let mut v = Vec::new();
        for f in prev {
            v.extend(shards::read_shard(&dir.join(f))?);
        }
        new_splits.insert(EXTERNAL_HOMOLOGOUS.to_owned(), v);
    }
    for (s, recs) in held {
        if !recs.iter().any(|r| moved_to.contains_key(r.name.as_str())) {
            continue;
        }
        let mut keep = Vec::new();
        for r in recs {
            match moved_to.get(r.name.as_str()) {
                Some(m) if m.to == EXCLUDED => to_excluded.push(r.clone()),
                Some(m) => new_splits.entry(m.to.clone()).or_default().push(r.clone()),
                None => keep.push(r.clone()),
            }
        }
        new_splits.insert(s.to_string(), keep);
    }
    Ok((new_splits, to_excluded))
}

/// Each split's shards and FASTA rewritten: new shards first, then the split's old ones that
/// were not overwritten removed; the manifest's shard lists follow.
fn rewrite_splits(
    dir: &Path,
    manifest: &mut Manifest,
    new_splits: &BTreeMap<String, Vec<ChainRecord>>,
    shard_size: usize,
) -> Result<()> {
    for (s, recs) in new_splits {
        let old: HashSet<String> = manifest
            .shards
            .get(s)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut names = Vec::new();
        for (n, chunk) in recs.chunks(shard_size.max(1)).enumerate() {
            let name = format!("{s}-{n:05}.safetensors");
            shards::write_shard(&dir.join(&name), chunk)?;
            names.push(name);
        }
        for o in old.iter().filter(|o| !names.contains(o)) {
            let p = dir.join(o);
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
        if names.is_empty() {
            manifest.shards.remove(s);
        } else {
            manifest.shards.insert(s.clone(), names);
        }
        write_fasta(&dir.join(format!("{s}.fasta")), recs, false)?;
    }
    Ok(())
}

/// Structure tokens of external chains now in [`EXTERNAL_HOMOLOGOUS`] copied to its side file.
fn carry_external_tokens(
    dir: &Path,
    new_splits: &BTreeMap<String, Vec<ChainRecord>>,
) -> Result<()> {
    let ext_tokens = dir.join(format!("{EXTERNAL}-structure_tokens.safetensors"));
    if !ext_tokens.exists() {
        return Ok(());
    }
    let tokens = shards::read_tokens(&ext_tokens)?;
    let carried: Vec<(String, Vec<i64>)> = new_splits
        .get(EXTERNAL_HOMOLOGOUS)
        .into_iter()
        .flatten()
        .filter_map(|r| tokens.get(&r.name).map(|t| (r.name.clone(), t.clone())))
        .collect();
    if carried.is_empty() {
        return Ok(());
    }
    let p = dir.join(format!(
        "{EXTERNAL_HOMOLOGOUS}-structure_tokens.safetensors"
    ));
    let mut all: BTreeMap<String, Vec<i64>> = if p.exists() {
        shards::read_tokens(&p)?.into_iter().collect()
    } else {
        BTreeMap::new()
    };
    all.extend(carried);
    shards::write_tokens(&p, &all.into_iter().collect::<Vec<_>>())
}

/// `chains.tsv` replaced by `rows` (through a temporary file, so a failure leaves the old one).
fn write_chain_table(tsv_path: &Path, rows: &[Vec<String>]) -> Result<()> {
    let tmp = tsv_path.with_extension("tsv.tmp");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io_err(&tmp))?);
        writeln!(
            w,
            "name\tpdb_id\tsource\tlength\tcluster\tsplit\thas_coords"
        )
        .map_err(io_err(&tmp))?;
        for f in rows {
            writeln!(w, "{}", f.join("\t")).map_err(io_err(&tmp))?;
        }
        w.flush().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, tsv_path).map_err(io_err(tsv_path))
}

/// `manifest.json` replaced through a temporary file.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let p = dir.join("manifest.json");
    let tmp = dir.join("manifest.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_string_pretty(manifest).expect("manifest serializes"),
    )
    .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &p).map_err(io_err(&p))
}

fn write_fasta(path: &Path, records: &[ChainRecord], append: bool) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text += &format!(">{}\n{}\n", r.name, r.sequence);
    }
    if append {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        f.write_all(text.as_bytes()).map_err(io_err(path))
    } else {
        std::fs::write(path, text).map_err(io_err(path))
    }
}

/// Per-split counts from `chains.tsv` rows (name, pdb_id, source, length, cluster, split,
/// has_coords).
fn counts_from_rows(rows: &[Vec<String>]) -> BTreeMap<String, SplitCounts> {
    let mut out: BTreeMap<String, (SplitCounts, HashSet<String>)> = BTreeMap::new();
    for f in rows {
        let (c, clusters) = out.entry(f[5].clone()).or_default();
        let len: usize = f[3].parse().unwrap_or(0);
        c.chains += 1;
        c.residues += len;
        if f[6] == "1" {
            c.with_coords += 1;
            c.residues_with_coords += len;
        }
        clusters.insert(f[4].clone());
    }
    out.into_iter()
        .map(|(s, (mut c, cl))| {
            c.clusters = cl.len();
            (s, c)
        })
        .collect()
}
