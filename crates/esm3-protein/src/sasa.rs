//! Solvent-accessible surface area by Shrake–Rupley, as the reference pipeline computes it
//! (`ProteinChain.sasa()` → `biotite.structure.sasa` with its defaults: ProtOr radii, probe
//! 1.4 Å, 1000 Fibonacci points per atom, heavy atoms only, per-residue sums).
//!
//! Written by hand because no maintained Rust crate offers Shrake–Rupley with biotite's point
//! set and radii; the arithmetic is kept in `f32` as biotite's is, so the results agree with it
//! to rounding, not merely statistically.

use crate::dssp::Grid;
use crate::frames::Vec3;

/// The reference's solvent probe radius (Å).
pub const PROBE_RADIUS: f32 = 1.4;
/// biotite's default number of points on each atom sphere.
pub const SPHERE_POINTS: usize = 1000;
/// biotite's radius for atoms that have no ProtOr group.
pub const DEFAULT_RADIUS: f32 = 1.8;

/// Unit-sphere points on a golden-section spiral, in biotite's order and precision.
pub fn fibonacci_sphere(n: usize) -> Vec<Vec3> {
    let golden = (3.0 - 5f64.sqrt()) * std::f64::consts::PI;
    let nf = n as f64;
    let (z0, z1) = (1.0 - 1.0 / nf, 1.0 / nf - 1.0);
    (0..n)
        .map(|k| {
            let phi = golden * k as f64;
            // numpy.linspace: start + k·step, with the last point set exactly to the stop.
            let z = if n > 1 && k == n - 1 {
                z1
            } else if n > 1 {
                z0 + k as f64 * ((z1 - z0) / (nf - 1.0))
            } else {
                z0
            };
            let r = (1.0 - z * z).sqrt();
            [(r * phi.cos()) as f32, (r * phi.sin()) as f32, z as f32]
        })
        .collect()
}

/// ProtOr van der Waals radius (Tsai et al. 1999) of a heavy atom of a standard amino acid,
/// given by its 3-letter residue name and PDB atom name.
///
/// ProtOr groups atoms by element, number of bonded atoms and number of bonded hydrogens in
/// the free amino acid (as biotite derives them from the chemical component dictionary), so
/// the terminal OXT and the hydroxyl-like carboxyl oxygens count as protonated. Atoms without a
/// group get [`DEFAULT_RADIUS`], as in biotite.
pub fn protor_radius(residue: &str, atom: &str) -> f32 {
    // Carbon groups: sp3 (1.88), aromatic/sp2 with one H (1.76), sp2 without H (1.61).
    const SP2_BARE: &[(&str, &str)] = &[
        ("ARG", "CZ"),
        ("ASN", "CG"),
        ("ASP", "CG"),
        ("GLN", "CD"),
        ("GLU", "CD"),
        ("HIS", "CG"),
        ("PHE", "CG"),
        ("TRP", "CG"),
        ("TRP", "CD2"),
        ("TRP", "CE2"),
        ("TYR", "CG"),
        ("TYR", "CZ"),
    ];
    const SP2_CH: &[(&str, &str)] = &[
        ("HIS", "CD2"),
        ("HIS", "CE1"),
        ("PHE", "CD1"),
        ("PHE", "CD2"),
        ("PHE", "CE1"),
        ("PHE", "CE2"),
        ("PHE", "CZ"),
        ("TRP", "CD1"),
        ("TRP", "CE3"),
        ("TRP", "CH2"),
        ("TRP", "CZ2"),
        ("TRP", "CZ3"),
        ("TYR", "CD1"),
        ("TYR", "CD2"),
        ("TYR", "CE1"),
        ("TYR", "CE2"),
    ];
    // Oxygens with a hydrogen in the component dictionary (hydroxyls, one carboxyl O, OXT).
    const OH: &[(&str, &str)] = &[
        ("SER", "OG"),
        ("THR", "OG1"),
        ("TYR", "OH"),
        ("ASP", "OD2"),
        ("GLU", "OE2"),
    ];
    let key = (residue, atom);
    match atom {
        "N" => 1.64,
        "CA" => 1.88,
        "C" => 1.61,
        "O" => 1.42,
        "OXT" => 1.46,
        _ if SP2_BARE.contains(&key) => 1.61,
        _ if SP2_CH.contains(&key) => 1.76,
        _ if OH.contains(&key) => 1.46,
        _ => match atom.as_bytes().first() {
            Some(b'C') => 1.88,
            Some(b'N') => 1.64,
            Some(b'S') => 1.77,
            Some(b'O') => 1.42,
            _ => DEFAULT_RADIUS,
        },
    }
}

/// Accessible surface area (Å²) of every atom of a set of spheres.
///
/// `radii` are van der Waals radii; the probe is added here. Atoms at exactly the same
/// position do not occlude each other, as in biotite.
pub fn shrake_rupley(coords: &[Vec3], radii: &[f32], probe: f32, n_points: usize) -> Vec<f32> {
    assert_eq!(coords.len(), radii.len(), "one radius per atom");
    if coords.is_empty() {
        return Vec::new();
    }
    let sphere = fibonacci_sphere(n_points);
    let expanded: Vec<f32> = radii.iter().map(|r| r + probe).collect();
    let max_radius = expanded.iter().cloned().fold(0.0f32, f32::max);
    let grid = Grid::new(coords, 2.0 * max_radius);
    let area_per_point = (4.0 * std::f64::consts::PI / n_points as f64) as f32;

    let mut occluders: Vec<[f32; 4]> = Vec::new();
    (0..coords.len())
        .map(|i| {
            let a = coords[i];
            let r = expanded[i];
            occluders.clear();
            grid.neighbours(a, |j| {
                let rj = expanded[j];
                let d2 = dist_sq(a, coords[j]);
                if d2 != 0.0 && d2 < (rj + r) * (rj + r) {
                    occluders.push([coords[j][0], coords[j][1], coords[j][2], rj * rj]);
                }
            });
            // Nearest occluders first, so most buried points are rejected after one test.
            occluders.sort_by(|x, y| {
                dist_sq(a, [x[0], x[1], x[2]]).total_cmp(&dist_sq(a, [y[0], y[1], y[2]]))
            });
            let mut last_hit = 0usize;
            let mut accessible = 0u32;
            for p in &sphere {
                let q = [p[0] * r + a[0], p[1] * r + a[1], p[2] * r + a[2]];
                let buried = |o: &[f32; 4]| dist_sq(q, [o[0], o[1], o[2]]) < o[3];
                if !occluders.is_empty() && buried(&occluders[last_hit]) {
                    continue;
                }
                match occluders.iter().position(buried) {
                    Some(k) => last_hit = k,
                    None => accessible += 1,
                }
            }
            area_per_point * accessible as f32 * (r * r)
        })
        .collect()
}

fn dist_sq(a: Vec3, b: Vec3) -> f32 {
    let (dx, dy, dz) = (b[0] - a[0], b[1] - a[1], b[2] - a[2]);
    dx * dx + dy * dy + dz * dz
}

/// Sums atom areas into residues (`residue_of_atom[k]` < `n_residues`), in `f64` as numpy's
/// `bincount` does. Residues without atoms get 0.
pub fn per_residue(atom_sasa: &[f32], residue_of_atom: &[usize], n_residues: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n_residues];
    for (&a, &r) in atom_sasa.iter().zip(residue_of_atom) {
        out[r] += a as f64;
    }
    out
}

/// Per-residue SASA (Å²) of protein chains computed together, from every present atom37 atom
/// with its ProtOr radius, as the reference's `ProteinChain.sasa()` does for one chain.
/// Residues without atoms get 0, as `bincount` gives them.
pub fn chains_sasa(chains: &[&crate::ProteinChain]) -> Vec<Vec<f64>> {
    use crate::residue_constants::{one_to_three, ATOM_TYPES};
    let (mut coords, mut radii, mut owner) = (Vec::new(), Vec::new(), Vec::new());
    for (k, chain) in chains.iter().enumerate() {
        for (i, (atoms, letter)) in chain.atom37.iter().zip(chain.sequence.chars()).enumerate() {
            let residue = one_to_three(letter);
            for (slot, p) in atoms.iter().enumerate() {
                if p.iter().all(|v| v.is_finite()) {
                    coords.push(*p);
                    radii.push(protor_radius(residue, ATOM_TYPES[slot]));
                    owner.push((k, i));
                }
            }
        }
    }
    let atom_sasa = shrake_rupley(&coords, &radii, PROBE_RADIUS, SPHERE_POINTS);
    let mut out: Vec<Vec<f64>> = chains.iter().map(|c| vec![0.0; c.len()]).collect();
    for (a, (k, i)) in atom_sasa.into_iter().zip(owner) {
        out[k][i] += a as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_sphere_has_full_area() {
        let area = shrake_rupley(&[[1.0, 2.0, 3.0]], &[1.88], PROBE_RADIUS, SPHERE_POINTS)[0];
        let r = 1.88f64 + 1.4;
        let exact = 4.0 * std::f64::consts::PI * r * r;
        assert!(
            (area as f64 - exact).abs() < 1e-3 * exact,
            "{area} vs {exact}"
        );
    }

    #[test]
    fn two_overlapping_spheres_match_the_cap_formula() {
        // Exposed area of a sphere cut by another: 2πR(R + h) with h the signed cap offset.
        let d = 3.0f64;
        let (r1, r2) = (1.64 + 1.4, 1.88 + 1.4);
        let areas = shrake_rupley(
            &[[0.0; 3], [d as f32, 0.0, 0.0]],
            &[1.64, 1.88],
            PROBE_RADIUS,
            SPHERE_POINTS,
        );
        let x = (d * d + r1 * r1 - r2 * r2) / (2.0 * d);
        let exact = 2.0 * std::f64::consts::PI * r1 * (r1 + x);
        assert!(
            (areas[0] as f64 - exact).abs() < 0.01 * exact,
            "{} vs {exact}",
            areas[0]
        );
    }

    #[test]
    fn fibonacci_points_are_on_the_unit_sphere() {
        for p in fibonacci_sphere(1000) {
            let n = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            assert!((n - 1.0).abs() < 1e-5);
        }
    }
}
