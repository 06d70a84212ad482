//! Pairwise protein alignment for identity clustering: banded Smith–Waterman with affine gaps
//! (BLOSUM62, gap open 11 + extend 1, the scoring of `mmseqs` and BLAST), reporting identity and
//! coverage of the best local alignment.
//!
//! Identity is counted as `mmseqs --seq-id-mode 0` counts it (identical pairs over alignment
//! columns, gaps included), so that our links and the `mmseqs easy-search` oracle measure the
//! same thing. No traceback is kept: every DP cell carries the start, identity and column count
//! of the path that reached it, which costs a few integers per cell instead of an n×m matrix.

/// Residue alphabet of the score matrix: the 20 amino acids, then `X` for anything else.
pub const ALPHABET: &[u8; 20] = b"ARNDCQEGHILKMFPSTWYV";
/// Index of unknown residues (`X`, `B`, `Z`, `U`, `O`, ...).
pub const UNKNOWN: u8 = 20;

/// BLOSUM62 (NCBI), rows and columns in [`ALPHABET`] order.
#[rustfmt::skip]
const BLOSUM62: [[i8; 20]; 20] = [
    [ 4,-1,-2,-2, 0,-1,-1, 0,-2,-1,-1,-1,-1,-2,-1, 1, 0,-3,-2, 0],
    [-1, 5, 0,-2,-3, 1, 0,-2, 0,-3,-2, 2,-1,-3,-2,-1,-1,-3,-2,-3],
    [-2, 0, 6, 1,-3, 0, 0, 0, 1,-3,-3, 0,-2,-3,-2, 1, 0,-4,-2,-3],
    [-2,-2, 1, 6,-3, 0, 2,-1,-1,-3,-4,-1,-3,-3,-1, 0,-1,-4,-3,-3],
    [ 0,-3,-3,-3, 9,-3,-4,-3,-3,-1,-1,-3,-1,-2,-3,-1,-1,-2,-2,-1],
    [-1, 1, 0, 0,-3, 5, 2,-2, 0,-3,-2, 1, 0,-3,-1, 0,-1,-2,-1,-2],
    [-1, 0, 0, 2,-4, 2, 5,-2, 0,-3,-3, 1,-2,-3,-1, 0,-1,-3,-2,-2],
    [ 0,-2, 0,-1,-3,-2,-2, 6,-2,-4,-4,-2,-3,-3,-2, 0,-2,-2,-3,-3],
    [-2, 0, 1,-1,-3, 0, 0,-2, 8,-3,-3,-1,-2,-1,-2,-1,-2,-2, 2,-3],
    [-1,-3,-3,-3,-1,-3,-3,-4,-3, 4, 2,-3, 1, 0,-3,-2,-1,-3,-1, 3],
    [-1,-2,-3,-4,-1,-2,-3,-4,-3, 2, 4,-2, 2, 0,-3,-2,-1,-2,-1, 1],
    [-1, 2, 0,-1,-3, 1, 1,-2,-1,-3,-2, 5,-1,-3,-1, 0,-1,-3,-2,-2],
    [-1,-1,-2,-3,-1, 0,-2,-3,-2, 1, 2,-1, 5, 0,-2,-1,-1,-1,-1, 1],
    [-2,-3,-3,-3,-2,-3,-3,-3,-1, 0, 0,-3, 0, 6,-4,-2,-2, 1, 3,-1],
    [-1,-2,-2,-1,-3,-1,-1,-2,-2,-3,-3,-1,-2,-4, 7,-1,-1,-4,-3,-2],
    [ 1,-1, 1, 0,-1, 0, 0, 0,-1,-2,-2, 0,-1,-2,-1, 4, 1,-3,-2,-2],
    [ 0,-1, 0,-1,-1,-1,-1,-2,-2,-1,-1,-1,-1,-2,-1, 1, 5,-2,-2, 0],
    [-3,-3,-4,-4,-2,-2,-3,-2,-2,-3,-2,-3,-1, 1,-4,-3,-2,11, 2,-3],
    [-2,-2,-2,-3,-2,-1,-2,-3, 2,-1,-1,-2,-1, 3,-3,-2,-2, 2, 7,-1],
    [ 0,-3,-3,-3,-1,-2,-2,-3,-3, 3, 1,-2, 1,-1,-2,-2, 0,-3,-1, 4],
];

/// Score of an unknown residue against anything (BLOSUM62's `X` column).
const UNKNOWN_SCORE: i32 = -1;
/// Gap of length k costs `GAP_OPEN + k * GAP_EXTEND`.
pub const GAP_OPEN: i32 = 11;
pub const GAP_EXTEND: i32 = 1;
const NEG: i32 = i32::MIN / 4;

/// Maps a one-letter sequence to score-matrix indices (case-insensitive; others → [`UNKNOWN`]).
pub fn encode(sequence: &str) -> Vec<u8> {
    let mut table = [UNKNOWN; 256];
    for (k, &c) in ALPHABET.iter().enumerate() {
        table[c as usize] = k as u8;
        table[c.to_ascii_lowercase() as usize] = k as u8;
    }
    sequence.bytes().map(|b| table[b as usize]).collect()
}

#[inline]
fn score(a: u8, b: u8) -> i32 {
    if a == UNKNOWN || b == UNKNOWN {
        UNKNOWN_SCORE
    } else {
        BLOSUM62[a as usize][b as usize] as i32
    }
}

/// The best local alignment of `a` and `b`: score, identity counts and aligned ranges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Alignment {
    pub score: i32,
    /// Identical aligned pairs (unknown residues never count).
    pub matches: u32,
    /// Alignment columns, gaps included.
    pub columns: u32,
    /// Aligned half-open ranges in `a` and `b`.
    pub a_start: u32,
    pub a_end: u32,
    pub b_start: u32,
    pub b_end: u32,
}

impl Alignment {
    /// Identical pairs over alignment columns (0 for an empty alignment).
    pub fn identity(&self) -> f32 {
        if self.columns == 0 {
            0.0
        } else {
            self.matches as f32 / self.columns as f32
        }
    }

    /// Fraction of `a` (length `len_a`) inside the alignment.
    pub fn coverage_a(&self, len_a: usize) -> f32 {
        (self.a_end - self.a_start) as f32 / len_a.max(1) as f32
    }

    pub fn coverage_b(&self, len_b: usize) -> f32 {
        (self.b_end - self.b_start) as f32 / len_b.max(1) as f32
    }

    /// Coverage of the shorter sequence, the one our link criterion uses.
    pub fn coverage_of_shorter(&self, len_a: usize, len_b: usize) -> f32 {
        if len_a <= len_b {
            self.coverage_a(len_a)
        } else {
            self.coverage_b(len_b)
        }
    }
}

/// What a DP state carries along its best path instead of a traceback.
#[derive(Clone, Copy, Default)]
struct Path {
    a_start: u32,
    b_start: u32,
    matches: u32,
    columns: u32,
}

#[derive(Clone, Copy)]
struct Cell {
    h: i32,
    hp: Path,
    e: i32,
    ep: Path,
    f: i32,
    fp: Path,
}

const BLANK: Cell = Cell {
    h: 0,
    hp: Path {
        a_start: 0,
        b_start: 0,
        matches: 0,
        columns: 0,
    },
    e: NEG,
    ep: Path {
        a_start: 0,
        b_start: 0,
        matches: 0,
        columns: 0,
    },
    f: NEG,
    fp: Path {
        a_start: 0,
        b_start: 0,
        matches: 0,
        columns: 0,
    },
};

#[inline]
fn extend(p: Path, matched: bool) -> Path {
    Path {
        matches: p.matches + matched as u32,
        columns: p.columns + 1,
        ..p
    }
}

/// Smith–Waterman restricted to cells with `j - i` within `half_width` of `diagonal`
/// (`i` indexes `a`, `j` indexes `b`; both encoded with [`encode`]). Cost `len(a) × (2w+1)`.
/// Long because the fill and the traceback share the band's index arithmetic (row `i`, band
/// offset `j − i − diagonal + w`); split, that arithmetic would be written twice.
pub fn local_align_banded(a: &[u8], b: &[u8], diagonal: isize, half_width: usize) -> Alignment {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let w = half_width as isize;
    let mut prev = vec![BLANK; b.len()];
    let mut cur = vec![BLANK; b.len()];
    let (mut prev_lo, mut prev_hi) = (1isize, 0isize); // empty
    let mut best = Alignment::default();
    for i in 0..n {
        let lo = (i + diagonal - w).max(0);
        let hi = (i + diagonal + w).min(m - 1);
        if lo > hi {
            (prev_lo, prev_hi) = (1, 0);
            continue;
        }
        let ai = a[i as usize];
        for j in lo..=hi {
            let ju = j as usize;
            let diag = if j > prev_lo && j - 1 <= prev_hi {
                prev[ju - 1]
            } else {
                BLANK
            };
            let up = if j >= prev_lo && j <= prev_hi {
                prev[ju]
            } else {
                BLANK
            };
            let left = if j > lo { cur[ju - 1] } else { BLANK };
            let bj = b[ju];
            let s = score(ai, bj);
            let matched = ai == bj && ai != UNKNOWN;
            let (hd, hdp) = if diag.h > 0 {
                (diag.h + s, extend(diag.hp, matched))
            } else {
                (
                    s,
                    Path {
                        a_start: i as u32,
                        b_start: j as u32,
                        matches: matched as u32,
                        columns: 1,
                    },
                )
            };
            let (e, ep) = {
                let open = left.h - GAP_OPEN - GAP_EXTEND;
                let ext = left.e - GAP_EXTEND;
                if left.h > 0 && open >= ext {
                    (open, extend(left.hp, false))
                } else {
                    (ext, extend(left.ep, false))
                }
            };
            let (f, fp) = {
                let open = up.h - GAP_OPEN - GAP_EXTEND;
                let ext = up.f - GAP_EXTEND;
                if up.h > 0 && open >= ext {
                    (open, extend(up.hp, false))
                } else {
                    (ext, extend(up.fp, false))
                }
            };
            let (mut h, mut hp) = (hd, hdp);
            if e > h {
                (h, hp) = (e, ep);
            }
            if f > h {
                (h, hp) = (f, fp);
            }
            if h <= 0 {
                (h, hp) = (0, Path::default());
            }
            if h > best.score {
                best = Alignment {
                    score: h,
                    matches: hp.matches,
                    columns: hp.columns,
                    a_start: hp.a_start,
                    a_end: i as u32 + 1,
                    b_start: hp.b_start,
                    b_end: j as u32 + 1,
                };
            }
            cur[ju] = Cell {
                h,
                hp,
                e: e.max(NEG),
                ep,
                f: f.max(NEG),
                fp,
            };
        }
        std::mem::swap(&mut prev, &mut cur);
        (prev_lo, prev_hi) = (lo, hi);
    }
    best
}

/// Best ungapped segment score on one diagonal (`j - i = diagonal`), Kadane's scan: a cheap
/// filter in front of the banded alignment.
pub fn ungapped_score(a: &[u8], b: &[u8], diagonal: isize) -> i32 {
    let i0 = (-diagonal).max(0) as usize;
    let j0 = diagonal.max(0) as usize;
    if i0 >= a.len() || j0 >= b.len() {
        return 0;
    }
    let (mut run, mut best) = (0i32, 0i32);
    for (&x, &y) in a[i0..].iter().zip(&b[j0..]) {
        run = (run + score(x, y)).max(0);
        best = best.max(run);
    }
    best
}

/// Unbanded Smith–Waterman (every cell); the brute-force reference for tests and small inputs.
pub fn local_align(a: &[u8], b: &[u8]) -> Alignment {
    local_align_banded(a, b, 0, a.len().max(b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn align(a: &str, b: &str) -> Alignment {
        local_align(&encode(a), &encode(b))
    }

    #[test]
    fn blosum62_is_symmetric() {
        for (i, row) in BLOSUM62.iter().enumerate() {
            for (j, &score) in row.iter().enumerate() {
                assert_eq!(score, BLOSUM62[j][i], "{i} {j}");
            }
        }
    }

    #[test]
    fn identical_sequences_align_end_to_end() {
        let s = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ";
        let al = align(s, s);
        assert_eq!((al.matches, al.columns), (s.len() as u32, s.len() as u32));
        assert_eq!((al.a_start, al.a_end), (0, s.len() as u32));
        assert_eq!(al.identity(), 1.0);
    }

    #[test]
    fn one_substitution_in_twenty() {
        let a = "MKTAYIAKQRQISFVKSHFS";
        let b = "MKTAYIAKQRWISFVKSHFS";
        let al = align(a, b);
        assert_eq!((al.matches, al.columns), (19, 20));
    }

    #[test]
    fn a_gap_counts_as_a_column() {
        // b lacks "QR" of a: 28 matches over 30 columns.
        let a = "MKTAYIAKWWQRQISFVKSHFSRQLEERLG";
        let b = "MKTAYIAKWWQISFVKSHFSRQLEERLG";
        let al = align(a, b);
        assert_eq!(al.matches, 28);
        assert_eq!(al.columns, 30);
        assert_eq!(al.coverage_of_shorter(a.len(), b.len()), 1.0);
    }

    #[test]
    fn local_alignment_skips_unrelated_flanks() {
        let core = "WCHWCHMKTAYIAKQRQISFVKSHF";
        let a = format!("GGGGGGGGGG{core}");
        let b = format!("{core}PPPPPPPPPP");
        let al = align(&a, &b);
        assert_eq!((al.a_start, al.a_end), (10, 10 + core.len() as u32));
        assert_eq!((al.b_start, al.b_end), (0, core.len() as u32));
        assert_eq!(al.identity(), 1.0);
    }

    #[test]
    fn band_restricts_the_search() {
        // The match lies on diagonal 15: a band around 0 of width 3 cannot reach it.
        let core = "WCHWCHMKTAYIAKQRQ";
        let a = encode(core);
        let b = encode(&format!("AAAAAAAAAAAAAAA{core}"));
        assert_eq!(local_align_banded(&a, &b, 15, 3).matches, core.len() as u32);
        assert!(local_align_banded(&a, &b, 0, 3).matches < 5);
    }

    #[test]
    fn ungapped_score_follows_the_diagonal() {
        let a = encode("WWWWW");
        let b = encode("AAWWWWW");
        assert_eq!(ungapped_score(&a, &b, 2), 55);
        assert!(ungapped_score(&a, &b, 0) < 55);
        assert_eq!(ungapped_score(&a, &b, 9), 0);
    }

    #[test]
    fn unknown_residues_never_match() {
        let al = align("XXXXXXXXXX", "XXXXXXXXXX");
        assert_eq!(al.score, 0);
        assert_eq!(al.matches, 0);
    }
}
