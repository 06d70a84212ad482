//! `esm3 data`: build the training dataset (sources → identity clusters → seeded split →
//! shards) and print its counts. Structure tokenization of the dataset is a separate step.

use std::path::PathBuf;

use anyhow::{Context, Result};
use esm3_data::cluster::ClusterParams;
use esm3_data::dataset::Progress;
use esm3_data::split::SplitConfig;
use esm3_data::{BuildConfig, Dataset};
use indicatif::ProgressBar;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Build a dataset directory from a ProMod3 export and/or PDB/mmCIF directories.
    Build(BuildArgs),
    /// Print chains, residues, chains with coordinates and clusters per split.
    Stats(StatsArgs),
    /// Search every held-out chain (valid, test, external) against all train chains with a
    /// more sensitive search than the clustering and move linked ones (valid/test → excluded,
    /// external → external_homologous). Rewrites only the held-out splits, chains.tsv and
    /// manifest.json; train is untouched. `esm3 data build` already does this.
    Purge(PurgeArgs),
    /// Encode every chain with coordinates into VQ-VAE structure tokens, stored in the dataset
    /// (needed before `esm3 train esm3`).
    Tokenize(TokenizeArgs),
}

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Dataset directory.
    dataset: PathBuf,
    /// Structure encoder model directory (e.g. a VQ-VAE run's final/structure_encoder).
    #[arg(long)]
    structure_encoder: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// ProMod3 structure-DB export (chains.tsv.gz, backbone.tsv, backbone_f32le.bin[.gz]).
    #[arg(long)]
    promod3: Option<PathBuf>,
    /// Use only the first N ProMod3 rows (quick runs).
    #[arg(long, value_name = "N")]
    promod3_limit: Option<usize>,
    /// Directory of PDB/mmCIF files for training (recursive; repeatable).
    #[arg(long = "structures", value_name = "DIR")]
    structures: Vec<PathBuf>,
    /// Independent evaluation structures: become split `external`; chains sharing their PDB
    /// ids or identity clusters are kept out of train/valid/test.
    #[arg(long, value_name = "DIR")]
    exclude_structures: Option<PathBuf>,
    /// Seed of the cluster split.
    #[arg(long)]
    seed: u64,
    /// Fraction of clusters in the validation split (per stratum: with / without coordinates).
    #[arg(long, default_value_t = 0.05)]
    valid_fraction: f64,
    /// Fraction of clusters in the test split.
    #[arg(long, default_value_t = 0.05)]
    test_fraction: f64,
    /// Link chains whose alignment identity is at least this...
    #[arg(long, default_value_t = 0.30)]
    min_identity: f32,
    /// ...over at least this fraction of the shorter chain.
    #[arg(long, default_value_t = 0.50)]
    min_coverage: f32,
    /// Chains per shard.
    #[arg(long, default_value_t = 2000)]
    shard_size: usize,
    /// Skip the held-out purge (see `esm3 data purge`).
    #[arg(long)]
    no_purge: bool,
    /// Output directory (empty, missing, or an earlier dataset to replace).
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    /// Dataset directory written by `esm3 data build`.
    dir: PathBuf,
    /// Chains per shard of the rewritten held-out splits.
    #[arg(long, default_value_t = 2000)]
    shard_size: usize,
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Dataset directory written by `esm3 data build`.
    dir: PathBuf,
}

/// indicatif bars for the build stages.
struct Bars(std::sync::Mutex<Option<ProgressBar>>);

impl Progress for Bars {
    fn start(&self, what: &str, total: u64) {
        let mut guard = self.0.lock().expect("progress lock");
        if let Some(pb) = guard.as_ref() {
            if pb.message() == what {
                pb.set_length(total);
                return;
            }
            pb.finish_and_clear();
        }
        *guard = Some(super::progress::bar(total.max(2), what));
    }
    fn set(&self, done: u64) {
        if let Some(pb) = self.0.lock().expect("progress lock").as_ref() {
            pb.set_position(done);
        }
    }
    fn inc(&self) {
        if let Some(pb) = self.0.lock().expect("progress lock").as_ref() {
            pb.inc(1);
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.0.lock().expect("progress lock").take() {
            pb.finish_and_clear();
        }
    }
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Build(a) => build(a),
        Command::Stats(a) => stats(a),
        Command::Purge(a) => purge(a),
        Command::Tokenize(a) => tokenize(a),
    }
}

fn tokenize(a: TokenizeArgs) -> Result<()> {
    let dataset = esm3_train::data::open(&a.dataset)?;
    let total = esm3_train::data::count_with_coords(&dataset)?;
    let bar = super::progress::bar(total as u64, "tokenize");
    let n = esm3_train::data::tokenize_dataset(&dataset, &a.structure_encoder, &|| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "{}: structure tokens for {n} chains from {}",
        a.dataset.display(),
        a.structure_encoder.display()
    );
    Ok(())
}

fn build(a: BuildArgs) -> Result<()> {
    if a.promod3.is_none() && a.structures.is_empty() {
        anyhow::bail!("nothing to build from: give --promod3 DIR and/or --structures DIR");
    }
    let config = BuildConfig {
        promod3: a.promod3,
        promod3_limit: a.promod3_limit,
        structures: a.structures,
        external: a.exclude_structures,
        max_files: None,
        split: SplitConfig {
            seed: a.seed,
            valid_fraction: a.valid_fraction,
            test_fraction: a.test_fraction,
        },
        cluster: ClusterParams {
            min_identity: a.min_identity,
            min_coverage: a.min_coverage,
            ..ClusterParams::default()
        },
        shard_size: a.shard_size,
        purge: (!a.no_purge).then(esm3_data::purge::PurgeParams::default),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let report = esm3_data::build(&config, &a.output, &Bars(Default::default()))
        .with_context(|| format!("building dataset {}", a.output.display()))?;
    let m = &report.manifest;
    eprintln!(
        "{} chains in {} clusters ({} unique sequences, {} alignments, {} links), {:.1} s",
        m.cluster_stats.sequences,
        m.cluster_stats.clusters,
        m.cluster_stats.unique_sequences,
        m.cluster_stats.alignments,
        m.cluster_stats.links,
        report.seconds
    );
    if let Some(p) = &m.purge {
        eprintln!(
            "purge: {} held-out chains vs {} train chains, {} moved ({} external → {}), {:.1} s",
            p.stats.queries,
            p.stats.targets,
            p.moved.len(),
            p.external_with_train_homologs.len(),
            esm3_data::split::EXTERNAL_HOMOLOGOUS,
            p.stats.seconds
        );
    }
    print_counts(m);
    Ok(())
}

fn purge(a: PurgeArgs) -> Result<()> {
    let bar = super::progress::bar(2, "purging held-out chains");
    let report = esm3_data::purge_rerun::purge_dataset(
        &a.dir,
        &esm3_data::purge::PurgeParams::default(),
        a.shard_size,
    )
    .with_context(|| format!("purging dataset {}", a.dir.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "{}: {} held-out chains vs {} train chains, {} candidate pairs, {} alignments, {} moved, {:.1} s",
        a.dir.display(),
        report.stats.queries,
        report.stats.targets,
        report.stats.candidate_pairs,
        report.stats.alignments,
        report.moved.len(),
        report.seconds
    );
    for m in &report.moved {
        println!(
            "moved\t{}\t{} -> {}\t{}\tid {:.2}\tcov {:.2}\tE {:.1e}",
            m.name, m.from, m.to, m.train_homolog, m.identity, m.coverage, m.evalue
        );
    }
    println!("split\tchains_before\tchains_after");
    let names: std::collections::BTreeSet<&String> = report
        .counts_before
        .keys()
        .chain(report.counts_after.keys())
        .collect();
    for s in names {
        let n = |c: &std::collections::BTreeMap<String, esm3_data::SplitCounts>| {
            c.get(s).map_or(0, |c| c.chains)
        };
        println!(
            "{s}\t{}\t{}",
            n(&report.counts_before),
            n(&report.counts_after)
        );
    }
    Ok(())
}

fn print_counts(m: &esm3_data::Manifest) {
    println!("split\tchains\tresidues\twith_coords\tresidues_with_coords\tclusters");
    for (split, c) in &m.counts {
        println!(
            "{split}\t{}\t{}\t{}\t{}\t{}",
            c.chains, c.residues, c.with_coords, c.residues_with_coords, c.clusters
        );
    }
}

fn stats(a: StatsArgs) -> Result<()> {
    let ds = Dataset::open(&a.dir)?;
    let m = ds.manifest();
    println!(
        "# {} (seed {}, {} clusters)",
        a.dir.display(),
        m.seed,
        m.cluster_stats.clusters
    );
    print_counts(m);
    Ok(())
}
