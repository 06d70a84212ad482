//! DSSP secondary structure (Kabsch & Sander 1983, with the rules of mkdssp 4) in the ESM3
//! 8-state alphabet `GHITEBSC`.
//!
//! Written by hand because no maintained Rust crate assigns DSSP, and the reference pipeline
//! shells out to mkdssp, which we must agree with residue for residue. The rules followed here
//! are mkdssp 4.x's: H-bond energies rounded to 1e-3 kcal/mol and floored at −9.9, only the two
//! best partners per residue kept, bridges only between residues ≥ 3 apart, β-bulges joining
//! ladders (gap < 6 on one strand and < 3 on the other), α-helices overriding strands, 3₁₀
//! helices only on unassigned residues, π-helices winning over α (mkdssp 4's default), then
//! turns and bends on what is left.
//!
//! mkdssp 4 also prints `P` (κ/polyproline II helix). It only ever labels residues that would
//! otherwise be loops, so the 8-state alphabet maps it to `C`; we never produce it. The blank
//! (loop) state is `C`.

use crate::frames::Vec3;

/// Backbone of one residue with all four atoms present (mkdssp skips residues missing any).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackboneResidue {
    pub n: Vec3,
    pub ca: Vec3,
    pub c: Vec3,
    pub o: Vec3,
    /// Prolines have no amide hydrogen, so they never donate an H-bond.
    pub is_proline: bool,
    /// Residues of different chains are never covalently linked.
    pub chain: u32,
}

/// mkdssp's electrostatic constant q1·q2·f = −0.42·0.20·332 (kcal/mol·Å).
const COUPLING_CONSTANT: f64 = -27.888;
/// An H-bond exists when its energy is below this (kcal/mol).
const MAX_HBOND_ENERGY: f64 = -0.5;
/// Energies are floored here; also the value for atoms closer than `MINIMAL_DISTANCE`.
const MIN_HBOND_ENERGY: f64 = -9.9;
const MINIMAL_DISTANCE: f32 = 0.5;
/// Pairs with CA atoms this far apart (Å) are not tested for H-bonds.
const MINIMAL_CA_DISTANCE: f32 = 9.0;
/// A peptide C–N longer than this (Å) is a chain break.
const MAX_PEPTIDE_BOND_LENGTH: f32 = 2.5;
/// CA(i−2)–CA(i)–CA(i+2) direction change above which residue i is a bend (degrees).
const BEND_ANGLE: f64 = 70.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ss {
    Loop,
    Alpha,
    Bridge,
    Strand,
    Helix3,
    Helix5,
    Turn,
    Bend,
}

impl Ss {
    fn letter(self) -> u8 {
        match self {
            Ss::Loop => b'C',
            Ss::Alpha => b'H',
            Ss::Bridge => b'B',
            Ss::Strand => b'E',
            Ss::Helix3 => b'G',
            Ss::Helix5 => b'I',
            Ss::Turn => b'T',
            Ss::Bend => b'S',
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum HelixFlag {
    None,
    Start,
    End,
    StartAndEnd,
    Middle,
}

#[derive(Clone, Copy, Debug)]
struct HBond {
    partner: usize,
    energy: f64,
}

const NO_BOND: HBond = HBond {
    partner: usize::MAX,
    energy: 0.0,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BridgeType {
    Parallel,
    Antiparallel,
}

#[derive(Clone, Debug)]
struct Ladder {
    kind: BridgeType,
    i: Vec<u32>,
    j: std::collections::VecDeque<u32>,
}

fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn distance(a: Vec3, b: Vec3) -> f32 {
    let d = sub(a, b);
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Assigns one `GHITEBSC` letter per residue. Chain breaks are found from the chain ids and the
/// C–N peptide distance, as mkdssp does.
pub fn assign(residues: &[BackboneResidue]) -> Vec<u8> {
    Dssp::new(residues).run()
}

struct Dssp<'a> {
    res: &'a [BackboneResidue],
    /// `breaks_before[i]`: residue i is not bonded to residue i−1.
    breaks_before: Vec<bool>,
    /// Amide hydrogen of each residue (equal to N where there is no preceding C=O).
    hydrogen: Vec<Vec3>,
    /// Best two acceptors (O partners) of each residue's N–H, and best two donors of its C=O.
    acceptors: Vec<[HBond; 2]>,
    donors: Vec<[HBond; 2]>,
    ss: Vec<Ss>,
    helix: [Vec<HelixFlag>; 3],
}

impl<'a> Dssp<'a> {
    fn new(res: &'a [BackboneResidue]) -> Self {
        let n = res.len();
        let breaks_before: Vec<bool> = (0..n)
            .map(|i| {
                i > 0
                    && (res[i].chain != res[i - 1].chain
                        || distance(res[i - 1].c, res[i].n) > MAX_PEPTIDE_BOND_LENGTH)
            })
            .collect();
        // mkdssp places H from the previous residue of the same chain even across a gap.
        let hydrogen = (0..n)
            .map(|i| {
                let r = &res[i];
                if i == 0 || r.is_proline || res[i - 1].chain != r.chain {
                    return r.n;
                }
                let (pc, po) = (res[i - 1].c, res[i - 1].o);
                let co = distance(pc, po);
                [
                    r.n[0] + (pc[0] - po[0]) / co,
                    r.n[1] + (pc[1] - po[1]) / co,
                    r.n[2] + (pc[2] - po[2]) / co,
                ]
            })
            .collect();
        Dssp {
            res,
            breaks_before,
            hydrogen,
            acceptors: vec![[NO_BOND; 2]; n],
            donors: vec![[NO_BOND; 2]; n],
            ss: vec![Ss::Loop; n],
            helix: [
                vec![HelixFlag::None; n],
                vec![HelixFlag::None; n],
                vec![HelixFlag::None; n],
            ],
        }
    }

    fn run(mut self) -> Vec<u8> {
        self.hbonds();
        self.sheets();
        self.helices();
        self.turns_and_bends();
        self.ss.iter().map(|s| s.letter()).collect()
    }

    /// True when residues `a..=b` form one unbroken stretch of a chain.
    fn no_chain_break(&self, a: usize, b: usize) -> bool {
        (a + 1..=b).all(|i| !self.breaks_before[i])
    }

    fn hbond_energy(&self, donor: usize, acceptor: usize) -> f64 {
        if self.res[donor].is_proline {
            return 0.0;
        }
        let h = self.hydrogen[donor];
        let n = self.res[donor].n;
        let (c, o) = (self.res[acceptor].c, self.res[acceptor].o);
        let d_ho = distance(h, o);
        let d_hc = distance(h, c);
        let d_nc = distance(n, c);
        let d_no = distance(n, o);
        let energy = if d_ho < MINIMAL_DISTANCE
            || d_hc < MINIMAL_DISTANCE
            || d_nc < MINIMAL_DISTANCE
            || d_no < MINIMAL_DISTANCE
        {
            MIN_HBOND_ENERGY
        } else {
            COUPLING_CONSTANT / d_ho as f64 - COUPLING_CONSTANT / d_hc as f64
                + COUPLING_CONSTANT / d_nc as f64
                - COUPLING_CONSTANT / d_no as f64
        };
        ((energy * 1000.0).round() / 1000.0).max(MIN_HBOND_ENERGY)
    }

    fn record_hbond(&mut self, donor: usize, acceptor: usize) {
        let energy = self.hbond_energy(donor, acceptor);
        insert_best(&mut self.acceptors[donor], acceptor, energy);
        insert_best(&mut self.donors[acceptor], donor, energy);
    }

    fn hbonds(&mut self) {
        let n = self.res.len();
        // A uniform grid keeps the CA-distance screen linear in the number of residues while
        // visiting pairs in mkdssp's order (i ascending, then j ascending), which decides ties.
        let ca: Vec<Vec3> = self.res.iter().map(|r| r.ca).collect();
        let grid = Grid::new(&ca, MINIMAL_CA_DISTANCE);
        let mut near = Vec::new();
        for i in 0..n {
            near.clear();
            grid.neighbours(ca[i], |j| {
                if j > i && distance(ca[i], ca[j]) < MINIMAL_CA_DISTANCE {
                    near.push(j);
                }
            });
            near.sort_unstable();
            for &j in &near {
                self.record_hbond(i, j);
                if j != i + 1 {
                    self.record_hbond(j, i);
                }
            }
        }
    }

    /// N–H of `donor` is bonded to C=O of `acceptor`.
    fn test_bond(&self, donor: usize, acceptor: usize) -> bool {
        self.acceptors[donor]
            .iter()
            .any(|b| b.partner == acceptor && b.energy < MAX_HBOND_ENERGY)
    }

    fn test_bridge(&self, i: usize, j: usize) -> Option<BridgeType> {
        let n = self.res.len();
        if i == 0 || j == 0 || i + 1 >= n || j + 1 >= n {
            return None;
        }
        let (a, b, c) = (i - 1, i, i + 1);
        let (d, e, f) = (j - 1, j, j + 1);
        if !self.no_chain_break(a, c) || !self.no_chain_break(d, f) {
            return None;
        }
        if (self.test_bond(c, e) && self.test_bond(e, a))
            || (self.test_bond(f, b) && self.test_bond(b, d))
        {
            Some(BridgeType::Parallel)
        } else if (self.test_bond(c, d) && self.test_bond(f, a))
            || (self.test_bond(e, b) && self.test_bond(b, e))
        {
            Some(BridgeType::Antiparallel)
        } else {
            None
        }
    }

    /// β-ladders from the bridges, joined across β-bulges, then numbered into sheets and
    /// written as E/B, as mkdssp's `CalculateBetaSheets` does. Long because it follows that
    /// function step by step (its unsigned-gap quirk included), so the two read side by side.
    fn sheets(&mut self) {
        let n = self.res.len();
        let mut ladders: Vec<Ladder> = Vec::new();
        for i in 1..n.saturating_sub(4) {
            for j in i + 3..n.saturating_sub(1) {
                let Some(kind) = self.test_bridge(i, j) else {
                    continue;
                };
                let (iu, ju) = (i as u32, j as u32);
                let extended = ladders.iter_mut().any(|l| {
                    if l.kind != kind || iu != l.i.last().unwrap() + 1 {
                        return false;
                    }
                    match kind {
                        BridgeType::Parallel if l.j.back().unwrap() + 1 == ju => {
                            l.i.push(iu);
                            l.j.push_back(ju);
                            true
                        }
                        BridgeType::Antiparallel if l.j.front().unwrap().wrapping_sub(1) == ju => {
                            l.i.push(iu);
                            l.j.push_front(ju);
                            true
                        }
                        _ => false,
                    }
                });
                if !extended {
                    ladders.push(Ladder {
                        kind,
                        i: vec![iu],
                        j: [ju].into(),
                    });
                }
            }
        }
        ladders.sort_by_key(|l| (self.res[l.i[0] as usize].chain, l.i[0]));

        // Join ladders separated by a β-bulge. The differences are unsigned in mkdssp, so a
        // "negative" gap wraps around and never counts as small.
        let mut a = 0;
        while a < ladders.len() {
            let mut b = a + 1;
            while b < ladders.len() {
                let (x, y) = (&ladders[a], &ladders[b]);
                let (ibi, iei) = (x.i[0], *x.i.last().unwrap());
                let (jbi, jei) = (*x.j.front().unwrap(), *x.j.back().unwrap());
                let (ibj, iej) = (y.i[0], *y.i.last().unwrap());
                let (jbj, jej) = (*y.j.front().unwrap(), *y.j.back().unwrap());
                let skip = x.kind != y.kind
                    || !self.no_chain_break(ibi.min(ibj) as usize, iei.max(iej) as usize)
                    || !self.no_chain_break(jbi.min(jbj) as usize, jei.max(jej) as usize)
                    || ibj.wrapping_sub(iei) >= 6
                    || (iei >= ibj && ibi <= iej);
                if !skip {
                    let bulge = match x.kind {
                        BridgeType::Parallel => {
                            (jbj.wrapping_sub(jei) < 6 && ibj.wrapping_sub(iei) < 3)
                                || jbj.wrapping_sub(jei) < 3
                        }
                        BridgeType::Antiparallel => {
                            (jbi.wrapping_sub(jej) < 6 && ibj.wrapping_sub(iei) < 3)
                                || jbi.wrapping_sub(jej) < 3
                        }
                    };
                    if bulge {
                        let y = ladders.remove(b);
                        let x = &mut ladders[a];
                        x.i.extend(y.i);
                        match x.kind {
                            BridgeType::Parallel => x.j.extend(y.j),
                            BridgeType::Antiparallel => {
                                for v in y.j.into_iter().rev() {
                                    x.j.push_front(v);
                                }
                            }
                        }
                        continue;
                    }
                }
                b += 1;
            }
            a += 1;
        }

        for l in &ladders {
            let ss = if l.i.len() > 1 {
                Ss::Strand
            } else {
                Ss::Bridge
            };
            let ranges = [
                (l.i[0], *l.i.last().unwrap()),
                (*l.j.front().unwrap(), *l.j.back().unwrap()),
            ];
            for (lo, hi) in ranges {
                for k in lo..=hi {
                    if self.ss[k as usize] != Ss::Strand {
                        self.ss[k as usize] = ss;
                    }
                }
            }
        }
    }

    fn is_helix_start(&self, i: usize, stride: usize) -> bool {
        matches!(
            self.helix[stride - 3][i],
            HelixFlag::Start | HelixFlag::StartAndEnd
        )
    }

    fn helices(&mut self) {
        let n = self.res.len();
        for stride in 3..=5 {
            for i in 0..n.saturating_sub(stride) {
                if self.no_chain_break(i, i + stride) && self.test_bond(i + stride, i) {
                    let flags = &mut self.helix[stride - 3];
                    flags[i + stride] = HelixFlag::End;
                    for flag in &mut flags[i + 1..i + stride] {
                        if *flag == HelixFlag::None {
                            *flag = HelixFlag::Middle;
                        }
                    }
                    flags[i] = if flags[i] == HelixFlag::End {
                        HelixFlag::StartAndEnd
                    } else {
                        HelixFlag::Start
                    };
                }
            }
        }
        for i in 1..n.saturating_sub(4) {
            if self.is_helix_start(i, 4) && self.is_helix_start(i - 1, 4) {
                self.ss[i..=i + 3].fill(Ss::Alpha);
            }
        }
        for i in 1..n.saturating_sub(3) {
            if self.is_helix_start(i, 3) && self.is_helix_start(i - 1, 3) {
                let free = self.ss[i..=i + 2]
                    .iter()
                    .all(|s| matches!(s, Ss::Loop | Ss::Helix3));
                if free {
                    self.ss[i..=i + 2].fill(Ss::Helix3);
                }
            }
        }
        for i in 1..n.saturating_sub(5) {
            if self.is_helix_start(i, 5) && self.is_helix_start(i - 1, 5) {
                let free = self.ss[i..=i + 4]
                    .iter()
                    .all(|s| matches!(s, Ss::Loop | Ss::Helix5 | Ss::Alpha));
                if free {
                    self.ss[i..=i + 4].fill(Ss::Helix5);
                }
            }
        }
    }

    fn is_bend(&self, i: usize) -> bool {
        let n = self.res.len();
        if i < 2 || i + 2 >= n || !self.no_chain_break(i - 2, i + 2) {
            return false;
        }
        let ca = |k: usize| self.res[k].ca.map(|v| v as f64);
        let (p0, p1, p2) = (ca(i - 2), ca(i), ca(i + 2));
        let u = [p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]];
        let v = [p2[0] - p1[0], p2[1] - p1[1], p2[2] - p1[2]];
        let dot = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
        let norm = ((u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
            * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]))
            .sqrt();
        if norm <= 0.0 {
            return false;
        }
        (dot / norm).clamp(-1.0, 1.0).acos().to_degrees() > BEND_ANGLE
    }

    fn turns_and_bends(&mut self) {
        let n = self.res.len();
        for i in 1..n.saturating_sub(1) {
            if self.ss[i] != Ss::Loop {
                continue;
            }
            let turn = (3..=5)
                .any(|stride| (1..stride).any(|k| i >= k && self.is_helix_start(i - k, stride)));
            if turn {
                self.ss[i] = Ss::Turn;
            } else if self.is_bend(i) {
                self.ss[i] = Ss::Bend;
            }
        }
    }
}

fn insert_best(slots: &mut [HBond; 2], partner: usize, energy: f64) {
    if energy < slots[0].energy {
        slots[1] = slots[0];
        slots[0] = HBond { partner, energy };
    } else if energy < slots[1].energy {
        slots[1] = HBond { partner, energy };
    }
}

/// Uniform cubic grid for fixed-radius neighbour queries (cells of the query radius, so the
/// 27 surrounding cells hold every candidate).
pub(crate) struct Grid {
    cell: f32,
    map: std::collections::HashMap<[i32; 3], Vec<usize>>,
}

impl Grid {
    pub(crate) fn new(points: &[Vec3], cell: f32) -> Self {
        let mut map: std::collections::HashMap<[i32; 3], Vec<usize>> =
            std::collections::HashMap::new();
        for (i, p) in points.iter().enumerate() {
            map.entry(Self::key(*p, cell)).or_default().push(i);
        }
        Grid { cell, map }
    }

    fn key(p: Vec3, cell: f32) -> [i32; 3] {
        p.map(|v| (v / cell).floor() as i32)
    }

    pub(crate) fn neighbours(&self, p: Vec3, mut visit: impl FnMut(usize)) {
        let k = Self::key(p, self.cell);
        for dx in -1..=1 {
            for dy in -1..=1 {
                for dz in -1..=1 {
                    if let Some(list) = self.map.get(&[k[0] + dx, k[1] + dy, k[2] + dz]) {
                        list.iter().for_each(|&i| visit(i));
                    }
                }
            }
        }
    }
}

/// The state written where DSSP cannot assign one (a residue missing N, CA, C or O).
pub const UNASSIGNED: u8 = b'-';

/// SS8 strings of protein chains assigned together (H-bonds and sheets across chains count,
/// as when mkdssp reads the whole file). Residues without a complete backbone are skipped by
/// the assignment, as mkdssp skips them, and get [`UNASSIGNED`].
pub fn assign_chains(chains: &[&crate::ProteinChain]) -> Vec<String> {
    use crate::residue_constants::{C, CA, N, O};
    let mut residues = Vec::new();
    let mut owners = Vec::new();
    for (k, chain) in chains.iter().enumerate() {
        for (i, (atoms, letter)) in chain.atom37.iter().zip(chain.sequence.chars()).enumerate() {
            let complete = [N, CA, C, O]
                .iter()
                .all(|&a| atoms[a].iter().all(|v| v.is_finite()));
            if complete {
                residues.push(BackboneResidue {
                    n: atoms[N],
                    ca: atoms[CA],
                    c: atoms[C],
                    o: atoms[O],
                    is_proline: letter == 'P',
                    chain: k as u32,
                });
                owners.push((k, i));
            }
        }
    }
    let letters = assign(&residues);
    let mut out: Vec<Vec<u8>> = chains.iter().map(|c| vec![UNASSIGNED; c.len()]).collect();
    for ((k, i), letter) in owners.into_iter().zip(letters) {
        out[k][i] = letter;
    }
    out.into_iter()
        .map(|v| String::from_utf8(v).expect("ASCII letters"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ideal α-helix backbone (rise 1.5 Å, 100° per residue) built from internal geometry.
    fn ideal_helix(n: usize) -> Vec<BackboneResidue> {
        // Cylindrical coordinates of N, CA, C, O for an α-helix (radius, phase offset, rise offset).
        let atom = |r: f32, phase: f32, dz: f32, i: usize| -> Vec3 {
            let a = (i as f32 * 100.0 + phase).to_radians();
            [r * a.cos(), r * a.sin(), 1.5 * i as f32 + dz]
        };
        (0..n)
            .map(|i| BackboneResidue {
                n: atom(1.55, -28.0, -0.87, i),
                ca: atom(2.3, 0.0, 0.0, i),
                c: atom(1.65, 28.0, 0.8, i),
                o: atom(1.85, 40.0, 2.0, i),
                is_proline: false,
                chain: 0,
            })
            .collect()
    }

    #[test]
    fn empty_and_tiny_inputs_are_loops() {
        assert!(assign(&[]).is_empty());
        let h = ideal_helix(3);
        assert_eq!(assign(&h), b"CCC".to_vec());
    }

    #[test]
    fn a_chain_break_stops_helix_bonds_across_it() {
        let mut h = ideal_helix(30);
        // Moving the second half far away breaks every bond across the gap.
        for r in &mut h[15..] {
            for p in [&mut r.n, &mut r.ca, &mut r.c, &mut r.o] {
                p[0] += 100.0;
            }
        }
        let ss = assign(&h);
        assert_eq!(ss[14], b'C');
        assert_eq!(ss[15], b'C');
    }
}
