//! The VQ-VAE structure decoder (`StructureTokenDecoder`, spec §3.3–3.5): structure tokens →
//! backbone coordinates, pLDDT, pTM and predicted aligned error.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{embedding, Embedding, VarBuilder};
use esm3_nn::fused::gelu_erf;
use esm3_nn::linear::{linear, linear_no_bias, Linear};
use esm3_nn::norm::{layer_norm, softmax_last_dim, LayerNorm};
use esm3_nn::{AttentionContext, RegressionHead, TransformerStack};
use esm3_protein::{Frame, Vec3};

use crate::array::{expect_shape, HostArray};
use crate::config::StructureDecoderConfig;
use crate::error::{ModelError, Result};
use crate::schema::vocab;

/// Structure-track special ids (spec §1.2); codes are `0..CODEBOOK_SIZE`.
pub mod tokens {
    pub const CODEBOOK_SIZE: i64 = 4096;
    pub const MASK: i64 = 4096;
    pub const EOS: i64 = 4097;
    pub const BOS: i64 = 4098;
    pub const PAD: i64 = 4099;
    pub const CHAINBREAK: i64 = 4100;
}

/// Local backbone coordinates (Å) placed by every predicted frame: N, CA, C.
pub const BB_LOCAL: [Vec3; 3] = [[0.5256, 1.3612, 0.0], [0.0, 0.0, 0.0], [-1.5251, 0.0, 0.0]];
pub use esm3_protein::frames::O_LOCAL;
/// The backbone head predicts translations in units of 10 Å.
const TRANS_SCALE: f32 = 10.0;
/// Largest PAE intermediate (`rows × L × 128` floats) per chunk of query rows.
const PAIR_CHUNK_BYTES: usize = 128 << 20;
/// `VQVAE_MAX_PAE_BIN`.
const MAX_PAE_BIN: f32 = 31.0;

#[derive(Clone, Debug)]
pub struct StructureDecoderInput {
    /// `[B, L]` ids in `0..4101`, BOS (4098) first and EOS (4097) at the last real position.
    pub structure_tokens: HostArray<i64>,
    /// `[B, L]`, non-zero = real. Only used to find each row's EOS: the reference's decoder
    /// attends over padding too.
    pub attention_mask: Option<HostArray<i64>>,
    /// `[B, L]`: attention only within equal ids. Default: all attend all.
    pub sequence_id: Option<HostArray<i64>>,
}

pub struct StructureDecoderOutput {
    /// `[B, L, 3, 3]` f32: N, CA, C per position (BOS/EOS included), arbitrary global frame.
    pub bb_pred: Tensor,
    /// `[B, L]` f32 in [0, 1].
    pub plddt: Tensor,
    /// `[B]` f32.
    pub ptm: Tensor,
    /// `[B, L, L]` f32 Å; pairs involving a special id get the uniform-bin mean (16.0).
    pub predicted_aligned_error: Tensor,
}

impl StructureDecoderOutput {
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("bb_pred", &self.bb_pred),
            ("plddt", &self.plddt),
            ("ptm", &self.ptm),
            ("predicted_aligned_error", &self.predicted_aligned_error),
        ]
    }
}

/// What the SDK's `decode_structure` returns for one protein (BOS/EOS dropped).
#[derive(Clone, Debug)]
pub struct DecodedStructure {
    /// `[L]` atom37: N, CA, C, O filled (the last O is NaN: it has no next residue), every
    /// other atom +inf (not modelled).
    pub atom37: Vec<[Vec3; 37]>,
    pub plddt: Vec<f32>,
    pub ptm: f32,
    /// `[L, L]` row-major, Å (BOS/EOS rows and columns dropped). Not part of the reference's
    /// `decode_structure`, which discards it; kept because it comes for free.
    pub predicted_aligned_error: Vec<f32>,
}

/// `torch.linspace(start, end, steps)` in f32, with torch's two-sided evaluation (from the
/// start for the first half, from the end for the second) so bin centres match bit for bit.
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - 1 - i) as f32
            }
        })
        .collect()
}

/// PAE bin centres (spec §3.4): linspace(0, 31, 63) + 0.25, then one more at +0.5.
fn pae_bins() -> Vec<f32> {
    let step = MAX_PAE_BIN as f64 / (vocab::PAE_BINS - 2) as f64;
    let mut c: Vec<f32> = linspace_f32(0.0, MAX_PAE_BIN, vocab::PAE_BINS - 1)
        .into_iter()
        .map(|v| v + (step / 2.0) as f32)
        .collect();
    c.push(c[c.len() - 1] + step as f32);
    c
}

/// pLDDT bin centres: midpoints of linspace(0, 1, 51).
fn plddt_bins() -> Vec<f32> {
    let edges = linspace_f32(0.0, 1.0, vocab::PLDDT_BINS + 1);
    edges.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
}

/// The pTM distance scale for N counted residues (clamped at 19).
pub fn tm_d0(n: usize) -> f32 {
    1.24 * ((n.max(19) as f32 - 15.0).powf(1.0 / 3.0)) - 1.8
}

pub struct StructureTokenDecoder {
    config: StructureDecoderConfig,
    embed: Embedding,
    stack: TransformerStack,
    bb_ffn1: Linear,
    bb_norm: LayerNorm,
    bb_proj: Linear,
    pair_down: Linear,
    pair_linear1: Linear,
    pair_norm: LayerNorm,
    /// The PAE rows of `linear2` only: distogram and direction logits are unused at inference.
    pae_out: Linear,
    /// All 224 rows of `linear2` (distogram, direction, PAE): the training losses read them all.
    pair_out: Linear,
    plddt_head: RegressionHead,
    device: Device,
    dtype: DType,
}

fn scale_unit(v: Vec3) -> Vec3 {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt() + 1e-5;
    [v[0] / n, v[1] / n, v[2] / n]
}

fn add3(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

impl StructureTokenDecoder {
    pub fn new(config: &StructureDecoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.d_model;
        let a = vb.pp("affine_output_projection");
        let p = vb.pp("pairwise_classification_head");
        let w = vocab::PAIRWISE_WIDTH;
        let linear2 = p.pp("linear2").get((vocab::PAIRWISE_BINS, w), "weight")?;
        let pae_rows =
            linear2.narrow(0, vocab::PAIRWISE_BINS - vocab::PAE_BINS, vocab::PAE_BINS)?;
        Ok(Self {
            config: config.clone(),
            embed: embedding(vocab::STRUCTURE_EMBED, d, vb.pp("embed"))?,
            stack: TransformerStack::new(
                config.n_layers,
                |i| config.block(i),
                true,
                d,
                vb.pp("decoder_stack"),
            )?,
            bb_ffn1: linear(d, d, a.pp("ffn1"))?,
            bb_norm: layer_norm(d, true, a.pp("norm"))?,
            bb_proj: linear(d, vocab::AFFINE_PROJECTION, a.pp("proj"))?,
            pair_down: linear_no_bias(d, w, p.pp("downproject"))?,
            pair_linear1: linear_no_bias(w, w, p.pp("linear1"))?,
            pair_norm: layer_norm(w, true, p.pp("norm"))?,
            pae_out: Linear::new(pae_rows.contiguous()?, None),
            pair_out: Linear::new(linear2, None),
            plddt_head: RegressionHead::with_names(
                d,
                vocab::PLDDT_BINS,
                ["dense", "norm", "output"],
                vb.pp("plddt_head"),
            )?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &StructureDecoderConfig {
        &self.config
    }

    fn check(&self, input: &StructureDecoderInput) -> Result<(usize, usize)> {
        let t = &input.structure_tokens;
        expect_shape("structure_tokens", &t.shape, &[None, None])?;
        let (b, l) = (t.shape[0], t.shape[1]);
        if b == 0 || l < 2 {
            return Err(ModelError::Input(format!(
                "`structure_tokens` has shape {:?}: expected [B, L] with L ≥ 2 (BOS … EOS)",
                t.shape
            )));
        }
        t.check_range(
            "structure_tokens",
            vocab::STRUCTURE_EMBED as i64,
            "structure codes 0..4096 or special ids 4096..4100",
        )?;
        let real = match &input.attention_mask {
            Some(m) => {
                expect_shape("attention_mask", &m.shape, &[Some(b), Some(l)])?;
                (0..b)
                    .map(|r| {
                        m.data[r * l..(r + 1) * l]
                            .iter()
                            .filter(|&&v| v != 0)
                            .count()
                    })
                    .collect()
            }
            None => vec![l; b],
        };
        if let Some(s) = &input.sequence_id {
            expect_shape("sequence_id", &s.shape, &[Some(b), Some(l)])?;
        }
        for (r, &n) in real.iter().enumerate() {
            let first = t.data[r * l];
            if first != tokens::BOS {
                return Err(ModelError::Input(format!(
                    "`structure_tokens`[{r}, 0] = {first}: expected BOS ({})",
                    tokens::BOS
                )));
            }
            // Index `count − 1`, wrapping to the last column for a row with nothing real, as
            // the reference's Python indexing does.
            let at = (n + l - 1) % l;
            let last = t.data[r * l + at];
            if last != tokens::EOS {
                return Err(ModelError::Input(format!(
                    "`structure_tokens`[{r}, {at}] = {last}: expected EOS ({}) at the last \
                     position the attention_mask marks real",
                    tokens::EOS
                )));
            }
        }
        Ok((b, l))
    }

    pub fn forward(&self, input: &StructureDecoderInput) -> Result<StructureDecoderOutput> {
        let (b, l) = self.check(input)?;
        let ids = &input.structure_tokens;
        let x = self.embed.forward(&ids.to_tensor_u32(&self.device)?)?;
        let d_head = self.config.d_model / self.config.n_heads;
        let seq = input.sequence_id.as_ref().map(|s| s.data.as_slice());
        let ctx = AttentionContext::new(d_head, b, l, seq, self.dtype, &self.device)?;
        let x = self.stack.forward(&x, Some(&ctx), None, false)?.normed;

        let bb_pred = self.backbone(&x)?;
        let plddt = self.plddt(&x)?;
        let counted: Vec<bool> = ids
            .data
            .iter()
            .map(|&t| t < tokens::CODEBOOK_SIZE)
            .collect();
        let (pae, ptm) = self.pae_and_ptm(&x, &counted, b, l)?;
        Ok(StructureDecoderOutput {
            bb_pred,
            plddt,
            ptm,
            predicted_aligned_error: pae,
        })
    }

    /// Frames from the 6D rotation head (spec §3.3 step 3), applied to the local backbone.
    fn backbone(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let h = self
            .bb_norm
            .forward(&gelu_erf(&self.bb_ffn1.forward(x)?)?)?;
        let p = self.bb_proj.forward(&h)?.to_dtype(DType::F32)?;
        let p = p.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(b * l * 9);
        for r in p.chunks(vocab::AFFINE_PROJECTION) {
            let t = [r[0] * TRANS_SCALE, r[1] * TRANS_SCALE, r[2] * TRANS_SCALE];
            let a = scale_unit([r[3], r[4], r[5]]);
            let c = scale_unit([r[6], r[7], r[8]]);
            // The reference's argument order: neg_x = a + t, origin = t, xy = c + t.
            let frame = Frame::from_three_points(add3(a, t), t, add3(c, t));
            for atom in BB_LOCAL {
                out.extend(frame.apply(atom));
            }
        }
        Ok(Tensor::from_vec(out, (b, l, 3, 3), &Device::Cpu)?)
    }

    fn plddt(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.plddt_head.forward(x)?.to_dtype(DType::F32)?;
        let probs = softmax_last_dim(&logits)?;
        let bins = Tensor::from_vec(plddt_bins(), (vocab::PLDDT_BINS, 1), &self.device)?;
        Ok(probs
            .broadcast_matmul(&bins)?
            .squeeze(D::Minus1)?
            .to_device(&Device::Cpu)?)
    }

    /// PAE `[B, L, L]` and pTM `[B]` from the pairwise head (spec §3.3 step 5, §3.4).
    fn pae_and_ptm(
        &self,
        x: &Tensor,
        counted: &[bool],
        b: usize,
        l: usize,
    ) -> Result<(Tensor, Tensor)> {
        let w = vocab::PAIRWISE_WIDTH;
        let half = w / 2;
        let z = self.pair_down.forward(x)?; // [B, L, 128]
        let q = z.narrow(D::Minus1, 0, half)?.contiguous()?;
        let k = z.narrow(D::Minus1, half, half)?.contiguous()?;
        let centres = pae_bins();
        let bins = Tensor::from_vec(centres.clone(), (vocab::PAE_BINS, 1), &self.device)?;
        let n_counted: Vec<usize> = (0..b)
            .map(|r| counted[r * l..(r + 1) * l].iter().filter(|&&c| c).count())
            .collect();
        let tm_weights: Vec<f32> = n_counted
            .iter()
            .flat_map(|&n| {
                let d0 = tm_d0(n);
                centres.iter().map(move |&c| 1.0 / (1.0 + (c / d0).powi(2)))
            })
            .collect();
        let tm_weights = Tensor::from_vec(tm_weights, (b, 1, vocab::PAE_BINS, 1), &self.device)?;
        let pair_mask: Vec<u8> = (0..b * l * l)
            .map(|idx| {
                let (r, i, j) = (idx / (l * l), (idx / l) % l, idx % l);
                u8::from(counted[r * l + i] && counted[r * l + j])
            })
            .collect();
        let pair_mask = Tensor::from_vec(pair_mask, (b, l, l, 1), &self.device)?;

        let rows = (PAIR_CHUNK_BYTES / (l * w * 4 * 4).max(1)).clamp(1, l);
        let mut pae_parts = Vec::new();
        let mut tm_parts = Vec::new();
        let mut i0 = 0;
        while i0 < l {
            let n = rows.min(l - i0);
            // Pair (i, j): the row uses the k-half of i, the column the q-half of j.
            let ki = k.narrow(1, i0, n)?.unsqueeze(2)?; // [B, n, 1, 64]
            let qj = q.unsqueeze(1)?; // [B, 1, L, 64]
            let prod = qj.broadcast_mul(&ki)?;
            let diff = qj.broadcast_sub(&ki)?;
            let feat = Tensor::cat(&[prod, diff], D::Minus1)?; // [B, n, L, 128]
            let h = self.pair_linear1.forward(&feat)?.gelu_erf()?;
            let logits = self
                .pae_out
                .forward(&self.pair_norm.forward(&h)?)?
                .to_dtype(DType::F32)?;
            let mask = pair_mask.narrow(1, i0, n)?.broadcast_as(logits.shape())?;
            let floor = Tensor::full(f32::MIN, logits.shape(), &self.device)?;
            let probs = softmax_last_dim(&mask.where_cond(&logits, &floor)?)?;
            pae_parts.push(probs.broadcast_matmul(&bins)?.squeeze(D::Minus1)?);
            tm_parts.push(probs.broadcast_matmul(&tm_weights)?.squeeze(D::Minus1)?);
            i0 += n;
        }
        let pae = Tensor::cat(&pae_parts, 1)?.to_device(&Device::Cpu)?;
        let tm = Tensor::cat(&tm_parts, 1)?
            .to_device(&Device::Cpu)?
            .to_vec3::<f32>()?;
        // Mean over j within the pair mask, then max over rows i (masked rows give 0).
        let ptm: Vec<f32> = (0..b)
            .map(|r| {
                (0..l)
                    .map(|i| {
                        let (mut sum, mut count) = (0f32, 0f32);
                        for j in 0..l {
                            if counted[r * l + i] && counted[r * l + j] {
                                sum += tm[r][i][j];
                                count += 1.0;
                            }
                        }
                        sum / (1e-10 + count)
                    })
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .collect();
        Ok((pae, Tensor::from_vec(ptm, b, &Device::Cpu)?))
    }

    /// The SDK's `decode_structure` for one protein: `structure_tokens` `[L + 2]` with BOS/EOS →
    /// atom37 backbone with inferred carbonyl O, per-residue pLDDT and pTM.
    pub fn decode_structure(&self, structure_tokens: &[i64]) -> Result<DecodedStructure> {
        let n = structure_tokens.len();
        let out = self.forward(&StructureDecoderInput {
            structure_tokens: HostArray::new(vec![1, n], structure_tokens.to_vec()),
            attention_mask: None,
            sequence_id: None,
        })?;
        let bb = out.bb_pred.flatten_all()?.to_vec1::<f32>()?;
        let plddt = out.plddt.flatten_all()?.to_vec1::<f32>()?;
        let ptm = out.ptm.flatten_all()?.to_vec1::<f32>()?[0];
        let pae = out
            .predicted_aligned_error
            .squeeze(0)?
            .narrow(0, 1, n - 2)?
            .narrow(1, 1, n - 2)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let residues: Vec<[Vec3; 3]> = bb[9..(n - 1) * 9]
            .chunks(9)
            .map(|r| [[r[0], r[1], r[2]], [r[3], r[4], r[5]], [r[6], r[7], r[8]]])
            .collect();
        Ok(DecodedStructure {
            atom37: backbone_to_atom37(&residues),
            plddt: plddt[1..n - 1].to_vec(),
            ptm,
            predicted_aligned_error: pae,
        })
    }
}

/// Differentiable entry points for training (esm3-train's VQ-VAE): everything stays a tensor
/// so gradients reach every weight; inference keeps using `forward`.
impl StructureTokenDecoder {
    /// Token embeddings `[B, L, d_model]` of ids `[B, L]` (u32 or i64).
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.embed.forward(ids)?)
    }

    /// The transformer stack and final norm on input states `[B, L, d_model]`; `sequence_id`
    /// (`[B·L]` row-major) restricts attention to equal ids, e.g. to keep padding out.
    pub fn hidden_states(&self, x: &Tensor, sequence_id: Option<&[i64]>) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let d_head = self.config.d_model / self.config.n_heads;
        let ctx = AttentionContext::new(d_head, b, l, sequence_id, self.dtype, &self.device)?;
        Ok(self.stack.forward(x, Some(&ctx), None, false)?.normed)
    }

    /// The backbone head's raw output `[B, L, 23]` f32 (translation / 10, the two frame
    /// vectors, unused torsions), before any normalisation.
    pub fn affine_projection(&self, x: &Tensor) -> Result<Tensor> {
        let h = self
            .bb_norm
            .forward(&gelu_erf(&self.bb_ffn1.forward(x)?)?)?;
        Ok(self.bb_proj.forward(&h)?.to_dtype(DType::F32)?)
    }

    /// All pairwise-head logits `[B, L, L, 224]` f32: distogram 0..64, direction 64..160,
    /// PAE 160..224; pair (i, j) reads the k-half of i and the q-half of j as in `forward`.
    pub fn pairwise_logits(&self, x: &Tensor) -> Result<Tensor> {
        let half = vocab::PAIRWISE_WIDTH / 2;
        let z = self.pair_down.forward(x)?;
        let q = z.narrow(D::Minus1, 0, half)?; // [B, L, 64]
        let k = z.narrow(D::Minus1, half, half)?;
        // linear1([q_j ⊙ k_i ‖ q_j − k_i]) = W_a(q_j ⊙ k_i) + W_b q_j − W_b k_i: the difference
        // half is applied per residue instead of per pair (same value up to rounding, and it
        // saves a third of the pairwise work, forward and backward).
        // The two halves of linear1's weight `[128, 128]` as Linear layers (`[out, in]`), so
        // the products take the Linear kernels (BLAS, with their own backward when training)
        // rather than a matmul against a weight broadcast over every pair row.
        let w1 = self.pair_linear1.weight();
        let w_prod = Linear::new(w1.narrow(1, 0, half)?.contiguous()?, None);
        let w_diff = Linear::new(w1.narrow(1, half, half)?.contiguous()?, None);
        let qd = w_diff.forward(&q.contiguous()?)?; // [B, L, 128], broadcast over rows i
        let kd = w_diff.forward(&k.contiguous()?)?; // over columns j
        let prod = match esm3_nn::pairwise::outer_product(&q, &k)? {
            Some(prod) => prod,
            None => q.unsqueeze(1)?.broadcast_mul(&k.unsqueeze(2)?)?,
        }; // [B, L, L, 64]
        let pre = w_prod.forward(&prod)?;
        let h = match esm3_nn::pairwise::pair_gelu(&pre, &qd, &kd)? {
            Some(h) => h,
            None => gelu_erf(
                &pre.broadcast_add(&qd.unsqueeze(1)?)?
                    .broadcast_sub(&kd.unsqueeze(2)?)?,
            )?,
        };
        Ok(self
            .pair_out
            .forward(&self.pair_norm.forward(&h)?)?
            .to_dtype(DType::F32)?)
    }

    /// pLDDT logits `[B, L, 50]` f32.
    pub fn plddt_logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.plddt_head.forward(x)?.to_dtype(DType::F32)?)
    }
}

/// atom37 from N, CA, C per residue with the carbonyl O inferred from the next residue's N
/// (`ProteinChain.infer_oxygen`); the last residue's O is NaN, unmodelled atoms +inf.
pub fn backbone_to_atom37(backbone: &[[Vec3; 3]]) -> Vec<[Vec3; 37]> {
    const O: usize = 4;
    (0..backbone.len())
        .map(|i| {
            let [n, ca, c] = backbone[i];
            let mut atoms = [[f32::INFINITY; 3]; 37];
            atoms[0] = n;
            atoms[1] = ca;
            atoms[2] = c;
            atoms[O] = match backbone.get(i + 1) {
                Some(next) => Frame::from_three_points(ca, c, next[0]).apply(O_LOCAL),
                None => [f32::NAN; 3],
            };
            atoms
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_centres_follow_the_spec() {
        let p = pae_bins();
        assert_eq!(p.len(), 64);
        assert_eq!((p[0], p[1], p[62], p[63]), (0.25, 0.75, 31.25, 31.75));
        let mean: f32 = p.iter().sum::<f32>() / 64.0;
        assert!((mean - 16.0).abs() < 1e-5, "{mean}");
        let q = plddt_bins();
        assert_eq!(q.len(), 50);
        assert!((q[0] - 0.01).abs() < 1e-7 && (q[49] - 0.99).abs() < 1e-7);
    }

    #[test]
    fn malformed_token_rows_are_errors_naming_the_position() {
        use crate::config::ModelConfig;
        use crate::init::random_weights;
        let config = StructureDecoderConfig {
            d_model: 16,
            n_heads: 2,
            n_layers: 1,
        };
        let weights = random_weights(&ModelConfig::StructureDecoder(config.clone()), 1).unwrap();
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let decoder = StructureTokenDecoder::new(&config, vb).unwrap();
        let run = |ids: Vec<i64>, mask: Option<Vec<i64>>| {
            let n = ids.len();
            decoder
                .forward(&StructureDecoderInput {
                    structure_tokens: HostArray::new(vec![1, n], ids),
                    attention_mask: mask.map(|m| HostArray::new(vec![1, n], m)),
                    sequence_id: None,
                })
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(run(vec![4098, 3, 4097], None), None);
        let err = run(vec![4098, 3, 4097, 4099], Some(vec![1, 1, 1, 1])).unwrap();
        assert!(
            err.contains("`structure_tokens`[0, 3] = 4099: expected EOS (4097)"),
            "{err}"
        );
        let err = run(vec![4098, 4101, 4097], None).unwrap();
        assert!(err.contains("[0, 1]") && err.contains("4101"), "{err}");
    }

    #[test]
    fn d0_matches_the_spec_examples() {
        for (n, want) in [
            (5, 0.1684),
            (19, 0.1684),
            (50, 2.2561),
            (100, 3.6521),
            (300, 6.3602),
        ] {
            assert!((tm_d0(n) - want).abs() < 1e-4, "{n}: {}", tm_d0(n));
        }
    }
}
