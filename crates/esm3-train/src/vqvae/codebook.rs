//! The EMA codebook of the VQ-VAE (spec esm3-training.md §3.2).
//!
//! The codebook gets no gradient: its entries follow an exponential moving average of the
//! encoder outputs assigned to them, unused ("dead") entries are restarted at random encoder
//! outputs, and the encoder is pulled towards its codes by the commitment loss. Quantisation
//! uses the straight-through estimator ê = z + sg(e − z), so reconstruction gradients reach
//! the encoder as if quantisation were the identity.
//!
//! State lives in three f32 tensors named as in the encoder's checkpoint layout
//! (`codebook.embeddings`, `codebook.N`, `codebook.z_avg`), so a checkpoint can store and
//! restore it bit for bit; the update itself runs on the host in f64 and is deterministic given
//! the caller's RNG.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use rand_distr::{Distribution, Normal};

#[derive(Clone, Debug, PartialEq)]
pub struct CodebookConfig {
    pub n_codes: usize,
    pub dim: usize,
    /// EMA decay of counts and sums.
    pub decay: f64,
    /// Laplace smoothing ε of the counts.
    pub epsilon: f64,
    /// Codes whose EMA count N falls below this are restarted.
    pub restart_threshold: f64,
    /// Weight of the commitment term ‖z − sg(e)‖² (mean squared error).
    pub commitment_weight: f64,
}

impl CodebookConfig {
    /// The spec's values (§3.2): decay 0.99, ε 1e-7, restart threshold 1.0, commitment 0.25.
    pub fn new(n_codes: usize, dim: usize) -> Self {
        Self {
            n_codes,
            dim,
            decay: 0.99,
            epsilon: 1e-7,
            restart_threshold: 1.0,
            commitment_weight: 0.25,
        }
    }
}

/// Result of quantising a batch of latents.
pub struct Quantized {
    /// `[n, dim]` straight-through codes z + sg(e − z): the value of e, the gradient of z.
    pub z_q: Tensor,
    /// `[n]` chosen code per row.
    pub codes: Vec<u32>,
    /// Scalar: mean over the rows in `mask` and all dims of (z − sg(e))², unweighted.
    pub commitment_mse: Tensor,
}

/// What one EMA step did, plus batch usage statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CodebookStats {
    /// Vectors that took part (valid residues).
    pub vectors: usize,
    /// Distinct codes used by this batch.
    pub codes_used: usize,
    /// exp(entropy) of this batch's code distribution (1 … min(vectors, n_codes)).
    pub perplexity: f64,
    /// Codes below the restart threshold after the EMA step.
    pub dead_codes: usize,
    /// Codes restarted in this step (0 unless restarts were asked for).
    pub restarted: usize,
}

pub struct Codebook {
    config: CodebookConfig,
    /// `[K, d]` f32.
    embeddings: Tensor,
    /// `[K]` f32 EMA counts N.
    counts: Tensor,
    /// `[K, d]` f32 EMA sums z_avg.
    sums: Tensor,
    initialised: bool,
}

/// Names of the state tensors, relative to the encoder (its checkpoint layout).
pub const EMBEDDINGS: &str = "codebook.embeddings";
pub const COUNTS: &str = "codebook.N";
pub const SUMS: &str = "codebook.z_avg";

impl Codebook {
    /// An uninitialised codebook (zeros); [`Codebook::initialise`] fills it from the first batch.
    pub fn new(config: CodebookConfig, device: &Device) -> Result<Self> {
        let (k, d) = (config.n_codes, config.dim);
        Ok(Self {
            embeddings: Tensor::zeros((k, d), DType::F32, device)?,
            counts: Tensor::zeros(k, DType::F32, device)?,
            sums: Tensor::zeros((k, d), DType::F32, device)?,
            initialised: false,
            config,
        })
    }

    /// From saved state (`embeddings` `[K, d]`, `counts` `[K]`, `sums` `[K, d]`); pass
    /// `initialised = true` when resuming after the first training step.
    pub fn from_tensors(
        config: CodebookConfig,
        embeddings: Tensor,
        counts: Tensor,
        sums: Tensor,
        initialised: bool,
    ) -> Result<Self> {
        let (k, d) = (config.n_codes, config.dim);
        if embeddings.dims() != [k, d] || counts.dims() != [k] || sums.dims() != [k, d] {
            candle_core::bail!(
                "codebook state shapes {:?}, {:?}, {:?}; expected [{k}, {d}], [{k}], [{k}, {d}]",
                embeddings.dims(),
                counts.dims(),
                sums.dims()
            );
        }
        Ok(Self {
            embeddings: embeddings.to_dtype(DType::F32)?.detach(),
            counts: counts.to_dtype(DType::F32)?.detach(),
            sums: sums.to_dtype(DType::F32)?.detach(),
            initialised,
            config,
        })
    }

    /// From the encoder's `codebook.*` tensors of a var builder (e.g. `vb.pp("encoder")` over
    /// a `VarMap` loaded from a checkpoint). Copies the values: the codebook is never a
    /// trainable variable.
    pub fn from_var_builder(
        config: CodebookConfig,
        encoder_vb: &VarBuilder,
        initialised: bool,
    ) -> Result<Self> {
        let (k, d) = (config.n_codes, config.dim);
        let e = encoder_vb.get((k, d), EMBEDDINGS)?.copy()?;
        let n = encoder_vb.get(k, COUNTS)?.copy()?;
        let s = encoder_vb.get((k, d), SUMS)?.copy()?;
        Self::from_tensors(config, e, n, s, initialised)
    }

    pub fn config(&self) -> &CodebookConfig {
        &self.config
    }
    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }
    pub fn counts(&self) -> &Tensor {
        &self.counts
    }
    pub fn sums(&self) -> &Tensor {
        &self.sums
    }
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// The state under the encoder checkpoint names (prefix them with the encoder's
    /// namespace, e.g. `encoder.`).
    pub fn named_tensors(&self) -> Vec<(&'static str, Tensor)> {
        vec![
            (EMBEDDINGS, self.embeddings.clone()),
            (COUNTS, self.counts.clone()),
            (SUMS, self.sums.clone()),
        ]
    }

    /// Writes the state into `varmap` under `prefix` + name (replacing values of existing
    /// variables, adding missing ones), so a VarMap checkpoint holds the current codebook.
    pub fn write_to_varmap(&self, varmap: &VarMap, prefix: &str) -> Result<()> {
        let mut data = varmap.data().lock().expect("VarMap lock");
        for (name, t) in self.named_tensors() {
            let key = format!("{prefix}{name}");
            match data.get(&key) {
                Some(var) if var.dims() == t.dims() && var.dtype() == t.dtype() => var.set(&t)?,
                _ => {
                    data.insert(key, candle_core::Var::from_tensor(&t)?);
                }
            }
        }
        Ok(())
    }

    /// Nearest code per row of `z` `[n, d]`: argmin of ‖z‖² − 2 z·e + ‖e‖² (the reference's
    /// expanded form), first index on ties.
    pub fn nearest(&self, z: &Tensor) -> Result<Vec<u32>> {
        let z = z.detach().to_dtype(DType::F32)?;
        esm3_models::structure_encoder::nearest_codes(&z, &self.embeddings)
    }

    /// Quantises `z` `[n, d]` (which may track gradients) with the straight-through estimator;
    /// the commitment term averages over the rows marked in `mask` (`[n]`).
    pub fn quantize(&self, z: &Tensor, mask: &[bool]) -> Result<Quantized> {
        if !self.initialised {
            candle_core::bail!(
                "the codebook is not initialised: call `initialise` on the first batch"
            );
        }
        let (n, _) = z.dims2()?;
        if mask.len() != n {
            candle_core::bail!("codebook mask has {} entries for {n} rows", mask.len());
        }
        let codes = self.nearest(z)?;
        let ids = Tensor::from_slice(&codes, n, z.device())?;
        let e = self
            .embeddings
            .to_device(z.device())?
            .index_select(&ids, 0)?
            .to_dtype(z.dtype())?;
        let z_q = (z + (&e - z)?.detach())?;
        let m = super::losses::bool_tensor(mask, (n, 1), z.dtype(), z.device())?;
        let per_row = (z - &e)?.sqr()?.mean_keepdim(1)?;
        let commitment_mse = super::losses::masked_mean(&per_row, &m)?;
        Ok(Quantized {
            z_q,
            codes,
            commitment_mse,
        })
    }

    /// `count` rows drawn at random from `z` (`[n][d]`): without replacement when n ≥ count,
    /// else from the batch tiled ⌈count / n⌉ times with N(0, (0.01/√d)²) jitter (TATS-style).
    fn sample_rows<R: Rng + ?Sized>(
        &self,
        z: &[Vec<f32>],
        count: usize,
        rng: &mut R,
    ) -> Vec<Vec<f32>> {
        let n = z.len();
        if n >= count {
            return rand::seq::index::sample(rng, n, count)
                .into_iter()
                .map(|i| z[i].clone())
                .collect();
        }
        let std = 0.01 / (self.config.dim as f64).sqrt();
        let noise = Normal::new(0.0, std).expect("finite std");
        let repeats = count.div_ceil(n);
        let pool: Vec<Vec<f32>> = (0..repeats)
            .flat_map(|_| z.iter())
            .map(|row| {
                row.iter()
                    .map(|&v| (f64::from(v) + noise.sample(rng)) as f32)
                    .collect()
            })
            .collect();
        rand::seq::index::sample(rng, pool.len(), count)
            .into_iter()
            .map(|i| pool[i].clone())
            .collect()
    }

    /// First-batch initialisation (spec §3.2): K random encoder outputs (tiled with jitter when
    /// the batch has fewer), N = 1, z_avg = e. `z` holds the valid latents `[n, d]` (n ≥ 1).
    pub fn initialise<R: Rng + ?Sized>(&mut self, z: &[Vec<f32>], rng: &mut R) -> Result<()> {
        if z.is_empty() {
            candle_core::bail!("cannot initialise the codebook from an empty batch");
        }
        let (k, d) = (self.config.n_codes, self.config.dim);
        let rows = self.sample_rows(z, k, rng);
        let flat: Vec<f32> = rows.into_iter().flatten().collect();
        let device = self.embeddings.device().clone();
        self.embeddings = Tensor::from_vec(flat, (k, d), &device)?;
        self.sums = self.embeddings.clone();
        self.counts = Tensor::ones(k, DType::F32, &device)?;
        self.initialised = true;
        Ok(())
    }

    /// One EMA step (spec §3.2 [I]) from the valid latents `z` (`[n][d]`, detached) and their
    /// codes: N ← γN + (1−γ)n, z_avg ← γ z_avg + (1−γ)s, e = z_avg / Ñ with Laplace-smoothed
    /// Ñ_k = (N_k + ε)/(ΣN + Kε)·ΣN. With `restart`, codes whose N is below the threshold are
    /// set to random rows of `z` with N = threshold and z_avg = threshold·e (so e stays that
    /// row until the next step; a code that then attracts at least one vector survives).
    pub fn update<R: Rng + ?Sized>(
        &mut self,
        z: &[Vec<f32>],
        codes: &[u32],
        restart: bool,
        rng: &mut R,
    ) -> Result<CodebookStats> {
        let (k, d) = (self.config.n_codes, self.config.dim);
        if z.len() != codes.len() {
            candle_core::bail!("{} latents for {} codes", z.len(), codes.len());
        }
        if !self.initialised {
            candle_core::bail!("the codebook is not initialised: call `initialise` first");
        }
        let mut n_k = vec![0f64; k];
        let mut s_k = vec![0f64; k * d];
        for (row, &c) in z.iter().zip(codes) {
            let c = c as usize;
            n_k[c] += 1.0;
            for (acc, &v) in s_k[c * d..(c + 1) * d].iter_mut().zip(row) {
                *acc += f64::from(v);
            }
        }
        let g = self.config.decay;
        let mut counts: Vec<f64> = self
            .counts
            .to_vec1::<f32>()?
            .iter()
            .zip(&n_k)
            .map(|(&old, &new)| g * f64::from(old) + (1.0 - g) * new)
            .collect();
        let mut sums: Vec<f64> = self
            .sums
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .zip(&s_k)
            .map(|(&old, &new)| g * f64::from(old) + (1.0 - g) * new)
            .collect();
        let total: f64 = counts.iter().sum();
        let eps = self.config.epsilon;
        let mut emb: Vec<f64> = vec![0.0; k * d];
        for c in 0..k {
            let w = (counts[c] + eps) / (total + k as f64 * eps) * total;
            for j in 0..d {
                emb[c * d + j] = sums[c * d + j] / w;
            }
        }
        let dead: Vec<usize> = (0..k)
            .filter(|&c| counts[c] < self.config.restart_threshold)
            .collect();
        let mut restarted = 0;
        if restart && !dead.is_empty() && !z.is_empty() {
            let rows = self.sample_rows(z, dead.len(), rng);
            let th = self.config.restart_threshold;
            for (&c, row) in dead.iter().zip(rows) {
                counts[c] = th;
                for j in 0..d {
                    emb[c * d + j] = f64::from(row[j]);
                    sums[c * d + j] = th * f64::from(row[j]);
                }
                restarted += 1;
            }
        }
        let device = self.embeddings.device().clone();
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        self.counts = Tensor::from_vec(to_f32(counts), k, &device)?;
        self.sums = Tensor::from_vec(to_f32(sums), (k, d), &device)?;
        self.embeddings = Tensor::from_vec(to_f32(emb), (k, d), &device)?;
        let mut stats = usage_stats(codes, k);
        stats.dead_codes = dead.len();
        stats.restarted = restarted;
        Ok(stats)
    }
}

/// Batch usage statistics of an assignment: distinct codes and perplexity exp(−Σ p log p).
pub fn usage_stats(codes: &[u32], n_codes: usize) -> CodebookStats {
    let mut hist = vec![0usize; n_codes];
    for &c in codes {
        hist[c as usize] += 1;
    }
    let n = codes.len() as f64;
    let entropy: f64 = hist
        .iter()
        .filter(|&&h| h > 0)
        .map(|&h| {
            let p = h as f64 / n;
            -p * p.ln()
        })
        .sum();
    CodebookStats {
        vectors: codes.len(),
        codes_used: hist.iter().filter(|&&h| h > 0).count(),
        perplexity: if codes.is_empty() { 0.0 } else { entropy.exp() },
        dead_codes: 0,
        restarted: 0,
    }
}
