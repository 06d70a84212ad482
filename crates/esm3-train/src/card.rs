//! Held-out numbers for a model card: each metric of a trained ESM3 + VQ-VAE next to a
//! baseline that needs no model, on one split of a dataset.
//!
//! Baselines (all estimated from the *train* split only):
//! * sequence perplexity: the unigram (amino-acid frequency) model;
//! * structure-token, SS8 and inverse-folding accuracy: always predict the most frequent class;
//! * folding LDDT-Cα / TM-score: an ideal α-helix of the same length (a structure predictor
//!   that knows nothing about the sequence).

use std::collections::HashMap;

use esm3_data::ChainRecord;
use esm3_generate::pipeline::restrict_to_codebook;
use esm3_generate::{iterative_sampling, GenerationConfig, PaddingAttention, ProteinTensor};
use esm3_models::esm3::structure_ids;
use esm3_models::structure_decoder::{DecodedStructure, StructureTokenDecoder};
use esm3_models::structure_encoder::StructureTokenEncoder;
use esm3_models::{Esm3, HostArray};
use esm3_protein::metrics::tmscore::tm_score;
use esm3_protein::metrics::{lddt, superposed_rmsd, LDDT_CUTOFF};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::training_protein;
use crate::eval::{evaluate_trunk, TrunkReport};
use crate::Result;

type Vec3 = [f32; 3];

/// Class frequencies of the train split, for the baselines.
#[derive(Clone, Debug, Default)]
pub struct Baselines {
    residue_freq: HashMap<char, f64>,
    majority_residue: char,
    majority_ss8: char,
    majority_code: i64,
}

impl Baselines {
    pub fn from_train(train: &[ChainRecord]) -> Self {
        let mut residues: HashMap<char, f64> = HashMap::new();
        let mut ss8: HashMap<char, usize> = HashMap::new();
        let mut codes: HashMap<i64, usize> = HashMap::new();
        for r in train {
            for c in r
                .sequence
                .chars()
                .filter(|c| "ACDEFGHIKLMNPQRSTVWY".contains(*c))
            {
                *residues.entry(c).or_default() += 1.0;
            }
            if let Some(s) = &r.ss8 {
                for c in s.chars().filter(|c| "GHITEBSC".contains(*c)) {
                    *ss8.entry(c).or_default() += 1;
                }
            }
            if let Some(t) = &r.structure_tokens {
                for &c in t.iter().filter(|&&c| (0..structure_ids::MASK).contains(&c)) {
                    *codes.entry(c).or_default() += 1;
                }
            }
        }
        let total: f64 = residues.values().sum();
        let majority_residue = residues
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or('L', |(c, _)| *c);
        for v in residues.values_mut() {
            *v /= total.max(1.0);
        }
        Self {
            residue_freq: residues,
            majority_residue,
            majority_ss8: ss8.iter().max_by_key(|e| e.1).map_or('C', |(c, _)| *c),
            majority_code: codes.iter().max_by_key(|e| e.1).map_or(0, |(c, _)| *c),
        }
    }
}

/// One metric: the model's value, the baseline's, and how many items it averages.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub model: f64,
    pub baseline: f64,
    pub count: usize,
    /// True when higher is better.
    pub higher_is_better: bool,
}

impl Metric {
    pub fn beats_baseline(&self) -> bool {
        if self.higher_is_better {
            self.model > self.baseline
        } else {
            self.model < self.baseline
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SplitReport {
    pub split: String,
    pub chains: usize,
    pub chains_with_structure: usize,
    pub metrics: Vec<(String, Metric)>,
}

/// An ideal α-helix (CA trace): 1.5 Å rise, 2.3 Å radius, 100° per residue.
pub fn ideal_helix_ca(n: usize) -> Vec<Vec3> {
    (0..n)
        .map(|i| {
            let t = (i as f32) * 100f32.to_radians();
            [2.3 * t.cos(), 2.3 * t.sin(), 1.5 * i as f32]
        })
        .collect()
}

fn ca_trace(backbone: &[[Vec3; 3]]) -> (Vec<Vec3>, Vec<bool>) {
    let ca: Vec<Vec3> = backbone.iter().map(|b| b[1]).collect();
    let ok = ca.iter().map(|p| p.iter().all(|v| v.is_finite())).collect();
    (ca, ok)
}

/// LDDT-Cα and TM-score of a predicted CA trace against the truth (residue i ↔ i).
fn compare(pred: &[Vec3], truth: &[Vec3], ok: &[bool]) -> (f64, f64) {
    let l = lddt(pred, truth, ok, LDDT_CUTOFF).global;
    let n = ok.iter().filter(|&&m| m).count();
    let tm = tm_score(pred, truth, Some(ok), n);
    (l, tm)
}

pub struct CardModels<'a> {
    pub esm3: &'a Esm3,
    pub encoder: &'a StructureTokenEncoder,
    pub decoder: &'a StructureTokenDecoder,
    pub n_codes: usize,
}

/// How a split is scored.
#[derive(Clone, Copy, Debug)]
pub struct EvalOptions {
    /// Chains longer than this are cut to their first `max_len` residues (structure metrics too).
    pub max_len: usize,
    pub seed: u64,
    /// Iterative-unmasking steps when folding from sequence (1 = argmax of every position).
    pub fold_steps: usize,
}

/// Structure codes for `sequence` (one per residue), generated as `esm3 fold` generates them: the
/// pipeline's iterative unmasking with [`GenerationConfig::folding`] (entropy order, temperature 0)
/// over `steps` steps, sampling only the `n_codes` codes the decoder knows.
fn fold_codes(model: &Esm3, sequence: &str, n_codes: usize, steps: usize) -> Result<Vec<i64>> {
    let ids = esm3_tokens::sequence::SequenceTokenizer::lenient()
        .encode(sequence)
        .map_err(|e| crate::TrainError::Msg(e.to_string()))?;
    let mut prompt = ProteinTensor::empty(ids.len() - 2);
    prompt.sequence = Some(ids.iter().map(|&i| i64::from(i)).collect());
    let mut config = GenerationConfig {
        num_steps: steps,
        ..GenerationConfig::folding()
    };
    restrict_to_codebook(&mut config, n_codes);
    // Temperature 0: the generator is never drawn from, but the sampler takes one.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let failed = |e: esm3_generate::GenerationError| crate::TrainError::Msg(e.to_string());
    let mut folded = iterative_sampling(
        model,
        &[prompt],
        &mut [config],
        PaddingAttention::Masked,
        &mut rng,
        |_, _| {},
    )
    .map_err(failed)?;
    let folded = folded
        .pop()
        .expect("one prompt, one result")
        .map_err(failed)?;
    let structure = folded.structure.expect("the generated track is present");
    Ok(structure[1..structure.len() - 1].to_vec())
}

/// Every metric on `records`; `progress` is called once per chain.
pub fn evaluate_split(
    models: &CardModels,
    baselines: &Baselines,
    split: &str,
    records: &[ChainRecord],
    options: EvalOptions,
    progress: &dyn Fn(),
) -> Result<SplitReport> {
    let records: Vec<ChainRecord> = records
        .iter()
        .map(|r| truncated(r, options.max_len))
        .collect();
    let proteins: Vec<_> = records.iter().map(training_protein).collect();
    let trunk = evaluate_trunk(models.esm3, &proteins, options.max_len + 2, 8, options.seed)?;
    let majority = BaselineScores::tally(baselines, &records);
    let structure = StructureScores::measure(models, &records, options, progress)?;
    Ok(SplitReport {
        split: split.to_string(),
        chains: records.len(),
        chains_with_structure: structure.fold_n,
        metrics: card_metrics(&trunk, &majority, &structure, options.fold_steps),
    })
}

/// `r` cut to its first `max_len` residues, every track alike.
fn truncated(r: &ChainRecord, max_len: usize) -> ChainRecord {
    let n = r.len().min(max_len);
    let mut c = r.clone();
    c.sequence = r.sequence.chars().take(n).collect();
    c.ss8 = r.ss8.as_ref().map(|s| s.chars().take(n).collect());
    c.sasa = r.sasa.as_ref().map(|s| s[..n].to_vec());
    c.backbone = r.backbone.as_ref().map(|b| b[..n].to_vec());
    c.structure_tokens = r.structure_tokens.as_ref().map(|t| t[..n].to_vec());
    c
}

/// The model-free baselines, scored on every labelled residue of a split.
#[derive(Default)]
struct BaselineScores {
    unigram_nll: f64,
    unigram_n: usize,
    ss8_hit: usize,
    ss8_n: usize,
    residue_hit: usize,
    residue_n: usize,
    code_hit: usize,
    code_n: usize,
}

impl BaselineScores {
    fn tally(baselines: &Baselines, records: &[ChainRecord]) -> Self {
        let mut s = Self::default();
        for r in records {
            for c in r.sequence.chars() {
                if let Some(p) = baselines.residue_freq.get(&c) {
                    s.unigram_nll -= p.ln();
                    s.unigram_n += 1;
                }
            }
            if let Some(ss8) = &r.ss8 {
                for c in ss8.chars().filter(|c| "GHITEBSC".contains(*c)) {
                    s.ss8_n += 1;
                    s.ss8_hit += usize::from(c == baselines.majority_ss8);
                }
            }
            if let (Some(t), Some(bb)) = (&r.structure_tokens, &r.backbone) {
                for (i, c) in r.sequence.chars().enumerate() {
                    if "ACDEFGHIKLMNPQRSTVWY".contains(c)
                        && bb[i].iter().flatten().all(|v| v.is_finite())
                    {
                        s.residue_n += 1;
                        s.residue_hit += usize::from(c == baselines.majority_residue);
                    }
                }
                for &c in t.iter().filter(|&&c| (0..structure_ids::MASK).contains(&c)) {
                    s.code_n += 1;
                    s.code_hit += usize::from(c == baselines.majority_code);
                }
            }
        }
        s
    }
}

/// Sums over the chains with structure: the VQ-VAE round trip, folding from sequence alone, the
/// ideal-helix baseline, and the decoder's pTM on true against uniformly random tokens (whether
/// its pTM head tells real token sequences from noise).
#[derive(Default)]
struct StructureScores {
    rec_rmsd: f64,
    rec_lddt: f64,
    rec_n: usize,
    helix_rmsd: f64,
    fold_lddt: f64,
    fold_tm: f64,
    helix_lddt: f64,
    helix_tm: f64,
    fold_n: usize,
    true_ptm: f64,
    random_ptm: f64,
}

impl StructureScores {
    fn measure(
        models: &CardModels,
        records: &[ChainRecord],
        options: EvalOptions,
        progress: &dyn Fn(),
    ) -> Result<Self> {
        let mut s = Self::default();
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let decode_full = |codes: &[i64]| -> Result<DecodedStructure> {
            let mut t = Vec::with_capacity(codes.len() + 2);
            t.push(structure_ids::BOS);
            t.extend_from_slice(codes);
            t.push(structure_ids::EOS);
            Ok(models.decoder.decode_structure(&t)?)
        };
        let ca = |d: &DecodedStructure| -> Vec<Vec3> { d.atom37.iter().map(|a| a[1]).collect() };
        for r in records {
            progress();
            let Some(bb) = &r.backbone else { continue };
            let (truth, ok) = ca_trace(bb);
            if ok.iter().filter(|&&m| m).count() < 10 {
                continue;
            }
            let coords: Vec<f32> = bb.iter().flatten().flatten().copied().collect();
            let codes = models
                .encoder
                .encode(&HostArray::new(vec![bb.len(), 3, 3], coords), None)?;
            let decoded = decode_full(&codes)?;
            let random: Vec<i64> = (0..codes.len())
                .map(|_| rng.random_range(0..models.n_codes as i64))
                .collect();
            let recon = ca(&decoded);
            if let Some((rmsd, _)) = superposed_rmsd(&recon, &truth, Some(&ok)) {
                s.true_ptm += f64::from(decoded.ptm);
                s.random_ptm += f64::from(decode_full(&random)?.ptm);
                s.rec_rmsd += rmsd;
                s.rec_lddt += lddt(&recon, &truth, &ok, LDDT_CUTOFF).global;
                s.rec_n += 1;
                s.helix_rmsd += superposed_rmsd(&ideal_helix_ca(truth.len()), &truth, Some(&ok))
                    .map_or(f64::NAN, |(r, _)| r);
            }
            let folded_codes =
                fold_codes(models.esm3, &r.sequence, models.n_codes, options.fold_steps)?;
            let folded = ca(&decode_full(&folded_codes)?);
            let (l, tm) = compare(&folded, &truth, &ok);
            let (hl, htm) = compare(&ideal_helix_ca(truth.len()), &truth, &ok);
            s.fold_lddt += l;
            s.fold_tm += tm;
            s.helix_lddt += hl;
            s.helix_tm += htm;
            s.fold_n += 1;
        }
        Ok(s)
    }
}

/// The card's rows: each model number beside its baseline.
/// Long because it is a table, one metric a row.
fn card_metrics(
    trunk: &TrunkReport,
    b: &BaselineScores,
    s: &StructureScores,
    fold_steps: usize,
) -> Vec<(String, Metric)> {
    let mean = |sum: f64, n: usize| sum / n.max(1) as f64;
    let m = |model: f64, baseline: f64, count: usize, higher: bool| Metric {
        model,
        baseline,
        count,
        higher_is_better: higher,
    };
    vec![
        (
            "sequence perplexity (15% masked)".to_string(),
            m(
                trunk.seq15.mean_nll().exp(),
                mean(b.unigram_nll, b.unigram_n).exp(),
                trunk.seq15.count,
                false,
            ),
        ),
        (
            "structure-token accuracy (from sequence)".to_string(),
            m(
                trunk.structure_given_seq.accuracy(),
                mean(b.code_hit as f64, b.code_n),
                trunk.structure_given_seq.count,
                true,
            ),
        ),
        (
            "inverse-folding sequence recovery".to_string(),
            m(
                trunk.seq_given_structure.accuracy(),
                mean(b.residue_hit as f64, b.residue_n),
                trunk.seq_given_structure.count,
                true,
            ),
        ),
        (
            "SS8 accuracy (from sequence)".to_string(),
            m(
                trunk.ss8_given_seq.accuracy(),
                mean(b.ss8_hit as f64, b.ss8_n),
                trunk.ss8_given_seq.count,
                true,
            ),
        ),
        (
            format!("fold LDDT-Cα ({fold_steps}-step decoding, vs ideal helix)"),
            m(
                mean(s.fold_lddt, s.fold_n),
                mean(s.helix_lddt, s.fold_n),
                s.fold_n,
                true,
            ),
        ),
        (
            format!("fold TM-score ({fold_steps}-step decoding, vs ideal helix)"),
            m(
                mean(s.fold_tm, s.fold_n),
                mean(s.helix_tm, s.fold_n),
                s.fold_n,
                true,
            ),
        ),
        (
            "VQ-VAE reconstruction LDDT-Cα".to_string(),
            m(
                mean(s.rec_lddt, s.rec_n),
                mean(s.helix_lddt, s.fold_n),
                s.rec_n,
                true,
            ),
        ),
        (
            "VQ-VAE reconstruction RMSD (Å, CA)".to_string(),
            m(
                mean(s.rec_rmsd, s.rec_n),
                mean(s.helix_rmsd, s.rec_n),
                s.rec_n,
                false,
            ),
        ),
        (
            "decoder pTM on true tokens (vs random tokens)".to_string(),
            m(
                mean(s.true_ptm, s.rec_n),
                mean(s.random_ptm, s.rec_n),
                s.rec_n,
                true,
            ),
        ),
    ]
}
