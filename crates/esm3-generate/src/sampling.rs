//! Sampling one track from logits at every position (spec §6.3), on host arrays.
//!
//! As in the reference, nucleus filtering and invalid-id masking change the logits that the
//! entropy (used by the entropy strategy) is computed from; temperature does not.

use rand::Rng;

/// Nucleus filter in place: keep the most probable ids whose cumulative probability (in
/// descending order) is ≤ `top_p`, always the first; set the rest to `f32::MIN`.
pub fn top_p_filter(logits: &mut [f32], top_p: f32) {
    if top_p >= 1.0 {
        return;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let max = logits[order[0]];
    let denom: f32 = order.iter().map(|&i| (logits[i] - max).exp()).sum();
    let mut cumsum = 0f32;
    let mut drop = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        cumsum += (logits[i] - max).exp() / denom;
        if rank > 0 && cumsum > top_p {
            drop.push(i);
        }
    }
    for i in drop {
        logits[i] = f32::MIN;
    }
}

/// Sets logits outside `valid` to −∞ in place.
pub fn mask_invalid(logits: &mut [f32], valid: &[bool]) {
    for (l, ok) in logits.iter_mut().zip(valid) {
        if !ok {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// log-softmax in f32 (−∞ stays −∞).
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&l| l - lse).collect()
}

/// Categorical entropy of a log-probability vector; −∞ entries contribute 0.
pub fn entropy(log_probs: &[f32]) -> f32 {
    -log_probs
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| l.exp() * l)
        .sum::<f32>()
}

/// First index of the maximum (torch's argmax tie rule).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Draws from softmax(logits / τ). The maximum is subtracted before dividing by τ, so logits
/// at `f32::MIN` (dropped by the nucleus filter) cannot overflow to −∞ at small τ.
pub fn sample_categorical(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> usize {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - max) / temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    // Rounding left us past the end: take the last id with any weight.
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

/// One position's sample and the entropy of its (filtered, untempered) distribution.
pub struct PositionSample {
    pub id: i64,
    pub entropy: f32,
}

/// Samples an integer track at one position: top-p on the raw logits, invalid ids to −∞, then
/// argmax at τ = 0 or a draw from softmax(logits/τ).
pub fn sample_position(
    logits: &[f32],
    valid: &[bool],
    temperature: f32,
    top_p: f32,
    rng: &mut impl Rng,
) -> PositionSample {
    let mut l = logits.to_vec();
    top_p_filter(&mut l, top_p);
    mask_invalid(&mut l, valid);
    let id = if temperature == 0.0 {
        argmax(&l)
    } else {
        sample_categorical(&l, temperature, rng)
    };
    PositionSample {
        id: id as i64,
        entropy: entropy(&log_softmax(&l)),
    }
}

/// Function track at one position (spec §6.3): `<none>` in all 8 slots when the mean
/// probability of `<none>` exceeds 0.05, else per-slot argmax excluding `<none>`.
/// Returns the ids and the summed per-slot entropy.
pub fn sample_function_position(
    logits: &[Vec<f32>],
    temperature: f32,
    top_p: f32,
) -> ([i64; 8], f32) {
    const NONE: usize = 3;
    // τ = 0 would divide by zero in the reference; treat it as no scaling.
    let tau = if temperature > 0.0 { temperature } else { 1.0 };
    let log_ps: Vec<Vec<f32>> = logits
        .iter()
        .map(|slot| {
            let mut l = slot.clone();
            top_p_filter(&mut l, top_p);
            let scaled: Vec<f32> = l.iter().map(|x| x / tau).collect();
            log_softmax(&scaled)
        })
        .collect();
    let p_none = log_ps.iter().map(|lp| lp[NONE].exp()).sum::<f32>() / log_ps.len() as f32;
    let mut ids = [NONE as i64; 8];
    let mut total_entropy = 0.0;
    for (k, lp) in log_ps.iter().enumerate() {
        total_entropy += entropy(lp);
        if p_none <= 0.05 {
            let mut lp = lp.clone();
            lp[NONE] = f32::NEG_INFINITY;
            ids[k] = argmax(&lp) as i64;
        }
    }
    (ids, total_entropy)
}

/// Residue-annotation ids of one position from the residue head's Bernoulli logits (spec §5.8):
/// the 16 highest logits in descending order (stable on ties), each kept where its sigmoid is at
/// least 0.5 (logit ≥ 0) and 0 (empty slot) otherwise.
pub fn sample_residue_position(logits: &[f32]) -> [i64; 16] {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let mut row = [0i64; 16];
    for (slot, &id) in row.iter_mut().zip(order.iter()) {
        let p = 1.0 / (1.0 + (-logits[id]).exp());
        if p >= 0.5 {
            *slot = id as i64;
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn top_p_keeps_the_nucleus_and_always_the_best() {
        let mut l = vec![2.0, 1.0, 0.0, -1.0];
        top_p_filter(&mut l, 0.5);
        assert_eq!(l, vec![2.0, f32::MIN, f32::MIN, f32::MIN]);
        // softmax ≈ [0.025, 0.511, 0.463, 0.0002]: cumulative 0.511, 0.974, 0.9998, 1.
        let mut l = vec![0.0, 3.0, 2.9, -5.0];
        top_p_filter(&mut l, 0.99);
        assert_eq!(l[1], 3.0);
        assert_eq!(l[2], 2.9);
        assert_eq!(l[0], f32::MIN);
        assert_eq!(l[3], f32::MIN);
    }

    #[test]
    fn temperature_zero_is_argmax_over_valid_ids() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
        let valid = [false, true, true, true];
        let s = sample_position(&[9.0, 1.0, 3.0, 3.0], &valid, 0.0, 1.0, &mut rng);
        assert_eq!(s.id, 2, "invalid id 0 is excluded; ties go to the first");
    }

    proptest! {
        #[test]
        fn samples_are_always_valid(logits in prop::collection::vec(-20f32..20f32, 5..40), seed in 0u64..1000, t in 0.05f32..3.0) {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            let valid: Vec<bool> = (0..logits.len()).map(|i| i % 3 != 0).collect();
            let s = sample_position(&logits, &valid, t, 0.9, &mut rng);
            prop_assert!(valid[s.id as usize]);
            prop_assert!(s.entropy >= -1e-5);
        }
    }

    #[test]
    fn residue_position_keeps_the_top_16_above_one_half() {
        let mut logits = vec![-5.0f32; 40];
        logits[7] = 3.0;
        logits[30] = 0.5;
        logits[12] = -0.1; // sigmoid < 0.5: dropped
        let row = super::sample_residue_position(&logits);
        assert_eq!(row[..3], [7, 30, 0]);
        assert!(row.iter().skip(2).all(|&x| x == 0));
        let all = vec![1.0f32; 40];
        let row = super::sample_residue_position(&all);
        assert_eq!(row.to_vec(), (0..16).collect::<Vec<i64>>());
    }
}
