//! Seeded train/valid/test assignment of whole clusters.
//!
//! Clusters are split separately within two strata, clusters with at least one chain with
//! coordinates and clusters without, so that each split gets its share of structures (the
//! structure tracks and the VQ-VAE need held-out coordinates, and only ~10 % of the ProMod3
//! chains carry them). Within a stratum the cluster ids are sorted, shuffled with ChaCha8
//! seeded by `seed` and the stratum, and the first `round(n·test)` go to test, the next
//! `round(n·valid)` to valid, the rest to train.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Fractions of clusters per held-out split (of each stratum).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitConfig {
    pub seed: u64,
    pub valid_fraction: f64,
    pub test_fraction: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            seed: 0,
            valid_fraction: 0.05,
            test_fraction: 0.05,
        }
    }
}

/// The three training splits, in the order their names are listed.
pub const SPLITS: [&str; 3] = ["train", "valid", "test"];
/// Chains of the independent evaluation structures.
pub const EXTERNAL: &str = "external";
/// Chains kept out of every split (homologous to or sharing a PDB id with `external`).
pub const EXCLUDED: &str = "excluded";
/// External chains that the held-out purge ([`crate::purge`]) found linked to a train chain:
/// kept out of `external` so that it stays an independent evaluation set.
pub const EXTERNAL_HOMOLOGOUS: &str = "external_homologous";

/// Split name of every cluster in `clusters` (cluster id, has coordinates).
pub fn assign(clusters: &[(u32, bool)], config: &SplitConfig) -> BTreeMap<u32, &'static str> {
    let mut out = BTreeMap::new();
    for (stratum, coords) in [(0u64, true), (1u64, false)] {
        let mut ids: Vec<u32> = clusters
            .iter()
            .filter(|c| c.1 == coords)
            .map(|c| c.0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            config.seed ^ stratum.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        ids.shuffle(&mut rng);
        let n = ids.len() as f64;
        let n_test = (n * config.test_fraction).round() as usize;
        let n_valid = (n * config.valid_fraction).round() as usize;
        for (k, id) in ids.into_iter().enumerate() {
            let split = if k < n_test {
                "test"
            } else if k < n_test + n_valid {
                "valid"
            } else {
                "train"
            };
            out.insert(id, split);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters() -> Vec<(u32, bool)> {
        (0..1000).map(|i| (i, i % 7 == 0)).collect()
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let cfg = SplitConfig {
            seed: 42,
            ..SplitConfig::default()
        };
        let a = assign(&clusters(), &cfg);
        let mut shuffled = clusters();
        shuffled.reverse();
        assert_eq!(a, assign(&shuffled, &cfg), "input order must not matter");
        let b = assign(&clusters(), &SplitConfig { seed: 43, ..cfg });
        assert_ne!(a, b);
    }

    #[test]
    fn fractions_hold_within_each_stratum() {
        let a = assign(&clusters(), &SplitConfig::default());
        let count = |coords: bool, split: &str| {
            clusters()
                .iter()
                .filter(|c| c.1 == coords && a[&c.0] == split)
                .count()
        };
        // 143 clusters with coordinates, 857 without.
        assert_eq!(count(true, "test"), 7);
        assert_eq!(count(true, "valid"), 7);
        assert_eq!(count(false, "test"), 43);
        assert_eq!(count(false, "valid"), 43);
        assert_eq!(a.len(), 1000);
    }
}
