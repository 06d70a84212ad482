//! Which records share a forward pass.
//!
//! A batch costs about `count × longest` (every row is padded to the longest), so mixing a
//! 60-residue chain with a 600-residue one makes the short one ten times dearer than alone.
//! Records are sorted by length and a batch closes when it is full or when the next record is
//! more than [`MAX_LENGTH_RATIO`] times the batch's shortest: padding stays under a fifth of
//! each forward, and batching is never slower per residue than one record at a time.

/// Longest / shortest record in one batch.
pub const MAX_LENGTH_RATIO: f64 = 1.25;

/// Groups record indices `0..lengths.len()` into batches of at most `max_batch` (≥ 1), each
/// sorted by length, shortest batch first. Every index appears exactly once.
pub fn length_batches(lengths: &[usize], max_batch: usize) -> Vec<Vec<usize>> {
    let max_batch = max_batch.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match batches.last_mut() {
            Some(b)
                if b.len() < max_batch
                    && lengths[i] as f64 <= lengths[b[0]].max(1) as f64 * MAX_LENGTH_RATIO =>
            {
                b.push(i)
            }
            _ => batches.push(vec![i]),
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn far_apart_lengths_do_not_share_a_batch() {
        let b = length_batches(&[600, 60, 62, 590, 61], 8);
        assert_eq!(b, vec![vec![1, 4, 2], vec![3, 0]]);
        assert_eq!(length_batches(&[], 4), Vec::<Vec<usize>>::new());
        assert_eq!(
            length_batches(&[5, 5, 5], 0),
            vec![vec![0], vec![1], vec![2]]
        );
    }

    proptest! {
        #[test]
        fn batches_cover_every_record_once_within_the_bounds(
            lengths in proptest::collection::vec(0usize..2000, 0..60),
            max_batch in 1usize..12,
        ) {
            let batches = length_batches(&lengths, max_batch);
            let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
            seen.sort();
            prop_assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            for b in &batches {
                prop_assert!(!b.is_empty() && b.len() <= max_batch);
                let lo = lengths[b[0]];
                prop_assert!(b.windows(2).all(|w| lengths[w[0]] <= lengths[w[1]]));
                prop_assert!(b.iter().all(|&i| lengths[i] as f64 <= lo.max(1) as f64 * MAX_LENGTH_RATIO));
            }
            // Closed batches are full or the next one starts beyond the ratio.
            for w in batches.windows(2) {
                let next = lengths[w[1][0]];
                prop_assert!(w[0].len() == max_batch
                    || next as f64 > lengths[w[0][0]].max(1) as f64 * MAX_LENGTH_RATIO);
            }
        }
    }
}
