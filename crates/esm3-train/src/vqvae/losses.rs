//! Stage-1 and stage-2 VQ-VAE losses (spec esm3-training.md §3.3–3.4) as tensor functions.
//!
//! Predictions (coordinates, logits) are tensors and every loss is differentiable with respect
//! to them; targets come from the true structure and are built on the host ([`TrueBackbone`]),
//! since they carry no gradient. All functions work in the dtype of the prediction (f32 for
//! training, f64 for gradient checks) and average only over valid entries: padding and residues
//! with a missing backbone atom never contribute.

use candle_core::{DType, Device, Result, Tensor, D};

/// Added under every square root of a squared length, so that zero lengths (an atom paired with
/// itself) have a zero gradient instead of a NaN.
pub const SQRT_EPS: f64 = 1e-8;
/// Squared-error clamp of the backbone distance loss (Å²).
pub const DISTANCE_CLAMP: f64 = 25.0;
/// Squared-error clamp of the backbone direction loss.
pub const DIRECTION_CLAMP: f64 = 20.0;
/// Channels of the decoder's pairwise head, in the released order (spec §3.3 step 5).
pub const DISTOGRAM_BINS: usize = 64;
pub const DIRECTION_PAIRS: usize = 6;
pub const DIRECTION_BINS: usize = 16;
pub const PAE_BINS: usize = 64;
pub const DISTOGRAM_CHANNELS: std::ops::Range<usize> = 0..64;
/// Read as `[6, 16]`: pair-major, 16 bins per vector pair (the layout is ours to choose, as the
/// released head's direction logits are never used at inference).
pub const DIRECTION_CHANNELS: std::ops::Range<usize> = 64..160;
pub const PAE_CHANNELS: std::ops::Range<usize> = 160..224;
pub const PLDDT_BINS: usize = 50;
/// LDDT inclusion radius (Å) and thresholds (AlphaFold defaults).
pub const LDDT_CUTOFF: f64 = 15.0;
pub const LDDT_THRESHOLDS: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
/// `VQVAE_MAX_PAE_BIN`: PAE edges are linspace(0, 31, 63).
pub const MAX_PAE_BIN: f64 = 31.0;

/// In units of a direction bin (0.125): products within 1.25e-10 below an edge count as on it.
pub const BIN_EDGE_TOLERANCE: f64 = 1e-9;

pub type P3 = [f64; 3];

fn sub(a: P3, b: P3) -> P3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: P3, b: P3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross3(a: P3, b: P3) -> P3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn unit(a: P3) -> P3 {
    let n = dot(a, a).sqrt().max(1e-12);
    [a[0] / n, a[1] / n, a[2] / n]
}
fn dist(a: P3, b: P3) -> f64 {
    let d = sub(a, b);
    dot(d, d).sqrt()
}

/// A backbone frame as rows of local axes: `x ↦ R·x + t`, columns of R = `axes`.
#[derive(Clone, Copy, Debug)]
struct HostFrame {
    axes: [P3; 3],
    origin: P3,
}

impl HostFrame {
    /// origin CA, x along CA − C, N in the xy plane (the convention of the decoder's frames).
    fn from_backbone(bb: &[P3; 3]) -> Self {
        let e0 = unit(sub(bb[1], bb[2]));
        let xy = sub(bb[0], bb[1]);
        let d = dot(e0, xy);
        let e1 = unit([xy[0] - e0[0] * d, xy[1] - e0[1] * d, xy[2] - e0[2] * d]);
        HostFrame {
            axes: [e0, e1, cross3(e0, e1)],
            origin: bb[1],
        }
    }
    /// Rᵀ(p − t): the point in local coordinates.
    fn local(&self, p: P3) -> P3 {
        let d = sub(p, self.origin);
        [
            dot(self.axes[0], d),
            dot(self.axes[1], d),
            dot(self.axes[2], d),
        ]
    }
}

/// The true structure of a batch on the host, with everything the targets need.
#[derive(Clone, Debug)]
pub struct TrueBackbone {
    pub batch: usize,
    pub len: usize,
    /// `[B·L]` N, CA, C (Å); zeros where the residue is not valid.
    pub coords: Vec<[P3; 3]>,
    /// `[B·L]`: real (not padding) and all nine numbers finite and below 1e6.
    pub valid: Vec<bool>,
    /// `[B·L]`: residue i and i + 1 are both valid and bonded (residue numbers differ by 1),
    /// so the vectors that need the next / previous residue exist.
    pub bonded_next: Vec<bool>,
}

impl TrueBackbone {
    /// `coords` `[B, L, 3, 3]` row-major (NaN / inf / ≥ 1e6 for missing atoms), `is_real`
    /// and `residue_index` `[B, L]`.
    pub fn new(
        batch: usize,
        len: usize,
        coords: &[f32],
        is_real: &[bool],
        residue_index: &[i64],
    ) -> Self {
        let n = batch * len;
        assert_eq!(coords.len(), n * 9, "coords [B, L, 3, 3]");
        assert_eq!(is_real.len(), n, "mask [B, L]");
        assert_eq!(residue_index.len(), n, "residue_index [B, L]");
        let mut out = Vec::with_capacity(n);
        let mut valid = Vec::with_capacity(n);
        for r in 0..n {
            let c = &coords[r * 9..r * 9 + 9];
            let ok = is_real[r] && c.iter().all(|v| v.is_finite() && v.abs() < 1e6);
            valid.push(ok);
            out.push(if ok {
                std::array::from_fn(|a| std::array::from_fn(|k| f64::from(c[a * 3 + k])))
            } else {
                [[0.0; 3]; 3]
            });
        }
        let bonded_next = (0..n)
            .map(|r| {
                let i = r % len;
                i + 1 < len
                    && valid[r]
                    && valid[r + 1]
                    && residue_index[r + 1].wrapping_sub(residue_index[r]) == 1
            })
            .collect();
        TrueBackbone {
            batch,
            len,
            coords: out,
            valid,
            bonded_next,
        }
    }

    /// `[B, L, 3, 3]` coordinates (zeros where invalid).
    pub fn coords_tensor(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let flat: Vec<f64> = self.coords.iter().flatten().flatten().copied().collect();
        Tensor::from_vec(flat, (self.batch, self.len, 3, 3), device)?.to_dtype(dtype)
    }

    /// `[B, L]` 1/0 residue validity.
    pub fn mask_tensor(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        bool_tensor(&self.valid, (self.batch, self.len), dtype, device)
    }

    /// `[B, L]` 1/0 "bonded to the next residue".
    pub fn bonded_tensor(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        bool_tensor(&self.bonded_next, (self.batch, self.len), dtype, device)
    }

    /// `[B, L, L]` 1/0: both residues valid.
    pub fn pair_mask(&self) -> Vec<bool> {
        let (b, l) = (self.batch, self.len);
        (0..b * l * l)
            .map(|idx| {
                let (r, i, j) = (idx / (l * l), (idx / l) % l, idx % l);
                self.valid[r * l + i] && self.valid[r * l + j]
            })
            .collect()
    }

    /// Distogram labels `[B, L, L]` (spec §3.3 (4)): the virtual Cβ of the true N, CA, C,
    /// 64 classes in the AlphaFold convention: lower bounds {0} ∪ {(2.3125 + 0.3125 k)²},
    /// label = (number of lower bounds ≤ d²) − 1. Invalid pairs get label 0 (masked anyway).
    pub fn distogram_labels(&self) -> Vec<u32> {
        let (b, l) = (self.batch, self.len);
        let cb: Vec<P3> = self.coords.iter().map(virtual_cb).collect();
        let mut lower = vec![0.0f64];
        lower.extend((0..63).map(|k| (2.3125 + 0.3125 * k as f64).powi(2)));
        (0..b * l * l)
            .map(|idx| {
                let (r, i, j) = (idx / (l * l), (idx / l) % l, idx % l);
                let d = sub(cb[r * l + i], cb[r * l + j]);
                let d2 = dot(d, d);
                (lower.iter().filter(|&&x| x <= d2).count() - 1) as u32
            })
            .collect()
    }

    /// Binned direction labels `[B, L, L, 6]` (spec §3.3 (3)): unit vectors u1 = C − CA,
    /// u2 = N − CA, u3 = u1 × u2 per residue; for pair (i, j) the dot products
    /// (u1ᵢ·u2ⱼ, u1ᵢ·u3ⱼ, u2ᵢ·u1ⱼ, u2ᵢ·u3ⱼ, u3ᵢ·u1ⱼ, u3ᵢ·u2ⱼ), each binned into 16 bins of
    /// width 0.125 on [−1, 1] (label = min(15, ⌊(d + 1)/0.125⌋), exact edges up).
    pub fn direction_labels(&self) -> Vec<u32> {
        let (b, l) = (self.batch, self.len);
        let u: Vec<[P3; 3]> = self
            .coords
            .iter()
            .map(|bb| {
                let u1 = unit(sub(bb[2], bb[1]));
                let u2 = unit(sub(bb[0], bb[1]));
                [u1, u2, unit(cross3(u1, u2))]
            })
            .collect();
        const PAIRS: [(usize, usize); 6] = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)];
        let mut out = Vec::with_capacity(b * l * l * 6);
        for r in 0..b {
            for i in 0..l {
                for j in 0..l {
                    for (a, c) in PAIRS {
                        let d = dot(u[r * l + i][a], u[r * l + j][c]);
                        // The tolerance puts exact bin edges in the upper bin whatever the
                        // rounding: on the diagonal four products are 0 in exact arithmetic.
                        let bin = ((d + 1.0) / 0.125 + BIN_EDGE_TOLERANCE).floor();
                        out.push(bin.clamp(0.0, 15.0) as u32);
                    }
                }
            }
        }
        out
    }

    /// Per-residue LDDT-Cα `[B·L]` of `pred` (N, CA, C per residue, `[B·L]`) against the
    /// truth: pairs j ≠ i, both valid, true CA distance < 15 Å, thresholds 0.5/1/2/4 Å.
    /// Also returns whether the residue had any such pair (residues without one are masked
    /// out of the pLDDT loss rather than given AlphaFold's ε/ε = 1).
    pub fn lddt_ca(&self, pred: &[[P3; 3]]) -> (Vec<f64>, Vec<bool>) {
        let (b, l) = (self.batch, self.len);
        let mut score = vec![0.0; b * l];
        let mut has = vec![false; b * l];
        for r in 0..b {
            for i in 0..l {
                let gi = r * l + i;
                if !self.valid[gi] {
                    continue;
                }
                let (mut s, mut n) = (0.0, 0.0);
                for j in (0..l).filter(|&j| j != i) {
                    let gj = r * l + j;
                    if !self.valid[gj] {
                        continue;
                    }
                    let d_true = dist(self.coords[gi][1], self.coords[gj][1]);
                    if d_true >= LDDT_CUTOFF {
                        continue;
                    }
                    let delta = (d_true - dist(pred[gi][1], pred[gj][1])).abs();
                    s += LDDT_THRESHOLDS.iter().filter(|&&t| delta < t).count() as f64 / 4.0;
                    n += 1.0;
                }
                if n > 0.0 {
                    score[gi] = s / n;
                    has[gi] = true;
                }
            }
        }
        (score, has)
    }

    /// pLDDT labels `[B·L]`: bin = min(49, ⌊LDDT-Cα · 50⌋), with the per-residue mask.
    pub fn plddt_labels(&self, pred: &[[P3; 3]]) -> (Vec<u32>, Vec<bool>) {
        let (score, has) = self.lddt_ca(pred);
        let labels = score
            .iter()
            .map(|&s| ((s * PLDDT_BINS as f64).floor() as u32).min(PLDDT_BINS as u32 - 1))
            .collect();
        (labels, has)
    }

    /// Aligned-error labels `[B, L, L]` (the wheel's `tm_loss`, spec §3.4):
    /// e_ij = ‖T̂ᵢ⁻¹(x̂ⱼ) − Tᵢ⁻¹(xⱼ)‖ with x = CA and T the backbone frames (x from C to CA,
    /// N in the xy plane, origin CA), label = #{edges (linspace(0, 31, 63)) with edge² < e²}.
    pub fn aligned_error_labels(&self, pred: &[[P3; 3]]) -> Vec<u32> {
        let (b, l) = (self.batch, self.len);
        let edges2: Vec<f64> = (0..63)
            .map(|k| (MAX_PAE_BIN * k as f64 / 62.0).powi(2))
            .collect();
        let tf: Vec<HostFrame> = self.coords.iter().map(HostFrame::from_backbone).collect();
        let pf: Vec<HostFrame> = pred.iter().map(HostFrame::from_backbone).collect();
        (0..b * l * l)
            .map(|idx| {
                let (r, i, j) = (idx / (l * l), (idx / l) % l, idx % l);
                let (gi, gj) = (r * l + i, r * l + j);
                let e = sub(pf[gi].local(pred[gj][1]), tf[gi].local(self.coords[gj][1]));
                let e2 = dot(e, e);
                edges2.iter().filter(|&&x| e2 > x).count() as u32
            })
            .collect()
    }
}

/// Virtual Cβ from N, CA, C (spec §3.3 (4)).
pub fn virtual_cb(bb: &[P3; 3]) -> P3 {
    let b = sub(bb[1], bb[0]);
    let c = sub(bb[2], bb[1]);
    let n = cross3(b, c);
    std::array::from_fn(|k| -0.58273431 * n[k] + 0.56802827 * b[k] - 0.54067466 * c[k] + bb[1][k])
}

pub fn bool_tensor(
    v: &[bool],
    shape: impl Into<candle_core::Shape>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let f: Vec<f32> = v.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(f, shape, device)?.to_dtype(dtype)
}

/// Σ(values·mask) / max(Σ mask, 1): a mean over the valid entries (0 when there are none).
pub fn masked_mean(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask
        .to_dtype(values.dtype())?
        .broadcast_as(values.shape())?;
    let total = (values * &mask)?.sum_all()?;
    let count = mask.sum_all()?.maximum(1.0)?;
    total / count
}

/// Pairwise distances `[B, N, N]` of points `[B, N, 3]`, √(d² + ε).
fn pairwise_distances(x: &Tensor) -> Result<Tensor> {
    let d = x.unsqueeze(2)?.broadcast_sub(&x.unsqueeze(1)?)?;
    (d.sqr()?.sum(D::Minus1)? + SQRT_EPS)?.sqrt()
}

/// Outer product mask `[B, N, N]` of a `[B, N]` mask.
fn pair_of(mask: &Tensor) -> Result<Tensor> {
    mask.unsqueeze(2)?.broadcast_mul(&mask.unsqueeze(1)?)
}

/// Backbone distance loss (spec §3.3 (1)): all 3L × 3L atom pairs of N, CA, C,
/// min((D̂ − D)², 25), mean over pairs whose residues are both valid.
/// `pred`, `truth` `[B, L, 3, 3]`; `mask` `[B, L]` 1/0.
pub fn backbone_distance_loss(pred: &Tensor, truth: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, l, _, _) = pred.dims4()?;
    let m = mask
        .to_dtype(pred.dtype())?
        .unsqueeze(2)?
        .broadcast_as((b, l, 3))?
        .reshape((b, 3 * l))?;
    let dp = pairwise_distances(&pred.reshape((b, 3 * l, 3))?)?;
    let dt = pairwise_distances(&truth.to_dtype(pred.dtype())?.reshape((b, 3 * l, 3))?)?;
    let err = (dp - dt)?.sqr()?.minimum(DISTANCE_CLAMP)?;
    masked_mean(&err, &pair_of(&m)?)
}

/// Cross product along the last dimension (size 3).
pub fn cross(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let c = |t: &Tensor, k: usize| t.narrow(D::Minus1, k, 1);
    let (a0, a1, a2) = (c(a, 0)?, c(a, 1)?, c(a, 2)?);
    let (b0, b1, b2) = (c(b, 0)?, c(b, 1)?, c(b, 2)?);
    Tensor::cat(
        &[
            ((&a1 * &b2)? - (&a2 * &b1)?)?,
            ((&a2 * &b0)? - (&a0 * &b2)?)?,
            ((&a0 * &b1)? - (&a1 * &b0)?)?,
        ],
        D::Minus1,
    )
}

/// Shift `[B, L, 3]` along L by one: `next[i] = x[i + 1]`, `prev[i] = x[i − 1]`, zeros at ends.
fn shifted(x: &Tensor, next: bool) -> Result<Tensor> {
    let (b, l, c) = x.dims3()?;
    let zero = Tensor::zeros((b, 1, c), x.dtype(), x.device())?;
    if l == 1 {
        return Ok(zero);
    }
    if next {
        Tensor::cat(&[x.narrow(1, 1, l - 1)?, zero], 1)
    } else {
        Tensor::cat(&[zero, x.narrow(1, 0, l - 1)?], 1)
    }
}

/// The six backbone vectors per residue `[B, L·6, 3]` (spec §3.3 (2)), not normalised.
pub fn backbone_vectors(bb: &Tensor) -> Result<Tensor> {
    let (b, l, _, _) = bb.dims4()?;
    let atom = |a: usize| bb.narrow(2, a, 1)?.squeeze(2);
    let (n, ca, c) = (atom(0)?, atom(1)?, atom(2)?);
    let v1 = (&ca - &n)?;
    let v2 = (&c - &ca)?;
    let v3 = (shifted(&n, true)? - &c)?;
    let v4 = cross(&v1, &v2)?.neg()?;
    let v5 = cross(&(&n - shifted(&c, false)?)?, &v1)?;
    let v6 = cross(&v2, &v3)?;
    Tensor::stack(&[v1, v2, v3, v4, v5, v6], 2)?.reshape((b, l * 6, 3))
}

/// Which of the six vectors exist `[B, L·6]`: v1, v2, v4 need residue i; v3 and v6 need i
/// bonded to i + 1; v5 needs i − 1 bonded to i.
pub fn backbone_vector_mask(mask: &Tensor, bonded_next: &Tensor) -> Result<Tensor> {
    let (b, l) = mask.dims2()?;
    let next = bonded_next.to_dtype(mask.dtype())?;
    let prev = shifted(&next.unsqueeze(2)?, false)?.squeeze(2)?;
    Tensor::stack(&[mask, mask, &next, mask, &prev, &next], 2)?.reshape((b, l * 6))
}

/// Backbone direction loss (spec §3.3 (2)): Gram matrices of the 6L vectors,
/// min((Ĝ − G)², 20), mean over pairs of existing vectors.
pub fn backbone_direction_loss(
    pred: &Tensor,
    truth: &Tensor,
    mask: &Tensor,
    bonded_next: &Tensor,
) -> Result<Tensor> {
    let vp = backbone_vectors(pred)?;
    let vt = backbone_vectors(&truth.to_dtype(pred.dtype())?)?;
    let gp = vp.matmul(&vp.t()?)?;
    let gt = vt.matmul(&vt.t()?)?;
    let err = (gp - gt)?.sqr()?.minimum(DIRECTION_CLAMP)?;
    let vm = backbone_vector_mask(&mask.to_dtype(pred.dtype())?, bonded_next)?;
    masked_mean(&err, &pair_of(&vm)?)
}

/// log-softmax over the last dimension from differentiable ops (the max is a constant shift).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Cross-entropy of `logits` `[..., C]` against `labels` `[...]` (u32), mean over `mask`
/// `[...]` (1/0). f32 CPU logits take the fused kernel ([`esm3_nn::fused::masked_cross_entropy`]),
/// other devices and dtypes the composed formula below.
pub fn masked_cross_entropy(logits: &Tensor, labels: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if let Some(loss) = esm3_nn::fused::masked_cross_entropy(logits, labels, mask)? {
        return Ok(loss);
    }
    let logp = log_softmax(logits)?;
    let labels = labels
        .to_dtype(DType::U32)?
        .unsqueeze(D::Minus1)?
        .contiguous()?;
    let nll = logp
        .contiguous()?
        .gather(&labels, D::Minus1)?
        .squeeze(D::Minus1)?
        .neg()?;
    masked_mean(&nll, mask)
}

/// Pairwise-head channels `range` of `[B, L, L, 224]` logits.
fn channels(pair_logits: &Tensor, range: std::ops::Range<usize>) -> Result<Tensor> {
    pair_logits.narrow(D::Minus1, range.start, range.len())
}

/// Distogram loss (spec §3.3 (4)): CE over the 64 distogram channels, mean over valid pairs.
/// `labels` `[B, L, L]` from [`TrueBackbone::distogram_labels`], `pair_mask` `[B, L, L]`.
pub fn distogram_loss(pair_logits: &Tensor, labels: &Tensor, pair_mask: &Tensor) -> Result<Tensor> {
    masked_cross_entropy(
        &channels(pair_logits, DISTOGRAM_CHANNELS)?,
        labels,
        pair_mask,
    )
}

/// Binned direction loss (spec §3.3 (3)): CE over 6 × 16 direction channels, mean over the
/// 6 entries of every valid pair. `labels` `[B, L, L, 6]`.
pub fn binned_direction_loss(
    pair_logits: &Tensor,
    labels: &Tensor,
    pair_mask: &Tensor,
) -> Result<Tensor> {
    let (b, l, _, _) = pair_logits.dims4()?;
    let logits = channels(pair_logits, DIRECTION_CHANNELS)?.reshape((
        b,
        l,
        l,
        DIRECTION_PAIRS,
        DIRECTION_BINS,
    ))?;
    let mask = pair_mask
        .unsqueeze(3)?
        .broadcast_as((b, l, l, DIRECTION_PAIRS))?;
    masked_cross_entropy(&logits, labels, &mask)
}

/// pAE loss (spec §3.4): CE over the 64 PAE channels against aligned-error labels.
pub fn pae_loss(pair_logits: &Tensor, labels: &Tensor, pair_mask: &Tensor) -> Result<Tensor> {
    masked_cross_entropy(&channels(pair_logits, PAE_CHANNELS)?, labels, pair_mask)
}

/// Whether a sequence token is one of the 20 canonical amino acids (ids 4..=23 of the ESM
/// sequence vocabulary), the residues the inverse-folding loss scores.
pub fn is_canonical_residue(token: u32) -> bool {
    (4..=23).contains(&token)
}
