//! Mask-rate distributions of the masked multi-track objective (spec esm3-training.md §1.2).

use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

/// A noise schedule: a distribution over the per-protein mask rate r ∈ [0, 1].
///
/// The named schedules map t ~ Uniform(0, 1) to r = g(t) (maintainer's definition), so their
/// densities follow from g; `betalinear30` is the paper's Beta/uniform mixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// r = 1 − t (mean 0.5).
    Linear,
    /// r = cos(π t / 2) (mean 2/π, biased to high rates).
    Cosine,
    /// r = 1 − t³ (mean 0.75, biased to high rates).
    Cubic,
    /// r = 1 − √t (mean 1/3, biased to low rates).
    #[serde(alias = "square_root", alias = "squareroot")]
    Sqrt,
    /// With p 0.8 r ~ Beta(3, 9), else r ~ Uniform(0, 1) (mean 0.3).
    Betalinear30,
}

impl Schedule {
    /// Draws one mask rate in [0, 1].
    pub fn sample_rate(&self, rng: &mut impl Rng) -> f64 {
        let t: f64 = rng.random();
        let r = match self {
            Schedule::Linear => 1.0 - t,
            Schedule::Cosine => (std::f64::consts::FRAC_PI_2 * t).cos(),
            Schedule::Cubic => 1.0 - t * t * t,
            Schedule::Sqrt => 1.0 - t.sqrt(),
            Schedule::Betalinear30 => {
                if t < 0.8 {
                    // Parameters are constants, so construction cannot fail.
                    Beta::new(3.0, 9.0).expect("valid Beta(3, 9)").sample(rng)
                } else {
                    rng.random()
                }
            }
        };
        r.clamp(0.0, 1.0)
    }

    /// The analytic mean mask rate (spec §1.2 table), for checks and logging.
    pub fn mean_rate(&self) -> f64 {
        match self {
            Schedule::Linear => 0.5,
            Schedule::Cosine => 2.0 / std::f64::consts::PI,
            Schedule::Cubic => 0.75,
            Schedule::Sqrt => 1.0 / 3.0,
            Schedule::Betalinear30 => 0.8 * 0.25 + 0.2 * 0.5,
        }
    }

    /// The analytic variance of the mask rate, so tests can set tolerances from the standard error.
    pub fn rate_variance(&self) -> f64 {
        let m = self.mean_rate();
        let second_moment = match self {
            Schedule::Linear => 1.0 / 3.0,
            // E[cos²(πt/2)] = 1/2.
            Schedule::Cosine => 0.5,
            // E[(1 − t³)²] = 1 − 2/4 + 1/7.
            Schedule::Cubic => 1.0 - 0.5 + 1.0 / 7.0,
            // E[(1 − √t)²] = 1 − 4/3 + 1/2.
            Schedule::Sqrt => 1.0 - 4.0 / 3.0 + 0.5,
            // Beta(3,9): E[r²] = a(a+1)/((a+b)(a+b+1)) = 12/156; uniform: 1/3.
            Schedule::Betalinear30 => 0.8 * (12.0 / 156.0) + 0.2 / 3.0,
        };
        second_moment - m * m
    }

    pub const ALL: [Schedule; 5] = [
        Schedule::Linear,
        Schedule::Cosine,
        Schedule::Cubic,
        Schedule::Sqrt,
        Schedule::Betalinear30,
    ];
}
