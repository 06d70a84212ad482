//! TM-score (Zhang & Skolnick 2004) and the TM-align structural alignment search
//! (Zhang & Skolnick 2005), on CA traces.
//!
//! Written by hand because no Rust crate implements TM-align, and TM-scores are only
//! comparable with published ones if the search is TM-align's: the same five initial
//! alignments (gapless threading, secondary structure, local fragment superposition,
//! secondary structure plus distance, fragment gapless threading), the same Needleman–Wunsch
//! refinement with gap opening −0.6, the same fragment-seeded TM-score maximisation and the
//! same d0 formulas. The final score is normalised by each chain's length.

use super::{kabsch, Superposition};
use crate::frames::Vec3;
use nalgebra::{Matrix3, Vector3};

type P = [f64; 3];

/// Result of [`tm_align`]. Chain 1 is the mobile structure, chain 2 the reference.
#[derive(Clone, Debug)]
pub struct TmAlign {
    /// TM-score normalised by the length of chain 1.
    pub tm_norm_chain1: f64,
    /// TM-score normalised by the length of chain 2.
    pub tm_norm_chain2: f64,
    /// Aligned pairs closer than TM-align's d8 cut-off after superposition.
    pub aligned_length: usize,
    /// RMSD of those pairs.
    pub rmsd: f64,
    /// For each residue of chain 2, the aligned residue of chain 1.
    pub alignment: Vec<Option<usize>>,
    /// Moves chain 1 onto chain 2 (the superposition maximising TM-score for chain 2).
    pub superposition: Superposition,
}

/// Both chains need this many CA atoms for TM-align's search.
pub const MIN_LENGTH: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TmError {
    TooShort { chain: usize, length: usize },
}

impl std::fmt::Display for TmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TmError::TooShort { chain, length } => write!(
                f,
                "structure {chain} has {length} residues with a CA atom; TM-align needs at least {MIN_LENGTH}"
            ),
        }
    }
}

impl std::error::Error for TmError {}

#[derive(Clone, Copy)]
struct Rigid {
    r: Matrix3<f64>,
    t: Vector3<f64>,
}

impl Rigid {
    const IDENTITY: Rigid = Rigid {
        r: Matrix3::new(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        t: Vector3::new(0.0, 0.0, 0.0),
    };

    fn apply(&self, p: &P) -> P {
        let v = self.r * Vector3::new(p[0], p[1], p[2]) + self.t;
        [v.x, v.y, v.z]
    }
}

fn dist2(a: &P, b: &P) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

fn fit(xs: &[P], ys: &[P]) -> Rigid {
    let pairs: Vec<_> = xs
        .iter()
        .zip(ys)
        .map(|(a, b)| (Vector3::from(*a), Vector3::from(*b)))
        .collect();
    kabsch(&pairs).map_or(Rigid::IDENTITY, |s| Rigid {
        r: s.rotation,
        t: s.translation,
    })
}

/// d0 and search parameters of TM-align, for the search (normalised by the shorter chain)
/// and the final score (normalised by one chain).
#[derive(Clone, Copy, Debug)]
struct Params {
    d0: f64,
    d0_min: f64,
    d0_search: f64,
    l_norm: f64,
    score_d8: f64,
}

impl Params {
    fn search(xlen: usize, ylen: usize) -> Params {
        let l = xlen.min(ylen) as f64;
        let d0 = if l <= 19.0 {
            0.168
        } else {
            1.24 * (l - 15.0).cbrt() - 1.8
        } + 0.8;
        Params {
            d0,
            d0_min: d0,
            d0_search: d0.clamp(4.5, 8.0),
            l_norm: l,
            score_d8: 1.5 * l.powf(0.3) + 3.5,
        }
    }

    fn final_for(len: usize, score_d8: f64) -> Params {
        let l = len as f64;
        let d0 = if l <= 21.0 {
            0.5
        } else {
            1.24 * (l - 15.0).cbrt() - 1.8
        }
        .max(0.5);
        Params {
            d0,
            d0_min: 0.5,
            d0_search: d0.clamp(4.5, 8.0),
            l_norm: l,
            score_d8,
        }
    }
}

/// TM-score of a superposition over aligned pairs, with TM-align's reselection loop: the pairs
/// closer than `d` (relaxed by 0.5 Å until at least 3 are found) are returned for the next fit.
fn score_fun8(xt: &[P], ys: &[P], d: f64, p: &Params, d8_only: bool, sel: &mut Vec<usize>) -> f64 {
    let d02 = p.d0 * p.d0;
    let d8_cut = p.score_d8 * p.score_d8;
    let mut d_tmp = d * d;
    let mut inc = 0;
    loop {
        sel.clear();
        let mut sum = 0.0;
        for (k, (a, b)) in xt.iter().zip(ys).enumerate() {
            let di = dist2(a, b);
            if di < d_tmp {
                sel.push(k);
            }
            if !d8_only || di <= d8_cut {
                sum += 1.0 / (1.0 + di / d02);
            }
        }
        if sel.len() < 3 && xt.len() > 3 {
            inc += 1;
            let dinc = d + inc as f64 * 0.5;
            d_tmp = dinc * dinc;
        } else {
            return sum / p.l_norm;
        }
    }
}

/// TM-align's `TMscore8_search`: superpositions seeded by fragments of the aligned pairs
/// (lengths L, L/2, L/4, … down to 4, stepped by `step`), each extended by up to 20 rounds of
/// refit-on-close-pairs; returns the best score and its superposition.
fn tmscore8_search(xs: &[P], ys: &[P], step: usize, d8_only: bool, p: &Params) -> (f64, Rigid) {
    let n = xs.len();
    let mut best = (-1.0, Rigid::IDENTITY);
    if n == 0 {
        return (0.0, Rigid::IDENTITY);
    }
    let l_min = n.min(4);
    let mut lengths = Vec::new();
    for i in 0..5 {
        let l = (n as f64 / 2f64.powi(i)) as usize;
        if l <= l_min {
            lengths.push(l_min);
            break;
        }
        lengths.push(l);
        if i == 4 {
            lengths.push(l_min);
        }
    }
    let mut xt = vec![[0.0; 3]; n];
    let (mut sel, mut prev) = (Vec::new(), Vec::new());
    let (mut r1, mut r2) = (Vec::new(), Vec::new());
    for &frag in &lengths {
        let last = n - frag;
        let mut i = 0;
        loop {
            let mut rigid = fit(&xs[i..i + frag], &ys[i..i + frag]);
            for (t, x) in xt.iter_mut().zip(xs) {
                *t = rigid.apply(x);
            }
            let score = score_fun8(&xt, ys, p.d0_search - 1.0, p, d8_only, &mut sel);
            if score > best.0 {
                best = (score, rigid);
            }
            for _ in 0..20 {
                prev.clone_from(&sel);
                r1.clear();
                r2.clear();
                r1.extend(sel.iter().map(|&k| xs[k]));
                r2.extend(sel.iter().map(|&k| ys[k]));
                rigid = fit(&r1, &r2);
                for (t, x) in xt.iter_mut().zip(xs) {
                    *t = rigid.apply(x);
                }
                let score = score_fun8(&xt, ys, p.d0_search + 1.0, p, d8_only, &mut sel);
                if score > best.0 {
                    best = (score, rigid);
                }
                if sel == prev {
                    break;
                }
            }
            if i < last {
                i = (i + step).min(last);
            } else {
                break;
            }
        }
    }
    best
}

fn aligned_pairs(x: &[P], y: &[P], y2x: &[i32]) -> (Vec<P>, Vec<P>) {
    y2x.iter()
        .enumerate()
        .filter(|(_, &i)| i >= 0)
        .map(|(j, &i)| (x[i as usize], y[j]))
        .unzip()
}

fn detailed_search(x: &[P], y: &[P], y2x: &[i32], step: usize, p: &Params) -> f64 {
    let (xs, ys) = aligned_pairs(x, y, y2x);
    tmscore8_search(&xs, &ys, step, true, p).0
}

/// TM-align's quick three-round estimate of an alignment's TM-score (unnormalised).
fn score_fast(x: &[P], y: &[P], y2x: &[i32], p: &Params) -> f64 {
    let (xs, ys) = aligned_pairs(x, y, y2x);
    let n = xs.len();
    let d02 = p.d0 * p.d0;
    let d002 = p.d0_search * p.d0_search;
    let mut rigid = fit(&xs, &ys);
    let mut dis = vec![0.0; n];
    let evaluate = |rigid: &Rigid, dis: &mut [f64]| {
        let mut s = 0.0;
        for k in 0..n {
            dis[k] = dist2(&rigid.apply(&xs[k]), &ys[k]);
            s += 1.0 / (1.0 + dis[k] / d02);
        }
        s
    };
    let score0 = evaluate(&rigid, &mut dis);
    let select = |dis: &[f64], mut cut: f64| loop {
        let chosen: Vec<usize> = (0..n).filter(|&k| dis[k] <= cut).collect();
        if chosen.len() < 3 && n > 3 {
            cut += 0.5;
        } else {
            return chosen;
        }
    };
    let chosen = select(&dis, d002);
    let (score1, score2) = if chosen.len() != n {
        let pick = |c: &[usize]| -> (Vec<P>, Vec<P>) { c.iter().map(|&k| (xs[k], ys[k])).unzip() };
        let (a, b) = pick(&chosen);
        rigid = fit(&a, &b);
        let score1 = evaluate(&rigid, &mut dis);
        // TM-align relaxes the squared cut-off by 1 Å² here.
        let chosen = select(&dis, d002 + 1.0);
        let (a, b) = pick(&chosen);
        rigid = fit(&a, &b);
        let score2 = evaluate(&rigid, &mut dis);
        (score1, score2)
    } else {
        (score0, score0)
    };
    let mut s = score0;
    if score1 >= s {
        s = score1;
    }
    if score2 >= s {
        s = score2;
    }
    s
}

/// Needleman–Wunsch with TM-align's conventions (gap penalty only on opening, ties to the
/// diagonal, then to the vertical move). `score(i, j)` is the match score of x[i] and y[j].
fn nw(xlen: usize, ylen: usize, gap_open: f64, score: impl Fn(usize, usize) -> f64) -> Vec<i32> {
    let w = ylen + 1;
    let mut val = vec![0.0f64; (xlen + 1) * w];
    let mut path = vec![false; (xlen + 1) * w];
    for i in 1..=xlen {
        for j in 1..=ylen {
            let d = val[(i - 1) * w + j - 1] + score(i - 1, j - 1);
            let mut h = val[(i - 1) * w + j];
            if path[(i - 1) * w + j] {
                h += gap_open;
            }
            let mut v = val[i * w + j - 1];
            if path[i * w + j - 1] {
                v += gap_open;
            }
            if d >= h && d >= v {
                path[i * w + j] = true;
                val[i * w + j] = d;
            } else {
                val[i * w + j] = if v >= h { v } else { h };
            }
        }
    }
    let mut y2x = vec![-1i32; ylen];
    let (mut i, mut j) = (xlen, ylen);
    while i > 0 && j > 0 {
        if path[i * w + j] {
            y2x[j - 1] = (i - 1) as i32;
            i -= 1;
            j -= 1;
        } else {
            let mut h = val[(i - 1) * w + j];
            if path[(i - 1) * w + j] {
                h += gap_open;
            }
            let mut v = val[i * w + j - 1];
            if path[i * w + j - 1] {
                v += gap_open;
            }
            if v >= h {
                j -= 1;
            } else {
                i -= 1;
            }
        }
    }
    y2x
}

fn nw_superposed(x: &[P], y: &[P], rigid: &Rigid, d02: f64, gap_open: f64) -> Vec<i32> {
    let xt: Vec<P> = x.iter().map(|p| rigid.apply(p)).collect();
    nw(x.len(), y.len(), gap_open, |i, j| {
        1.0 / (1.0 + dist2(&xt[i], &y[j]) / d02)
    })
}

/// TM-align's `DP_iter`: alternate NW on the current superposition with TM-score search.
fn dp_iter(
    x: &[P],
    y: &[P],
    start: &[i32],
    gaps: &[f64],
    iterations: usize,
    p: &Params,
) -> (f64, Vec<i32>) {
    let (xs, ys) = aligned_pairs(x, y, start);
    let mut rigid = tmscore8_search(&xs, &ys, 40, true, p).1;
    let mut best = (-1.0, start.to_vec());
    let d02 = p.d0 * p.d0;
    for &gap in gaps {
        let mut old = 0.0;
        for it in 0..iterations {
            let y2x = nw_superposed(x, y, &rigid, d02, gap);
            let (xs, ys) = aligned_pairs(x, y, &y2x);
            let (score, r) = tmscore8_search(&xs, &ys, 40, true, p);
            rigid = r;
            if score > best.0 {
                best = (score, y2x);
            }
            if it > 0 && (old - score).abs() < 1e-6 {
                break;
            }
            old = score;
        }
    }
    best
}

fn secondary_structure(x: &[P]) -> Vec<u8> {
    let n = x.len();
    (0..n)
        .map(|i| {
            if i < 2 || i + 2 >= n {
                return b'C';
            }
            let d = |a: usize, b: usize| dist2(&x[a], &x[b]).sqrt();
            let (d13, d14, d15) = (d(i - 2, i), d(i - 2, i + 1), d(i - 2, i + 2));
            let (d24, d25, d35) = (d(i - 1, i + 1), d(i - 1, i + 2), d(i, i + 2));
            let near = |v: f64, c: f64, delta: f64| (v - c).abs() < delta;
            if near(d15, 6.37, 2.1)
                && near(d14, 5.18, 2.1)
                && near(d25, 5.18, 2.1)
                && near(d13, 5.45, 2.1)
                && near(d24, 5.45, 2.1)
                && near(d35, 5.45, 2.1)
            {
                b'H'
            } else if near(d15, 13.0, 1.42)
                && near(d14, 10.4, 1.42)
                && near(d25, 10.4, 1.42)
                && near(d13, 6.1, 1.42)
                && near(d24, 6.1, 1.42)
                && near(d35, 6.1, 1.42)
            {
                b'E'
            } else if d15 < 8.0 {
                b'T'
            } else {
                b'C'
            }
        })
        .collect()
}

fn gapless_threading(x: &[P], y: &[P], p: &Params) -> Vec<i32> {
    let (xlen, ylen) = (x.len() as i64, y.len() as i64);
    let min_ali = (xlen.min(ylen) / 2).max(5);
    let map = |k: i64| -> Vec<i32> {
        (0..ylen)
            .map(|j| {
                if (0..xlen).contains(&(j + k)) {
                    (j + k) as i32
                } else {
                    -1
                }
            })
            .collect()
    };
    let mut best = (-1.0, -ylen + min_ali);
    for k in -ylen + min_ali..=xlen - min_ali {
        let s = score_fast(x, y, &map(k), p);
        if s >= best.0 {
            best = (s, k);
        }
    }
    map(best.1)
}

fn local_superposition(x: &[P], y: &[P], p: &Params) -> Option<Vec<i32>> {
    let (xlen, ylen) = (x.len(), y.len());
    let d01 = (p.d0 + 1.5).max(p.d0_min);
    let jump = |len: usize| {
        let j: usize = match len {
            l if l > 250 => 45,
            l if l > 200 => 35,
            l if l > 150 => 25,
            _ => 15,
        };
        j.min(len / 3).max(1)
    };
    let (j1, j2) = (jump(xlen), jump(ylen));
    let short = xlen.min(ylen);
    let mut best: Option<(f64, Vec<i32>)> = None;
    for frag in [20.min(short / 3), 100.min(short / 2)] {
        if frag == 0 {
            continue;
        }
        for i in (0..xlen + 1 - frag).step_by(j1) {
            for j in (0..ylen + 1 - frag).step_by(j2) {
                let rigid = fit(&x[i..i + frag], &y[j..j + frag]);
                let y2x = nw_superposed(x, y, &rigid, d01 * d01, 0.0);
                let s = score_fast(x, y, &y2x, p);
                if best.as_ref().map_or(s > 0.0, |b| s > b.0) {
                    best = Some((s, y2x));
                }
            }
        }
    }
    best.map(|b| b.1)
}

fn ss_plus_distance(
    x: &[P],
    y: &[P],
    secx: &[u8],
    secy: &[u8],
    y2x: &[i32],
    p: &Params,
) -> Vec<i32> {
    let d01 = (p.d0 + 1.5).max(p.d0_min);
    let d02 = d01 * d01;
    let (xs, ys) = aligned_pairs(x, y, y2x);
    let rigid = fit(&xs, &ys);
    let xt: Vec<P> = x.iter().map(|q| rigid.apply(q)).collect();
    nw(x.len(), y.len(), -1.0, |i, j| {
        1.0 / (1.0 + dist2(&xt[i], &y[j]) / d02) + if secx[i] == secy[j] { 0.5 } else { 0.0 }
    })
}

/// Longest run of consecutive CAs closer than `dcu0` (relaxed by 10% until it is at least
/// min(4, L/3) long), as TM-align's `find_max_frag`.
fn longest_fragment(x: &[P], dcu0: f64) -> (usize, usize) {
    let len = x.len();
    let r_min = (len / 3).min(4);
    let mut cut = dcu0 * dcu0;
    let mut inc = 0;
    loop {
        let (mut best_len, mut best) = (0usize, (0usize, 0usize));
        let (mut run, mut start) = (1usize, 0usize);
        for i in 1..len {
            if dist2(&x[i - 1], &x[i]) < cut {
                run += 1;
                if i == len - 1 {
                    if run > best_len {
                        best_len = run;
                        best = (start, i);
                    }
                    run = 1;
                }
            } else {
                if run > best_len {
                    best_len = run;
                    best = (start, i - 1);
                }
                run = 1;
                start = i;
            }
        }
        if best_len >= r_min {
            return best;
        }
        inc += 1;
        let d = 1.1f64.powi(inc) * dcu0;
        cut = d * d;
    }
}

fn fragment_threading(x: &[P], y: &[P], p: &Params) -> Vec<i32> {
    const DCU0: f64 = 4.25;
    let (xlen, ylen) = (x.len(), y.len());
    let (xs, xe) = longest_fragment(x, DCU0);
    let (ys, ye) = longest_fragment(y, DCU0);
    let (lx, ly) = (xe - xs + 1, ye - ys + 1);
    let use_x = lx < ly || (lx == ly && xlen <= ylen);
    let l_fr = lx.min(ly);
    let mut ifr: Vec<usize> = (0..l_fr)
        .map(|i| if use_x { xs + i } else { ys + i })
        .collect();
    let l0 = xlen.min(ylen);
    if l_fr == l0 {
        let (n1, n2) = ((l0 as f64 * 0.1) as usize, (l0 as f64 * 0.89) as usize);
        ifr = (n1..=n2).map(|i| ifr[i]).collect();
    }
    let l_fr = ifr.len() as i64;
    let mut best = (-1.0, vec![-1; ylen]);
    if use_x {
        let min_ali = ((l_fr.min(ylen as i64) as f64 / 2.5) as i64).max(3);
        for k in -(ylen as i64) + min_ali..=l_fr - min_ali {
            let y2x: Vec<i32> = (0..ylen as i64)
                .map(|j| {
                    if (0..l_fr).contains(&(j + k)) {
                        ifr[(j + k) as usize] as i32
                    } else {
                        -1
                    }
                })
                .collect();
            let s = score_fast(x, y, &y2x, p);
            if s >= best.0 {
                best = (s, y2x);
            }
        }
    } else {
        let min_ali = ((l_fr.min(xlen as i64) as f64 / 2.5) as i64).max(3);
        for k in -l_fr + min_ali..=xlen as i64 - min_ali {
            let mut y2x = vec![-1i32; ylen];
            for j in 0..l_fr {
                let i = j + k;
                if (0..xlen as i64).contains(&i) {
                    y2x[ifr[j as usize]] = i as i32;
                }
            }
            let s = score_fast(x, y, &y2x, p);
            if s >= best.0 {
                best = (s, y2x);
            }
        }
    }
    best.1
}

fn to_p(v: &[Vec3]) -> Vec<P> {
    v.iter().map(|a| a.map(|c| c as f64)).collect()
}

/// TM-align's search for the residue correspondence (`y2x[j]`: the residue of `x` aligned to
/// residue `j` of `y`, or −1): five initial alignments, each refined by superposition search and
/// dynamic programming when promising, the best TM-score kept.
fn best_alignment(x: &[P], y: &[P], p: &Params) -> Vec<i32> {
    let ddcc = if p.l_norm <= 40.0 { 0.1 } else { 0.4 };
    let (secx, secy) = (secondary_structure(x), secondary_structure(y));

    let mut best = (-1.0, Vec::new());
    let consider = |score: f64, y2x: Vec<i32>, best: &mut (f64, Vec<i32>)| {
        if score > best.0 {
            *best = (score, y2x);
        }
    };
    // 1. gapless threading
    let init = gapless_threading(x, y, p);
    consider(detailed_search(x, y, &init, 40, p), init.clone(), &mut best);
    let (s, m) = dp_iter(x, y, &best.1.clone(), &[-0.6, 0.0], 30, p);
    consider(s, m, &mut best);
    // 2. secondary structure alignment
    let init = nw(x.len(), y.len(), -1.0, |i, j| {
        (secx[i] == secy[j]) as u8 as f64
    });
    let s = detailed_search(x, y, &init, 40, p);
    consider(s, init.clone(), &mut best);
    if s > best.0 * 0.2 {
        let (s, m) = dp_iter(x, y, &init, &[-0.6, 0.0], 30, p);
        consider(s, m, &mut best);
    }
    // 3. local fragment superposition
    if let Some(init) = local_superposition(x, y, p) {
        let s = detailed_search(x, y, &init, 40, p);
        consider(s, init.clone(), &mut best);
        if s > best.0 * ddcc {
            let (s, m) = dp_iter(x, y, &init, &[-0.6, 0.0], 2, p);
            consider(s, m, &mut best);
        }
    }
    // 4. secondary structure plus distance, seeded by the best alignment so far
    let init = ss_plus_distance(x, y, &secx, &secy, &best.1.clone(), p);
    let s = detailed_search(x, y, &init, 40, p);
    consider(s, init.clone(), &mut best);
    if s > best.0 * ddcc {
        let (s, m) = dp_iter(x, y, &init, &[-0.6, 0.0], 30, p);
        consider(s, m, &mut best);
    }
    // 5. fragment gapless threading
    let init = fragment_threading(x, y, p);
    let s = detailed_search(x, y, &init, 40, p);
    consider(s, init.clone(), &mut best);
    if s > best.0 * ddcc {
        let (s, m) = dp_iter(x, y, &init, &[0.0], 2, p);
        consider(s, m, &mut best);
    }
    best.1
}

/// Aligns CA trace `chain1` onto `chain2` with TM-align's search and scores the alignment.
pub fn tm_align(chain1: &[Vec3], chain2: &[Vec3]) -> Result<TmAlign, TmError> {
    for (k, c) in [chain1, chain2].iter().enumerate() {
        if c.len() < MIN_LENGTH {
            return Err(TmError::TooShort {
                chain: k + 1,
                length: c.len(),
            });
        }
    }
    let (x, y) = (to_p(chain1), to_p(chain2));
    let p = Params::search(x.len(), y.len());
    let y2x = best_alignment(&x, &y, &p);
    let (xs, ys) = aligned_pairs(&x, &y, &y2x);
    let rigid = tmscore8_search(&xs, &ys, 1, true, &p).1;
    // Final scores use the pairs within d8 after that superposition.
    let d8 = p.score_d8;
    let kept: Vec<(usize, usize)> = y2x
        .iter()
        .enumerate()
        .filter(|(_, &i)| i >= 0)
        .map(|(j, &i)| (i as usize, j))
        .filter(|&(i, j)| dist2(&rigid.apply(&x[i]), &y[j]).sqrt() <= d8)
        .collect();
    let (kx, ky): (Vec<P>, Vec<P>) = kept.iter().map(|&(i, j)| (x[i], y[j])).unzip();
    let fit8 = fit(&kx, &ky);
    let rmsd = if kept.is_empty() {
        0.0
    } else {
        (kx.iter()
            .zip(&ky)
            .map(|(a, b)| dist2(&fit8.apply(a), b))
            .sum::<f64>()
            / kept.len() as f64)
            .sqrt()
    };
    let p2 = Params::final_for(y.len(), d8);
    let (tm2, rigid2) = tmscore8_search(&kx, &ky, 1, false, &p2);
    let p1 = Params::final_for(x.len(), d8);
    let (tm1, _) = tmscore8_search(&kx, &ky, 1, false, &p1);
    Ok(TmAlign {
        tm_norm_chain1: tm1.max(0.0),
        tm_norm_chain2: tm2.max(0.0),
        aligned_length: kept.len(),
        rmsd,
        alignment: y2x
            .iter()
            .map(|&i| (i >= 0).then_some(i as usize))
            .collect(),
        superposition: Superposition {
            rotation: rigid2.r,
            translation: rigid2.t,
        },
    })
}

/// TM-score of a fixed residue correspondence (`mobile[k]` ↔ `target[k]`, masked), normalised
/// by `target_length`, maximised over superpositions with TM-align's fragment search.
pub fn tm_score(
    mobile: &[Vec3],
    target: &[Vec3],
    mask: Option<&[bool]>,
    target_length: usize,
) -> f64 {
    let (xs, ys): (Vec<P>, Vec<P>) = (0..mobile.len())
        .filter(|&k| !matches!(mask, Some(m) if !m[k]))
        .map(|k| (mobile[k].map(|c| c as f64), target[k].map(|c| c as f64)))
        .unzip();
    if xs.is_empty() || target_length == 0 {
        return 0.0;
    }
    let p = Params::final_for(target_length, 0.0);
    tmscore8_search(&xs, &ys, 1, false, &p).0.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helix(n: usize) -> Vec<Vec3> {
        (0..n)
            .map(|i| {
                let a = i as f32 * 100f32.to_radians();
                [2.3 * a.cos(), 2.3 * a.sin(), 1.5 * i as f32]
            })
            .collect()
    }

    #[test]
    fn identical_chains_score_one() {
        let h = helix(40);
        let r = tm_align(&h, &h).unwrap();
        assert!((r.tm_norm_chain1 - 1.0).abs() < 1e-9, "{r:?}");
        assert!(r.rmsd < 1e-6);
        assert_eq!(r.aligned_length, 40);
        assert!((tm_score(&h, &h, None, 40) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn too_short_chains_are_an_error() {
        assert_eq!(
            tm_align(&helix(4), &helix(10)).unwrap_err(),
            TmError::TooShort {
                chain: 1,
                length: 4
            }
        );
    }

    #[test]
    fn a_shifted_copy_is_found_by_the_search() {
        // Chain 1 is residues 10..50 of chain 2, rotated and moved: the search must find the
        // offset and the superposition without any residue correspondence.
        let h = helix(60);
        let sub: Vec<Vec3> = h[10..50]
            .iter()
            .map(|p| [-p[1] + 7.0, p[0] - 3.0, p[2] + 11.0])
            .collect();
        let r = tm_align(&sub, &h).unwrap();
        assert!((r.tm_norm_chain1 - 1.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.alignment[10], Some(0));
    }
}
