//! VQ-VAE losses: exactness on perfect predictions, rigid-motion invariance, finite-difference
//! gradients, and the numbers of an independent NumPy implementation
//! (tools/reference/make_vqvae_loss_fixtures.py → fixtures/training/vqvae_losses.json).

use candle_core::{DType, Device, Tensor, Var};
use esm3_train::vqvae::geometry::backbone_from_affine;
use esm3_train::vqvae::losses::{self, bool_tensor, TrueBackbone};
use serde_json::Value;

const DEV: Device = Device::Cpu;

/// Deterministic pseudo-random numbers in [−1, 1) (a tiny LCG; tests need no quality).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// A backbone-like chain `[L·9]` (N, CA, C per residue).
fn chain(rng: &mut Lcg, l: usize) -> Vec<f32> {
    let mut ca = [0f64; 3];
    let mut out = Vec::new();
    for _ in 0..l {
        for v in ca.iter_mut() {
            *v += 2.5 * rng.next();
        }
        for off in [[-1.0, 0.8, 0.3], [0.0; 3], [1.2, 0.4, -0.5]] {
            for k in 0..3 {
                out.push((ca[k] + off[k] + 0.15 * rng.next()) as f32);
            }
        }
    }
    out
}

fn coords(v: &[f64], b: usize, l: usize) -> Tensor {
    Tensor::from_vec(v.to_vec(), (b, l, 3, 3), &DEV).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// The two geometric losses of `pred` against `truth` (one row, all residues real).
fn geometric(truth: &TrueBackbone, pred: &Tensor) -> (Tensor, Tensor) {
    let t = truth.coords_tensor(DType::F64, &DEV).unwrap();
    let m = truth.mask_tensor(DType::F64, &DEV).unwrap();
    let bn = truth.bonded_tensor(DType::F64, &DEV).unwrap();
    (
        losses::backbone_distance_loss(pred, &t, &m).unwrap(),
        losses::backbone_direction_loss(pred, &t, &m, &bn).unwrap(),
    )
}

fn rotate(points: &[f64], seed: u64) -> Vec<f64> {
    // Rotation from a random unit quaternion, plus a translation.
    let mut r = Lcg(seed);
    let q: Vec<f64> = (0..4).map(|_| r.next()).collect();
    let n = q.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (w, x, y, z) = (q[0] / n, q[1] / n, q[2] / n, q[3] / n);
    let m = [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ];
    let t = [10.0 * r.next(), -7.0 * r.next(), 3.0 * r.next()];
    points
        .chunks(3)
        .flat_map(|p| (0..3).map(move |i| m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2] + t[i]))
        .collect()
}

#[test]
fn geometric_losses_vanish_on_the_truth_and_are_invariant_to_rigid_motions() {
    let mut rng = Lcg(3);
    let l = 7;
    let raw = chain(&mut rng, l);
    let truth = TrueBackbone::new(
        1,
        l,
        &raw,
        &vec![true; l],
        &(0..l as i64).collect::<Vec<_>>(),
    );
    let exact: Vec<f64> = raw.iter().map(|&v| f64::from(v)).collect();
    let (d, g) = geometric(&truth, &coords(&exact, 1, l));
    assert!(
        scalar(&d).abs() < 1e-12 && scalar(&g).abs() < 1e-12,
        "{d} {g}"
    );

    let moved = rotate(&exact, 9);
    let (d, g) = geometric(&truth, &coords(&moved, 1, l));
    assert!(
        scalar(&d) < 1e-9 && scalar(&g) < 1e-9,
        "moved truth: {d} {g}"
    );

    let noisy: Vec<f64> = exact.iter().map(|v| v + 0.4 * rng.next()).collect();
    let (d0, g0) = geometric(&truth, &coords(&noisy, 1, l));
    let (d1, g1) = geometric(&truth, &coords(&rotate(&noisy, 21), 1, l));
    assert!(scalar(&d0) > 1e-3 && scalar(&g0) > 1e-3);
    assert!((scalar(&d0) - scalar(&d1)).abs() < 1e-9 * scalar(&d0).max(1.0));
    assert!((scalar(&g0) - scalar(&g1)).abs() < 1e-9 * scalar(&g0).max(1.0));

    // A mirror image keeps distances but flips the cross-product vectors.
    let mirrored: Vec<f64> = exact.chunks(3).flat_map(|p| [-p[0], p[1], p[2]]).collect();
    let (d, g) = geometric(&truth, &coords(&mirrored, 1, l));
    assert!(scalar(&d) < 1e-9 && scalar(&g) > 1e-3, "mirror: {d} {g}");
}

/// Central differences of a scalar function of `x` against autograd, on every entry.
fn check_gradient(x0: &[f64], shape: &[usize], f: impl Fn(&Tensor) -> Tensor, tol: f64) {
    let var = Var::from_tensor(&Tensor::from_vec(x0.to_vec(), shape, &DEV).unwrap()).unwrap();
    let loss = f(var.as_tensor());
    let grads = loss.backward().unwrap();
    let g = grads
        .get(var.as_tensor())
        .expect("gradient reaches the input")
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for k in 0..x0.len() {
        let at = |delta: f64| {
            let mut x = x0.to_vec();
            x[k] += delta;
            scalar(&f(&Tensor::from_vec(x, shape, &DEV).unwrap()))
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        let err = (fd - g[k]).abs() / (1.0 + fd.abs());
        worst = worst.max(err);
        assert!(
            err < tol,
            "entry {k}: finite difference {fd} vs autograd {}",
            g[k]
        );
    }
    assert!(g.iter().any(|v| v.abs() > 1e-6), "gradient is not all zero");
    eprintln!("worst relative gradient error {worst:.2e}");
}

#[test]
fn geometric_losses_have_correct_gradients() {
    let mut rng = Lcg(5);
    let l = 4;
    let raw = chain(&mut rng, l);
    // Residue 2 misses its N; residues 0–1 and 1–2 bonded, 2–3 across a numbering gap.
    let mut raw_missing = raw.clone();
    raw_missing[2 * 9] = f32::NAN;
    let truth = TrueBackbone::new(1, l, &raw_missing, &[true; 4], &[0, 1, 2, 5]);
    let pred: Vec<f64> = raw
        .iter()
        .map(|&v| f64::from(v) + 0.3 * rng.next())
        .collect();
    check_gradient(&pred, &[1, l, 3, 3], |p| geometric(&truth, p).0, 1e-5);
    check_gradient(&pred, &[1, l, 3, 3], |p| geometric(&truth, p).1, 1e-5);
    // The frame head: gradient of a fixed linear functional of the atoms through
    // Gram–Schmidt (random affines are far from the truth, where the losses are clamped).
    let affine: Vec<f64> = (0..l * 9).map(|_| rng.next()).collect();
    let weights: Vec<f64> = (0..l * 9).map(|_| rng.next()).collect();
    let weights = Tensor::from_vec(weights, (1, l, 3, 3), &DEV).unwrap();
    check_gradient(
        &affine,
        &[1, l, 9],
        |p| {
            (backbone_from_affine(p).unwrap().atoms * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
        },
        1e-5,
    );
}

#[test]
fn classification_losses_have_correct_gradients_and_vanish_for_confident_truth() {
    let mut rng = Lcg(8);
    let (b, l) = (1, 3);
    let raw = chain(&mut rng, l);
    let truth = TrueBackbone::new(b, l, &raw, &[true, true, true], &[0, 1, 2]);
    let pm = bool_tensor(&truth.pair_mask(), (b, l, l), DType::F64, &DEV).unwrap();
    let dg = Tensor::from_vec(truth.distogram_labels(), (b, l, l), &DEV).unwrap();
    let dir = Tensor::from_vec(truth.direction_labels(), (b, l, l, 6), &DEV).unwrap();
    let logits: Vec<f64> = (0..b * l * l * 224).map(|_| 2.0 * rng.next()).collect();
    let shape = [b, l, l, 224];
    check_gradient(
        &logits,
        &shape,
        |x| losses::distogram_loss(x, &dg, &pm).unwrap(),
        1e-6,
    );
    check_gradient(
        &logits,
        &shape,
        |x| losses::binned_direction_loss(x, &dir, &pm).unwrap(),
        1e-6,
    );
    check_gradient(
        &logits,
        &shape,
        |x| losses::pae_loss(x, &dg, &pm).unwrap(),
        1e-6,
    );

    // Logits that put +30 on the right bin give (almost) zero loss; shuffled ones do not.
    let dg_v = truth.distogram_labels();
    let dir_v = truth.direction_labels();
    let mut confident = vec![0f64; b * l * l * 224];
    for p in 0..l * l {
        confident[p * 224 + dg_v[p] as usize] = 30.0;
        for k in 0..6 {
            confident[p * 224 + 64 + k * 16 + dir_v[p * 6 + k] as usize] = 30.0;
        }
    }
    let x = Tensor::from_vec(confident, &shape[..], &DEV).unwrap();
    assert!(scalar(&losses::distogram_loss(&x, &dg, &pm).unwrap()) < 1e-10);
    assert!(scalar(&losses::binned_direction_loss(&x, &dir, &pm).unwrap()) < 1e-10);
    let wrong = Tensor::from_vec(
        dg_v.iter().map(|&v| (v + 7) % 64).collect::<Vec<_>>(),
        (b, l, l),
        &DEV,
    )
    .unwrap();
    assert!(scalar(&losses::distogram_loss(&x, &wrong, &pm).unwrap()) > 20.0);
}

#[test]
fn distogram_bins_follow_the_alphafold_convention() {
    // Two residues with a chosen Cβ distance: place residue 1 as a translated copy of 0.
    let base = [[-1.0f32, 0.8, 0.3], [0.0, 0.0, 0.0], [1.2, 0.4, -0.5]];
    for (d, want) in [
        (1.0f32, 0),
        (2.3, 0),
        (2.32, 1),
        (2.63, 2),
        (21.7, 63),
        (40.0, 63),
    ] {
        let mut raw: Vec<f32> = base.iter().flatten().copied().collect();
        raw.extend(base.iter().flat_map(|p| [p[0] + d, p[1], p[2]]));
        let t = TrueBackbone::new(1, 2, &raw, &[true, true], &[0, 1]);
        let labels = t.distogram_labels();
        assert_eq!(labels[1], want, "d = {d}");
        assert_eq!(labels[0], 0);
    }
}

fn fixture() -> Value {
    let path = esm3_test_support::repo_root().join("fixtures/training/vqvae_losses.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn ints(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn losses_match_the_numpy_reference() {
    let fx = fixture();
    let (b, l) = (
        fx["batch"].as_u64().unwrap() as usize,
        fx["len"].as_u64().unwrap() as usize,
    );
    let truth_raw: Vec<f32> = floats(&fx["truth"]).iter().map(|&v| v as f32).collect();
    let real: Vec<bool> = fx["real"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    let ri: Vec<i64> = ints(&fx["residue_index"])
        .iter()
        .map(|&v| i64::from(v))
        .collect();
    let seq = ints(&fx["sequence"]);
    let pred = floats(&fx["pred"]);
    // Truth in f64 exactly as NumPy read it (the f32 round trip of 3-decimal values is exact
    // enough at 1e-6 relative; compare with that tolerance).
    let truth = TrueBackbone::new(b, l, &truth_raw, &real, &ri);
    let want = &fx["losses"];
    let close = |name: &str, got: f64| {
        let w = want[name].as_f64().unwrap();
        assert!(
            (got - w).abs() < 1e-5 * w.abs().max(1.0),
            "{name}: {got} vs NumPy {w}"
        );
    };
    let p = coords(&pred, b, l);
    let t = truth.coords_tensor(DType::F64, &DEV).unwrap();
    let m = truth.mask_tensor(DType::F64, &DEV).unwrap();
    let bn = truth.bonded_tensor(DType::F64, &DEV).unwrap();
    close(
        "distance",
        scalar(&losses::backbone_distance_loss(&p, &t, &m).unwrap()),
    );
    close(
        "direction",
        scalar(&losses::backbone_direction_loss(&p, &t, &m, &bn).unwrap()),
    );

    let pair: Vec<f64> = (0..b * l * l * 224)
        .map(|idx| {
            let (r, i, j, c) = (
                idx / (l * l * 224),
                (idx / (l * 224)) % l,
                (idx / 224) % l,
                idx % 224,
            );
            let (r, i, j, c) = (r as f64, i as f64, j as f64, c as f64);
            2.0 * (0.37 * r + 0.71 * i + 0.29 * j + 0.113 * c + 0.05 * i * j).sin()
        })
        .collect();
    let pair = Tensor::from_vec(pair, (b, l, l, 224), &DEV).unwrap();
    let pm_v = truth.pair_mask();
    let pm = bool_tensor(&pm_v, (b, l, l), DType::F64, &DEV).unwrap();
    let labels = &fx["labels"];
    let dg = truth.distogram_labels();
    let dir = truth.direction_labels();
    for (k, &m) in pm_v.iter().enumerate() {
        if m {
            assert_eq!(dg[k], ints(&labels["distogram"])[k], "distogram label {k}");
            assert_eq!(
                &dir[k * 6..k * 6 + 6],
                &ints(&labels["direction"])[k * 6..k * 6 + 6],
                "direction labels {k}"
            );
        }
    }
    let dg = Tensor::from_vec(dg, (b, l, l), &DEV).unwrap();
    let dir = Tensor::from_vec(dir, (b, l, l, 6), &DEV).unwrap();
    close(
        "distogram",
        scalar(&losses::distogram_loss(&pair, &dg, &pm).unwrap()),
    );
    close(
        "binned_direction",
        scalar(&losses::binned_direction_loss(&pair, &dir, &pm).unwrap()),
    );

    let if_logits: Vec<f64> = (0..b * l * 64)
        .map(|idx| {
            let (r, i, v) = (
                (idx / (l * 64)) as f64,
                ((idx / 64) % l) as f64,
                (idx % 64) as f64,
            );
            1.5 * (0.3 * r + 0.53 * i + 0.17 * v).cos()
        })
        .collect();
    let if_mask: Vec<bool> = (0..b * l)
        .map(|g| truth.valid[g] && losses::is_canonical_residue(seq[g]))
        .collect();
    close(
        "inverse_folding",
        scalar(
            &losses::masked_cross_entropy(
                &Tensor::from_vec(if_logits, (b, l, 64), &DEV).unwrap(),
                &Tensor::from_vec(seq.clone(), (b, l), &DEV).unwrap(),
                &bool_tensor(&if_mask, (b, l), DType::F64, &DEV).unwrap(),
            )
            .unwrap(),
        ),
    );

    let pred_host: Vec<[[f64; 3]; 3]> = pred
        .chunks(9)
        .map(|c| std::array::from_fn(|a| std::array::from_fn(|k| c[a * 3 + k])))
        .collect();
    let (pl, pl_mask) = truth.plddt_labels(&pred_host);
    let want_mask: Vec<bool> = labels["plddt_mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    assert_eq!(pl_mask, want_mask);
    for (k, &m) in pl_mask.iter().enumerate() {
        if m {
            assert_eq!(pl[k], ints(&labels["plddt"])[k], "pLDDT label {k}");
        }
    }
    let pl_logits: Vec<f64> = (0..b * l * 50)
        .map(|idx| {
            let (r, i, k) = (
                (idx / (l * 50)) as f64,
                ((idx / 50) % l) as f64,
                (idx % 50) as f64,
            );
            1.7 * (0.41 * r + 0.23 * i + 0.19 * k).sin()
        })
        .collect();
    close(
        "plddt",
        scalar(
            &losses::masked_cross_entropy(
                &Tensor::from_vec(pl_logits, (b, l, 50), &DEV).unwrap(),
                &Tensor::from_vec(pl, (b, l), &DEV).unwrap(),
                &bool_tensor(&pl_mask, (b, l), DType::F64, &DEV).unwrap(),
            )
            .unwrap(),
        ),
    );
    let pae = truth.aligned_error_labels(&pred_host);
    for (k, &m) in pm_v.iter().enumerate() {
        if m {
            assert_eq!(pae[k], ints(&labels["pae"])[k], "pAE label {k}");
        }
    }
    let pae = Tensor::from_vec(pae, (b, l, l), &DEV).unwrap();
    close("pae", scalar(&losses::pae_loss(&pair, &pae, &pm).unwrap()));
}

#[test]
fn perfect_prediction_has_full_lddt_and_zero_aligned_error() {
    let mut rng = Lcg(13);
    let l = 6;
    let raw = chain(&mut rng, l);
    let truth = TrueBackbone::new(1, l, &raw, &[true; 6], &[0, 1, 2, 3, 4, 5]);
    let moved = rotate(&raw.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), 4);
    let pred: Vec<[[f64; 3]; 3]> = moved
        .chunks(9)
        .map(|c| std::array::from_fn(|a| std::array::from_fn(|k| c[a * 3 + k])))
        .collect();
    let (score, has) = truth.lddt_ca(&pred);
    assert!(has.iter().all(|&h| h));
    assert!(score.iter().all(|&s| (s - 1.0).abs() < 1e-12), "{score:?}");
    assert!(truth.plddt_labels(&pred).0.iter().all(|&b| b == 49));
    // Aligned error is frame-relative, so a rigid motion leaves it at (rounding-)zero: label
    // 0 or 1 (AlphaFold's convention counts edges strictly below e², the first edge being 0).
    assert!(truth.aligned_error_labels(&pred).iter().all(|&b| b <= 1));
    let shifted: Vec<[[f64; 3]; 3]> = pred
        .iter()
        .enumerate()
        .map(|(i, bb)| {
            if i == 3 {
                bb.map(|p| [p[0] + 3.1, p[1], p[2]])
            } else {
                *bb
            }
        })
        .collect();
    // Residue 3's CA moved 3.1 Å relative to every other frame: e² = 9.61 → 7 edges (0, 0.5,
    // …, 3.0) below it; in its own row the frame moved with it, so only j = 3 stays near 0.
    let labels = truth.aligned_error_labels(&shifted);
    assert_eq!(labels[3], 7); // row 0, column 3
    assert!(labels[3 * l + 3] <= 1);
}

/// Wall time of the losses alone at B = 4, L = 128 (`-- --ignored --nocapture`).
#[test]
#[ignore]
fn loss_timing() {
    let (b, l) = (4, 128);
    let mut rng = Lcg(1);
    let raw: Vec<f32> = (0..b).flat_map(|_| chain(&mut rng, l)).collect();
    let truth = TrueBackbone::new(b, l, &raw, &vec![true; b * l], &vec![0; b * l]);
    let pred: Vec<f32> = raw.iter().map(|&v| v + 0.5 * rng.next() as f32).collect();
    let pred = Var::from_tensor(&Tensor::from_vec(pred, (b, l, 3, 3), &DEV).unwrap()).unwrap();
    let logits =
        Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, l, l, 224), &DEV).unwrap()).unwrap();
    let t = truth.coords_tensor(DType::F32, &DEV).unwrap();
    let m = truth.mask_tensor(DType::F32, &DEV).unwrap();
    let bn = truth.bonded_tensor(DType::F32, &DEV).unwrap();
    let pm = bool_tensor(&truth.pair_mask(), (b, l, l), DType::F32, &DEV).unwrap();
    let dg = Tensor::from_vec(truth.distogram_labels(), (b, l, l), &DEV).unwrap();
    let dir = Tensor::from_vec(truth.direction_labels(), (b, l, l, 6), &DEV).unwrap();
    type LossFn<'a> = Box<dyn Fn() -> Tensor + 'a>;
    let parts: Vec<(&str, LossFn)> = vec![
        (
            "distance",
            Box::new(|| losses::backbone_distance_loss(pred.as_tensor(), &t, &m).unwrap()),
        ),
        (
            "direction",
            Box::new(|| losses::backbone_direction_loss(pred.as_tensor(), &t, &m, &bn).unwrap()),
        ),
        (
            "distogram",
            Box::new(|| losses::distogram_loss(logits.as_tensor(), &dg, &pm).unwrap()),
        ),
        (
            "binned_direction",
            Box::new(|| losses::binned_direction_loss(logits.as_tensor(), &dir, &pm).unwrap()),
        ),
    ];
    for (name, f) in parts {
        let t0 = std::time::Instant::now();
        let loss = f();
        let t1 = t0.elapsed();
        loss.backward().unwrap();
        eprintln!(
            "{name}: forward {:.3}s, backward {:.3}s",
            t1.as_secs_f64(),
            (t0.elapsed() - t1).as_secs_f64()
        );
    }
}
