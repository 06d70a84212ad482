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
use crate::eval::{evaluate_trunk, fold_iterative};
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

/// Every metric on `records`; `progress` is called once per chain.
pub fn evaluate_split(
    models: &CardModels,
    baselines: &Baselines,
    split: &str,
    records: &[ChainRecord],
    options: EvalOptions,
    progress: &dyn Fn(),
) -> Result<SplitReport> {
    let EvalOptions {
        max_len,
        seed,
        fold_steps,
    } = options;
    let cut = |r: &ChainRecord| -> ChainRecord {
        let n = r.len().min(max_len);
        let mut c = r.clone();
        c.sequence = r.sequence.chars().take(n).collect();
        c.ss8 = r.ss8.as_ref().map(|s| s.chars().take(n).collect());
        c.sasa = r.sasa.as_ref().map(|s| s[..n].to_vec());
        c.backbone = r.backbone.as_ref().map(|b| b[..n].to_vec());
        c.structure_tokens = r.structure_tokens.as_ref().map(|t| t[..n].to_vec());
        c
    };
    let records: Vec<ChainRecord> = records.iter().map(cut).collect();
    let proteins: Vec<_> = records.iter().map(training_protein).collect();
    let trunk = evaluate_trunk(models.esm3, &proteins, max_len + 2, 8, seed)?;

    // Baselines on every labelled residue of the split.
    let (mut uni_nll, mut uni_n) = (0.0, 0usize);
    let (mut ss8_hit, mut ss8_n) = (0usize, 0usize);
    let (mut aa_hit, mut aa_n) = (0usize, 0usize);
    let (mut code_hit, mut code_n) = (0usize, 0usize);
    for r in &records {
        for c in r.sequence.chars() {
            if let Some(p) = baselines.residue_freq.get(&c) {
                uni_nll -= p.ln();
                uni_n += 1;
            }
        }
        if let Some(s) = &r.ss8 {
            for c in s.chars().filter(|c| "GHITEBSC".contains(*c)) {
                ss8_n += 1;
                ss8_hit += usize::from(c == baselines.majority_ss8);
            }
        }
        if let (Some(t), Some(bb)) = (&r.structure_tokens, &r.backbone) {
            for (i, c) in r.sequence.chars().enumerate() {
                if "ACDEFGHIKLMNPQRSTVWY".contains(c)
                    && bb[i].iter().flatten().all(|v| v.is_finite())
                {
                    aa_n += 1;
                    aa_hit += usize::from(c == baselines.majority_residue);
                }
            }
            for &c in t.iter().filter(|&&c| (0..structure_ids::MASK).contains(&c)) {
                code_n += 1;
                code_hit += usize::from(c == baselines.majority_code);
            }
        }
    }

    // Structure: VQ-VAE round trip and folding from sequence alone.
    let (mut rec_rmsd, mut rec_lddt, mut rec_n, mut helix_rmsd) = (0.0, 0.0, 0usize, 0.0);
    let (mut fold_lddt, mut fold_tm, mut helix_lddt, mut helix_tm, mut fold_n) =
        (0.0, 0.0, 0.0, 0.0, 0usize);
    // Whether the decoder's pTM head tells real token sequences from noise: its pTM on each
    // chain's true tokens against uniformly random tokens of the same length.
    let (mut true_ptm, mut random_ptm) = (0.0, 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let decode_full = |codes: &[i64]| -> Result<DecodedStructure> {
        let mut t = Vec::with_capacity(codes.len() + 2);
        t.push(structure_ids::BOS);
        t.extend_from_slice(codes);
        t.push(structure_ids::EOS);
        Ok(models.decoder.decode_structure(&t)?)
    };
    let ca = |d: &DecodedStructure| -> Vec<Vec3> { d.atom37.iter().map(|a| a[1]).collect() };
    let decode = |codes: &[i64]| -> Result<Vec<Vec3>> { Ok(ca(&decode_full(codes)?)) };
    for r in &records {
        progress();
        let Some(bb) = &r.backbone else { continue };
        let (truth, ok) = ca_trace(bb);
        if ok.iter().filter(|&&m| m).count() < 10 {
            continue;
        }
        let mut coords = Vec::with_capacity(bb.len() * 9);
        for res in bb {
            for atom in res {
                coords.extend_from_slice(atom);
            }
        }
        let codes = models
            .encoder
            .encode(&HostArray::new(vec![bb.len(), 3, 3], coords), None)?;
        let decoded = decode_full(&codes)?;
        let random: Vec<i64> = (0..codes.len())
            .map(|_| rng.random_range(0..models.n_codes as i64))
            .collect();
        let recon = ca(&decoded);
        if let Some((rmsd, _)) = superposed_rmsd(&recon, &truth, Some(&ok)) {
            true_ptm += f64::from(decoded.ptm);
            random_ptm += f64::from(decode_full(&random)?.ptm);
            rec_rmsd += rmsd;
            rec_lddt += lddt(&recon, &truth, &ok, LDDT_CUTOFF).global;
            rec_n += 1;
            helix_rmsd += superposed_rmsd(&ideal_helix_ca(truth.len()), &truth, Some(&ok))
                .map_or(f64::NAN, |(r, _)| r);
        }
        let folded = decode(&fold_iterative(
            models.esm3,
            &r.sequence,
            models.n_codes,
            fold_steps,
        )?)?;
        let (l, tm) = compare(&folded, &truth, &ok);
        let (hl, htm) = compare(&ideal_helix_ca(truth.len()), &truth, &ok);
        fold_lddt += l;
        fold_tm += tm;
        helix_lddt += hl;
        helix_tm += htm;
        fold_n += 1;
    }
    let mean = |s: f64, n: usize| s / n.max(1) as f64;
    let m = |model: f64, baseline: f64, count: usize, higher: bool| Metric {
        model,
        baseline,
        count,
        higher_is_better: higher,
    };
    let metrics = vec![
        (
            "sequence perplexity (15% masked)".to_string(),
            m(
                trunk.seq15.mean_nll().exp(),
                mean(uni_nll, uni_n).exp(),
                trunk.seq15.count,
                false,
            ),
        ),
        (
            "structure-token accuracy (from sequence)".to_string(),
            m(
                trunk.structure_given_seq.accuracy(),
                mean(code_hit as f64, code_n),
                trunk.structure_given_seq.count,
                true,
            ),
        ),
        (
            "inverse-folding sequence recovery".to_string(),
            m(
                trunk.seq_given_structure.accuracy(),
                mean(aa_hit as f64, aa_n),
                trunk.seq_given_structure.count,
                true,
            ),
        ),
        (
            "SS8 accuracy (from sequence)".to_string(),
            m(
                trunk.ss8_given_seq.accuracy(),
                mean(ss8_hit as f64, ss8_n),
                trunk.ss8_given_seq.count,
                true,
            ),
        ),
        (
            format!("fold LDDT-Cα ({fold_steps}-step decoding, vs ideal helix)"),
            m(
                mean(fold_lddt, fold_n),
                mean(helix_lddt, fold_n),
                fold_n,
                true,
            ),
        ),
        (
            format!("fold TM-score ({fold_steps}-step decoding, vs ideal helix)"),
            m(mean(fold_tm, fold_n), mean(helix_tm, fold_n), fold_n, true),
        ),
        (
            "VQ-VAE reconstruction LDDT-Cα".to_string(),
            m(mean(rec_lddt, rec_n), mean(helix_lddt, fold_n), rec_n, true),
        ),
        (
            "VQ-VAE reconstruction RMSD (Å, CA)".to_string(),
            m(mean(rec_rmsd, rec_n), mean(helix_rmsd, rec_n), rec_n, false),
        ),
        (
            "decoder pTM on true tokens (vs random tokens)".to_string(),
            m(mean(true_ptm, rec_n), mean(random_ptm, rec_n), rec_n, true),
        ),
    ];
    Ok(SplitReport {
        split: split.to_string(),
        chains: records.len(),
        chains_with_structure: fold_n,
        metrics,
    })
}
