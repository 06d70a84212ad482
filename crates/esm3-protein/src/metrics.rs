//! Structure comparison metrics with the reference's conventions (spec §10): Kabsch
//! superposition and RMSD, LDDT, GDT-TS, contact precision, and TM-score with TM-align's
//! alignment search ([`tmscore`]).
//!
//! All functions take paired point lists (`mobile[k]` corresponds to `target[k]`) and a mask of
//! the points to use; they work in `f64`.

pub mod tmscore;

use crate::frames::Vec3;
use nalgebra::{Matrix3, Vector3};

/// A rigid motion `x ↦ rotation·x + translation` that moves the mobile points onto the target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Superposition {
    pub rotation: Matrix3<f64>,
    pub translation: Vector3<f64>,
}

impl Superposition {
    pub fn apply(&self, p: Vec3) -> Vector3<f64> {
        self.rotation * to_vector(p) + self.translation
    }
}

pub(crate) fn to_vector(p: Vec3) -> Vector3<f64> {
    Vector3::new(p[0] as f64, p[1] as f64, p[2] as f64)
}

fn selected<'a>(
    mobile: &'a [Vec3],
    target: &'a [Vec3],
    mask: Option<&'a [bool]>,
) -> impl Iterator<Item = (Vector3<f64>, Vector3<f64>)> + 'a {
    assert_eq!(mobile.len(), target.len(), "paired point lists");
    if let Some(m) = mask {
        assert_eq!(m.len(), mobile.len(), "one mask entry per point");
    }
    (0..mobile.len())
        .filter(move |&k| !matches!(mask, Some(m) if !m[k]))
        .map(move |k| (to_vector(mobile[k]), to_vector(target[k])))
}

/// Least-squares rigid superposition (Kabsch) of the masked `mobile` points onto `target`.
/// `None` when no point is selected.
///
/// Unlike the reference's `compute_alignment_tensors`, the determinant is corrected so the
/// result is always a proper rotation; the two agree whenever the best orthogonal fit is a
/// rotation, which is the case for any real pair of protein structures.
pub fn superpose(mobile: &[Vec3], target: &[Vec3], mask: Option<&[bool]>) -> Option<Superposition> {
    let pairs: Vec<_> = selected(mobile, target, mask).collect();
    kabsch(&pairs)
}

pub(crate) fn kabsch(pairs: &[(Vector3<f64>, Vector3<f64>)]) -> Option<Superposition> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let cm = pairs.iter().map(|p| p.0).sum::<Vector3<f64>>() / n;
    let ct = pairs.iter().map(|p| p.1).sum::<Vector3<f64>>() / n;
    let mut h = Matrix3::zeros();
    for (m, t) in pairs {
        h += (m - cm) * (t - ct).transpose();
    }
    let svd = h.svd(true, true);
    let (u, v_t) = (svd.u?, svd.v_t?);
    let mut d = Matrix3::identity();
    if (v_t.transpose() * u.transpose()).determinant() < 0.0 {
        d[(2, 2)] = -1.0;
    }
    let rotation = v_t.transpose() * d * u.transpose();
    Some(Superposition {
        rotation,
        translation: ct - rotation * cm,
    })
}

/// RMSD of the masked points as given (no superposition).
pub fn rmsd_no_superposition(a: &[Vec3], b: &[Vec3], mask: Option<&[bool]>) -> Option<f64> {
    let (sum, count) = selected(a, b, mask).fold((0.0, 0usize), |(s, c), (x, y)| {
        (s + (x - y).norm_squared(), c + 1)
    });
    (count > 0).then(|| (sum / count as f64).sqrt())
}

/// RMSD after optimal superposition of the masked points, with the superposition used.
pub fn superposed_rmsd(
    mobile: &[Vec3],
    target: &[Vec3],
    mask: Option<&[bool]>,
) -> Option<(f64, Superposition)> {
    let s = superpose(mobile, target, mask)?;
    let (sum, count) = selected(mobile, target, mask).fold((0.0, 0usize), |(acc, c), (m, t)| {
        (
            acc + (s.rotation * m + s.translation - t).norm_squared(),
            c + 1,
        )
    });
    Some(((sum / count as f64).sqrt(), s))
}

/// RMSD after superposition in the reference's convention (`compute_affine_and_rmsd`): the
/// squared deviations are divided by 3·N, i.e. the root mean square per *coordinate*, which is
/// the usual per-atom RMSD divided by √3 (a reference QUIRK; TM-align and PyMOL report the
/// per-atom value, [`superposed_rmsd`]).
pub fn reference_rmsd(mobile: &[Vec3], target: &[Vec3], mask: Option<&[bool]>) -> Option<f64> {
    superposed_rmsd(mobile, target, mask).map(|(r, _)| r / 3f64.sqrt())
}

/// LDDT scores: the global value and one per point.
#[derive(Clone, Debug, PartialEq)]
pub struct Lddt {
    pub global: f64,
    pub per_point: Vec<f64>,
}

/// The reference's LDDT radius (Å).
pub const LDDT_CUTOFF: f64 = 15.0;
const LDDT_EPS: f64 = 1e-10;

/// LDDT of `predicted` against `truth` as the reference's `compute_lddt` computes it: pairs
/// within `cutoff` in the true structure, both present in `mask` (the true structure's atoms),
/// scored with thresholds 0.5, 1, 2, 4 Å; distances are √(ε + d²) with ε = 1e-10.
///
/// A point with no scored pair gets 1.0 (the reference's ε/ε). For CA-LDDT pass CA points;
/// for all-atom LDDT pass every atom37 slot flattened.
pub fn lddt(predicted: &[Vec3], truth: &[Vec3], mask: &[bool], cutoff: f64) -> Lddt {
    assert_eq!(predicted.len(), truth.len(), "paired point lists");
    assert_eq!(mask.len(), truth.len(), "one mask entry per point");
    let n = truth.len();
    let dist = |p: &[Vec3], i: usize, j: usize| {
        let d = to_vector(p[i]) - to_vector(p[j]);
        (LDDT_EPS + d.norm_squared()).sqrt()
    };
    let (mut total_score, mut total_pairs) = (0.0, 0.0);
    let per_point = (0..n)
        .map(|i| {
            let (mut score, mut pairs) = (0.0, 0.0);
            if mask[i] {
                for j in (0..n).filter(|&j| j != i && mask[j]) {
                    let d_true = dist(truth, i, j);
                    if d_true >= cutoff {
                        continue;
                    }
                    let delta = (d_true - dist(predicted, i, j)).abs();
                    let hits = [0.5, 1.0, 2.0, 4.0].iter().filter(|&&t| delta < t).count();
                    score += 0.25 * hits as f64;
                    pairs += 1.0;
                }
            }
            total_score += score;
            total_pairs += pairs;
            (LDDT_EPS + score) / (LDDT_EPS + pairs)
        })
        .collect();
    Lddt {
        global: (LDDT_EPS + total_score) / (LDDT_EPS + total_pairs),
        per_point,
    }
}

/// GDT-TS (fraction of points within 1, 2, 4, 8 Å, averaged) after superposing the masked
/// points of `mobile` onto `target` on all of them, as the reference's `compute_gdt_ts` does.
pub fn gdt_ts(mobile: &[Vec3], target: &[Vec3], mask: Option<&[bool]>) -> Option<f64> {
    let s = superpose(mobile, target, mask)?;
    let deviations: Vec<f64> = selected(mobile, target, mask)
        .map(|(m, t)| (s.rotation * m + s.translation - t).norm())
        .collect();
    let n = deviations.len() as f64;
    Some(
        [1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|&c| deviations.iter().filter(|&&d| d < c).count() as f64 / n)
            .sum::<f64>()
            * 0.25,
    )
}

/// Precision of the top-ranked predicted contacts against a true contact map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContactPrecision {
    pub top_l: f64,
    pub top_l2: f64,
    pub top_l5: f64,
}

/// Contact precision at L, L/2 and L/5 for pairs at least `min_separation` apart in sequence.
///
/// `probabilities` and `true_contacts` are row-major L×L; `true_contacts` holds 1 (contact),
/// 0 (no contact) or −1 (unknown, e.g. a missing atom: such pairs are not ranked), as the
/// reference's `ProteinChain.cbeta_contacts` produces with its 8 Å Cβ threshold.
pub fn contact_precision(
    probabilities: &[f32],
    true_contacts: &[i8],
    length: usize,
    min_separation: usize,
) -> ContactPrecision {
    assert_eq!(probabilities.len(), length * length, "L×L probabilities");
    assert_eq!(true_contacts.len(), length * length, "L×L contact map");
    let mut pairs: Vec<(f32, bool)> = (0..length)
        .flat_map(|i| (i + min_separation..length).map(move |j| (i, j)))
        .filter(|&(i, j)| true_contacts[i * length + j] >= 0)
        .map(|(i, j)| {
            (
                probabilities[i * length + j],
                true_contacts[i * length + j] == 1,
            )
        })
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let precision = |k: usize| {
        let k = k.max(1).min(pairs.len());
        if k == 0 {
            return 0.0;
        }
        pairs[..k].iter().filter(|p| p.1).count() as f64 / k as f64
    };
    ContactPrecision {
        top_l: precision(length),
        top_l2: precision(length / 2),
        top_l5: precision(length / 5),
    }
}

/// Cβ contact map (8 Å) with −1 where a position is missing or on the diagonal, as the
/// reference's `cbeta_contacts`.
pub fn cbeta_contacts(cbeta: &[Option<Vec3>], threshold: f64) -> Vec<i8> {
    let n = cbeta.len();
    let mut out = vec![-1i8; n * n];
    for i in 0..n {
        for j in 0..n {
            if let (true, Some(a), Some(b)) = (i != j, cbeta[i], cbeta[j]) {
                out[i * n + j] = ((to_vector(a) - to_vector(b)).norm() < threshold) as i8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rotation_from(axis: [f64; 3], angle: f64) -> Matrix3<f64> {
        let axis = nalgebra::Unit::new_normalize(Vector3::from(axis));
        *nalgebra::Rotation3::from_axis_angle(&axis, angle).matrix()
    }

    fn moved(points: &[Vec3], r: &Matrix3<f64>, t: [f64; 3]) -> Vec<Vec3> {
        points
            .iter()
            .map(|&p| {
                let q = r * to_vector(p) + Vector3::from(t);
                [q.x as f32, q.y as f32, q.z as f32]
            })
            .collect()
    }

    fn cloud(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Vec3>> {
        prop::collection::vec(prop::array::uniform3(-20.0f32..20.0), n)
    }

    fn rigid() -> impl Strategy<Value = ([f64; 3], f64, [f64; 3])> {
        (
            prop::array::uniform3(-1.0f64..1.0)
                .prop_filter("axis", |a| a.iter().map(|v| v * v).sum::<f64>() > 0.01),
            -3.1f64..3.1,
            prop::array::uniform3(-50.0f64..50.0),
        )
    }

    proptest! {
        #[test]
        fn rmsd_of_identical_points_is_zero(points in cloud(3..40)) {
            let (r, _) = superposed_rmsd(&points, &points, None).unwrap();
            prop_assert!(r < 1e-4, "{r}");
            prop_assert_eq!(rmsd_no_superposition(&points, &points, None), Some(0.0));
        }

        #[test]
        fn metrics_are_invariant_to_rigid_motion(
            a in cloud(5..40), noise in prop::collection::vec(prop::array::uniform3(-2.0f32..2.0), 40),
            (axis, angle, t) in rigid(),
        ) {
            let b: Vec<Vec3> = a.iter().zip(&noise).map(|(p, e)| [p[0] + e[0], p[1] + e[1], p[2] + e[2]]).collect();
            let b_moved = moved(&b, &rotation_from(axis, angle), t);
            let mask = vec![true; a.len()];
            let (r0, _) = superposed_rmsd(&b, &a, None).unwrap();
            let (r1, _) = superposed_rmsd(&b_moved, &a, None).unwrap();
            prop_assert!((r0 - r1).abs() < 1e-3, "rmsd {r0} vs {r1}");
            let (g0, g1) = (gdt_ts(&b, &a, None).unwrap(), gdt_ts(&b_moved, &a, None).unwrap());
            // A point sitting on a threshold can flip under f32 rounding of the moved copy.
            prop_assert!((g0 - g1).abs() <= 0.25 / a.len() as f64 + 1e-9, "gdt {g0} vs {g1}");
            let (l0, l1) = (lddt(&b, &a, &mask, LDDT_CUTOFF).global, lddt(&b_moved, &a, &mask, LDDT_CUTOFF).global);
            prop_assert!((l0 - l1).abs() < 0.02, "lddt {l0} vs {l1}");
        }

        #[test]
        fn superposition_recovers_a_rigid_motion((axis, angle, t) in rigid(), a in cloud(4..30)) {
            let r = rotation_from(axis, angle);
            let b = moved(&a, &r, t);
            let s = superpose(&a, &b, None).unwrap();
            prop_assert!((s.rotation - r).abs().max() < 1e-3);
            for (p, q) in a.iter().zip(&b) {
                prop_assert!((s.apply(*p) - to_vector(*q)).norm() < 1e-2);
            }
        }
    }

    #[test]
    fn lddt_counts_thresholds_like_the_reference() {
        // Two points 5 Å apart; the prediction moves one by 0.7 Å along the axis: Δ = 0.7 → 3/4.
        let truth = [[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]];
        let pred = [[0.0, 0.0, 0.0], [5.7, 0.0, 0.0]];
        let l = lddt(&pred, &truth, &[true, true], LDDT_CUTOFF);
        assert!((l.global - 0.75).abs() < 1e-9);
        // Beyond the cutoff nothing is scored: ε/ε = 1.
        let far = [[0.0, 0.0, 0.0], [16.0, 0.0, 0.0]];
        let l = lddt(&pred, &far, &[true, true], LDDT_CUTOFF);
        assert_eq!(l.per_point, vec![1.0, 1.0]);
    }

    #[test]
    fn contact_precision_ranks_by_probability() {
        let l = 10;
        let mut truth = vec![0i8; l * l];
        let mut probs = vec![0.0f32; l * l];
        truth[9] = 1; // (0, 9)
        probs[9] = 0.9;
        probs[8] = 0.8; // (0, 8): predicted, not a contact
        let p = contact_precision(&probs, &truth, l, 6);
        assert_eq!(p.top_l5, 0.5); // L/5 = 2 pairs: one right
        assert_eq!(p.top_l2, 0.2);
    }
}
