//! How many positions each step unmasks, and annealed temperature (spec §6.4), in the
//! reference's float32 arithmetic so that step counts agree exactly.

use crate::config::Schedule;

/// Fraction of positions still masked after step `t` (0-based) of `n`.
pub fn fraction_masked_after(schedule: Schedule, t: usize, n: usize) -> f32 {
    // Python computes (t+1)/n in double precision, then torch.tensor() rounds it to f32.
    let u = ((t + 1) as f64 / n as f64) as f32;
    match schedule {
        Schedule::Cosine => (u * std::f32::consts::PI * 0.5).cos(),
        Schedule::Linear => 1.0 - u,
    }
}

/// Number of positions to commit at step `t` given `still_masked` candidates and `total`
/// positions to fill over the whole run.
pub fn positions_to_commit(
    schedule: Schedule,
    t: usize,
    n: usize,
    total: usize,
    still_masked: usize,
) -> usize {
    let keep = (fraction_masked_after(schedule, t, n) * total as f32 + 0.1f32) as i64;
    (still_masked as i64 - keep).max(0) as usize
}

/// `max(τ0 − t/max(1, n−1), 0.001)²`, computed in double precision as Python does.
pub fn annealed_temperature(t: usize, n: usize, initial: f32) -> f32 {
    let ratio = t as f64 / (n.saturating_sub(1)).max(1) as f64;
    let v = (initial as f64 - ratio).max(0.001);
    (v * v) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: usize, n: usize) -> Vec<usize> {
        let mut masked = total;
        (0..n)
            .map(|t| {
                let k = positions_to_commit(Schedule::Cosine, t, n, total, masked);
                masked -= k;
                k
            })
            .collect()
    }

    /// The per-step counts the reference produces (spec §6.4 worked examples).
    #[test]
    fn cosine_counts_match_the_reference_examples() {
        assert_eq!(counts(10, 10), vec![1, 0, 0, 1, 1, 2, 1, 1, 2, 1]);
        assert_eq!(
            counts(100, 20),
            vec![1, 1, 1, 2, 3, 3, 4, 4, 5, 6, 5, 7, 6, 7, 7, 7, 8, 8, 8, 7]
        );
    }

    #[test]
    fn every_position_is_committed_by_the_last_step() {
        for total in 1..60 {
            for n in 1..=total.min(25) {
                assert_eq!(
                    counts(total, n).iter().sum::<usize>(),
                    total,
                    "total {total} n {n}"
                );
            }
        }
    }

    #[test]
    fn annealing_squares_and_floors() {
        assert_eq!(annealed_temperature(0, 10, 1.0), 1.0);
        assert!((annealed_temperature(9, 10, 1.0) - 1e-6).abs() < 1e-9);
        assert!((annealed_temperature(0, 1, 0.5) - 0.25).abs() < 1e-7);
        assert!((annealed_temperature(1, 1, 0.5) - 1e-6).abs() < 1e-12);
    }
}
