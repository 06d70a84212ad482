//! Tests of the masked multi-track corruption and collation (spec esm3-training.md §1).

use esm3_train::noise::{
    collate, corrupt, Augmentation, CoordinateMask, CorruptedSample, NoiseConfig, Schedule,
    TrackNoise, TrainingProtein, IGNORE,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const AA: &[u8] = b"LAGVSERTIDPKQNFYMHWCX";
const SS: &[u8] = b"GHITEBSC";

/// Backbone around a Cα trace: N and C offset so every residue has a finite frame.
fn backbone(ca: &[[f32; 3]]) -> Vec<[[f32; 3]; 3]> {
    ca.iter()
        .map(|&[x, y, z]| {
            [
                [x - 1.2, y + 0.5, z],
                [x, y, z],
                [x + 1.2, y + 0.5, z + 0.3],
            ]
        })
        .collect()
}

/// Three strands of `s` residues meandering along x, laid out as a triangle in y–z, so residues
/// facing each other in all three strands are mutually within 6 Å.
fn bundle_ca(n: usize, s: usize) -> Vec<[f32; 3]> {
    let corners = [[0.0, 0.0], [4.5, 0.0], [2.25, 3.9]];
    (0..n)
        .map(|i| {
            let strand = (i / s) % 3;
            let q = i % s;
            let x = if (i / s) % 2 == 1 { s - 1 - q } else { q };
            let [y, z] = corners[strand];
            [3.3 * x as f32 + 100.0 * (i / (3 * s)) as f32, y, z]
        })
        .collect()
}

fn random_walk_ca(n: usize, rng: &mut impl Rng) -> Vec<[f32; 3]> {
    let mut p = [0.0f32; 3];
    (0..n)
        .map(|_| {
            let d: [f32; 3] = [
                rng.random_range(-1.0..1.0),
                rng.random_range(-1.0..1.0),
                rng.random_range(-1.0..1.0),
            ];
            let norm = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-3);
            for a in 0..3 {
                p[a] += 3.8 * d[a] / norm;
            }
            p
        })
        .collect()
}

/// A protein with every track; some labels missing so "no label" paths are exercised.
fn full_protein(n: usize, rng: &mut impl Rng) -> TrainingProtein {
    let ca = if rng.random_bool(0.5) {
        bundle_ca(n, 20)
    } else {
        random_walk_ca(n, rng)
    };
    let mut bb = backbone(&ca);
    for r in bb.iter_mut() {
        if rng.random_bool(0.05) {
            r[1][0] = f32::NAN;
        }
    }
    TrainingProtein {
        sequence: (0..n)
            .map(|_| AA[rng.random_range(0..AA.len())] as char)
            .collect(),
        structure_tokens: Some((0..n).map(|_| rng.random_range(-1..4096)).collect()),
        backbone: Some(bb),
        ss8: Some(
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.05) {
                        'X'
                    } else {
                        SS[rng.random_range(0..SS.len())] as char
                    }
                })
                .collect(),
        ),
        sasa: Some(
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.05) {
                        f32::NAN
                    } else {
                        rng.random_range(0.0..200.0)
                    }
                })
                .collect(),
        ),
        function_tokens: Some(
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.2) {
                        [0; 8]
                    } else {
                        std::array::from_fn(|_| rng.random_range(3..260))
                    }
                })
                .collect(),
        ),
        residue_annotations: Some(
            (0..n)
                .map(|_| {
                    let k = rng.random_range(0..4);
                    (0..k).map(|_| rng.random_range(4..1478)).collect()
                })
                .collect(),
        ),
    }
}

/// A protein whose tracks are each present with probability 1/2.
fn partial_protein(n: usize, rng: &mut impl Rng) -> TrainingProtein {
    let mut p = full_protein(n, rng);
    if rng.random_bool(0.5) {
        p.structure_tokens = None;
    }
    if rng.random_bool(0.5) {
        p.backbone = None;
    }
    if rng.random_bool(0.5) {
        p.ss8 = None;
    }
    if rng.random_bool(0.5) {
        p.sasa = None;
    }
    if rng.random_bool(0.5) {
        p.function_tokens = None;
    }
    if rng.random_bool(0.5) {
        p.residue_annotations = None;
    }
    p
}

fn seq_id(c: u8) -> i64 {
    esm3_tokens::sequence::char_id(c as char).unwrap() as i64
}

fn resolved(p: &TrainingProtein, k: usize) -> bool {
    p.backbone
        .as_ref()
        .is_some_and(|b| b[k].iter().flatten().all(|v| v.is_finite()))
}

/// Every invariant that must hold for any protein and any draw.
fn check_invariants(p: &TrainingProtein, s: &CorruptedSample, cfg: &NoiseConfig) {
    let l = s.len();
    assert!(
        l <= cfg.crop_length,
        "length {l} over crop {}",
        cfg.crop_length
    );
    for v in [
        s.residue_index.len(),
        s.chain_id.len(),
        s.structure.len(),
        s.ss8.len(),
        s.sasa.len(),
        s.function.len(),
        s.residue_annotations.len(),
        s.coordinates.len(),
        s.per_res_plddt.len(),
        s.targets.sequence.len(),
        s.targets.structure.len(),
        s.targets.ss8.len(),
        s.targets.sasa.len(),
        s.targets.function.len(),
    ] {
        assert_eq!(v, l);
    }
    let (start, end) = s.record.window;
    let n = p.sequence.len();
    // BOS only when the N-terminus survives, EOS only when the C-terminus does.
    assert_eq!(
        s.sequence[0] == 0,
        s.residue_index[1.min(l - 1)] == 0 && start == 0
    );
    assert_eq!(
        s.sequence[l - 1] == 2,
        l >= 2 && s.residue_index[l - 2] == n as i64 - 1 && end == n
    );
    if start != 0 {
        assert_ne!(s.sequence[0], 0);
    }
    assert!(s.chain_id.windows(2).all(|w| w[0] <= w[1]));
    let breaks = s.sequence.iter().filter(|&&v| v == 31).count();
    assert_eq!(breaks as i64, s.chain_id[l - 1]);
    match s.record.augmentation {
        Augmentation::None => assert_eq!(breaks, 0),
        Augmentation::ResidueGap { chains } => assert_eq!(breaks + 1, chains),
        Augmentation::InterfaceSplit { .. } => assert_eq!(breaks, 1),
    }
    let seq = p.sequence.as_bytes();
    for pos in 0..l {
        let t = &s.targets;
        if s.residue_index[pos] < 0 {
            // BOS/EOS/chain break: never masked, never supervised, no coordinates.
            assert!([0, 2, 31].contains(&s.sequence[pos]));
            let want = match s.sequence[pos] {
                0 => 4098,
                2 => 4097,
                _ => 4100,
            };
            assert_eq!(s.structure[pos], want);
            assert_eq!(t.sequence[pos], IGNORE);
            assert_eq!(t.structure[pos], IGNORE);
            assert_eq!(t.ss8[pos], IGNORE);
            assert_eq!(t.sasa[pos], IGNORE);
            assert_eq!(t.function[pos], [IGNORE; 8]);
            if let Some(r) = &t.residue_annotations {
                assert!(r[pos].is_none());
            }
            assert!(s.coordinates[pos].iter().flatten().all(|v| v.is_nan()));
            assert_eq!(s.per_res_plddt[pos], 0.0);
            continue;
        }
        let k = s.residue_index[pos] as usize;
        assert!(k >= start && k < end);
        // Sequence: a target only where masked, and then the true residue.
        let label = seq_id(seq[k]);
        if s.sequence[pos] == 32 {
            assert_eq!(t.sequence[pos], if seq[k] == b'X' { IGNORE } else { label });
        } else {
            assert_eq!(s.sequence[pos], label);
            assert_eq!(t.sequence[pos], IGNORE);
        }
        // Structure: targets only at masked positions with a true code.
        if t.structure[pos] != IGNORE {
            assert_eq!(s.structure[pos], 4096);
            assert_eq!(t.structure[pos], p.structure_tokens.as_ref().unwrap()[k]);
            assert!(p.backbone.is_none() || resolved(p, k));
        }
        if s.structure[pos] != 4096 {
            assert_eq!(s.structure[pos], p.structure_tokens.as_ref().unwrap()[k]);
        }
        // SS8 / SASA: supervised ⇒ input masked.
        if t.ss8[pos] != IGNORE {
            assert_eq!(s.ss8[pos], 0);
            assert!((3..=10).contains(&t.ss8[pos]));
        }
        if t.sasa[pos] != IGNORE {
            assert_eq!(s.sasa[pos], 0);
            assert!((3..=18).contains(&t.sasa[pos]));
        }
        // Function: whole residue together.
        let f = t.function[pos];
        assert!(f.iter().all(|&v| v == IGNORE) || f.iter().all(|&v| v != IGNORE));
        if f[0] != IGNORE {
            assert_eq!(s.function[pos], [0; 8]);
            assert_eq!(f, p.function_tokens.as_ref().unwrap()[k]);
        } else if s.function[pos] != [0; 8] {
            assert_eq!(s.function[pos], p.function_tokens.as_ref().unwrap()[k]);
        }
        if let Some(r) = &t.residue_annotations {
            if let Some(labels) = &r[pos] {
                assert_eq!(s.residue_annotations[pos], [0; 16]);
                let mut want = p.residue_annotations.as_ref().unwrap()[k].clone();
                want.sort_unstable();
                want.dedup();
                assert_eq!(labels, &want);
            }
        }
        // Coordinates: visible ⇔ pLDDT 1; visible values near the truth.
        let c = s.coordinates[pos];
        let visible = c.iter().flatten().all(|v| v.is_finite());
        assert!(visible || c.iter().flatten().all(|v| v.is_nan()));
        assert_eq!(s.per_res_plddt[pos], if visible { 1.0 } else { 0.0 });
        if visible {
            assert!(resolved(p, k));
            let truth = p.backbone.as_ref().unwrap()[k];
            for (a, b) in c.iter().flatten().zip(truth.iter().flatten()) {
                assert!((a - b).abs() < 1.0, "noise too large: {a} vs {b}");
            }
        }
    }
    // A dropped output track supervises every labelled residue of the sample.
    let r = &s.record;
    let residue_pos: Vec<usize> = (0..l).filter(|&q| s.residue_index[q] >= 0).collect();
    if r.structure.dropped {
        let codes = p.structure_tokens.as_ref().unwrap();
        for &q in &residue_pos {
            let k = s.residue_index[q] as usize;
            let has = (0..4096).contains(&codes[k]) && (p.backbone.is_none() || resolved(p, k));
            assert_eq!(s.targets.structure[q] != IGNORE, has);
        }
    }
    if r.ss8.dropped {
        let ss = p.ss8.as_ref().unwrap().as_bytes();
        for &q in &residue_pos {
            let k = s.residue_index[q] as usize;
            assert_eq!(s.targets.ss8[q] != IGNORE, ss[k] != b'X');
        }
    }
    if r.sasa.dropped {
        let v = p.sasa.as_ref().unwrap();
        for &q in &residue_pos {
            let k = s.residue_index[q] as usize;
            assert_eq!(s.targets.sasa[q] != IGNORE, !v[k].is_nan());
        }
    }
    if r.function.dropped {
        let f = p.function_tokens.as_ref().unwrap();
        for &q in &residue_pos {
            let k = s.residue_index[q] as usize;
            assert_eq!(s.targets.function[q][0] != IGNORE, f[k] != [0; 8]);
        }
    }
    if r.residue_annotations.dropped {
        let t = s.targets.residue_annotations.as_ref().unwrap();
        assert!(residue_pos.iter().all(|&q| t[q].is_some()));
    }
    if r.coordinates.dropped
        && !matches!(r.coordinate_mask, CoordinateMask::AtomicCoordination { .. })
    {
        assert!(s.per_res_plddt.iter().all(|&v| v == 0.0));
    }
    assert_eq!(s.average_plddt, 1.0);
}

#[test]
fn schedule_means_match_the_spec_table() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 20_000;
    for sched in Schedule::ALL {
        let draws: Vec<f64> = (0..n).map(|_| sched.sample_rate(&mut rng)).collect();
        assert!(draws.iter().all(|r| (0.0..=1.0).contains(r)));
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n as f64;
        let se = (sched.rate_variance() / n as f64).sqrt();
        println!(
            "{sched:?}: mean {mean:.4} (spec {:.4}, 4·SE {:.4}), var {var:.4} (analytic {:.4})",
            sched.mean_rate(),
            4.0 * se,
            sched.rate_variance()
        );
        assert!(
            (mean - sched.mean_rate()).abs() < 4.0 * se,
            "{sched:?}: mean {mean} vs {}",
            sched.mean_rate()
        );
        assert!((var - sched.rate_variance()).abs() < 0.1 * sched.rate_variance());
    }
    // Spec table's means, written out so a wrong `mean_rate` cannot hide a wrong sampler.
    let spec = [0.5, 2.0 / std::f64::consts::PI, 0.75, 1.0 / 3.0, 0.30];
    for (s, m) in Schedule::ALL.iter().zip(spec) {
        assert!((s.mean_rate() - m).abs() < 1e-12);
    }
    // betalinear30's median is ≈ 0.25 (spec table).
    let mut d: Vec<f64> = (0..n)
        .map(|_| Schedule::Betalinear30.sample_rate(&mut rng))
        .collect();
    d.sort_by(f64::total_cmp);
    assert!((d[n / 2] - 0.25).abs() < 0.02, "median {}", d[n / 2]);
}

#[test]
fn default_config_is_table_s6() {
    let c = NoiseConfig::default();
    assert_eq!(c.sequence, TrackNoise::new(Schedule::Betalinear30, 0.0));
    assert_eq!(c.structure, TrackNoise::new(Schedule::Cosine, 0.25));
    assert_eq!(c.coordinates, TrackNoise::new(Schedule::Cubic, 0.5));
    assert_eq!(c.ss8, TrackNoise::new(Schedule::Sqrt, 0.9));
    assert_eq!(c.sasa, TrackNoise::new(Schedule::Sqrt, 0.9));
    assert_eq!(c.function, TrackNoise::new(Schedule::Cosine, 0.9));
    assert_eq!(c.residue_annotations, TrackNoise::new(Schedule::Sqrt, 0.9));
    assert_eq!(c.crop_length, 256);
    assert_eq!(c.coordinate_noise_std, 0.1);
    assert_eq!(c.span_mask_probability, 0.5);
    assert_eq!(c.atomic_coordination_probability, 0.05);
    assert_eq!(c.interface_split_probability, 0.05);
    assert_eq!(
        (
            c.residue_gap_geometric_p,
            c.residue_gap_max_chains,
            c.residue_gap_min_gap
        ),
        (0.9, 9, 10)
    );
    // TOML round trip; partial tables fill from the defaults; unknown keys are refused.
    let text = toml::to_string(&c).unwrap();
    assert_eq!(toml::from_str::<NoiseConfig>(&text).unwrap(), c);
    let partial: NoiseConfig =
        toml::from_str("crop_length = 128\n[ss8]\nschedule = \"cosine\"\ndropout = 0.5\n").unwrap();
    assert_eq!(partial.crop_length, 128);
    assert_eq!(partial.ss8, TrackNoise::new(Schedule::Cosine, 0.5));
    assert_eq!(partial.sasa, c.sasa);
    assert!(toml::from_str::<NoiseConfig>("crop_lenght = 128").is_err());
    assert!(
        toml::from_str::<NoiseConfig>("[ss8]\nschedule = \"cosine\"\ndropout = 0.5\nx = 1\n")
            .is_err()
    );
    let bad = NoiseConfig {
        span_mask_probability: 1.5,
        ..c
    };
    assert!(bad.validate().is_err());
}

#[test]
fn dropout_frequencies_and_mean_mask_rates() {
    let cfg = NoiseConfig::default();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let protein = full_protein(60, &mut rng);
    let n = 4000;
    let mut dropped = [0usize; 6];
    let mut seq_masked = 0usize;
    let mut seq_total = 0usize;
    let mut aug = 0usize;
    let mut atomic = 0usize;
    for _ in 0..n {
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        let r = &s.record;
        for (i, t) in [
            r.structure,
            r.coordinates,
            r.ss8,
            r.sasa,
            r.function,
            r.residue_annotations,
        ]
        .iter()
        .enumerate()
        {
            dropped[i] += t.dropped as usize;
        }
        assert!(!r.sequence.dropped);
        seq_masked += r.sequence.n_masked;
        seq_total += s.residue_index.iter().filter(|&&k| k >= 0).count();
        aug += matches!(r.augmentation, Augmentation::ResidueGap { .. }) as usize;
        atomic += matches!(r.coordinate_mask, CoordinateMask::AtomicCoordination { .. }) as usize;
    }
    let want = [0.25, 0.5, 0.9, 0.9, 0.9, 0.9];
    for (i, (&d, &p)) in dropped.iter().zip(&want).enumerate() {
        let f = d as f64 / n as f64;
        let tol = 4.0 * (p * (1.0 - p) / n as f64).sqrt();
        println!("track {i}: dropout {f:.4} (spec {p})");
        assert!((f - p).abs() < tol, "track {i}: dropout {f} vs {p}");
    }
    let seq_rate = seq_masked as f64 / seq_total as f64;
    println!("sequence masked fraction {seq_rate:.4} (spec 0.30)");
    assert!((seq_rate - 0.30).abs() < 0.02);
    // Residue gap fires with 1 − 0.9 (length 60 fits up to 5 chains).
    let f = aug as f64 / n as f64;
    println!("residue-gap frequency {f:.4} (spec 0.10)");
    assert!((f - 0.1).abs() < 4.0 * (0.09f64 / n as f64).sqrt());
    println!(
        "atomic-coordination frequency {:.4}",
        atomic as f64 / n as f64
    );
}

#[test]
fn crop_keeps_bos_only_with_the_n_terminus() {
    let cfg = NoiseConfig {
        crop_length: 50,
        residue_gap_geometric_p: 1.0,
        interface_split_probability: 0.0,
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let protein = full_protein(60, &mut rng);
    let (mut with_bos, mut with_eos, mut neither) = (0, 0, 0);
    for _ in 0..400 {
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        check_invariants(&protein, &s, &cfg);
        let (a, b) = s.record.window;
        assert_eq!(b - a, 48);
        let bos = s.sequence[0] == 0;
        let eos = *s.sequence.last().unwrap() == 2;
        assert_eq!(bos, a == 0);
        assert_eq!(eos, b == 60);
        assert_eq!(s.len(), 48 + bos as usize + eos as usize);
        with_bos += bos as usize;
        with_eos += eos as usize;
        neither += (!bos && !eos) as usize;
    }
    assert!(with_bos > 0 && with_eos > 0 && neither > 0);
    // Short proteins are not cropped and keep both.
    let short = full_protein(30, &mut rng);
    let s = corrupt(&short, &cfg, &mut rng).unwrap();
    assert_eq!(s.len(), 32);
    assert_eq!((s.sequence[0], s.sequence[31]), (0, 2));
}

#[test]
fn residue_gaps_delete_at_least_ten_residues_and_insert_breaks() {
    let cfg = NoiseConfig {
        residue_gap_geometric_p: 0.0,
        residue_gap_max_chains: 4,
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for trial in 0..200 {
        let n = rng.random_range(12..200);
        let protein = full_protein(n, &mut rng);
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        check_invariants(&protein, &s, &cfg);
        let want = 4.min(n.div_ceil(11));
        assert_eq!(
            s.record.augmentation,
            Augmentation::ResidueGap { chains: want },
            "trial {trial}, n {n}"
        );
        // Termini are kept: the chains tile the window from its first to its last residue.
        assert_eq!((s.sequence[0], *s.sequence.last().unwrap()), (0, 2));
        let l = s.len();
        for p in 1..l - 1 {
            if s.sequence[p] == 31 {
                let (before, after) = (s.residue_index[p - 1], s.residue_index[p + 1]);
                assert!(before >= 0 && after >= 0);
                let deleted = after - before - 1;
                assert!(deleted >= 10, "gap {deleted} at {p}");
                assert_eq!(s.chain_id[p + 1], s.chain_id[p - 1] + 1);
            } else if s.residue_index[p] >= 0 && s.residue_index[p + 1] >= 0 {
                assert_eq!(s.residue_index[p + 1], s.residue_index[p] + 1);
            }
        }
    }
}

#[test]
fn interface_split_cuts_around_a_long_range_contact() {
    let cfg = NoiseConfig {
        residue_gap_geometric_p: 1.0,
        interface_split_probability: 1.0,
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut protein = full_protein(120, &mut rng);
    protein.backbone = Some(backbone(&bundle_ca(120, 20)));
    let ca = |k: usize| protein.backbone.as_ref().unwrap()[k][1];
    for _ in 0..100 {
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        check_invariants(&protein, &s, &cfg);
        let Augmentation::InterfaceSplit { contact: (i, j) } = s.record.augmentation else {
            panic!("no split: {:?}", s.record.augmentation);
        };
        let (a, b) = (ca(i), ca(j));
        let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
        assert!(d < 8.0 && j - i >= 24);
        let pos = |k: usize| s.residue_index.iter().position(|&r| r == k as i64).unwrap();
        assert_eq!(s.chain_id[pos(i)], 0);
        assert_eq!(s.chain_id[pos(j)], 1);
        // Chain 1 = [≤ i−3, ≥ i+3]; chain 2 = [≥ i+15, ≥ j+15]; no residue twice.
        let res: Vec<i64> = s
            .residue_index
            .iter()
            .copied()
            .filter(|&r| r >= 0)
            .collect();
        assert!(res.windows(2).all(|w| w[0] < w[1]));
        let first = res[0] as usize;
        assert!(first + 3 <= i);
        let brk = s.sequence.iter().position(|&v| v == 31).unwrap();
        let (end1, start2) = (
            s.residue_index[brk - 1] as usize,
            s.residue_index[brk + 1] as usize,
        );
        assert!(end1 >= i + 3 && end1 + 15 <= j);
        assert!(start2 >= i + 15 && start2 + 3 <= j);
        assert!(*res.last().unwrap() as usize >= j + 15);
    }
}

#[test]
fn atomic_coordination_shows_only_the_triplet_and_neighbours() {
    let cfg = NoiseConfig {
        atomic_coordination_probability: 1.0,
        residue_gap_geometric_p: 1.0,
        interface_split_probability: 0.0,
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut protein = full_protein(60, &mut rng);
    protein.backbone = Some(backbone(&bundle_ca(60, 20)));
    let ca = |k: usize| protein.backbone.as_ref().unwrap()[k][1];
    let mut shown_counts = Vec::new();
    for _ in 0..200 {
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        check_invariants(&protein, &s, &cfg);
        let CoordinateMask::AtomicCoordination { triplet } = s.record.coordinate_mask else {
            panic!("not forced: {:?}", s.record.coordinate_mask);
        };
        for x in 0..3 {
            for y in x + 1..3 {
                let (a, b) = (ca(triplet[x]), ca(triplet[y]));
                let d =
                    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
                assert!(d < 6.0 && triplet[x].abs_diff(triplet[y]) >= 10);
            }
        }
        let visible: Vec<usize> = (0..s.len())
            .filter(|&p| s.per_res_plddt[p] == 1.0)
            .map(|p| s.residue_index[p] as usize)
            .collect();
        for t in triplet {
            assert!(visible.contains(&t));
        }
        for v in &visible {
            assert!(triplet.iter().any(|t| t.abs_diff(*v) <= 1), "{v} shown");
        }
        shown_counts.push(visible.len());
    }
    assert_eq!(*shown_counts.iter().min().unwrap(), 3);
    assert!(*shown_counts.iter().max().unwrap() > 6);
}

#[test]
fn coordinate_noise_has_the_configured_std_and_stays_out_of_targets() {
    let cfg = NoiseConfig {
        coordinates: TrackNoise::new(Schedule::Sqrt, 0.0),
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let protein = full_protein(100, &mut rng);
    let before = protein.clone();
    let mut diffs = Vec::new();
    for _ in 0..200 {
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        for p in 0..s.len() {
            if s.per_res_plddt[p] == 1.0 {
                let truth = protein.backbone.as_ref().unwrap()[s.residue_index[p] as usize];
                for (a, b) in s.coordinates[p]
                    .iter()
                    .flatten()
                    .zip(truth.iter().flatten())
                {
                    diffs.push((a - b) as f64);
                }
            }
            let t = s.targets.structure[p];
            if t != IGNORE {
                assert_eq!(
                    t,
                    protein.structure_tokens.as_ref().unwrap()[s.residue_index[p] as usize]
                );
            }
        }
    }
    // NaN ≠ NaN, so compare the debug text.
    assert_eq!(
        format!("{protein:?}"),
        format!("{before:?}"),
        "the input protein must not change"
    );
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let std = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n).sqrt();
    println!(
        "coordinate noise: {} values, mean {mean:.5}, std {std:.5}",
        diffs.len()
    );
    assert!(n > 10_000.0);
    assert!(mean.abs() < 4.0 * 0.1 / n.sqrt());
    assert!((std - 0.1).abs() < 0.003);
    // Zero std shows the clean coordinates.
    let exact = NoiseConfig {
        coordinate_noise_std: 0.0,
        ..cfg
    };
    let s = corrupt(&protein, &exact, &mut rng).unwrap();
    for p in 0..s.len() {
        if s.per_res_plddt[p] == 1.0 {
            let truth = protein.backbone.as_ref().unwrap()[s.residue_index[p] as usize];
            assert_eq!(s.coordinates[p], truth);
        }
    }
}

#[test]
fn span_masks_are_contiguous() {
    let cfg = NoiseConfig {
        coordinates: TrackNoise::new(Schedule::Linear, 0.0),
        span_mask_probability: 1.0,
        max_spans: 2,
        atomic_coordination_probability: 0.0,
        residue_gap_geometric_p: 1.0,
        interface_split_probability: 0.0,
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let mut protein = full_protein(80, &mut rng);
    protein.backbone = Some(backbone(&random_walk_ca(80, &mut rng)));
    let mut frac = 0.0;
    for _ in 0..300 {
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        assert_eq!(s.record.coordinate_mask, CoordinateMask::Span);
        let hidden: Vec<bool> = (1..s.len() - 1)
            .map(|p| s.per_res_plddt[p] == 0.0)
            .collect();
        let runs = hidden.windows(2).filter(|w| !w[0] && w[1]).count() + hidden[0] as usize;
        assert!(runs <= 2, "{runs} hidden runs");
        let f = hidden.iter().filter(|&&h| h).count() as f64 / hidden.len() as f64;
        assert!((f - s.record.coordinates.rate).abs() <= 0.5 / 80.0 + 1e-9);
        frac += f;
    }
    println!(
        "span mask mean hidden fraction {:.3} (linear 0.5)",
        frac / 300.0
    );
}

#[test]
fn same_seed_gives_the_same_sample() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let protein = full_protein(300, &mut rng);
    let cfg = NoiseConfig::default();
    for seed in 0..20 {
        let a = corrupt(&protein, &cfg, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let b = corrupt(&protein, &cfg, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        // NaN ≠ NaN, so compare coordinates bitwise.
        let bits = |s: &CorruptedSample| -> Vec<u32> {
            s.coordinates
                .iter()
                .flatten()
                .flatten()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(a.sequence, b.sequence);
        assert_eq!(a.targets, b.targets);
        assert_eq!(a.record, b.record);
        assert_eq!(a.structure, b.structure);
    }
}

#[test]
fn invalid_proteins_are_refused() {
    let cfg = NoiseConfig::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut p = full_protein(10, &mut rng);
    p.sasa = Some(vec![1.0; 9]);
    let e = corrupt(&p, &cfg, &mut rng).unwrap_err().to_string();
    assert!(
        e.contains("sasa") && e.contains("9") && e.contains("10"),
        "{e}"
    );
    let p = TrainingProtein {
        sequence: "AC|D".into(),
        ..Default::default()
    };
    assert!(corrupt(&p, &cfg, &mut rng).is_err());
    let p = TrainingProtein {
        sequence: String::new(),
        ..Default::default()
    };
    assert!(corrupt(&p, &cfg, &mut rng).is_err());
    let p = TrainingProtein {
        sequence: "ACD".into(),
        function_tokens: Some(vec![[0; 8], [300; 8], [0; 8]]),
        ..Default::default()
    };
    assert!(corrupt(&p, &cfg, &mut rng).is_err());
}

#[test]
fn collate_pads_with_each_tracks_pad_id() {
    let cfg = NoiseConfig {
        residue_gap_geometric_p: 1.0,
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    let a = corrupt(&full_protein(20, &mut rng), &cfg, &mut rng).unwrap();
    let mut short = full_protein(7, &mut rng);
    short.residue_annotations = None;
    let b = corrupt(&short, &cfg, &mut rng).unwrap();
    let batch = collate(&[a.clone(), b.clone()]).unwrap();
    let l = 22;
    assert_eq!(batch.lengths, vec![22, 9]);
    let inp = &batch.input;
    let seq = inp.sequence_tokens.as_ref().unwrap();
    assert_eq!(seq.shape, vec![2, l]);
    assert_eq!(&seq.data[..l], &a.sequence[..]);
    assert_eq!(&seq.data[l..l + 9], &b.sequence[..]);
    assert!(seq.data[l + 9..].iter().all(|&v| v == 1));
    let st = inp.structure_tokens.as_ref().unwrap();
    assert!(st.data[l + 9..].iter().all(|&v| v == 4099));
    for arr in [
        inp.ss8_tokens.as_ref().unwrap(),
        inp.sasa_tokens.as_ref().unwrap(),
        inp.chain_id.as_ref().unwrap(),
    ] {
        assert!(arr.data[l + 9..].iter().all(|&v| v == 0));
    }
    assert_eq!(inp.function_tokens.as_ref().unwrap().shape, vec![2, l, 8]);
    assert_eq!(
        inp.residue_annotation_tokens.as_ref().unwrap().shape,
        vec![2, l, 16]
    );
    let coords = inp.structure_coords.as_ref().unwrap();
    assert_eq!(coords.shape, vec![2, l, 3, 3]);
    assert!(coords.data[(l + 9) * 9..].iter().all(|v| v.is_nan()));
    let sid = inp.sequence_id.as_ref().unwrap();
    assert!(sid.data[..l + 9].iter().all(|&v| v == 0));
    assert!(sid.data[l + 9..].iter().all(|&v| v == 1));
    assert_eq!(
        inp.per_res_plddt.as_ref().unwrap().data[l..l + 9],
        b.per_res_plddt[..]
    );
    assert!(inp
        .average_plddt
        .as_ref()
        .unwrap()
        .data
        .iter()
        .all(|&v| v == 1.0));

    let t = &batch.targets;
    assert_eq!(&t.sequence.data[..l], &a.targets.sequence[..]);
    assert!(t.sequence.data[l + 9..].iter().all(|&v| v == IGNORE));
    assert!(t.function.data[(l + 9) * 8..].iter().all(|&v| v == IGNORE));
    let r = t.residue_annotations.as_ref().unwrap();
    assert_eq!(r.shape, vec![2, l, 1478]);
    assert!(r.data[l * 1478..].iter().all(|&v| v == -1.0));
    let expect_seq = a.record.sequence.n_supervised + b.record.sequence.n_supervised;
    assert_eq!(batch.n_supervised.sequence, expect_seq);
    assert_eq!(
        batch.n_supervised.function,
        a.record.function.n_supervised + b.record.function.n_supervised
    );
    assert_eq!(
        batch.n_supervised.residue_annotations,
        a.record.residue_annotations.n_supervised
    );
    // Equal lengths: no padding, no sequence_id.
    let same = collate(&[a.clone(), a]).unwrap();
    assert!(same.input.sequence_id.is_none());
    assert!(collate(&[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn corruption_invariants_hold(seed in any::<u64>(), n in 1usize..140, crop in 3usize..160,
                                  gap_p in prop_oneof![Just(0.9), Just(0.3)],
                                  special in 0.0f64..0.6) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let protein = partial_protein(n, &mut rng);
        let cfg = NoiseConfig {
            crop_length: crop,
            residue_gap_geometric_p: gap_p,
            interface_split_probability: special,
            atomic_coordination_probability: special,
            ..NoiseConfig::default()
        };
        let s = corrupt(&protein, &cfg, &mut rng).unwrap();
        check_invariants(&protein, &s, &cfg);
        let batch = collate(std::slice::from_ref(&s)).unwrap();
        prop_assert_eq!(batch.lengths[0], s.len());
        prop_assert_eq!(batch.n_supervised.sequence, s.record.sequence.n_supervised);
    }
}

/// The collated batch is accepted by the model, and padding (excluded through `sequence_id`)
/// leaves every real position's logits as they are when the sample is run alone.
#[test]
fn collated_batch_runs_through_the_model_and_padding_is_inert() {
    use candle_core::{DType, Device, IndexOp};
    use esm3_models::init::random_weights;
    use esm3_models::{Esm3, Esm3Config, ModelConfig};

    let config = Esm3Config {
        d_model: 32,
        n_heads: 2,
        v_heads: 2,
        n_layers: 2,
    };
    let w = random_weights(&ModelConfig::Esm3(config.clone()), 5).unwrap();
    let model = Esm3::new(
        &config,
        candle_nn::VarBuilder::from_tensors(w, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let cfg = NoiseConfig {
        coordinates: TrackNoise::new(Schedule::Sqrt, 0.0),
        residue_gap_geometric_p: 0.0,
        residue_gap_max_chains: 2,
        ..NoiseConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut long = full_protein(30, &mut rng);
    long.backbone = Some(backbone(&bundle_ca(30, 10)));
    let a = corrupt(&long, &cfg, &mut rng).unwrap();
    let b = corrupt(&full_protein(12, &mut rng), &cfg, &mut rng).unwrap();
    assert!(a.chain_id.contains(&1), "expected two pseudo-chains");
    let batch = collate(&[a, b.clone()]).unwrap();
    let out = model.forward(&batch.input).unwrap();
    let alone = model
        .forward(&collate(std::slice::from_ref(&b)).unwrap().input)
        .unwrap();
    let n = b.len();
    for ((name, x), (_, y)) in out.named().into_iter().zip(alone.named()) {
        let x = x.i((1, 0..n)).unwrap().flatten_all().unwrap();
        let y = y.i((0, 0..n)).unwrap().flatten_all().unwrap();
        let d = (x - y)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            d.is_finite() && d < 1e-4,
            "{name}: padding changed logits by {d}"
        );
    }
}
