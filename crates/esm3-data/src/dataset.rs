//! Building a dataset directory from sources, and reading it back.
//!
//! Layout of a dataset directory:
//! * `manifest.json`: [`Manifest`] (sources, seed, thresholds, counts, exclusions, command);
//! * `chains.tsv`: name, pdb_id, source, length, cluster, split, has_coords for every chain,
//!   excluded ones included;
//! * `<split>-NNNNN.safetensors`: shards of at most `shard_size` chains ([`crate::shards`]) for
//!   `train`, `valid`, `test` and `external`;
//! * `<split>.fasta`: sequences per split (also `excluded`), for the mmseqs oracle;
//! * `<split>-structure_tokens.safetensors`: written later by [`Dataset::write_structure_tokens`].
//!
//! The exclusion rule: every chain whose PDB id occurs among the external structures, or whose
//! cluster contains an external chain, is kept out of train/valid/test (split `excluded`); the
//! external chains themselves form split `external`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::cluster::{cluster_sequences, ClusterParams, ClusterStats};
use crate::split::{SplitConfig, EXCLUDED, EXTERNAL, SPLITS};
use crate::structures::Skipped;
use crate::{format_err, io_err, shards, ChainRecord, DataError, Result};

/// Format tag of `manifest.json`.
pub const FORMAT: &str = "esm3-data-v1";

/// What to build from.
#[derive(Clone, Debug)]
pub struct BuildConfig {
    /// ProMod3 structure-DB export directory.
    pub promod3: Option<PathBuf>,
    /// Keep only the first rows of the ProMod3 table (tests, quick runs).
    pub promod3_limit: Option<usize>,
    /// Directories of PDB/mmCIF files used for training.
    pub structures: Vec<PathBuf>,
    /// Independent evaluation structures: split `external`, and the exclusion rule.
    pub external: Option<PathBuf>,
    /// Read only the first files (sorted) of every structure directory (tests).
    pub max_files: Option<usize>,
    pub split: SplitConfig,
    pub cluster: ClusterParams,
    /// Chains per shard.
    pub shard_size: usize,
    /// The held-out purge after the split (`None`: skip it).
    pub purge: Option<crate::purge::PurgeParams>,
    /// The command line, recorded in the manifest.
    pub command: String,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            promod3: None,
            promod3_limit: None,
            structures: Vec::new(),
            external: None,
            max_files: None,
            split: SplitConfig::default(),
            cluster: ClusterParams::default(),
            shard_size: 2000,
            purge: Some(crate::purge::PurgeParams::default()),
            command: String::new(),
        }
    }
}

/// Sizes of one split.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitCounts {
    pub chains: usize,
    pub residues: usize,
    pub with_coords: usize,
    pub residues_with_coords: usize,
    pub clusters: usize,
}

/// One source as read.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    pub kind: String,
    pub path: String,
    pub chains: usize,
    pub with_coords: usize,
    pub skipped: usize,
}

/// A chain kept out of every split, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Excluded {
    pub name: String,
    pub reason: String,
}

/// Contents of `manifest.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub command: String,
    pub esm3_data_version: String,
    pub seed: u64,
    pub split: SplitConfig,
    pub cluster_params: ClusterParams,
    pub cluster_stats: ClusterStats,
    pub sources: Vec<SourceInfo>,
    /// Per split name (`train`, `valid`, `test`, `external`, `excluded`).
    pub counts: BTreeMap<String, SplitCounts>,
    /// PDB ids of the external structures (kept out of train/valid/test).
    pub external_pdb_ids: Vec<String>,
    pub excluded: Vec<Excluded>,
    pub skipped: Vec<Skipped>,
    /// Shard file names per split, in reading order.
    pub shards: BTreeMap<String, Vec<String>>,
    /// Seconds per build stage.
    pub seconds: BTreeMap<String, f64>,
    /// The held-out purge ([`crate::purge`]): parameters, work and every chain moved. Absent
    /// in datasets built before the purge existed and never purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<crate::purge::PurgeRecord>,
}

/// Progress reporting hooks (the CLI draws bars with them).
pub trait Progress: Sync {
    fn start(&self, _what: &str, _total: u64) {}
    fn set(&self, _done: u64) {}
    fn inc(&self) {}
    fn finish(&self) {}
}

/// No progress output.
pub struct Silent;
impl Progress for Silent {}

/// What [`build`] did.
#[derive(Clone, Debug)]
pub struct BuildReport {
    pub manifest: Manifest,
    pub seconds: f64,
}

fn unique_names(records: &mut [ChainRecord]) {
    let mut seen: HashSet<String> = HashSet::new();
    for r in records.iter_mut() {
        if !seen.insert(r.name.clone()) {
            let base = r.name.clone();
            let mut k = 2;
            while !seen.insert(format!("{base}_{k}")) {
                k += 1;
            }
            r.name = format!("{base}_{k}");
        }
    }
}

fn counts(records: &[&ChainRecord]) -> SplitCounts {
    let clusters: HashSet<u32> = records.iter().map(|r| r.cluster).collect();
    SplitCounts {
        chains: records.len(),
        residues: records.iter().map(|r| r.len()).sum(),
        with_coords: records.iter().filter(|r| r.has_coords()).count(),
        residues_with_coords: records
            .iter()
            .filter(|r| r.has_coords())
            .map(|r| r.len())
            .sum(),
        clusters: clusters.len(),
    }
}

fn source_name(dir: &Path) -> String {
    format!(
        "structures:{}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}

/// Files a previous build wrote into `dir` (removed before writing a new one).
fn is_ours(name: &str) -> bool {
    name == "manifest.json"
        || name == "chains.tsv"
        || (name.ends_with(".safetensors") || name.ends_with(".fasta") || name.ends_with(".tmp"))
            && [SPLITS.as_slice(), &[EXTERNAL, EXCLUDED]]
                .concat()
                .iter()
                .any(|s| name.starts_with(s))
}

/// Reads the sources, clusters, splits and writes the dataset into `out`. `out` must be empty,
/// missing, or hold an earlier dataset (whose files are replaced).
pub fn build(config: &BuildConfig, out: &Path, progress: &dyn Progress) -> Result<BuildReport> {
    let started = Instant::now();
    let mut seconds = BTreeMap::new();
    clear_output(out)?;

    let t = Instant::now();
    let Sources {
        mut records,
        infos: sources,
        skipped,
        external_start,
    } = read_sources(config, progress)?;
    seconds.insert("read_sources".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let search_space: usize = records.iter().map(|r| r.len()).sum();
    let cluster_stats = assign_clusters(&mut records, &config.cluster, progress);
    seconds.insert("cluster".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let (mut split_of, mut excluded) = assign_splits(&records, external_start, &config.split);
    seconds.insert("split".to_owned(), t.elapsed().as_secs_f64());

    let purge_record = match &config.purge {
        Some(params) => {
            let t = Instant::now();
            let held_out = HeldOut {
                records: &records,
                split_of: &mut split_of,
                excluded: &mut excluded,
            };
            let record = held_out.purge(&config.cluster, params, search_space, progress);
            seconds.insert("purge".to_owned(), t.elapsed().as_secs_f64());
            Some(record)
        }
        None => None,
    };

    let t = Instant::now();
    let (counts, shards) = write_splits(out, &records, &split_of, config.shard_size, progress)?;
    write_chain_table(out, &records, &split_of)?;
    seconds.insert("write".to_owned(), t.elapsed().as_secs_f64());
    seconds.insert("total".to_owned(), started.elapsed().as_secs_f64());

    let manifest = Manifest {
        format: FORMAT.to_owned(),
        command: config.command.clone(),
        esm3_data_version: env!("CARGO_PKG_VERSION").to_owned(),
        seed: config.split.seed,
        split: config.split,
        cluster_params: config.cluster.clone(),
        cluster_stats,
        sources,
        counts,
        external_pdb_ids: external_pdb_ids(&records[external_start..]),
        excluded,
        skipped,
        shards,
        seconds,
        purge: purge_record,
    };
    let p = out.join("manifest.json");
    std::fs::write(
        &p,
        serde_json::to_string_pretty(&manifest).expect("manifest serializes"),
    )
    .map_err(io_err(&p))?;
    Ok(BuildReport {
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Creates `out`, or empties it of an earlier dataset's files; refuses a directory that holds
/// anything else, so a wrong `-o` never deletes a user's files.
fn clear_output(out: &Path) -> Result<()> {
    if out.exists() {
        let entries: Vec<String> = std::fs::read_dir(out)
            .map_err(io_err(out))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        if !entries.is_empty() && !entries.iter().any(|e| e == "manifest.json") {
            return Err(format_err(
                out,
                "output directory is not empty and holds no dataset (manifest.json)",
            ));
        }
        for e in entries.iter().filter(|e| is_ours(e)) {
            std::fs::remove_file(out.join(e)).map_err(io_err(&out.join(e)))?;
        }
    }
    std::fs::create_dir_all(out).map_err(io_err(out))
}

/// Every chain read, training sources first and the external set last.
struct Sources {
    records: Vec<ChainRecord>,
    infos: Vec<SourceInfo>,
    skipped: Vec<Skipped>,
    /// Index of the first external chain (`records.len()` without an external set).
    external_start: usize,
}

fn read_sources(config: &BuildConfig, progress: &dyn Progress) -> Result<Sources> {
    let mut sources = Sources {
        records: Vec::new(),
        infos: Vec::new(),
        skipped: Vec::new(),
        external_start: usize::MAX,
    };
    if let Some(dir) = &config.promod3 {
        read_promod3(dir, config.promod3_limit, &mut sources, progress)?;
    }
    let mut dirs: Vec<(&PathBuf, String)> = config
        .structures
        .iter()
        .map(|d| (d, source_name(d)))
        .collect();
    if let Some(ext) = &config.external {
        dirs.push((ext, EXTERNAL.to_owned()));
    }
    for (k, (dir, source)) in dirs.into_iter().enumerate() {
        if k == config.structures.len() {
            sources.external_start = sources.records.len();
        }
        let n_files = crate::structures::find_files(dir)?.len();
        let n_files = config.max_files.map_or(n_files, |m| m.min(n_files));
        progress.start(&format!("reading {}", dir.display()), n_files as u64);
        let (recs, skips) =
            crate::structures::read_dir(dir, &source, config.max_files, &|| progress.inc())?;
        progress.finish();
        sources.infos.push(SourceInfo {
            kind: source,
            path: dir.display().to_string(),
            chains: recs.len(),
            with_coords: recs.len(),
            skipped: skips.len(),
        });
        sources.records.extend(recs);
        sources.skipped.extend(skips);
    }
    sources.external_start = sources.external_start.min(sources.records.len());
    if sources.records.is_empty() {
        return Err(DataError::Invalid("no chains in any source".into()));
    }
    unique_names(&mut sources.records);
    Ok(sources)
}

fn read_promod3(
    dir: &Path,
    limit: Option<usize>,
    sources: &mut Sources,
    progress: &dyn Progress,
) -> Result<()> {
    progress.start("reading ProMod3 export", 0);
    let all = crate::promod3::read_dir(dir, limit)?;
    let n_all = all.len();
    // The same length floor as for structure files: peptides carry little signal.
    let recs: Vec<ChainRecord> = all
        .into_iter()
        .filter(|r| r.len() >= crate::structures::MIN_LENGTH)
        .collect();
    if recs.len() < n_all {
        sources.skipped.push(Skipped {
            what: format!("{}: {} entries", dir.display(), n_all - recs.len()),
            reason: format!("fewer than {} residues", crate::structures::MIN_LENGTH),
        });
    }
    sources.infos.push(SourceInfo {
        kind: crate::promod3::SOURCE.into(),
        path: dir.display().to_string(),
        chains: recs.len(),
        with_coords: recs.iter().filter(|r| r.has_coords()).count(),
        skipped: n_all - recs.len(),
    });
    sources.records.extend(recs);
    progress.finish();
    Ok(())
}

/// Identity clusters of all chains, written into each record's `cluster`.
fn assign_clusters(
    records: &mut [ChainRecord],
    params: &ClusterParams,
    progress: &dyn Progress,
) -> ClusterStats {
    let seqs: Vec<&str> = records.iter().map(|r| r.sequence.as_str()).collect();
    progress.start("clustering (candidate alignments)", 0);
    let clustering = cluster_sequences(&seqs, params, &|done, total| {
        progress.start("clustering (candidate alignments)", total);
        progress.set(done);
    });
    progress.finish();
    for (r, c) in records.iter_mut().zip(&clustering.cluster) {
        r.cluster = *c;
    }
    clustering.stats
}

/// Each chain's split: the external chains are `external`; chains sharing a PDB id or a cluster
/// with them are excluded (with the reason); the rest go by cluster to train / valid / test.
fn assign_splits(
    records: &[ChainRecord],
    external_start: usize,
    config: &SplitConfig,
) -> (Vec<&'static str>, Vec<Excluded>) {
    let external_ids: HashSet<&str> = records[external_start..]
        .iter()
        .map(|r| r.pdb_id.as_str())
        .collect();
    let mut external_cluster: HashMap<u32, &str> = HashMap::new();
    for r in &records[external_start..] {
        external_cluster.entry(r.cluster).or_insert(r.name.as_str());
    }
    let mut split_of: Vec<&'static str> = vec![""; records.len()];
    let mut excluded = Vec::new();
    for (k, r) in records.iter().enumerate() {
        if k >= external_start {
            split_of[k] = EXTERNAL;
        } else if external_ids.contains(r.pdb_id.as_str()) {
            split_of[k] = EXCLUDED;
            excluded.push(Excluded {
                name: r.name.clone(),
                reason: format!("PDB id {} is in the external set", r.pdb_id),
            });
        } else if let Some(ext) = external_cluster.get(&r.cluster) {
            split_of[k] = EXCLUDED;
            excluded.push(Excluded {
                name: r.name.clone(),
                reason: format!("same identity cluster as external chain {ext}"),
            });
        }
    }
    let mut cluster_coords: BTreeMap<u32, bool> = BTreeMap::new();
    for (k, r) in records.iter().enumerate() {
        if split_of[k].is_empty() {
            *cluster_coords.entry(r.cluster).or_default() |= r.has_coords();
        }
    }
    let clusters: Vec<(u32, bool)> = cluster_coords.into_iter().collect();
    let assignment = crate::split::assign(&clusters, config);
    for (k, r) in records.iter().enumerate() {
        if split_of[k].is_empty() {
            split_of[k] = assignment[&r.cluster];
        }
    }
    (split_of, excluded)
}

/// The splits as assigned so far, for the held-out purge to move chains out of.
struct HeldOut<'a> {
    records: &'a [ChainRecord],
    split_of: &'a mut [&'static str],
    excluded: &'a mut Vec<Excluded>,
}

impl HeldOut<'_> {
    /// Moves held-out chains linked to a train chain by the more sensitive search
    /// ([`crate::purge`]) out of their split, and returns the record of what moved.
    fn purge(
        self,
        cluster: &ClusterParams,
        params: &crate::purge::PurgeParams,
        search_space: usize,
        progress: &dyn Progress,
    ) -> crate::purge::PurgeRecord {
        progress.start("purging held-out chains", 0);
        let held: Vec<(&ChainRecord, &str)> = self
            .records
            .iter()
            .zip(self.split_of.iter())
            .filter(|(_, s)| crate::purge::HELD_OUT.contains(s))
            .map(|(r, s)| (r, *s))
            .collect();
        let train: Vec<&ChainRecord> = self
            .records
            .iter()
            .zip(self.split_of.iter())
            .filter(|(_, s)| **s == "train")
            .map(|(r, _)| r)
            .collect();
        let (moved, stats) = crate::purge::find_moves(&held, &train, cluster, params, search_space);
        progress.finish();
        let index: HashMap<&str, usize> = self
            .records
            .iter()
            .enumerate()
            .map(|(k, r)| (r.name.as_str(), k))
            .collect();
        for m in &moved {
            self.split_of[index[m.name.as_str()]] = crate::purge::destination(&m.from);
            if m.to == EXCLUDED {
                self.excluded.push(Excluded {
                    name: m.name.clone(),
                    reason: crate::purge::reason(m),
                });
            }
        }
        crate::purge::record(None, cluster, params, search_space, stats, moved)
    }
}

/// PDB ids of the external chains, sorted and unique.
fn external_pdb_ids(external: &[ChainRecord]) -> Vec<String> {
    let ids: std::collections::BTreeSet<&str> =
        external.iter().map(|r| r.pdb_id.as_str()).collect();
    ids.into_iter().map(str::to_owned).collect()
}

/// Writes each split's FASTA and shards (the excluded chains get a FASTA only); returns the
/// counts per split and the shard names per split.
#[allow(clippy::type_complexity)]
fn write_splits(
    out: &Path,
    records: &[ChainRecord],
    split_of: &[&str],
    shard_size: usize,
    progress: &dyn Progress,
) -> Result<(BTreeMap<String, SplitCounts>, BTreeMap<String, Vec<String>>)> {
    let mut by_split: BTreeMap<&str, Vec<&ChainRecord>> = BTreeMap::new();
    for (r, split) in records.iter().zip(split_of) {
        by_split.entry(split).or_default().push(r);
    }
    let mut shard_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut jobs = Vec::new();
    for (split, recs) in &by_split {
        let mut fasta = String::new();
        for r in recs {
            fasta += &format!(">{}\n{}\n", r.name, r.sequence);
        }
        let p = out.join(format!("{split}.fasta"));
        std::fs::write(&p, fasta).map_err(io_err(&p))?;
        if *split == EXCLUDED {
            continue;
        }
        for (n, chunk) in recs.chunks(shard_size.max(1)).enumerate() {
            let name = format!("{split}-{n:05}.safetensors");
            shard_names
                .entry(split.to_string())
                .or_default()
                .push(name.clone());
            jobs.push((out.join(name), chunk));
        }
    }
    progress.start("writing shards", jobs.len() as u64);
    jobs.par_iter().try_for_each(|(path, chunk)| {
        let owned: Vec<ChainRecord> = chunk.iter().map(|r| (*r).clone()).collect();
        progress.inc();
        shards::write_shard(path, &owned)
    })?;
    progress.finish();
    let counts = by_split
        .iter()
        .map(|(s, r)| (s.to_string(), counts(r)))
        .collect();
    Ok((counts, shard_names))
}

/// `chains.tsv`: one row per chain with its cluster and split, in reading order.
fn write_chain_table(out: &Path, records: &[ChainRecord], split_of: &[&str]) -> Result<()> {
    let tsv_path = out.join("chains.tsv");
    let mut tsv =
        std::io::BufWriter::new(std::fs::File::create(&tsv_path).map_err(io_err(&tsv_path))?);
    writeln!(
        tsv,
        "name\tpdb_id\tsource\tlength\tcluster\tsplit\thas_coords"
    )
    .map_err(io_err(&tsv_path))?;
    for (r, split) in records.iter().zip(split_of) {
        writeln!(
            tsv,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.name,
            r.pdb_id,
            r.source,
            r.len(),
            r.cluster,
            split,
            r.has_coords() as u8
        )
        .map_err(io_err(&tsv_path))?;
    }
    tsv.flush().map_err(io_err(&tsv_path))
}

/// A dataset directory written by [`build`].
#[derive(Clone, Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

impl Dataset {
    /// Opens `dir` by reading its `manifest.json`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref().to_owned();
        let p = dir.join("manifest.json");
        let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| DataError::Parse {
            path: p.clone(),
            line: e.line(),
            message: format!("not an esm3-data manifest: {e}"),
        })?;
        if manifest.format != FORMAT {
            return Err(format_err(
                &p,
                format!("format '{}', expected '{FORMAT}'", manifest.format),
            ));
        }
        Ok(Dataset { dir, manifest })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of the splits that have shards (`train`, `valid`, `test`, `external`).
    pub fn split_names(&self) -> Vec<&str> {
        self.manifest.shards.keys().map(String::as_str).collect()
    }

    fn tokens_path(&self, split: &str) -> PathBuf {
        self.dir
            .join(format!("{split}-structure_tokens.safetensors"))
    }

    fn shard_list(&self, split: &str) -> Result<&Vec<String>> {
        self.manifest.shards.get(split).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}: no split '{split}'; the dataset has: {}",
                self.dir.display(),
                self.split_names().join(", ")
            ))
        })
    }

    /// All records of a split in build order, with structure tokens where written.
    pub fn split(&self, name: &str) -> Result<Vec<ChainRecord>> {
        let parts: Vec<Vec<ChainRecord>> = self
            .shard_list(name)?
            .par_iter()
            .map(|f| shards::read_shard(&self.dir.join(f)))
            .collect::<Result<_>>()?;
        let mut records: Vec<ChainRecord> = parts.into_iter().flatten().collect();
        let tp = self.tokens_path(name);
        if tp.exists() {
            let mut tokens = shards::read_tokens(&tp)?;
            for r in &mut records {
                r.structure_tokens = tokens.remove(&r.name);
            }
        }
        Ok(records)
    }

    /// Stores structure tokens (one code per residue) of chains of `split`; merged with tokens
    /// written before, so it may be called per batch. Unknown names and wrong lengths are errors.
    pub fn write_structure_tokens(&self, split: &str, tokens: &[(String, Vec<i64>)]) -> Result<()> {
        let lengths: HashMap<String, usize> = self
            .split(split)?
            .into_iter()
            .map(|r| (r.name.clone(), r.len()))
            .collect();
        for (name, t) in tokens {
            match lengths.get(name) {
                None => {
                    return Err(DataError::Invalid(format!(
                        "split '{split}' has no chain '{name}'"
                    )))
                }
                Some(&n) if n != t.len() => {
                    return Err(DataError::Invalid(format!(
                        "chain '{name}' has {n} residues but {} structure tokens",
                        t.len()
                    )))
                }
                _ => {}
            }
        }
        let tp = self.tokens_path(split);
        let mut all: BTreeMap<String, Vec<i64>> = if tp.exists() {
            shards::read_tokens(&tp)?.into_iter().collect()
        } else {
            BTreeMap::new()
        };
        for (name, t) in tokens {
            all.insert(name.clone(), t.clone());
        }
        let list: Vec<(String, Vec<i64>)> = all.into_iter().collect();
        shards::write_tokens(&tp, &list)
    }
}

#[cfg(test)]
mod tests {
    /// CI once failed because a timing written as `1.833241183` read back as
    /// `1.8332411830000002`: `Dataset::open` must return the manifest that was written, so
    /// JSON floats have to parse bit-exactly (serde_json's `float_roundtrip`).
    #[test]
    fn manifest_floats_read_back_bit_exact() {
        for v in [
            1.833241183_f64,
            0.04210684,
            1.8330650080000002,
            2.21825066,
            1e-300,
            123456.789012345,
        ] {
            let text = serde_json::to_string(&v).unwrap();
            let back: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v} -> {text} -> {back}");
        }
    }
}
