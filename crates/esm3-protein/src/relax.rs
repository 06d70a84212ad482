//! Restrained backbone relaxation and the backbone geometry checks it is judged by.
//!
//! A structure decoder predicts N, CA, C per residue with no guarantee that they form a chain
//! (a weak model writes Cα–Cα of 1.2 Å and piles atoms on each other). Written structures
//! must still be physical, so before writing we move the atoms as little as possible until
//! bond lengths, bond angles, the trans peptide and non-bonded distances are in range — the
//! role AlphaFold's relax step plays for its models, here with a backbone-only force field of
//! harmonic distance terms (no Amber, no side chains: only N, CA, C are predicted).
//!
//! The minimiser is L-BFGS over a sequence of stages whose position restraint to the input
//! weakens until the geometry passes ([`GeometryReport::valid`]); a good prediction stops at
//! the first, stiff stage and moves hundredths of an ångström. Written by hand because the
//! problem is small (9 coordinates a residue) and no maintained crate offers a backbone relax.

use std::collections::HashMap;

use crate::frames::{Frame, Vec3, MAX_SUPPORTED_DISTANCE, O_LOCAL};
use crate::residue_constants::{ATOM_TYPE_NUM, C, CA, N};

/// Engh & Huber (1991) backbone bond lengths, Å.
pub const N_CA: f64 = 1.458;
pub const CA_C: f64 = 1.525;
pub const C_N: f64 = 1.329;
/// Engh & Huber backbone bond angles, degrees.
pub const ANGLE_N_CA_C: f64 = 111.2;
pub const ANGLE_CA_C_N: f64 = 116.2;
pub const ANGLE_C_N_CA: f64 = 121.7;
/// Cα(i)–Cα(i+1) across a trans peptide (ω = 180°) with the lengths and angles above.
pub const CA_CA_TRANS: f64 = 3.80;
/// … and across a cis peptide (ω = 0°), which occurs before prolines.
pub const CA_CA_CIS: f64 = 2.90;

/// Tolerance of the checks on consecutive Cα–Cα (the range real chains span, trans).
pub const CA_CA_TOLERANCE: f64 = 0.2;
/// How close (Å) an input Cα–Cα must be to [`CA_CA_CIS`] for its peptide to stay cis.
pub const CIS_EVIDENCE_TOLERANCE: f64 = 0.25;
/// Tolerance of the checks on N–CA, CA–C and C–N (a few standard deviations of Engh & Huber).
pub const BOND_TOLERANCE: f64 = 0.05;
/// No two Cα of a chain are closer than this (the checks' clash threshold) …
pub const CA_CLASH: f64 = 3.0;
/// … except neighbours across a cis peptide (2.9 Å), which clash only below this.
pub const CIS_CA_CA_MIN: f64 = 2.7;
/// Share of bonds that must be in range for a backbone to count as valid.
pub const VALID_FRACTION: f64 = 0.95;

/// Non-bonded distances the relaxation keeps atoms apart by (a little wider than the checks,
/// so that a relaxed backbone passes them with margin): Cα–Cα and any other backbone pair of
/// residues two or more apart.
const CA_CA_MIN: f64 = 3.8;
const HEAVY_MIN: f64 = 3.0;

/// Backbone geometry of a chain of N, CA, C per residue. Residues without a finite backbone
/// are skipped; bonds are counted between consecutive residues that both have one.
#[derive(Clone, Debug, PartialEq)]
pub struct GeometryReport {
    /// Residues with N, CA and C present.
    pub residues: usize,
    /// Consecutive residue pairs (peptide bonds) between present residues.
    pub peptide_bonds: usize,
    pub mean_ca_ca: f64,
    /// Share of consecutive Cα–Cα within [`CA_CA_TRANS`] ± [`CA_CA_TOLERANCE`].
    pub ca_ca_in_range: f64,
    /// Shares of N–CA, CA–C and C–N bonds within ideal ± [`BOND_TOLERANCE`].
    pub n_ca_in_range: f64,
    pub ca_c_in_range: f64,
    pub c_n_in_range: f64,
    /// Cα pairs closer than [`CA_CLASH`] ([`CIS_CA_CA_MIN`] for sequence neighbours).
    pub ca_clashes: usize,
    /// Smallest Cα–Cα between residues two or more apart (infinity for fewer than 3 residues).
    pub min_nonadjacent_ca_ca: f64,
}

impl GeometryReport {
    /// ≥ 95% of every bond kind in range and no Cα–Cα clash.
    pub fn valid(&self) -> bool {
        self.ca_clashes == 0
            && [
                self.ca_ca_in_range,
                self.n_ca_in_range,
                self.ca_c_in_range,
                self.c_n_in_range,
            ]
            .iter()
            .all(|&f| f >= VALID_FRACTION)
    }
}

fn present(r: &[Vec3; 3]) -> bool {
    r.iter().all(|p| {
        p.iter()
            .all(|v| v.is_finite() && v.abs() < MAX_SUPPORTED_DISTANCE)
    })
}

fn dist(a: Vec3, b: Vec3) -> f64 {
    let d = [
        a[0] as f64 - b[0] as f64,
        a[1] as f64 - b[1] as f64,
        a[2] as f64 - b[2] as f64,
    ];
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Measures `backbone` (N, CA, C per residue).
pub fn backbone_geometry(backbone: &[[Vec3; 3]]) -> GeometryReport {
    let ok: Vec<bool> = backbone.iter().map(present).collect();
    let residues = ok.iter().filter(|&&o| o).count();
    let share = |hits: usize, of: usize| {
        if of == 0 {
            1.0
        } else {
            hits as f64 / of as f64
        }
    };
    let in_range = |d: f64, ideal: f64, tol: f64| (d - ideal).abs() <= tol;
    let (mut n_ca, mut ca_c) = (0, 0);
    for (r, _) in backbone.iter().zip(&ok).filter(|(_, &o)| o) {
        n_ca += in_range(dist(r[0], r[1]), N_CA, BOND_TOLERANCE) as usize;
        ca_c += in_range(dist(r[1], r[2]), CA_C, BOND_TOLERANCE) as usize;
    }
    let (mut bonds, mut c_n, mut ca_ca, mut ca_ca_sum) = (0, 0, 0, 0.0);
    for i in 1..backbone.len() {
        if ok[i - 1] && ok[i] {
            bonds += 1;
            c_n += in_range(
                dist(backbone[i - 1][2], backbone[i][0]),
                C_N,
                BOND_TOLERANCE,
            ) as usize;
            let d = dist(backbone[i - 1][1], backbone[i][1]);
            ca_ca_sum += d;
            ca_ca += in_range(d, CA_CA_TRANS, CA_CA_TOLERANCE) as usize;
        }
    }
    // Exact over all pairs: L ≤ a few thousand, so O(L²) distance checks are instant.
    let cas: Vec<(usize, Vec3)> = (0..backbone.len())
        .filter(|&i| ok[i])
        .map(|i| (i, backbone[i][1]))
        .collect();
    let (mut clashes, mut min_far) = (0, f64::INFINITY);
    for (a, &(i, p)) in cas.iter().enumerate() {
        for &(j, q) in &cas[a + 1..] {
            let d = dist(p, q);
            let adjacent = j - i == 1;
            if d < if adjacent { CIS_CA_CA_MIN } else { CA_CLASH } {
                clashes += 1;
            }
            if !adjacent {
                min_far = min_far.min(d);
            }
        }
    }
    GeometryReport {
        residues,
        peptide_bonds: bonds,
        mean_ca_ca: if bonds == 0 {
            f64::NAN
        } else {
            ca_ca_sum / bonds as f64
        },
        ca_ca_in_range: share(ca_ca, bonds),
        n_ca_in_range: share(n_ca, residues),
        ca_c_in_range: share(ca_c, residues),
        c_n_in_range: share(c_n, bonds),
        ca_clashes: clashes,
        min_nonadjacent_ca_ca: min_far,
    }
}

/// How the relaxation runs.
#[derive(Clone, Debug)]
pub struct RelaxOptions {
    /// Restraint stiffness of each stage (energy per Å² of displacement; bonds have 100). The
    /// relaxation stops after the first stage whose result passes the checks.
    pub restraint_schedule: Vec<f64>,
    /// L-BFGS iterations per stage at most.
    pub max_iterations: usize,
}

impl Default for RelaxOptions {
    fn default() -> Self {
        RelaxOptions {
            restraint_schedule: vec![10.0, 1.0, 0.1, 0.01, 0.0],
            max_iterations: 1000,
        }
    }
}

/// What a relaxation did.
#[derive(Clone, Debug)]
pub struct RelaxReport {
    /// Root-mean-square displacement of the moved atoms (N, CA, C of present residues), Å, no
    /// superposition: how far the written structure is from the decoder's.
    pub rmsd: f64,
    /// Largest displacement of one atom, Å.
    pub max_displacement: f64,
    /// Stages run (1 = the stiffest restraint sufficed).
    pub stages: usize,
    /// Restraint stiffness of the last stage run.
    pub final_restraint: f64,
    /// L-BFGS iterations over all stages.
    pub iterations: usize,
    pub before: GeometryReport,
    pub after: GeometryReport,
}

/// Relaxes `backbone` (N, CA, C per residue). `cis_allowed[i]` says residue `i` is a proline,
/// so that the peptide before it may stay cis if the input has it cis; without it every
/// peptide is made trans. Residues without a finite backbone are returned unchanged and
/// split the chain. Residues with `fixed[i]` (a motif placed exactly as given) do not move.
pub fn relax_backbone(
    backbone: &[[Vec3; 3]],
    cis_allowed: Option<&[bool]>,
    fixed: Option<&[bool]>,
    options: &RelaxOptions,
) -> (Vec<[Vec3; 3]>, RelaxReport) {
    let before = backbone_geometry(backbone);
    let ok: Vec<bool> = backbone.iter().map(present).collect();
    let residues: Vec<usize> = (0..backbone.len()).filter(|&i| ok[i]).collect();
    let mut slot = vec![usize::MAX; backbone.len()];
    for (k, &i) in residues.iter().enumerate() {
        slot[i] = k;
    }
    let x0: Vec<f64> = residues
        .iter()
        .flat_map(|&i| backbone[i].iter().flat_map(|p| to_f64(p.to_owned())))
        .collect();
    let terms = bonded_terms(backbone, &ok, &slot, cis_allowed);
    let mut x = x0.clone();
    let mut report = RelaxReport {
        rmsd: 0.0,
        max_displacement: 0.0,
        stages: 0,
        final_restraint: f64::NAN,
        iterations: 0,
        before: before.clone(),
        after: before,
    };
    let residue_of: Vec<usize> = residues.iter().flat_map(|&i| [i; 3]).collect();
    let frozen: Vec<bool> = residue_of
        .iter()
        .map(|&i| fixed.is_some_and(|f| f.get(i) == Some(&true)))
        .collect();
    for &w in &options.restraint_schedule {
        let energy = Energy {
            terms: &terms,
            residue_of: &residue_of,
            frozen: &frozen,
            x0: &x0,
            restraint: w,
        };
        report.iterations += lbfgs(&energy, &mut x, options.max_iterations);
        report.stages += 1;
        report.final_restraint = w;
        report.after = backbone_geometry(&write_back(backbone, &residues, &x));
        if report.after.valid() {
            break;
        }
    }
    let out = write_back(backbone, &residues, &x);
    let (mut sum, mut max) = (0.0, 0.0f64);
    for (a, b) in x.chunks(3).zip(x0.chunks(3)) {
        let d2: f64 = (0..3).map(|k| (a[k] - b[k]).powi(2)).sum();
        sum += d2;
        max = max.max(d2.sqrt());
    }
    let atoms = x.len() / 3;
    report.rmsd = if atoms == 0 {
        0.0
    } else {
        (sum / atoms as f64).sqrt()
    };
    report.max_displacement = max;
    (out, report)
}

/// Relaxes the backbone of an atom37 chain (`sequence` one letter a residue, for the cis
/// prolines). The carbonyl O is placed anew from the relaxed N, CA, C and the next N (as the
/// decoder places it); every other atom present (a motif's side chain) moves rigidly with its
/// residue's backbone frame, so side chains stay attached. Residues in `fixed` (0-based) keep
/// every atom exactly.
pub fn relax_atom37(
    atom37: &[[Vec3; ATOM_TYPE_NUM]],
    sequence: &str,
    fixed: &[usize],
    options: &RelaxOptions,
) -> (Vec<[Vec3; ATOM_TYPE_NUM]>, RelaxReport) {
    const O: usize = 4;
    let backbone = crate::chain::atom37_backbone(atom37);
    let prolines: Vec<bool> = sequence.chars().map(|c| c == 'P').collect();
    let cis = (prolines.len() == atom37.len()).then_some(prolines.as_slice());
    let mut frozen = vec![false; atom37.len()];
    for &i in fixed.iter().filter(|&&i| i < atom37.len()) {
        frozen[i] = true;
    }
    let (relaxed, report) = relax_backbone(&backbone, cis, Some(&frozen), options);
    let ok: Vec<bool> = backbone.iter().map(present).collect();
    let mut out = atom37.to_vec();
    for i in (0..atom37.len()).filter(|&i| ok[i] && !frozen[i]) {
        let [n0, ca0, c0] = backbone[i];
        let [n1, ca1, c1] = relaxed[i];
        let (old, new) = (
            Frame::from_backbone(n0, ca0, c0),
            Frame::from_backbone(n1, ca1, c1),
        );
        for a in 0..ATOM_TYPE_NUM {
            let p = atom37[i][a];
            if [N, CA, C].contains(&a) || !p.iter().all(|v| v.is_finite()) {
                continue;
            }
            out[i][a] = new.apply(old.invert_apply(p));
        }
        out[i][N] = n1;
        out[i][CA] = ca1;
        out[i][C] = c1;
        let had_o = atom37[i][O].iter().all(|v| v.is_finite());
        if let Some(next) = relaxed.get(i + 1).filter(|_| ok[i + 1] && had_o) {
            out[i][O] = Frame::from_three_points(ca1, c1, next[0]).apply(O_LOCAL);
        }
    }
    (out, report)
}

/// `fixed` (0-based over a whole sequence) as positions within `range` of it.
pub fn fixed_within(fixed: &[usize], range: &std::ops::Range<usize>) -> Vec<usize> {
    fixed
        .iter()
        .filter(|&&i| range.contains(&i))
        .map(|&i| i - range.start)
        .collect()
}

/// [`relax_atom37`] on each chain of `AAA|BBB` alone (no bonds across a break), residues in
/// `fixed` (0-based over the whole sequence) kept; break positions come back unchanged.
/// Returns the atoms and each chain's positions with its report.
pub fn relax_chains(
    atom37: &[[Vec3; ATOM_TYPE_NUM]],
    sequence: &str,
    fixed: &[usize],
    options: &RelaxOptions,
) -> (
    Vec<[Vec3; ATOM_TYPE_NUM]>,
    Vec<(std::ops::Range<usize>, RelaxReport)>,
) {
    let letters: Vec<char> = sequence.chars().collect();
    assert_eq!(
        letters.len(),
        atom37.len(),
        "one sequence letter per residue"
    );
    let mut out = atom37.to_vec();
    let mut reports = Vec::new();
    for range in crate::chain::chain_ranges(sequence) {
        let chain: String = letters[range.clone()].iter().collect();
        let local = fixed_within(fixed, &range);
        let (relaxed, report) = relax_atom37(&atom37[range.clone()], &chain, &local, options);
        out[range.clone()].copy_from_slice(&relaxed);
        reports.push((range, report));
    }
    (out, reports)
}

fn to_f64(p: Vec3) -> [f64; 3] {
    [p[0] as f64, p[1] as f64, p[2] as f64]
}

fn write_back(backbone: &[[Vec3; 3]], residues: &[usize], x: &[f64]) -> Vec<[Vec3; 3]> {
    let mut out = backbone.to_vec();
    for (k, &i) in residues.iter().enumerate() {
        for a in 0..3 {
            let p = &x[(3 * k + a) * 3..(3 * k + a) * 3 + 3];
            out[i][a] = [p[0] as f32, p[1] as f32, p[2] as f32];
        }
    }
    out
}

/// A harmonic distance term `k (|x_a − x_b| − d0)²` between two atoms (indices into the
/// flat atom list: 3 per present residue, N, CA, C).
#[derive(Clone, Copy, Debug)]
struct Term {
    a: usize,
    b: usize,
    d0: f64,
    k: f64,
}

const K_BOND: f64 = 100.0;
const K_ANGLE: f64 = 50.0;
const K_OMEGA: f64 = 30.0;
const K_CLASH: f64 = 30.0;

/// The 1–3 distance that holds the angle between bonds `b1` and `b2` at `degrees`.
fn angle_distance(b1: f64, b2: f64, degrees: f64) -> f64 {
    (b1 * b1 + b2 * b2 - 2.0 * b1 * b2 * degrees.to_radians().cos()).sqrt()
}

fn bonded_terms(
    backbone: &[[Vec3; 3]],
    ok: &[bool],
    slot: &[usize],
    cis_allowed: Option<&[bool]>,
) -> Vec<Term> {
    let atom = |i: usize, a: usize| 3 * slot[i] + a;
    let mut terms = Vec::new();
    for i in (0..backbone.len()).filter(|&i| ok[i]) {
        let t = |a, b, d0, k| Term { a, b, d0, k };
        terms.push(t(atom(i, 0), atom(i, 1), N_CA, K_BOND));
        terms.push(t(atom(i, 1), atom(i, 2), CA_C, K_BOND));
        terms.push(t(
            atom(i, 0),
            atom(i, 2),
            angle_distance(N_CA, CA_C, ANGLE_N_CA_C),
            K_ANGLE,
        ));
        if i + 1 < backbone.len() && ok[i + 1] {
            let j = i + 1;
            terms.push(t(atom(i, 2), atom(j, 0), C_N, K_BOND));
            terms.push(t(
                atom(i, 1),
                atom(j, 0),
                angle_distance(CA_C, C_N, ANGLE_CA_C_N),
                K_ANGLE,
            ));
            terms.push(t(
                atom(i, 2),
                atom(j, 1),
                angle_distance(C_N, N_CA, ANGLE_C_N_CA),
                K_ANGLE,
            ));
            let d_in = dist(backbone[i][1], backbone[j][1]);
            // Cis only where the input really has a cis peptide's Cα–Cα: a decoder that
            // squeezes every peptide to 1–2 Å gives no evidence of cis, and keeping each such
            // proline "cis" left those bonds at 2.9 Å.
            let cis = cis_allowed.is_some_and(|c| c.get(j) == Some(&true))
                && (d_in - CA_CA_CIS).abs() <= CIS_EVIDENCE_TOLERANCE;
            let d0 = if cis { CA_CA_CIS } else { CA_CA_TRANS };
            terms.push(t(atom(i, 1), atom(j, 1), d0, K_OMEGA));
        }
    }
    terms
}

/// Energy of a configuration: bonded terms, one-sided repulsion between atoms of residues two
/// or more apart (and Cα of neighbours), and the position restraint.
struct Energy<'a> {
    terms: &'a [Term],
    /// Chain residue of each flat atom (to tell bonded neighbours from the rest).
    residue_of: &'a [usize],
    /// Atoms held in place: their gradient is zero, so no step moves them.
    frozen: &'a [bool],
    x0: &'a [f64],
    restraint: f64,
}

/// A direction for two coincident atoms, fixed by their indices so that relaxing is
/// deterministic.
fn tie_break(a: usize, b: usize) -> [f64; 3] {
    let s = (a * 7919 + b * 104_729) as f64;
    let v = [s.sin(), (s * 1.3).cos(), (s * 0.7).sin() + 0.5];
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / n, v[1] / n, v[2] / n]
}

/// Adds `k (d − d0)²` and its gradient for atoms `a`, `b`.
fn harmonic(x: &[f64], g: &mut [f64], a: usize, b: usize, d0: f64, k: f64) -> f64 {
    let diff = [
        x[3 * a] - x[3 * b],
        x[3 * a + 1] - x[3 * b + 1],
        x[3 * a + 2] - x[3 * b + 2],
    ];
    let d = (diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2]).sqrt();
    let unit = if d > 1e-9 {
        [diff[0] / d, diff[1] / d, diff[2] / d]
    } else {
        tie_break(a, b)
    };
    let e = d - d0;
    let f = 2.0 * k * e;
    for c in 0..3 {
        g[3 * a + c] += f * unit[c];
        g[3 * b + c] -= f * unit[c];
    }
    k * e * e
}

impl Energy<'_> {
    fn eval(&self, x: &[f64], g: &mut [f64]) -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let mut e = 0.0;
        for t in self.terms {
            e += harmonic(x, g, t.a, t.b, t.d0, t.k);
        }
        let atoms = x.len() / 3;
        let grid = Grid::new(
            (0..atoms).map(|i| [x[3 * i], x[3 * i + 1], x[3 * i + 2]]),
            CA_CA_MIN,
        );
        let mut pairs = Vec::new();
        grid.for_each_pair(|a, b, d| {
            let gap = self.residue_of[a].abs_diff(self.residue_of[b]);
            let both_ca = a % 3 == 1 && b % 3 == 1;
            let min = if both_ca { CA_CA_MIN } else { HEAVY_MIN };
            // Neighbours' distances are the bonded terms' business.
            if d < min && gap >= 2 {
                pairs.push((a, b, min));
            }
        });
        for (a, b, min) in pairs {
            e += harmonic(x, g, a, b, min, K_CLASH);
        }
        if self.restraint > 0.0 {
            for (i, (xi, x0)) in x.iter().zip(self.x0).enumerate() {
                let d = xi - x0;
                e += self.restraint * d * d;
                g[i] += 2.0 * self.restraint * d;
            }
        }
        for (atom, _) in self.frozen.iter().enumerate().filter(|(_, &f)| f) {
            g[3 * atom..3 * atom + 3].fill(0.0);
        }
        e
    }
}

/// Minimises `energy` from `x` in place by L-BFGS (memory 8, backtracking Armijo line
/// search); returns the iterations taken.
/// Long because the two-loop recursion, the line search and the history update share the
/// iteration's state (Nocedal & Wright, Algorithms 7.4–7.5, kept as one loop for that reason).
fn lbfgs(energy: &Energy, x: &mut [f64], max_iterations: usize) -> usize {
    const MEMORY: usize = 8;
    let n = x.len();
    if n == 0 {
        return 0;
    }
    let mut g = vec![0.0; n];
    let mut f = energy.eval(x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    for iteration in 0..max_iterations {
        let gnorm = dot(&g, &g).sqrt();
        if gnorm < 1e-4 * (n as f64).sqrt() {
            return iteration;
        }
        // Two-loop recursion: d = −H·g.
        let mut q = g.clone();
        let mut alpha = vec![0.0; s_hist.len()];
        for k in (0..s_hist.len()).rev() {
            let rho = 1.0 / dot(&y_hist[k], &s_hist[k]);
            alpha[k] = rho * dot(&s_hist[k], &q);
            q.iter_mut()
                .zip(&y_hist[k])
                .for_each(|(qi, yi)| *qi -= alpha[k] * yi);
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            // First step: at most 0.1 Å for the atom with the largest force.
            _ => 0.1 / g.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for k in 0..s_hist.len() {
            let rho = 1.0 / dot(&y_hist[k], &s_hist[k]);
            let beta = rho * dot(&y_hist[k], &q);
            q.iter_mut()
                .zip(&s_hist[k])
                .for_each(|(qi, si)| *qi += (alpha[k] - beta) * si);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&d, &g);
        if slope >= 0.0 {
            // Not a descent direction (curvature information went stale): steepest descent.
            s_hist.clear();
            y_hist.clear();
            let scale = 0.1 / g.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
            d = g.iter().map(|v| -v * scale).collect();
            slope = dot(&d, &g);
        }
        // No atom moves more than 1 Å in one step.
        let longest = d
            .chunks(3)
            .map(|c| (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt())
            .fold(0.0f64, f64::max);
        let mut step = if longest > 1.0 { 1.0 / longest } else { 1.0 };
        let mut accepted = false;
        for _ in 0..30 {
            for i in 0..n {
                x_new[i] = x[i] + step * d[i];
            }
            let f_new = energy.eval(&x_new, &mut g_new);
            if f_new <= f + 1e-4 * step * slope {
                let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
                let y: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
                if dot(&s, &y) > 1e-12 {
                    if s_hist.len() == MEMORY {
                        s_hist.remove(0);
                        y_hist.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(y);
                }
                x.copy_from_slice(&x_new);
                g.copy_from_slice(&g_new);
                let converged = (f - f_new).abs() <= 1e-10 * f.abs().max(1.0);
                f = f_new;
                accepted = true;
                if converged {
                    return iteration + 1;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            return iteration + 1;
        }
    }
    max_iterations
}

/// A uniform grid over points for finding every pair closer than `cutoff`.
struct Grid {
    points: Vec<[f64; 3]>,
    cutoff: f64,
    cells: HashMap<[i64; 3], Vec<usize>>,
}

impl Grid {
    fn new(points: impl Iterator<Item = [f64; 3]>, cutoff: f64) -> Grid {
        let points: Vec<[f64; 3]> = points.collect();
        let mut cells: HashMap<[i64; 3], Vec<usize>> = HashMap::new();
        for (i, p) in points.iter().enumerate() {
            cells.entry(Self::cell(p, cutoff)).or_default().push(i);
        }
        Grid {
            points,
            cutoff,
            cells,
        }
    }

    fn cell(p: &[f64; 3], cutoff: f64) -> [i64; 3] {
        [
            (p[0] / cutoff).floor() as i64,
            (p[1] / cutoff).floor() as i64,
            (p[2] / cutoff).floor() as i64,
        ]
    }

    /// Calls `f(a, b, distance)` once for each pair `a < b` closer than the cutoff.
    fn for_each_pair(&self, mut f: impl FnMut(usize, usize, f64)) {
        for (a, p) in self.points.iter().enumerate() {
            let c = Self::cell(p, self.cutoff);
            for dx in -1..=1 {
                for dy in -1..=1 {
                    for dz in -1..=1 {
                        let Some(list) = self.cells.get(&[c[0] + dx, c[1] + dy, c[2] + dz]) else {
                            continue;
                        };
                        for &b in list.iter().filter(|&&b| b > a) {
                            let q = &self.points[b];
                            let d = ((p[0] - q[0]).powi(2)
                                + (p[1] - q[1]).powi(2)
                                + (p[2] - q[2]).powi(2))
                            .sqrt();
                            if d < self.cutoff {
                                f(a, b, d);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    fn real_backbone(file: &str) -> Vec<[Vec3; 3]> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/structures")
            .join(file);
        crate::io::read_chain(&path, None).unwrap().backbone()
    }

    /// Deterministic Gaussian-ish noise (sum of uniforms), σ in Å.
    fn noisy(bb: &[[Vec3; 3]], sigma: f32, seed: u64) -> Vec<[Vec3; 3]> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        bb.iter()
            .map(|r| {
                r.map(|p| {
                    p.map(|v| {
                        let g: f32 = (0..12).map(|_| uniform()).sum::<f32>() - 6.0;
                        v + sigma * g
                    })
                })
            })
            .collect()
    }

    fn rmsd(a: &[[Vec3; 3]], b: &[[Vec3; 3]]) -> f64 {
        let mut s = 0.0;
        for (x, y) in a.iter().zip(b) {
            for k in 0..3 {
                s += dist(x[k], y[k]).powi(2);
            }
        }
        (s / (3 * a.len()) as f64).sqrt()
    }

    #[test]
    fn chains_relax_alone_and_breaks_stay() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/structures/biopython/1A8O.cif.gz");
        let chain = crate::io::read_chain(&path, None).unwrap();
        let noisy_atoms = |seed: u64| -> Vec<[Vec3; ATOM_TYPE_NUM]> {
            let bb = noisy(&chain.backbone(), 0.3, seed);
            let mut atoms = chain.atom37.clone();
            for (a, b) in atoms.iter_mut().zip(&bb) {
                a[N] = b[0];
                a[CA] = b[1];
                a[C] = b[2];
            }
            atoms
        };
        let (first, second) = (noisy_atoms(1), noisy_atoms(2));
        let break_row = [[f32::NAN; 3]; ATOM_TYPE_NUM];
        let mut joined = first.clone();
        joined.push(break_row);
        joined.extend_from_slice(&second);
        let sequence = format!("{}|{}", chain.sequence, chain.sequence);
        let n = first.len();
        let fixed = [2, n + 1 + 5];
        let options = RelaxOptions::default();
        let (out, reports) = relax_chains(&joined, &sequence, &fixed, &options);
        let (alone1, _) = relax_atom37(&first, &chain.sequence, &[2], &options);
        let (alone2, _) = relax_atom37(&second, &chain.sequence, &[5], &options);
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].0, 0..n);
        assert_eq!(reports[1].0, n + 1..2 * n + 1);
        let same = |a: &[[Vec3; ATOM_TYPE_NUM]], b: &[[Vec3; ATOM_TYPE_NUM]]| {
            a.iter()
                .flatten()
                .flatten()
                .zip(b.iter().flatten().flatten())
                .all(|(x, y)| x.to_bits() == y.to_bits())
        };
        assert!(same(&out[..n], &alone1));
        assert!(same(&out[n + 1..], &alone2));
        assert!(out[n].iter().flatten().all(|v| v.is_nan()));
        assert!(
            same(&out[2..3], &first[2..3]),
            "a fixed residue keeps its atoms"
        );
        assert_eq!(fixed_within(&fixed, &(n + 1..2 * n + 1)), vec![5]);
    }

    #[test]
    fn a_crystal_structure_passes_the_checks_and_barely_moves() {
        // 1A8O, X-ray 1.7 Å: real chains pass the checks the relaxation is judged by.
        let bb = real_backbone("biopython/1A8O.cif.gz");
        let g = backbone_geometry(&bb);
        assert!(g.valid(), "{g:?}");
        assert!((g.mean_ca_ca - 3.8).abs() < 0.05, "{g:?}");
        assert!(g.min_nonadjacent_ca_ca > 3.5, "{g:?}");
        let (out, report) = relax_backbone(&bb, None, None, &RelaxOptions::default());
        assert!(report.after.valid(), "{report:?}");
        assert_eq!(report.stages, 1, "{report:?}");
        assert!(report.rmsd < 0.1, "{report:?}");
        assert!((rmsd(&out, &bb) - report.rmsd).abs() < 1e-4);
    }

    #[test]
    fn noise_is_removed_close_to_the_true_chain() {
        let truth = real_backbone("biopython/1GBT.cif.gz");
        let bb = noisy(&truth, 0.4, 3);
        let before = backbone_geometry(&bb);
        assert!(!before.valid(), "{before:?}");
        let (out, report) = relax_backbone(&bb, None, None, &RelaxOptions::default());
        assert!(report.after.valid(), "{report:?}");
        // Closer to the true chain than the noisy input was, never further.
        let (to_truth, noisy_to_truth) = (rmsd(&out, &truth), rmsd(&bb, &truth));
        assert!(to_truth < noisy_to_truth, "{to_truth} vs {noisy_to_truth}");
    }

    #[test]
    fn a_collapsed_chain_becomes_a_physical_one() {
        // What a weak decoder writes: the right fold shrunk to a third (Cα–Cα ≈ 1.3 Å) with
        // jitter, most Cα pairs clashing.
        let truth = real_backbone("biopython/1A8O.cif.gz");
        let centre = truth[0][1];
        let shrunk: Vec<[Vec3; 3]> = truth
            .iter()
            .map(|r| r.map(|p| [0, 1, 2].map(|k| centre[k] + (p[k] - centre[k]) * 0.33)))
            .collect();
        let bb = noisy(&shrunk, 0.2, 11);
        let before = backbone_geometry(&bb);
        assert!(before.ca_clashes > 100, "{before:?}");
        let (out, report) = relax_backbone(&bb, None, None, &RelaxOptions::default());
        assert!(report.after.valid(), "{report:?}");
        assert_eq!(backbone_geometry(&out), report.after);
        assert!(report.after.min_nonadjacent_ca_ca >= CA_CLASH);
    }

    #[test]
    fn residues_without_backbone_stay_missing_and_split_the_chain() {
        let mut bb = real_backbone("biopython/1A8O.cif.gz");
        bb[20] = [[f32::NAN; 3]; 3];
        let (out, report) = relax_backbone(&bb, None, None, &RelaxOptions::default());
        assert!(out[20].iter().flatten().all(|v| v.is_nan()));
        assert_eq!(report.after.residues, bb.len() - 1);
        assert_eq!(report.after.peptide_bonds, bb.len() - 3);
        assert!(report.after.valid(), "{report:?}");
        let (empty, r) = relax_backbone(&[], None, None, &RelaxOptions::default());
        assert!(empty.is_empty() && r.rmsd == 0.0);
    }

    /// Three residues of a real chain, residues 1–2 moved rigidly so that Cα0–Cα1 is `d` Å.
    fn first_peptide_at(d: f64) -> Vec<[Vec3; 3]> {
        let mut bb = real_backbone("biopython/1A8O.cif.gz");
        bb.truncate(3);
        let now = dist(bb[0][1], bb[1][1]);
        let shift: Vec3 =
            [0, 1, 2].map(|k| ((bb[0][1][k] - bb[1][1][k]) as f64 * (1.0 - d / now)) as f32);
        for r in &mut bb[1..] {
            for p in r.iter_mut() {
                for k in 0..3 {
                    p[k] += shift[k];
                }
            }
        }
        bb
    }

    #[test]
    fn a_cis_proline_peptide_stays_cis_when_allowed() {
        // Residue 1 a proline whose peptide the input has cis: Cα–Cα 2.9 Å.
        let bb = first_peptide_at(CA_CA_CIS);
        let cis = [false, true, false];
        let (out, _) = relax_backbone(&bb, Some(&cis), None, &RelaxOptions::default());
        assert!((dist(out[0][1], out[1][1]) - CA_CA_CIS).abs() < 0.15);
        let (out, _) = relax_backbone(&bb, None, None, &RelaxOptions::default());
        assert!((dist(out[0][1], out[1][1]) - CA_CA_TRANS).abs() < 0.15);
    }

    #[test]
    fn a_squeezed_proline_peptide_is_not_taken_for_cis() {
        // A decoder's 1.4 Å Cα–Cα before a proline is no cis peptide: it becomes trans.
        let bb = first_peptide_at(1.4);
        let cis = [false, true, false];
        let (out, _) = relax_backbone(&bb, Some(&cis), None, &RelaxOptions::default());
        assert!(
            (dist(out[0][1], out[1][1]) - CA_CA_TRANS).abs() < 0.15,
            "{}",
            dist(out[0][1], out[1][1])
        );
    }

    #[test]
    fn atom37_side_chains_follow_their_backbone() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/structures/biopython/1A8O.cif.gz");
        let chain = crate::io::read_chain(&path, None).unwrap();
        let mut atoms = chain.atom37.clone();
        let noisy_bb = noisy(&chain.backbone(), 0.3, 5);
        for (r, b) in atoms.iter_mut().zip(&noisy_bb) {
            r[N] = b[0];
            r[CA] = b[1];
            r[C] = b[2];
        }
        let (out, report) = relax_atom37(&atoms, &chain.sequence, &[], &RelaxOptions::default());
        assert!(report.after.valid(), "{report:?}");
        const CB: usize = 3;
        for (i, (r, before)) in out.iter().zip(&atoms).enumerate() {
            let finite = |p: Vec3| p.iter().all(|v| v.is_finite());
            assert_eq!(finite(r[CB]), finite(before[CB]), "residue {i}");
            if finite(r[CB]) {
                // A rigid move keeps CA–CB what it was.
                let (d0, d1) = (dist(before[CA], before[CB]), dist(r[CA], r[CB]));
                assert!((d0 - d1).abs() < 1e-3, "residue {i}: {d0} {d1}");
            }
            if i + 1 < out.len() && finite(before[4]) {
                let co = dist(r[C], r[4]);
                assert!((co - 1.23).abs() < 0.02, "residue {i}: C–O {co}");
            }
        }
    }

    #[test]
    fn fixed_residues_do_not_move() {
        let truth = real_backbone("biopython/1A8O.cif.gz");
        let mut bb = noisy(&truth, 0.4, 9);
        for i in 10..20 {
            bb[i] = truth[i];
        }
        let fixed: Vec<bool> = (0..bb.len()).map(|i| (10..20).contains(&i)).collect();
        let (out, report) = relax_backbone(&bb, None, Some(&fixed), &RelaxOptions::default());
        assert!(report.after.valid(), "{report:?}");
        assert_eq!(&out[10..20], &truth[10..20]);
        assert_ne!(&out[..10], &bb[..10]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The analytic gradient the minimiser follows is the energy's (central differences).
        #[test]
        fn energy_gradient_matches_finite_differences(
            coords in proptest::collection::vec(-6.0f64..6.0, 36),
            restraint in 0.0f64..5.0,
        ) {
            let backbone: Vec<[Vec3; 3]> = coords
                .chunks(9)
                .map(|c| [0, 1, 2].map(|a| [0, 1, 2].map(|k| c[3 * a + k] as f32)))
                .collect();
            let ok = vec![true; 4];
            let slot: Vec<usize> = (0..4).collect();
            let terms = bonded_terms(&backbone, &ok, &slot, None);
            let residue_of: Vec<usize> = (0..4).flat_map(|i| [i; 3]).collect();
            let x0: Vec<f64> = coords.iter().map(|v| v + 0.3).collect();
            let frozen = vec![false; 12];
            let energy = Energy { terms: &terms, residue_of: &residue_of, frozen: &frozen, x0: &x0, restraint };
            let x = coords.clone();
            let mut g = vec![0.0; 36];
            energy.eval(&x, &mut g);
            let h = 1e-6;
            let mut scratch = vec![0.0; 36];
            for i in 0..36 {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += h;
                xm[i] -= h;
                let fd = (energy.eval(&xp, &mut scratch) - energy.eval(&xm, &mut scratch)) / (2.0 * h);
                // Clash terms switch on at a threshold; away from it the energy is smooth.
                prop_assert!((fd - g[i]).abs() <= 1e-3 * (1.0 + g[i].abs()), "coordinate {i}: {fd} vs {}", g[i]);
            }
        }
    }
}
