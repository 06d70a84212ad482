//! Rigid backbone frames, built exactly as the reference builds them (spec §4.2–4.3).
//!
//! Parity matters more than elegance here: the arithmetic follows the reference's order of
//! operations in `f32` so that the geometric attention sees the same frames to the last bits.

/// A point or direction in 3D (Å).
pub type Vec3 = [f32; 3];

/// The reference's epsilon for the Gram–Schmidt normalisation on every path the model uses.
pub const GRAM_SCHMIDT_EPS: f32 = 1e-10;

/// Carbonyl O in the frame (origin C, x along C − CA, N of the next residue in the xy plane).
pub const O_LOCAL: Vec3 = [0.6240, -1.0613, 0.0103];

/// Coordinates at or above this value are treated as missing (the reference's one-sided test).
pub const MAX_SUPPORTED_DISTANCE: f32 = 1e6;

/// A rigid transform `p ↦ R·p + t`. `rot[r][c]` is row `r`, column `c`; the columns of `rot`
/// are the local axes expressed in global coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    pub rot: [[f32; 3]; 3],
    pub trans: Vec3,
}

impl Frame {
    pub const IDENTITY: Frame = Frame {
        rot: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        trans: [0.0; 3],
    };

    /// The AlphaFold-style frame of three points: origin at `origin`, x axis along
    /// `origin − neg_x`, `xy_point` in the xy plane with positive y.
    pub fn from_three_points(neg_x: Vec3, origin: Vec3, xy_point: Vec3) -> Frame {
        let x_axis = sub(origin, neg_x);
        let xy = sub(xy_point, origin);
        Frame {
            rot: gram_schmidt(x_axis, xy, GRAM_SCHMIDT_EPS),
            trans: origin,
        }
    }

    /// The backbone frame of one residue: x from C to CA, N in the xy plane, origin at CA.
    pub fn from_backbone(n: Vec3, ca: Vec3, c: Vec3) -> Frame {
        Frame::from_three_points(c, ca, n)
    }

    /// `R·p + t`.
    pub fn apply(&self, p: Vec3) -> Vec3 {
        let r = self.rotate(p);
        [
            r[0] + self.trans[0],
            r[1] + self.trans[1],
            r[2] + self.trans[2],
        ]
    }

    /// `R·p` (directions are rotated, never translated).
    pub fn rotate(&self, p: Vec3) -> Vec3 {
        let m = &self.rot;
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2] * p[2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2] * p[2],
            m[2][0] * p[0] + m[2][1] * p[1] + m[2][2] * p[2],
        ]
    }

    /// `Rᵀ·(p − t)`: global point into the frame's local coordinates.
    pub fn invert_apply(&self, p: Vec3) -> Vec3 {
        let d = sub(p, self.trans);
        let m = &self.rot;
        [
            m[0][0] * d[0] + m[1][0] * d[1] + m[2][0] * d[2],
            m[0][1] * d[0] + m[1][1] * d[1] + m[2][1] * d[2],
            m[0][2] * d[0] + m[1][2] * d[1] + m[2][2] * d[2],
        ]
    }
}

fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: Vec3, b: Vec3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Gram–Schmidt: the rotation whose first column is `x_axis` normalised, second column the part
/// of `xy_plane` orthogonal to it, normalised, third their cross product. `eps` guards the
/// normalisations exactly as the reference does (`x / sqrt(|x|² + eps)`).
pub fn gram_schmidt(x_axis: Vec3, xy_plane: Vec3, eps: f32) -> [[f32; 3]; 3] {
    let denom = (dot(x_axis, x_axis) + eps).sqrt();
    let e0 = [x_axis[0] / denom, x_axis[1] / denom, x_axis[2] / denom];
    let d = dot(e0, xy_plane);
    let e1 = [
        xy_plane[0] - e0[0] * d,
        xy_plane[1] - e0[1] * d,
        xy_plane[2] - e0[2] * d,
    ];
    let denom = (dot(e1, e1) + eps).sqrt();
    let e1 = [e1[0] / denom, e1[1] / denom, e1[2] / denom];
    let e2 = [
        e0[1] * e1[2] - e0[2] * e1[1],
        e0[2] * e1[0] - e0[0] * e1[2],
        e0[0] * e1[1] - e0[1] * e1[0],
    ];
    [
        [e0[0], e1[0], e2[0]],
        [e0[1], e1[1], e2[1]],
        [e0[2], e1[2], e2[2]],
    ]
}

/// Whether a residue's N, CA and C are all usable for a frame: every number finite and below
/// [`MAX_SUPPORTED_DISTANCE`] (one-sided, as in the reference).
pub fn backbone_is_valid(bb: &[Vec3; 3]) -> bool {
    bb.iter()
        .flatten()
        .all(|v| v.is_finite() && *v < MAX_SUPPORTED_DISTANCE)
}

/// Frames of one protein from its N, CA, C coordinates, and which residues have one.
///
/// Residues without a valid backbone get the reference's "black hole" frame (the frame of the
/// mean backbone over valid residues, or identity rotation when there are none). Those frames are
/// masked out of attention; they are reproduced anyway so that no output can depend on a choice
/// the reference did not make.
pub fn backbone_frames(backbone: &[[Vec3; 3]]) -> (Vec<Frame>, Vec<bool>) {
    let mask: Vec<bool> = backbone.iter().map(backbone_is_valid).collect();
    let count = mask.iter().filter(|m| **m).count();
    let mut sums = [[0f32; 3]; 3];
    for (bb, &valid) in backbone.iter().zip(&mask) {
        if valid {
            for (sum, atom) in sums.iter_mut().zip(bb) {
                for k in 0..3 {
                    sum[k] += atom[k];
                }
            }
        }
    }
    let divisor = count as f32 + 1e-8;
    let mean = sums.map(|s| s.map(|v| v / divisor));
    let mean_frame = Frame::from_backbone(mean[0], mean[1], mean[2]);
    let black_hole = Frame {
        rot: if count > 0 {
            mean_frame.rot
        } else {
            Frame::IDENTITY.rot
        },
        trans: mean_frame.trans,
    };
    let frames = backbone
        .iter()
        .zip(&mask)
        .map(|(bb, &valid)| {
            if valid {
                Frame::from_backbone(bb[0], bb[1], bb[2])
            } else {
                black_hole
            }
        })
        .collect();
    (frames, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn det(m: &[[f32; 3]; 3]) -> f32 {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    }

    #[test]
    fn backbone_frame_axes_follow_the_reference_convention() {
        let n = [1.0, 1.0, 0.0];
        let ca = [0.0, 0.0, 0.0];
        let c = [-1.5, 0.0, 0.0];
        let f = Frame::from_backbone(n, ca, c);
        // x from C to CA is +x; N lies in the xy plane with positive y.
        let local_n = f.invert_apply(n);
        assert!((local_n[0] - 1.0).abs() < 1e-6 && local_n[1] > 0.0 && local_n[2].abs() < 1e-6);
        assert_eq!(f.trans, ca);
    }

    #[test]
    fn frames_without_any_valid_residue_are_identity_and_masked() {
        let nan = [f32::NAN; 3];
        let (frames, mask) =
            backbone_frames(&[[nan, nan, nan], [[2e6, 0.0, 0.0], [0.0; 3], [1.0; 3]]]);
        assert_eq!(mask, vec![false, false]);
        assert_eq!(frames[0].rot, Frame::IDENTITY.rot);
    }

    #[test]
    fn large_negative_coordinates_pass_the_one_sided_validity_test() {
        assert!(backbone_is_valid(&[
            [-2e6, 0.0, 0.0],
            [0.0; 3],
            [1.0, 1.0, 0.0]
        ]));
        assert!(!backbone_is_valid(&[
            [2e6, 0.0, 0.0],
            [0.0; 3],
            [1.0, 1.0, 0.0]
        ]));
        assert!(!backbone_is_valid(&[
            [f32::INFINITY, 0.0, 0.0],
            [0.0; 3],
            [1.0; 3]
        ]));
    }

    fn point() -> impl Strategy<Value = Vec3> {
        prop::array::uniform3(-50f32..50f32)
    }

    proptest! {
        #[test]
        fn gram_schmidt_gives_a_proper_rotation(a in point(), b in point()) {
            let x_len = dot(a, a).sqrt();
            prop_assume!(x_len > 0.1);
            let cross = [a[1]*b[2]-a[2]*b[1], a[2]*b[0]-a[0]*b[2], a[0]*b[1]-a[1]*b[0]];
            prop_assume!(dot(cross, cross).sqrt() > 0.1 * x_len);
            let r = gram_schmidt(a, b, GRAM_SCHMIDT_EPS);
            for i in 0..3 {
                for j in 0..3 {
                    let col_dot: f32 = (0..3).map(|k| r[k][i] * r[k][j]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    prop_assert!((col_dot - want).abs() < 1e-4, "columns {i},{j}: {col_dot}");
                }
            }
            prop_assert!((det(&r) - 1.0).abs() < 1e-4);
        }

        #[test]
        fn invert_apply_undoes_apply(n in point(), ca in point(), c in point(), p in point()) {
            let f = Frame::from_backbone(n, ca, c);
            let q = f.invert_apply(f.apply(p));
            for k in 0..3 {
                prop_assert!((q[k] - p[k]).abs() < 1e-2, "{q:?} vs {p:?}");
            }
        }
    }
}
