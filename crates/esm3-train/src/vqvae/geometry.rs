//! The decoder's backbone head as differentiable tensor ops (spec esm3-reference.md §3.3 step
//! 3–4): the inference path builds frames on the host, which would cut the gradient.

use candle_core::{Result, Tensor, D};
use esm3_models::structure_decoder::BB_LOCAL;

/// The backbone head predicts translations in units of 10 Å.
pub const TRANS_SCALE: f64 = 10.0;
/// The reference's Gram–Schmidt epsilon (inside the square roots).
const GS_EPS: f64 = 1e-10;
/// Added under ‖a‖'s square root so a zero vector has a zero (not NaN) gradient; far below the
/// reference's +1e-5 outside it, so values agree with inference to float precision.
const NORM_EPS: f64 = 1e-12;

fn sum3(x: &Tensor) -> Result<Tensor> {
    x.sum_keepdim(D::Minus1)
}

/// Predicted frames and backbone atoms.
pub struct PredictedBackbone {
    /// `[B, L, 3, 3]`, columns are the local axes.
    pub rot: Tensor,
    /// `[B, L, 3]` Å.
    pub trans: Tensor,
    /// `[B, L, 3, 3]` N, CA, C.
    pub atoms: Tensor,
}

/// Frames and atoms from the affine projection `[B, L, ≥9]` (translation / 10, a, c):
/// R = GS(−â, ĉ) with â = a / (‖a‖ + 1e-5), same for ĉ; atom_k = R·b_k + t.
pub fn backbone_from_affine(p: &Tensor) -> Result<PredictedBackbone> {
    let t = (p.narrow(D::Minus1, 0, 3)? * TRANS_SCALE)?;
    let scaled = |x: Tensor| -> Result<Tensor> {
        let n = ((sum3(&x.sqr()?)? + NORM_EPS)?.sqrt()? + 1e-5)?;
        x.broadcast_div(&n)
    };
    let a = scaled(p.narrow(D::Minus1, 3, 3)?)?;
    let c = scaled(p.narrow(D::Minus1, 6, 3)?)?;
    // The reference's points: neg_x = a + t, origin = t, xy = c + t.
    let x_axis = (&t - (&a + &t)?)?;
    let xy = ((&c + &t)? - &t)?;
    let e0 = x_axis.broadcast_div(&(sum3(&x_axis.sqr()?)? + GS_EPS)?.sqrt()?)?;
    let e1 = (&xy - e0.broadcast_mul(&sum3(&(&e0 * &xy)?)?)?)?;
    let e1 = e1.broadcast_div(&(sum3(&e1.sqr()?)? + GS_EPS)?.sqrt()?)?;
    let e2 = super::losses::cross(&e0, &e1)?;
    let rot = Tensor::stack(&[&e0, &e1, &e2], D::Minus1)?;
    let atom = |b: [f32; 3]| -> Result<Tensor> {
        let mut x = t.clone();
        for (k, e) in [&e0, &e1, &e2].into_iter().enumerate() {
            if b[k] != 0.0 {
                x = (x + (e * f64::from(b[k]))?)?;
            }
        }
        Ok(x)
    };
    let atoms = Tensor::stack(
        &[atom(BB_LOCAL[0])?, atom(BB_LOCAL[1])?, atom(BB_LOCAL[2])?],
        2,
    )?;
    Ok(PredictedBackbone {
        rot,
        trans: t,
        atoms,
    })
}
