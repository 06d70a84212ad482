//! Held-out purge: a second, more sensitive homology search of every held-out chain (`valid`,
//! `test`, `external`) against all `train` chains, after the cluster split.
//!
//! The clustering prefilter ([`crate::cluster`]) has to compare ~22 k chains all against all, so
//! it uses weight-6 seeds, two hits in a diagonal window and an ungapped score ≥ 38, and it
//! misses some homologs near the threshold (the mmseqs oracle found ~90 held-out↔train pairs on
//! dataset-v1). Here only held-out queries (~2.6 k) search the train chains, so the search can
//! afford weight-5 spaced seeds over the same reduced alphabet, a lower ungapped cut, several
//! diagonals per candidate, up to [`PurgeParams::max_alignments_per_query`] banded alignments per
//! query with a wider band, and a full Smith–Waterman for short pairs. The link rule is the
//! clustering's ([`ClusterParams::links`]: identity ≥ 0.3, coverage of the shorter ≥ 0.5,
//! E ≤ 0.01 over the same search space) loosened by [`PurgeParams::identity_margin`] and
//! [`PurgeParams::evalue_factor`]: alignments of remote homologs differ by a few identity points
//! between aligners (mmseqs2 still reported pairs at 30–35 % that our alignment put just under
//! 30 %), and a held-out chain is cheap to lose while a leaked homolog inflates every test number.
//!
//! What happens to a linked chain: `valid`/`test` chains move to split `excluded` (reason
//! `purge: ...`); `external` chains move to split [`EXTERNAL_HOMOLOGOUS`] (with shards), so that
//! `external` stays an independent evaluation set without filtering at evaluation time, while the
//! homologous external chains remain available. Only direct links count: a held-out chain
//! that is linked to a purged chain but not to any train chain stays.

use std::collections::HashSet;
use std::time::Instant;

use rayon::prelude::*;

use crate::align::{encode, local_align, local_align_banded, ungapped_score};
use crate::cluster::{
    densest_window, evalue, parse_seeds, seed_positions, ClusterParams, SeedIndex,
};
use crate::split::{EXCLUDED, EXTERNAL, EXTERNAL_HOMOLOGOUS};
use crate::ChainRecord;

/// Splits whose chains are searched against `train`.
pub const HELD_OUT: [&str; 3] = ["valid", "test", EXTERNAL];

/// Search settings of the purge (the link rule comes from [`ClusterParams`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PurgeParams {
    /// Spaced seeds over the reduced alphabet, all of one weight (lower than the clustering's).
    pub seeds: Vec<String>,
    /// Seed hits needed within one diagonal window.
    pub min_diagonal_hits: u32,
    pub diagonal_window: u32,
    /// Best ungapped score over the window's diagonals needed to align a pair.
    pub min_ungapped_score: i32,
    /// Candidates aligned per query under each of two rankings (best ungapped score, most seed
    /// hits in one diagonal window); the search stops at the first link.
    pub max_alignments_per_query: usize,
    /// Half-width of the alignment band.
    pub band: usize,
    /// Pairs with `len_a × len_b` up to this are aligned without a band.
    pub full_alignment_cells: usize,
    /// Seed codes with more postings than this are not searched.
    pub max_postings: usize,
    /// The purge links at `min_identity - identity_margin` (see the module doc).
    pub identity_margin: f32,
    /// The purge links at E ≤ `max_evalue × evalue_factor`.
    pub evalue_factor: f64,
}

impl PurgeParams {
    /// The clustering's link rule, loosened by this purge's margins.
    pub fn link_rule(&self, clustering: &ClusterParams) -> ClusterParams {
        let mut link = clustering.clone();
        link.min_identity = (clustering.min_identity - self.identity_margin).max(0.0);
        link.max_evalue = clustering.max_evalue * self.evalue_factor;
        link
    }
}

impl Default for PurgeParams {
    fn default() -> Self {
        PurgeParams {
            seeds: vec![
                "11111".into(),
                "110111".into(),
                "1101011".into(),
                "11100101".into(),
            ],
            min_diagonal_hits: 2,
            diagonal_window: 24,
            min_ungapped_score: 24,
            max_alignments_per_query: 40,
            band: 64,
            // Full Smith–Waterman up to ~500 × 500: a 39 %-identity pair (327 × 375) drifts 60
            // diagonals over its length, out of any affordable band.
            full_alignment_cells: 250_000,
            max_postings: 50_000,
            identity_margin: 0.05,
            evalue_factor: 10.0,
        }
    }
}

/// Work done by one purge search.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PurgeStats {
    pub queries: usize,
    pub targets: usize,
    pub seed_hits: u64,
    pub candidate_pairs: u64,
    pub alignments: u64,
    /// Queries linked to at least one target.
    pub linked_queries: usize,
    pub seconds: f64,
}

/// The first link found for a query: target index and the alignment's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PurgeHit {
    pub target: usize,
    pub identity: f32,
    pub coverage: f32,
    pub evalue: f64,
}

/// A query's candidate target: (ungapped score, seed hits in the best window, target, diagonal).
type PurgeCandidate = (i32, u32, u32, i32);

/// The targets whose densest diagonal window has enough seed hits and, on the best of up to 8
/// of that window's diagonals, a high enough ungapped score.
fn query_candidates(
    a: &[u8],
    by_target: impl IntoIterator<Item = (u32, Vec<i64>)>,
    enc_targets: &[Vec<u8>],
    params: &PurgeParams,
) -> Vec<PurgeCandidate> {
    let window = params.diagonal_window as i64;
    let mut cands = Vec::new();
    for (t, diags) in by_target {
        let (best, best_lo, best_hi) = densest_window(&diags, window);
        if (best as u32) < params.min_diagonal_hits {
            continue;
        }
        let b = &enc_targets[t as usize];
        let mut ds: Vec<i64> = diags[best_lo..=best_hi].to_vec();
        ds.dedup();
        let step = ds.len().div_ceil(8);
        let (mut u, mut ud) = (0, diags[(best_lo + best_hi) / 2]);
        for &d in ds.iter().step_by(step.max(1)) {
            let s = ungapped_score(a, b, d as isize);
            if s > u {
                (u, ud) = (s, d);
            }
        }
        if u >= params.min_ungapped_score {
            cands.push((u, best as u32, t, ud as i32));
        }
    }
    cands
}

/// Which candidates to align, in order: two rankings, each giving up to `max` candidates. The
/// best ungapped segment finds short, strong similarities; the seed-hit count finds long, gapped
/// ones whose every ungapped piece is weak (mmseqs2 found a 39 %-identity pair over 374 columns
/// that ranked below 40 others by ungapped score).
fn pick_candidates(cands: &[PurgeCandidate], max: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_unstable_by_key(|&i| (std::cmp::Reverse(cands[i].0), cands[i].2));
    let mut picked: Vec<usize> = order[..order.len().min(max)].to_vec();
    order.sort_unstable_by_key(|&i| (std::cmp::Reverse(cands[i].1), cands[i].2));
    let mut seen: HashSet<usize> = picked.iter().copied().collect();
    picked.extend(order.iter().copied().filter(|i| seen.insert(*i)).take(max));
    picked
}

/// For every query, the first target it is linked to (if any) under `link`'s rule; E-values are
/// over `search_space` residues (the clustering uses all residues of the dataset).
pub fn search(
    queries: &[&str],
    targets: &[&str],
    link: &ClusterParams,
    params: &PurgeParams,
    search_space: usize,
) -> (Vec<Option<PurgeHit>>, PurgeStats) {
    let started = Instant::now();
    let (seeds, weight) = parse_seeds(&params.seeds);
    let per_seed = 10u32.pow(weight as u32);
    let target_seeds: Vec<Vec<(u32, u32)>> = targets
        .par_iter()
        .map(|s| seed_positions(s, &seeds, per_seed))
        .collect();
    let index = SeedIndex::new(&target_seeds, per_seed as usize * seeds.len().max(1));
    drop(target_seeds);
    let enc_targets: Vec<Vec<u8>> = targets.par_iter().map(|s| encode(s)).collect();
    let results: Vec<(Option<PurgeHit>, u64, u64, u64)> = queries
        .par_iter()
        .map(|q| {
            let a = encode(q);
            let (n_hits, by_target) = index.hits_by_target(
                &seed_positions(q, &seeds, per_seed),
                params.max_postings,
                params.min_diagonal_hits,
                |_| true,
            );
            let cands = query_candidates(&a, by_target, &enc_targets, params);
            let n_cands = cands.len() as u64;
            let picked = pick_candidates(&cands, params.max_alignments_per_query);
            let mut aligned = 0u64;
            let mut found = None;
            for &(_, _, t, d) in picked.iter().map(|&i| &cands[i]) {
                let b = &enc_targets[t as usize];
                aligned += 1;
                let al = if a.len() * b.len() <= params.full_alignment_cells {
                    local_align(&a, b)
                } else {
                    local_align_banded(&a, b, d as isize, params.band)
                };
                if link.links(&al, a.len(), b.len(), search_space) {
                    found = Some(PurgeHit {
                        target: t as usize,
                        identity: al.identity(),
                        coverage: al.coverage_of_shorter(a.len(), b.len()),
                        evalue: evalue(al.score, a.len().min(b.len()), search_space),
                    });
                    break;
                }
            }
            (found, n_hits, n_cands, aligned)
        })
        .collect();
    let stats = PurgeStats {
        queries: queries.len(),
        targets: targets.len(),
        seed_hits: results.iter().map(|r| r.1).sum(),
        candidate_pairs: results.iter().map(|r| r.2).sum(),
        alignments: results.iter().map(|r| r.3).sum(),
        linked_queries: results.iter().filter(|r| r.0.is_some()).count(),
        seconds: started.elapsed().as_secs_f64(),
    };
    (results.into_iter().map(|r| r.0).collect(), stats)
}

/// A held-out chain moved by the purge.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PurgedChain {
    pub name: String,
    pub from: String,
    pub to: String,
    /// The train chain it is linked to, with the alignment's identity, coverage of the shorter
    /// chain and E-value.
    pub train_homolog: String,
    pub identity: f32,
    pub coverage: f32,
    pub evalue: f64,
}

/// The `purge` entry of `manifest.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PurgeRecord {
    pub params: PurgeParams,
    /// Link rule used (identity, coverage, E-value; the rest of it is the clustering's prefilter).
    pub min_identity: f32,
    pub min_coverage: f32,
    pub max_evalue: f64,
    pub search_space: usize,
    pub stats: PurgeStats,
    /// Every chain moved, over all purge runs on this dataset.
    pub moved: Vec<PurgedChain>,
    /// Names of the external chains moved to [`EXTERNAL_HOMOLOGOUS`] (evaluation may skip them).
    pub external_with_train_homologs: Vec<String>,
    /// Purge runs on this dataset (1 after `esm3 data build`, +1 per `esm3 data purge`).
    pub runs: u32,
}

/// Where a linked chain of split `from` goes.
pub fn destination(from: &str) -> &'static str {
    if from == EXTERNAL {
        EXTERNAL_HOMOLOGOUS
    } else {
        EXCLUDED
    }
}

/// Searches the `held` records (each with its split) against `train` under the dataset's
/// `clustering` rule loosened by `params` ([`PurgeParams::link_rule`]); returns the moves.
pub fn find_moves(
    held: &[(&ChainRecord, &str)],
    train: &[&ChainRecord],
    clustering: &ClusterParams,
    params: &PurgeParams,
    search_space: usize,
) -> (Vec<PurgedChain>, PurgeStats) {
    let q: Vec<&str> = held.iter().map(|(r, _)| r.sequence.as_str()).collect();
    let t: Vec<&str> = train.iter().map(|r| r.sequence.as_str()).collect();
    let link = params.link_rule(clustering);
    let (hits, stats) = search(&q, &t, &link, params, search_space);
    tracing::info!(
        "purge: {} held-out chains vs {} train chains: {} linked, {} alignments, {:.1} s",
        stats.queries,
        stats.targets,
        stats.linked_queries,
        stats.alignments,
        stats.seconds
    );
    let moved = held
        .iter()
        .zip(hits)
        .filter_map(|((r, split), h)| {
            h.map(|h| PurgedChain {
                name: r.name.clone(),
                from: split.to_string(),
                to: destination(split).to_owned(),
                train_homolog: train[h.target].name.clone(),
                identity: h.identity,
                coverage: h.coverage,
                evalue: h.evalue,
            })
        })
        .collect();
    (moved, stats)
}

/// Reason recorded in the manifest's `excluded` list for a purged valid/test chain.
pub fn reason(m: &PurgedChain) -> String {
    format!(
        "purge: {} chain linked to train chain {} (identity {:.2}, coverage {:.2}, E {:.1e})",
        m.from, m.train_homolog, m.identity, m.coverage, m.evalue
    )
}

/// Merges a purge run into the manifest's record, with the link rule it used (the dataset's
/// `clustering` rule loosened by `params`).
pub fn record(
    previous: Option<PurgeRecord>,
    clustering: &ClusterParams,
    params: &PurgeParams,
    search_space: usize,
    stats: PurgeStats,
    moved: Vec<PurgedChain>,
) -> PurgeRecord {
    let (mut all, runs) = match previous {
        Some(p) => (p.moved, p.runs),
        None => (Vec::new(), 0),
    };
    all.extend(moved);
    let external_with_train_homologs = all
        .iter()
        .filter(|m| m.to == EXTERNAL_HOMOLOGOUS)
        .map(|m| m.name.clone())
        .collect();
    let link = params.link_rule(clustering);
    PurgeRecord {
        params: params.clone(),
        min_identity: link.min_identity,
        min_coverage: link.min_coverage,
        max_evalue: link.max_evalue,
        search_space,
        stats,
        moved: all,
        external_with_train_homologs,
        runs: runs + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::cluster_sequences;
    use rand::{Rng, SeedableRng};

    const AA: &[u8] = b"ARNDCQEGHILKMFPSTWYV";

    fn random_seq(rng: &mut rand_chacha::ChaCha8Rng, len: usize) -> String {
        (0..len)
            .map(|_| AA[rng.random_range(0..20)] as char)
            .collect()
    }

    /// Substitutions at `rate` (random residues), no indels.
    fn diverge(rng: &mut rand_chacha::ChaCha8Rng, s: &str, rate: f64) -> String {
        s.bytes()
            .map(|c| {
                if rng.random::<f64>() < rate {
                    AA[rng.random_range(0..20)] as char
                } else {
                    c as char
                }
            })
            .collect()
    }

    /// Remote homologs (~35–40 % identity) planted among random train chains: the clustering
    /// prefilter misses some, the purge finds every pair that passes the link rule by a full
    /// Smith–Waterman alignment, and links no unrelated chain.
    #[test]
    fn purge_finds_remote_homologs_the_cluster_prefilter_misses() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut train: Vec<String> = (0..200).map(|_| random_seq(&mut rng, 150)).collect();
        let mut queries = Vec::new();
        for parent in &train[..24] {
            queries.push(diverge(&mut rng, parent, 0.68));
        }
        queries.extend((0..24).map(|_| random_seq(&mut rng, 150)));
        train.rotate_left(50);
        let t: Vec<&str> = train.iter().map(String::as_str).collect();
        let q: Vec<&str> = queries.iter().map(String::as_str).collect();
        let space: usize = t.iter().chain(&q).map(|s| s.len()).sum();
        let link = ClusterParams::default();
        let (hits, stats) = search(&q, &t, &link, &PurgeParams::default(), space);
        assert_eq!(stats.queries, 48);
        // Ground truth by full alignment of each planted pair.
        let (mut truly_linked, mut by_purge, mut by_clustering, mut only_purge) = (0, 0, 0, 0);
        for k in 0..24 {
            let target = (k + 150) % 200;
            let (a, b) = (encode(q[k]), encode(t[target]));
            let al = local_align(&a, &b);
            let found = hits[k].map(|h| h.target);
            assert!(
                found.is_none() || found == Some(target),
                "query {k} linked to {found:?}"
            );
            if link.links(&al, a.len(), b.len(), space) {
                truly_linked += 1;
                let cl = cluster_sequences(&[&t[..], &q[k..k + 1]].concat(), &link, &|_, _| {});
                let clustered = cl.cluster[target] == cl.cluster[200];
                by_clustering += clustered as u32;
                by_purge += found.is_some() as u32;
                only_purge += (found.is_some() && !clustered) as u32;
            }
        }
        assert!(
            truly_linked >= 12,
            "only {truly_linked} planted pairs pass the rule"
        );
        assert!(
            only_purge >= 2 && by_purge > by_clustering,
            "{truly_linked} linked: purge {by_purge}, clustering {by_clustering}, only purge {only_purge}"
        );
        for (k, h) in hits.iter().enumerate().skip(24) {
            assert!(h.is_none(), "random query {k} linked: {h:?}");
        }
    }
}
