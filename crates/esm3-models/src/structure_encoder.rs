//! The VQ-VAE structure encoder (`StructureTokenEncoder`, spec §3.1–3.2): backbone coordinates
//! → one structure token per residue.
//!
//! Each residue is encoded from its own neighbourhood: its k = 16 nearest residues by CA
//! distance become an independent mini-sequence that runs through geometric-attention blocks,
//! and the query's slot (always first) is projected and snapped to the nearest codebook entry.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};
use esm3_nn::linear::{linear, Linear};
use esm3_nn::{GeometryContext, TransformerStack};
use esm3_protein::frames::MAX_SUPPORTED_DISTANCE;
use esm3_protein::{backbone_frames, Frame, Vec3};

use crate::array::{expect_shape, HostArray};
use crate::config::StructureEncoderConfig;
use crate::error::{ModelError, Result};
use crate::schema::vocab;

/// Neighbourhood size of every residue (the reference's `self.knn`).
pub const KNN: usize = 16;

/// Memory budget for one chunk of neighbourhoods through the block stack; neighbourhoods are
/// independent, so chunking changes no result.
const CHUNK_BYTES: usize = 256 << 20;

#[derive(Clone, Debug)]
pub struct StructureEncoderInput {
    /// `[B, L, A, 3]` with A ≥ 3 (atom37 or N, CA, C); only atoms 0..3 (N, CA, C) are read.
    /// NaN / ±inf / values ≥ 1e6 mark missing atoms (the residue then has no frame).
    pub coords: HostArray<f32>,
    /// `[B, L]`, non-zero = real residue. Default: all real.
    pub attention_mask: Option<HostArray<i64>>,
    /// `[B, L]`; neighbours are searched within equal ids. Default: all 0.
    pub sequence_id: Option<HostArray<i64>>,
    /// `[B, L]` residue numbers for the relative-position embedding. Default: the position
    /// index 0..L (the SDK passes 1..L, which gives the same offsets).
    pub residue_index: Option<HostArray<i64>>,
}

pub struct StructureEncoderOutput {
    /// `[B, L, d_out]` f32: the chosen codebook vectors.
    pub z_q: Tensor,
    /// `[B, L]` i64 code ids in `0..n_codes`.
    pub structure_tokens: Tensor,
}

impl StructureEncoderOutput {
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("z_q", &self.z_q),
            ("structure_tokens", &self.structure_tokens),
        ]
    }
}

/// What [`StructureTokenEncoder::latents`] returns.
pub struct EncoderLatents {
    /// `[B, L, d_out]` f32 pre-quantisation latents (frameless residues: the projection bias).
    pub z: Tensor,
    /// `[B·L]` row-major: whether the residue had a backbone frame.
    pub has_frame: Vec<bool>,
}

pub struct StructureTokenEncoder {
    config: StructureEncoderConfig,
    transformer: TransformerStack,
    pre_vq_proj: Linear,
    relative_position: Embedding,
    /// `[n_codes, d_out]` f32.
    codebook: Tensor,
    device: Device,
    dtype: DType,
}

/// The k nearest neighbours of every residue, exactly as the reference's `knn_graph` orders them:
/// `[B·L]` rows of `min(KNN, L)` position indices, the query itself first for real residues.
///
/// Sort key of (i, j): +inf if either is padding or their sequence ids differ; the CA–CA
/// distance if both have frames; else the sequence distance fallback 1e6 + 100·|i − j|.
/// Ties keep position order (a stable sort). The reference uses `torch.sort`, which is not
/// stable beyond 16 elements, so for exactly tied keys its choice may differ; ties between
/// real, framed residues need duplicated CA coordinates, and ties among frameless or +inf-keyed
/// neighbours do not change any output as long as those neighbours are frameless.
pub fn knn_edges(
    batch: usize,
    len: usize,
    ca: &[Vec3],
    has_frame: &[bool],
    is_real: &[bool],
    sequence_id: &[i64],
) -> Result<Vec<Vec<usize>>> {
    let k = KNN.min(len);
    let mut edges = Vec::with_capacity(batch * len);
    let mut keyed: Vec<(f32, usize)> = Vec::with_capacity(len);
    for b in 0..batch {
        let row = b * len;
        // Frameless residues sit at the origin, as the reference zeroes them before measuring.
        let point = |i: usize| {
            if has_frame[row + i] {
                ca[row + i]
            } else {
                [0.0; 3]
            }
        };
        for i in 0..len {
            keyed.clear();
            let pi = point(i);
            for j in 0..len {
                let (gi, gj) = (row + i, row + j);
                let key = if !is_real[gi] || !is_real[gj] || sequence_id[gi] != sequence_id[gj] {
                    f32::INFINITY
                } else if has_frame[gi] && has_frame[gj] {
                    let pj = point(j);
                    let d = [pi[0] - pj[0], pi[1] - pj[1], pi[2] - pj[2]];
                    let dist = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                    if dist >= MAX_SUPPORTED_DISTANCE {
                        return Err(ModelError::Input(format!(
                            "`coords`: CA atoms of residues [{b}, {i}] and [{b}, {j}] are {dist} Å \
                             apart; expected distances below 1e6 Å"
                        )));
                    }
                    dist
                } else {
                    (i.abs_diff(j) as f32) * 100.0 + MAX_SUPPORTED_DISTANCE
                };
                keyed.push((key, j));
            }
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            edges.push(keyed[..k].iter().map(|&(_, j)| j).collect());
        }
    }
    Ok(edges)
}

/// Index of the relative-position embedding row for a neighbour at residue number `key` seen
/// from the query at residue number `query` (row 0 is the unused padding row).
fn relative_position_row(query: i64, key: i64) -> u32 {
    let bins = vocab::RELATIVE_POSITION_BINS as i64;
    (key.wrapping_sub(query).clamp(-bins, bins) + bins + 1) as u32
}

impl StructureTokenEncoder {
    /// Codes in this tokenizer's codebook (4,096 for the release's).
    pub fn n_codes(&self) -> usize {
        self.config.n_codes
    }

    pub fn new(config: &StructureEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.d_model;
        let transformer = TransformerStack::new(
            config.n_layers,
            |i| config.block(i),
            false,
            d,
            vb.pp("transformer"),
        )?;
        Ok(Self {
            config: config.clone(),
            transformer,
            pre_vq_proj: linear(d, config.d_out, vb.pp("pre_vq_proj"))?,
            relative_position: embedding(
                2 * vocab::RELATIVE_POSITION_BINS + 2,
                d,
                vb.pp("relative_positional_embedding.embedding"),
            )?,
            codebook: vb
                .pp("codebook")
                .get((config.n_codes, config.d_out), "embeddings")?
                .to_dtype(DType::F32)?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &StructureEncoderConfig {
        &self.config
    }

    /// Tokens of one protein: `coords` `[L, A, 3]` (A ≥ 3; normalised atom37 as the SDK passes),
    /// optional residue numbers `[L]`. Returns L code ids.
    pub fn encode(
        &self,
        coords: &HostArray<f32>,
        residue_index: Option<&[i64]>,
    ) -> Result<Vec<i64>> {
        let mut shape = vec![1];
        shape.extend(&coords.shape);
        let l = coords.shape.first().copied().unwrap_or(0);
        let input = StructureEncoderInput {
            coords: HostArray::new(shape, coords.data.clone()),
            attention_mask: None,
            sequence_id: None,
            residue_index: residue_index.map(|r| HostArray::new(vec![1, r.len()], r.to_vec())),
        };
        if residue_index.is_some_and(|r| r.len() != l) {
            return Err(ModelError::Input(format!(
                "residue_index has {} entries for {l} residues",
                residue_index.map_or(0, <[i64]>::len)
            )));
        }
        let out = self.forward(&input)?;
        Ok(out.structure_tokens.flatten_all()?.to_vec1::<i64>()?)
    }

    pub fn forward(&self, input: &StructureEncoderInput) -> Result<StructureEncoderOutput> {
        let EncoderLatents { z, .. } = self.latents(input)?;
        let (b, l, _) = z.dims3()?;
        let n = b * l;
        let z = z.reshape((n, self.config.d_out))?;
        let codes = self.nearest_codes(&z)?;
        let ids = Tensor::from_vec(codes.clone(), n, &self.device)?;
        let chosen = self.codebook.index_select(&ids, 0)?;
        // The reference returns the straight-through value (e − z) + z, which is e up to rounding.
        let z_q = ((chosen - &z)? + &z)?;
        let tokens: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
        Ok(StructureEncoderOutput {
            z_q: z_q.reshape((b, l, self.config.d_out))?,
            structure_tokens: Tensor::from_vec(tokens, (b, l), &Device::Cpu)?,
        })
    }

    /// The released codebook `[n_codes, d_out]` f32 (training keeps its own EMA copy).
    pub fn codebook(&self) -> &Tensor {
        &self.codebook
    }

    /// The pre-quantisation latents z `[B, L, d_out]` f32 (step 7 of spec §3.1, before the
    /// argmin). Differentiable with respect to the encoder weights (the coordinates only feed
    /// frames and the neighbour graph, which carry no gradient), so training can apply the
    /// straight-through estimator and commitment loss to it.
    pub fn latents(&self, input: &StructureEncoderInput) -> Result<EncoderLatents> {
        let g = EncoderGeometry::new(input)?;
        let (b, l) = (g.batch, g.len);
        let ca: Vec<Vec3> = g.backbone.iter().map(|bb| bb[1]).collect();
        let edges = knn_edges(b, l, &ca, &g.has_frame, &g.is_real, &g.sequence_id)?;
        let nb = Neighbourhoods::gather(&edges, &g);
        let n = b * l;
        // [B·L, d]; frameless residues get z = 0 (a select, not a product, so no NaN leaks).
        let z = self.encode_neighbourhoods(&nb, n)?;
        let keep: Vec<u8> = g.has_frame.iter().map(|&m| u8::from(m)).collect();
        let keep = Tensor::from_vec(keep, (n, 1), &self.device)?.broadcast_as(z.shape())?;
        let z = keep.where_cond(&z, &z.zeros_like()?)?;
        let z = self.pre_vq_proj.forward(&z)?.to_dtype(DType::F32)?; // [B·L, d_out]
        Ok(EncoderLatents {
            z: z.reshape((b, l, self.config.d_out))?,
            has_frame: g.has_frame,
        })
    }

    /// Each residue's neighbourhood through the transformer as a mini-sequence, in chunks of
    /// at most [`CHUNK_BYTES`] of attention; returns the query slot's output `[n, d]`.
    fn encode_neighbourhoods(&self, nb: &Neighbourhoods, n: usize) -> Result<Tensor> {
        let e = nb.width;
        let d = self.config.d_model;
        let chunk = (CHUNK_BYTES / (e * 8 * d * 4)).max(1);
        let chain_id = vec![0i64; chunk.min(n) * e];
        let mut slots = Vec::with_capacity(n.div_ceil(chunk));
        let mut start = 0;
        while start < n {
            let m = chunk.min(n - start);
            let span = start * e..(start + m) * e;
            let geo = GeometryContext::from_frames(
                m,
                e,
                &nb.frames[span.clone()],
                &nb.mask[span.clone()],
                Some(&nb.sequence_id[span.clone()]),
                &chain_id[..m * e],
                &self.device,
            )?;
            let rows = Tensor::from_slice(&nb.relative_rows[span], (m, e), &self.device)?;
            let x = self
                .relative_position
                .forward(&rows)?
                .to_dtype(self.dtype)?;
            let out = self.transformer.forward(&x, None, Some(&geo), false)?;
            // The query is always slot 0: it is its own nearest neighbour.
            slots.push(out.last.narrow(1, 0, 1)?.squeeze(1)?);
            start += m;
        }
        Ok(Tensor::cat(&slots, 0)?)
    }

    fn nearest_codes(&self, z: &Tensor) -> Result<Vec<u32>> {
        Ok(nearest_codes(z, &self.codebook)?)
    }
}

/// argmin over the rows of `codebook` `[K, d]` of ‖z‖² − 2·z·e + ‖e‖² for each row of `z`
/// `[n, d]` (the reference's expanded form, f32), first index on ties. Shared by inference and
/// the VQ-VAE training codebook so both assign the same codes.
pub fn nearest_codes(z: &Tensor, codebook: &Tensor) -> candle_core::Result<Vec<u32>> {
    let e = codebook;
    let z_sq = z.sqr()?.sum_keepdim(1)?;
    let e_sq = e.t()?.sqr()?.sum_keepdim(0)?;
    let cross = (z.matmul(&e.t()?)? * 2.0)?;
    let dist = z_sq.broadcast_sub(&cross)?.broadcast_add(&e_sq)?;
    let dist = dist.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
    Ok(dist
        .iter()
        .map(|row| {
            let mut best = 0;
            for (c, v) in row.iter().enumerate() {
                // NaN counts as smallest, as in torch.argmin.
                if v.is_nan() {
                    return c as u32;
                }
                if *v < row[best] {
                    best = c;
                }
            }
            best as u32
        })
        .collect())
}

/// The encoder's input, checked and unpacked per position (`B·L` rows).
struct EncoderGeometry {
    batch: usize,
    len: usize,
    is_real: Vec<bool>,
    sequence_id: Vec<i64>,
    residue_index: Option<Vec<i64>>,
    backbone: Vec<[Vec3; 3]>,
    frames: Vec<Frame>,
    has_frame: Vec<bool>,
}

impl EncoderGeometry {
    fn new(input: &StructureEncoderInput) -> Result<Self> {
        let coords = &input.coords;
        if coords.shape.len() != 4 || coords.shape[2] < 3 || coords.shape[3] != 3 {
            return Err(ModelError::Input(format!(
                "`coords` has shape {:?}, expected [B, L, A, 3] with A ≥ 3 atoms (N, CA, C first)",
                coords.shape
            )));
        }
        let (b, l, atoms) = (coords.shape[0], coords.shape[1], coords.shape[2]);
        if b == 0 || l == 0 {
            return Err(ModelError::Input(format!(
                "empty input: batch {b}, length {l}"
            )));
        }
        let per_position = |name: &str, a: &Option<HostArray<i64>>| -> Result<Option<Vec<i64>>> {
            a.as_ref()
                .map(|a| {
                    expect_shape(name, &a.shape, &[Some(b), Some(l)])?;
                    Ok(a.data.clone())
                })
                .transpose()
        };
        let is_real: Vec<bool> = per_position("attention_mask", &input.attention_mask)?
            .map_or_else(
                || vec![true; b * l],
                |m| m.iter().map(|&v| v != 0).collect(),
            );
        let sequence_id =
            per_position("sequence_id", &input.sequence_id)?.unwrap_or_else(|| vec![0; b * l]);
        let residue_index = per_position("residue_index", &input.residue_index)?;
        let backbone: Vec<[Vec3; 3]> = (0..b * l)
            .map(|r| {
                let at = |a: usize| {
                    let o = (r * atoms + a) * 3;
                    [coords.data[o], coords.data[o + 1], coords.data[o + 2]]
                };
                [at(0), at(1), at(2)]
            })
            .collect();
        let mut frames: Vec<Frame> = Vec::with_capacity(b * l);
        let mut has_frame: Vec<bool> = Vec::with_capacity(b * l);
        for row in backbone.chunks(l) {
            let (f, m) = backbone_frames(row);
            frames.extend(f);
            has_frame.extend(m);
        }
        Ok(Self {
            batch: b,
            len: l,
            is_real,
            sequence_id,
            residue_index,
            backbone,
            frames,
            has_frame,
        })
    }
}

/// Every residue's `width` nearest neighbours as a mini-sequence (`[B·L, width]` row-major):
/// their frames, frame masks, sequence ids and relative-position embedding rows.
struct Neighbourhoods {
    width: usize,
    frames: Vec<Frame>,
    mask: Vec<bool>,
    sequence_id: Vec<i64>,
    relative_rows: Vec<u32>,
}

impl Neighbourhoods {
    fn gather(edges: &[Vec<usize>], g: &EncoderGeometry) -> Self {
        let l = g.len;
        let e = edges[0].len();
        let n = edges.len();
        let mut nb = Self {
            width: e,
            frames: Vec::with_capacity(n * e),
            mask: Vec::with_capacity(n * e),
            sequence_id: Vec::with_capacity(n * e),
            relative_rows: Vec::with_capacity(n * e),
        };
        for (q, nbrs) in edges.iter().enumerate() {
            let row = (q / l) * l;
            let number = |j: usize| g.residue_index.as_ref().map_or(j as i64, |r| r[row + j]);
            let query_number = number(nbrs[0]);
            for &j in nbrs {
                nb.frames.push(g.frames[row + j]);
                nb.mask.push(g.has_frame[row + j]);
                nb.sequence_id.push(g.sequence_id[row + j]);
                nb.relative_rows
                    .push(relative_position_row(query_number, number(j)));
            }
        }
        nb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::ModelConfig;
    use crate::init::{random_weights, Normal};
    use esm3_protein::gram_schmidt;

    fn random_encoder() -> StructureTokenEncoder {
        let config = StructureEncoderConfig {
            d_model: 32,
            n_heads: 1,
            v_heads: 4,
            n_layers: 2,
            d_out: 8,
            n_codes: 32,
        };
        let weights = random_weights(&ModelConfig::StructureEncoder(config.clone()), 5).unwrap();
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        StructureTokenEncoder::new(&config, vb).unwrap()
    }

    /// A random backbone-like chain `[L, 3, 3]`: CA on a random walk, N and C nearby.
    fn random_chain(rng: &mut Normal, l: usize) -> Vec<f32> {
        let mut ca = [0f32; 3];
        let mut out = Vec::with_capacity(l * 9);
        for _ in 0..l {
            for v in ca.iter_mut() {
                *v += 2.2 * rng.sample();
            }
            for offset in [[-1.0, 0.8, 0.3], [0.0; 3], [1.2, 0.4, -0.5]] {
                out.extend((0..3).map(|k| ca[k] + offset[k] + 0.1 * rng.sample()));
            }
        }
        out
    }

    /// Structure tokens describe shape only: moving the whole protein rigidly changes nothing
    /// (an oracle independent of the reference: SE(3) invariance of frames and distances).
    #[test]
    fn tokens_are_invariant_to_rigid_motions() {
        let encoder = random_encoder();
        let mut rng = Normal::new(11);
        let l = 40;
        let mut coords = random_chain(&mut rng, l);
        coords[7 * 9 + 3] = f32::NAN; // one residue without a frame
        let tokens = |c: &[f32]| {
            encoder
                .encode(&HostArray::new(vec![l, 3, 3], c.to_vec()), None)
                .unwrap()
        };
        let want = tokens(&coords);
        assert!(
            want.iter().collect::<std::collections::BTreeSet<_>>().len() > 3,
            "{want:?}"
        );
        for seed in 0..3 {
            let mut r = Normal::new(100 + seed);
            let mut v = || [r.sample(), r.sample(), r.sample()];
            let motion = Frame {
                rot: gram_schmidt(v(), v(), 1e-10),
                trans: v().map(|x| 10.0 * x),
            };
            let moved: Vec<f32> = coords
                .chunks(3)
                .flat_map(|p| motion.apply([p[0], p[1], p[2]]))
                .collect();
            assert_eq!(tokens(&moved), want, "motion {seed}");
        }
    }

    #[test]
    fn bad_inputs_are_errors_naming_what_is_wrong() {
        let encoder = random_encoder();
        let mut rng = Normal::new(3);
        let mut coords = random_chain(&mut rng, 5);
        let err = encoder
            .encode(
                &HostArray::new(vec![5, 3, 3], coords.clone()),
                Some(&[1, 2, 3]),
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("residue_index has 3 entries for 5 residues"),
            "{err}"
        );
        coords[4 * 9 + 3] = 5.0e5; // CA of residue 4 far away, but still a valid frame
        coords[4 * 9] = 5.0e5;
        coords[4 * 9 + 6] = 5.0e5;
        coords[3 * 9 + 3] = -6.0e5;
        let err = encoder
            .encode(&HostArray::new(vec![5, 3, 3], coords), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CA atoms of residues") && err.contains("1e6"),
            "{err}"
        );
    }

    /// The spec's sort key of (i, j), written out independently of `knn_edges`.
    fn spec_key(
        ca: &[Vec3],
        framed: &[bool],
        real: &[bool],
        seq: &[i64],
        i: usize,
        j: usize,
    ) -> f32 {
        if !real[i] || !real[j] || seq[i] != seq[j] {
            f32::INFINITY
        } else if framed[i] && framed[j] {
            let d: Vec<f32> = (0..3).map(|k| ca[i][k] - ca[j][k]).collect();
            (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
        } else {
            1e6 + 100.0 * i.abs_diff(j) as f32
        }
    }

    proptest::proptest! {
        /// Each row holds min(16, L) distinct positions, real framed queries come first, keys
        /// never decrease along a row, and nothing left out is strictly nearer than what is in.
        #[test]
        fn knn_rows_are_the_nearest_by_the_spec_key(
            residues in proptest::collection::vec(
                ((-30f32..30.0, -30f32..30.0, -30f32..30.0), proptest::bool::weighted(0.85),
                 proptest::bool::weighted(0.9), 0i64..2),
                1..40,
            ),
        ) {
            let l = residues.len();
            let ca: Vec<Vec3> = residues.iter().map(|r| [r.0 .0, r.0 .1, r.0 .2]).collect();
            let framed: Vec<bool> = residues.iter().map(|r| r.1).collect();
            let real: Vec<bool> = residues.iter().map(|r| r.2).collect();
            let seq: Vec<i64> = residues.iter().map(|r| r.3).collect();
            let edges = knn_edges(1, l, &ca, &framed, &real, &seq).unwrap();
            for (i, row) in edges.iter().enumerate() {
                proptest::prop_assert_eq!(row.len(), KNN.min(l));
                let set: std::collections::BTreeSet<_> = row.iter().collect();
                proptest::prop_assert_eq!(set.len(), row.len());
                if real[i] {
                    proptest::prop_assert_eq!(row[0], i);
                }
                let keys: Vec<f32> = row.iter().map(|&j| spec_key(&ca, &framed, &real, &seq, i, j)).collect();
                proptest::prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]));
                let worst = keys[keys.len() - 1];
                for j in (0..l).filter(|j| !set.contains(j)) {
                    proptest::prop_assert!(spec_key(&ca, &framed, &real, &seq, i, j) >= worst);
                }
            }
        }
    }

    #[test]
    fn relative_rows_clamp_at_32_and_skip_row_0() {
        assert_eq!(relative_position_row(10, 10), 33);
        assert_eq!(relative_position_row(10, 11), 34);
        assert_eq!(relative_position_row(0, 100), 65);
        assert_eq!(relative_position_row(100, 0), 1);
    }

    #[test]
    fn knn_puts_the_query_first_and_falls_back_to_sequence_distance() {
        // Five residues on a line 1 Å apart; residue 2 frameless; residue 4 padding.
        let ca: Vec<Vec3> = (0..5).map(|i| [i as f32, 0.0, 0.0]).collect();
        let has_frame = [true, true, false, true, true];
        let is_real = [true, true, true, true, false];
        let e = knn_edges(1, 5, &ca, &has_frame, &is_real, &[0; 5]).unwrap();
        assert_eq!(e[0], vec![0, 1, 3, 2, 4]);
        // Frameless query: sequence distance only, ties in position order.
        assert_eq!(e[2], vec![2, 1, 3, 0, 4]);
        assert_eq!(e[3], vec![3, 1, 0, 2, 4]);
    }
}
