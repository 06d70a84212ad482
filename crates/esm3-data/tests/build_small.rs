//! Builds a small dataset from the first 300 ProMod3 rows plus a few files of
//! `shared/data/structures` as the external set, and checks splits, exclusion and round trips.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use esm3_data::{build, BuildConfig, Dataset};

fn shared() -> PathBuf {
    esm3_test_support::shared_data()
}

/// Files whose PDB ids occur among the first 300 ProMod3 rows (1A1X, 1A5Z, 1AZZ) and one that
/// does not, copied with a MANIFEST.tsv naming their ids.
const EXTERNAL_FILES: [(&str, &str); 4] = [
    ("python3-cogent3/1A1X.pdb.gz", "1A1X"),
    ("theseus-examples/1a5z_A.pdb.gz", "1A5Z"),
    ("t-coffee-examples/1AZZB.pdb.gz", "1AZZ"),
    ("theseus-examples/1ABI_H.pdb.gz", "1ABI"),
];

fn external_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = String::from("file\tpdb_id\n");
    for (file, id) in EXTERNAL_FILES {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(shared().join("structures").join(file), &to).unwrap();
        manifest += &format!("{file}\t{id}\n");
    }
    std::fs::write(dir.path().join("MANIFEST.tsv"), manifest).unwrap();
    dir
}

fn config(external: &Path, seed: u64) -> BuildConfig {
    let mut c = BuildConfig {
        promod3: Some(shared().join("promod3_structdb")),
        promod3_limit: Some(300),
        external: Some(external.to_owned()),
        command: "test".into(),
        ..BuildConfig::default()
    };
    c.split.seed = seed;
    c.split.valid_fraction = 0.1;
    c.split.test_fraction = 0.1;
    c.shard_size = 100;
    c
}

#[test]
fn small_dataset_splits_excludes_and_round_trips() {
    let ext = external_dir();
    let out = tempfile::tempdir().unwrap();
    let report = build(
        &config(ext.path(), 7),
        out.path(),
        &esm3_data::dataset::Silent,
    )
    .unwrap();
    let m = &report.manifest;
    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.manifest(), m);

    let external = ds.split("external").unwrap();
    assert!(!external.is_empty());
    for r in &external {
        assert_eq!(r.source, "external");
        let n = r.len();
        assert_eq!(r.ss8.as_ref().unwrap().len(), n);
        assert_eq!(r.sasa.as_ref().unwrap().len(), n);
        assert_eq!(r.backbone.as_ref().unwrap().len(), n);
        assert!(
            r.sasa.as_ref().unwrap().iter().any(|&v| v > 50.0),
            "{}",
            r.name
        );
    }
    let ext_ids: HashSet<&str> = external.iter().map(|r| r.pdb_id.as_str()).collect();
    let ext_clusters: HashSet<u32> = external.iter().map(|r| r.cluster).collect();
    for id in ["1A1X", "1A5Z", "1AZZ", "1ABI"] {
        assert!(ext_ids.contains(id), "{id} missing from {ext_ids:?}");
    }

    let mut total = 0;
    let mut seen_clusters: HashMap<u32, String> = HashMap::new();
    for split in ["train", "valid", "test"] {
        let recs = ds.split(split).unwrap();
        assert_eq!(recs.len(), m.counts[split].chains, "{split}");
        assert!(!recs.is_empty(), "{split} is empty");
        total += recs.len();
        for r in &recs {
            assert_eq!(r.source, "promod3");
            assert!(
                !ext_ids.contains(r.pdb_id.as_str()),
                "{} shares a PDB id with external",
                r.name
            );
            assert!(
                !ext_clusters.contains(&r.cluster),
                "{} is clustered with external",
                r.name
            );
            if let Some(other) = seen_clusters.insert(r.cluster, split.to_owned()) {
                assert_eq!(other, split, "cluster {} in two splits", r.cluster);
            }
        }
        // Held-out splits get chains with coordinates (stratified split).
        assert!(
            recs.iter().any(|r| r.has_coords()),
            "{split} has no coordinates"
        );
    }
    let excluded = m.counts.get("excluded").map_or(0, |c| c.chains);
    let short = m.sources[0].skipped;
    assert_eq!(total + excluded + short, 300);
    // 1A1X, 1A5Z and 1AZZ are among the first 300 ProMod3 rows: excluded by id.
    let excluded_names: HashSet<&str> = m.excluded.iter().map(|e| e.name.as_str()).collect();
    for name in ["1A1X_A", "1A5Z_A", "1AZZ_B"] {
        assert!(
            excluded_names.contains(name),
            "{name} not excluded: {:?}",
            m.excluded
        );
    }

    // chains.tsv lists everything once.
    let tsv = std::fs::read_to_string(out.path().join("chains.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), 1 + 300 - short + external.len());

    // Structure tokens written per split come back from split().
    let train = ds.split("train").unwrap();
    let toks: Vec<(String, Vec<i64>)> = train[..3]
        .iter()
        .map(|r| (r.name.clone(), (0..r.len() as i64).collect()))
        .collect();
    ds.write_structure_tokens("train", &toks).unwrap();
    let again = ds.split("train").unwrap();
    assert_eq!(
        again[0].structure_tokens.as_ref().unwrap().len(),
        train[0].len()
    );
    assert!(again[3].structure_tokens.is_none());
    let bad = vec![(train[0].name.clone(), vec![1i64, 2])];
    let e = ds
        .write_structure_tokens("train", &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("structure tokens"), "{e}");
    assert!(ds.split("nope").is_err());

    // Same seed, same split; another seed, another split.
    let out2 = tempfile::tempdir().unwrap();
    build(
        &config(ext.path(), 7),
        out2.path(),
        &esm3_data::dataset::Silent,
    )
    .unwrap();
    let tsv2 = std::fs::read_to_string(out2.path().join("chains.tsv")).unwrap();
    assert_eq!(tsv, tsv2);
    let out3 = tempfile::tempdir().unwrap();
    build(
        &config(ext.path(), 8),
        out3.path(),
        &esm3_data::dataset::Silent,
    )
    .unwrap();
    let tsv3 = std::fs::read_to_string(out3.path().join("chains.tsv")).unwrap();
    assert_ne!(tsv, tsv3);
}

/// `esm3 data purge` (`purge_rerun::purge_dataset`) on a dataset built without the purge moves
/// the same chains to the same splits as the purge run at build time, and leaves a folder that
/// opens with those splits.
#[test]
fn purge_rerun_on_an_unpurged_dataset_equals_the_purge_at_build_time() {
    use esm3_data::purge::PurgeParams;
    use esm3_data::split::EXTERNAL_HOMOLOGOUS;

    let ext = external_dir();
    let at_build = tempfile::tempdir().unwrap();
    build(
        &config(ext.path(), 7),
        at_build.path(),
        &esm3_data::dataset::Silent,
    )
    .unwrap();
    let mut unpurged = config(ext.path(), 7);
    unpurged.purge = None;
    let later = tempfile::tempdir().unwrap();
    build(&unpurged, later.path(), &esm3_data::dataset::Silent).unwrap();
    assert!(Dataset::open(later.path())
        .unwrap()
        .manifest()
        .purge
        .is_none());

    let report =
        esm3_data::purge_rerun::purge_dataset(later.path(), &PurgeParams::default(), 100).unwrap();
    let (a, b) = (
        Dataset::open(at_build.path()).unwrap(),
        Dataset::open(later.path()).unwrap(),
    );
    let moves = |d: &Dataset| {
        let mut v: Vec<(String, String, String)> = d
            .manifest()
            .purge
            .as_ref()
            .expect("purged")
            .moved
            .iter()
            .map(|c| (c.name.clone(), c.from.clone(), c.to.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(moves(&b), moves(&a));
    assert_eq!(report.moved.len(), moves(&b).len());
    eprintln!("purge moved {} chains", report.moved.len());
    let names = |d: &Dataset, split: &str| {
        let mut v: Vec<String> = d
            .split(split)
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        v.sort();
        v
    };
    for split in ["train", "valid", "test", "external", EXTERNAL_HOMOLOGOUS] {
        assert_eq!(names(&b, split), names(&a, split), "{split}");
    }
    let chains = |d: &Dataset| {
        d.manifest()
            .counts
            .values()
            .map(|c| c.chains)
            .sum::<usize>()
    };
    assert_eq!(chains(&b), chains(&a), "no chain lost or duplicated");
}
