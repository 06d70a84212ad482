//! Sequence complexity: the low-complexity (repeat) check that generation reports for every
//! design.
//!
//! Generative models, small ones above all, fall into runs such as `EEEEEEE` or `ALALALAL`.
//! The check here is the trigger stage of Wootton and Federhen's SEG (Comput. Chem. 1993): a
//! window of [`SEG_WINDOW`] residues whose Shannon entropy is below [`SEG_TRIGGER_BITS`] is low
//! complexity, and so is every residue such a window covers. SEG's extension and trimming
//! stages are left out: they refine region ends, which a design-level yes/no does not need.
//! Written here because no maintained Rust crate computes it.

/// SEG's window length (residues).
pub const SEG_WINDOW: usize = 12;
/// SEG's trigger complexity K1 (bits): windows below it start a low-complexity region.
pub const SEG_TRIGGER_BITS: f64 = 2.2;

/// When a sequence counts as low complexity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComplexityThresholds {
    /// Largest fraction of residues allowed inside low-complexity windows.
    pub max_low_complexity_fraction: f64,
    /// Longest allowed run of one residue.
    pub max_homopolymer_run: usize,
}

impl Default for ComplexityThresholds {
    /// Chosen on natural chains: `tools/complexity_calibration.py` measures how many of the
    /// ProMod3 chains these flag (the README gives the figure).
    fn default() -> Self {
        Self {
            max_low_complexity_fraction: 0.2,
            max_homopolymer_run: 6,
        }
    }
}

/// The complexity of one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct ComplexityReport {
    /// Shannon entropy of the whole sequence's residue composition (bits; at most log2 20 ≈ 4.32
    /// for the 20 amino acids).
    pub entropy_bits: f64,
    /// Lowest entropy of any [`SEG_WINDOW`]-residue window (bits); the whole sequence's when it
    /// is shorter than a window.
    pub min_window_entropy_bits: f64,
    /// Fraction of residues covered by a window below [`SEG_TRIGGER_BITS`].
    pub low_complexity_fraction: f64,
    /// Longest run of one letter.
    pub longest_homopolymer: usize,
    /// 0-based, half-open `[start, end)` ranges of the low-complexity residues.
    pub low_complexity_regions: Vec<(usize, usize)>,
}

impl ComplexityReport {
    /// True when the sequence passes both thresholds.
    pub fn passes(&self, t: &ComplexityThresholds) -> bool {
        self.low_complexity_fraction <= t.max_low_complexity_fraction
            && self.longest_homopolymer <= t.max_homopolymer_run
    }
}

/// Shannon entropy (bits) of the letters' composition.
pub fn shannon_entropy_bits(letters: &[u8]) -> f64 {
    if letters.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &b in letters {
        counts[b as usize] += 1;
    }
    entropy_of_counts(&counts, letters.len())
}

fn entropy_of_counts(counts: &[usize; 256], n: usize) -> f64 {
    let n = n as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Measures `sequence` (letters compared case-insensitively).
pub fn sequence_complexity(sequence: &str) -> ComplexityReport {
    let s: Vec<u8> = sequence.bytes().map(|b| b.to_ascii_uppercase()).collect();
    let n = s.len();
    let mut longest = 0;
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        run = if i > 0 && s[i - 1] == b { run + 1 } else { 1 };
        longest = longest.max(run);
    }
    let entropy_bits = shannon_entropy_bits(&s);
    let mut covered = vec![false; n];
    let mut min_window = entropy_bits;
    if n >= SEG_WINDOW {
        // Slide the window, updating the counts by one letter in and one out.
        let mut counts = [0usize; 256];
        for &b in &s[..SEG_WINDOW] {
            counts[b as usize] += 1;
        }
        min_window = f64::INFINITY;
        for start in 0..=n - SEG_WINDOW {
            if start > 0 {
                counts[s[start - 1] as usize] -= 1;
                counts[s[start + SEG_WINDOW - 1] as usize] += 1;
            }
            let h = entropy_of_counts(&counts, SEG_WINDOW);
            min_window = min_window.min(h);
            if h < SEG_TRIGGER_BITS {
                covered[start..start + SEG_WINDOW].fill(true);
            }
        }
    } else if n > 0 && entropy_bits < SEG_TRIGGER_BITS {
        covered.fill(true);
    }
    let mut regions = Vec::new();
    let mut i = 0;
    while i < n {
        if covered[i] {
            let start = i;
            while i < n && covered[i] {
                i += 1;
            }
            regions.push((start, i));
        } else {
            i += 1;
        }
    }
    ComplexityReport {
        entropy_bits,
        min_window_entropy_bits: min_window,
        low_complexity_fraction: if n == 0 {
            0.0
        } else {
            covered.iter().filter(|&&c| c).count() as f64 / n as f64
        },
        longest_homopolymer: longest,
        low_complexity_regions: regions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entropy_matches_hand_computed_values() {
        assert_eq!(shannon_entropy_bits(b"AAAA"), 0.0);
        assert!((shannon_entropy_bits(b"ACAC") - 1.0).abs() < 1e-12);
        assert!((shannon_entropy_bits(b"ACDEFGHIKLMNPQRSTVWY") - 20f64.log2()).abs() < 1e-12);
        // 3 A, 1 C: −(¾ log2 ¾ + ¼ log2 ¼) = 0.811278…
        assert!((shannon_entropy_bits(b"AAAC") - 0.811_278_124_459_132_8).abs() < 1e-12);
    }

    #[test]
    fn a_poly_glutamate_insert_is_found_where_it_is() {
        // A varied sequence with 15 E in the middle.
        let s = format!(
            "{}{}{}",
            "MKTAYIAKQRQISFVKSHFSRQ",
            "E".repeat(15),
            "LEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"
        );
        let r = sequence_complexity(&s);
        assert_eq!(r.longest_homopolymer, 15);
        assert_eq!(r.min_window_entropy_bits, 0.0);
        // Every low-complexity window contains most of the run: the region spans the run and at
        // most a window's reach around it.
        assert_eq!(r.low_complexity_regions.len(), 1, "{r:?}");
        let (a, b) = r.low_complexity_regions[0];
        assert!(
            a <= 22 && b >= 37 && a + SEG_WINDOW >= 22 && b <= 37 + SEG_WINDOW,
            "{r:?}"
        );
        assert!(!r.passes(&ComplexityThresholds::default()));
    }

    #[test]
    fn a_natural_sequence_passes() {
        // Human ubiquitin.
        let r = sequence_complexity(
            "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG",
        );
        assert!(r.passes(&ComplexityThresholds::default()), "{r:?}");
        assert!(r.entropy_bits > 3.8, "{r:?}");
    }

    #[test]
    fn a_dipeptide_repeat_is_low_complexity_without_a_long_homopolymer() {
        let r = sequence_complexity(&"AL".repeat(30));
        assert_eq!(r.longest_homopolymer, 1);
        assert_eq!(r.low_complexity_fraction, 1.0);
        assert!((r.entropy_bits - 1.0).abs() < 1e-12);
        assert!(!r.passes(&ComplexityThresholds::default()));
    }

    #[test]
    fn short_and_empty_sequences() {
        let r = sequence_complexity("");
        assert_eq!((r.low_complexity_fraction, r.longest_homopolymer), (0.0, 0));
        assert!(r.low_complexity_regions.is_empty());
        let r = sequence_complexity("AAAC");
        assert_eq!(r.low_complexity_regions, vec![(0, 4)]);
        assert_eq!(r.min_window_entropy_bits, r.entropy_bits);
    }

    /// `fixtures/complexity/promod3_oracle.tsv` was written by the plain-Python implementation
    /// in `tools/complexity_calibration.py` (every ProMod3 chain it flags and every 50th other).
    #[test]
    fn agrees_with_the_python_oracle_on_promod3_chains() {
        use std::io::BufRead;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let db = root.join("../shared/data/promod3_structdb/chains.tsv.gz");
        let file = std::fs::File::open(&db).unwrap_or_else(|e| panic!("{}: {e}", db.display()));
        let mut sequences = std::collections::HashMap::new();
        for line in std::io::BufReader::new(flate2::read::GzDecoder::new(file))
            .lines()
            .skip(1)
        {
            let line = line.unwrap();
            let f: Vec<&str> = line.split('\t').collect();
            sequences.insert(format!("{}_{}", f[1], f[2]), f[5].to_string());
        }
        let oracle =
            std::fs::read_to_string(root.join("fixtures/complexity/promod3_oracle.tsv")).unwrap();
        let mut flagged = 0;
        let mut n = 0;
        for line in oracle.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let (fraction, run): (f64, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            let r = sequence_complexity(&sequences[f[0]]);
            assert!(
                (r.low_complexity_fraction - fraction).abs() < 1e-12,
                "{}: {r:?} vs {fraction}",
                f[0]
            );
            assert_eq!(r.longest_homopolymer, run, "{}", f[0]);
            flagged += usize::from(!r.passes(&ComplexityThresholds::default()));
            n += 1;
        }
        assert!(n > 800 && flagged > 400, "{n} chains, {flagged} flagged");
    }

    /// Brute force: each window's entropy from scratch, without the sliding counts.
    fn covered_brute(s: &[u8]) -> Vec<bool> {
        let mut c = vec![false; s.len()];
        if s.len() < SEG_WINDOW {
            return c;
        }
        for w in 0..=s.len() - SEG_WINDOW {
            if shannon_entropy_bits(&s[w..w + SEG_WINDOW]) < SEG_TRIGGER_BITS {
                c[w..w + SEG_WINDOW].fill(true);
            }
        }
        c
    }

    proptest! {
        #[test]
        fn regions_agree_with_brute_force(s in "[ACDEG]{12,80}") {
            let r = sequence_complexity(&s);
            let mut covered = vec![false; s.len()];
            for &(a, b) in &r.low_complexity_regions {
                prop_assert!(a < b && b <= s.len());
                covered[a..b].fill(true);
            }
            prop_assert_eq!(covered, covered_brute(s.as_bytes()));
            prop_assert!(r.entropy_bits >= 0.0 && r.entropy_bits <= 5f64.log2() + 1e-9);
            prop_assert!(r.min_window_entropy_bits <= 12f64.log2() + 1e-9);
        }

        #[test]
        fn longest_run_is_a_real_run(s in "[AC]{1,60}") {
            let r = sequence_complexity(&s);
            let run = "A".repeat(r.longest_homopolymer);
            let run_c = "C".repeat(r.longest_homopolymer);
            prop_assert!(s.contains(&run) || s.contains(&run_c));
            let longer_a = "A".repeat(r.longest_homopolymer + 1);
            let longer_c = "C".repeat(r.longest_homopolymer + 1);
            prop_assert!(!s.contains(&longer_a) && !s.contains(&longer_c));
        }
    }
}
