//! Chain-splitting augmentations (spec §1.7–1.8), span masks (§1.3) and the
//! atomic-coordination task (§1.6).

use std::ops::Range;

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_distr::{Distribution, Exp1};

use super::{Labels, NoiseConfig};

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Splits `n` items into `parts` non-negative counts with Dirichlet(1, …, 1) proportions,
/// rounding by largest remainder so the counts sum to `n` exactly.
fn dirichlet_counts(n: usize, parts: usize, rng: &mut impl Rng) -> Vec<usize> {
    let e: Vec<f64> = (0..parts).map(|_| Exp1.sample(rng)).collect();
    let total: f64 = e.iter().sum();
    let exact: Vec<f64> = e.iter().map(|x| x / total * n as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..parts).collect();
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa)
    });
    let short = n - counts.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        counts[i] += 1;
    }
    counts
}

/// Residue-gap augmentation (spec §1.8): a geometric number of pseudo-chains (capped), lowered
/// to what the window can hold; gap residues are deleted. `None` when one chain results.
pub(super) fn residue_gap(
    start: usize,
    end: usize,
    config: &NoiseConfig,
    rng: &mut impl Rng,
) -> Option<Vec<Range<usize>>> {
    let mut n = 1;
    while n < config.residue_gap_max_chains && !rng.random_bool(config.residue_gap_geometric_p) {
        n += 1;
    }
    let w = end - start;
    let gap = config.residue_gap_min_gap;
    // n chains of ≥ 1 residue and n − 1 gaps of ≥ `gap` residues must fit.
    let fit = (w + gap) / (1 + gap);
    let n = n.min(fit);
    if n <= 1 {
        return None;
    }
    let extra = w - n - (n - 1) * gap;
    let counts = dirichlet_counts(extra, 2 * n - 1, rng);
    let mut chains = Vec::with_capacity(n);
    let mut at = start;
    for (s, &c) in counts.iter().enumerate() {
        if s % 2 == 0 {
            chains.push(at..at + 1 + c);
            at += 1 + c;
        } else {
            at += gap + c;
        }
    }
    debug_assert_eq!(at, end);
    Some(chains)
}

/// The contact (original indices) and the two pseudo-chains of an interface split.
pub(super) type Split = ((usize, usize), Vec<Range<usize>>);

/// Tertiary-interface split (spec §1.7) around a uniformly chosen long-range contact, with
/// the paper's RANDINT bounds (1-based within the window). Chain 2 is made to start at least
/// one residue after chain 1 ends, so no residue appears twice and the sample (one chain
/// break added) never outgrows the crop. `None` when no contact fits the bounds.
pub(super) fn interface_split(
    labels: &Labels,
    start: usize,
    end: usize,
    config: &NoiseConfig,
    rng: &mut impl Rng,
) -> Option<Split> {
    let w = end - start;
    let sep = config.interface_min_separation.max(18);
    let mut contacts = Vec::new();
    // 1-based i ≥ 4 and j + 15 ≤ w keep every RANDINT range non-empty.
    for i in 4..=w {
        let Some(ci) = labels.ca(start + i - 1) else {
            continue;
        };
        for j in (i + sep)..=w.saturating_sub(15) {
            if let Some(cj) = labels.ca(start + j - 1) {
                if dist(ci, cj) < config.interface_contact_distance {
                    contacts.push((i, j));
                }
            }
        }
    }
    let &(i, j) = contacts.choose(rng)?;
    let a1 = rng.random_range(1..=i - 3);
    let b1 = rng.random_range(i + 3..=j - 15);
    let a2 = rng.random_range((i + 15).max(b1 + 2)..=j - 3);
    let b2 = rng.random_range(j + 15..=w);
    let to = |a: usize, b: usize| start + a - 1..start + b;
    Some(((start + i - 1, start + j - 1), vec![to(a1, b1), to(a2, b2)]))
}

/// A contiguous-span mask over `n` positions hiding round(rate·n) of them in 1..=max_spans
/// spans at uniformly random places (spec §1.3 leaves the span law open).
pub(super) fn span_mask(n: usize, rate: f64, max_spans: usize, rng: &mut impl Rng) -> Vec<bool> {
    let hidden = ((rate * n as f64).round() as usize).min(n);
    let mut mask = vec![false; n];
    if hidden == 0 {
        return mask;
    }
    let k = rng.random_range(1..=max_spans).min(hidden);
    // Span lengths: a uniform composition of `hidden` into k positive parts; the n − hidden
    // shown positions go into k + 1 non-negative gaps around them.
    let spans: Vec<usize> = composition(hidden - k, k, rng)
        .into_iter()
        .map(|c| c + 1)
        .collect();
    let gaps = composition(n - hidden, k + 1, rng);
    let mut at = 0;
    for s in 0..k {
        at += gaps[s];
        mask[at..at + spans[s]].fill(true);
        at += spans[s];
    }
    mask
}

/// A uniformly random way to write `n` as an ordered sum of `parts` non-negative integers
/// (stars and bars: choose the bar positions among n + parts − 1 slots).
fn composition(n: usize, parts: usize, rng: &mut impl Rng) -> Vec<usize> {
    if parts == 1 {
        return vec![n];
    }
    let slots = n + parts - 1;
    let mut bars = rand::seq::index::sample(rng, slots, parts - 1).into_vec();
    bars.sort_unstable();
    let mut out = Vec::with_capacity(parts);
    let mut prev = 0;
    for &b in &bars {
        // Stars between the previous bar (or the start) and this one.
        out.push(b - prev);
        prev = b + 1;
    }
    out.push(slots - prev);
    out
}

/// Atomic coordination (spec §1.6): a uniformly chosen triplet of mutually contacting,
/// sequence-distant residues of the sample, plus each one's sequence neighbours with the
/// configured probability. Returns the triplet (original indices) and the shown flags over
/// `residues`; `None` when the sample has no such triplet.
pub(super) fn atomic_coordination(
    labels: &Labels,
    residues: &[usize],
    config: &NoiseConfig,
    rng: &mut impl Rng,
) -> Option<([usize; 3], Vec<bool>)> {
    let resolved: Vec<(usize, [f32; 3])> = residues
        .iter()
        .enumerate()
        .filter_map(|(m, &k)| labels.ca(k).map(|ca| (m, ca)))
        .collect();
    let far =
        |a: usize, b: usize| residues[a].abs_diff(residues[b]) >= config.atomic_min_separation;
    let n = resolved.len();
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    for x in 0..n {
        for y in x + 1..n {
            let ((mx, cx), (my, cy)) = (resolved[x], resolved[y]);
            if far(mx, my) && dist(cx, cy) < config.atomic_contact_distance {
                adj[x].push(y);
            }
        }
    }
    let mut triplets = Vec::new();
    for x in 0..n {
        for (q, &y) in adj[x].iter().enumerate() {
            for &z in &adj[x][q + 1..] {
                if adj[y].contains(&z) {
                    triplets.push([resolved[x].0, resolved[y].0, resolved[z].0]);
                }
            }
        }
    }
    let &t = triplets.choose(rng)?;
    let mut shown = vec![false; residues.len()];
    for &m in &t {
        shown[m] = true;
    }
    for &m in &t {
        // Neighbours in the original chain, only where they are in the sample next to it.
        for nb in [m.checked_sub(1), Some(m + 1)].into_iter().flatten() {
            let adjacent = nb < residues.len() && residues[nb].abs_diff(residues[m]) == 1;
            if adjacent && rng.random_bool(config.atomic_neighbour_probability) {
                shown[nb] = true;
            }
        }
    }
    Some((t.map(|m| residues[m]), shown))
}
