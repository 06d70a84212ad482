//! What each endpoint computes, on a loaded model, from parsed requests: no HTTP here.
//!
//! Every job runs on its model's worker thread ([`crate::worker`]); generation jobs that share
//! a configuration may run together as one batch ([`Job::batch_key`]), each with its own seed,
//! so a batched result is the result the request gets alone.

use candle_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};

use esm3_generate::sampling::{
    argmax, entropy, log_softmax, mask_invalid, sample_categorical, sample_function_position,
    top_p_filter,
};
use esm3_generate::{
    batch_logits, iterative_sampling_per_prompt, Esm3Pipeline, EsmProtein, GenerationConfig,
    GenerationError, PaddingAttention, ProteinTensor, Track,
};
use esm3_models::{Esmc, EsmcInput, HostArray};
use esm3_tokens::sequence::SequenceTokenizer;

use crate::json::{coordinates_json, finite, protein_json, tensor_json};

/// A loaded model behind a name.
pub enum Model {
    Esm3(Box<Esm3Pipeline>),
    Esmc(Box<Esmc>),
}

impl Model {
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Esm3(_) => "esm3",
            Model::Esmc(_) => "esmc",
        }
    }
}

/// A failed job: the HTTP status and the message the client shows.
#[derive(Debug, Clone, PartialEq)]
pub struct JobError {
    pub status: u16,
    pub message: String,
}

impl JobError {
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self {
            status: 422,
            message: message.into(),
        }
    }
}

impl From<GenerationError> for JobError {
    fn from(e: GenerationError) -> Self {
        match e {
            // What the user sent is wrong: tell them.
            GenerationError::Prompt { message, .. } | GenerationError::Invalid(message) => {
                Self::unprocessable(message)
            }
            other => Self {
                status: 500,
                message: format!("model failure: {other}"),
            },
        }
    }
}

impl From<candle_core::Error> for JobError {
    fn from(e: candle_core::Error) -> Self {
        GenerationError::from(e).into()
    }
}

type R<T> = Result<T, JobError>;

/// The `logits` request's `logits_config` (spec §9.1 `LogitsConfig`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogitsConfig {
    pub tracks: Vec<Track>,
    pub residue_annotations: bool,
    pub return_embeddings: bool,
    pub return_hidden_states: bool,
    pub ith_hidden_layer: i64,
}

/// One track's `SamplingTrackConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSampling {
    pub temperature: f32,
    pub top_p: f32,
    pub only_sample_masked_tokens: bool,
    pub invalid_ids: Vec<i64>,
    pub topk_logprobs: usize,
}

/// `forward_and_sample`'s sampling and embedding configs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingConfig {
    pub tracks: Vec<(Track, TrackSampling)>,
    pub per_residue_embedding: bool,
    pub mean_embedding: bool,
}

/// Everything a worker can be asked to do.
#[derive(Debug, Clone)]
pub enum Job {
    Encode(EsmProtein),
    Decode(ProteinTensor),
    Generate {
        protein: EsmProtein,
        config: GenerationConfig,
        seed: u64,
    },
    GenerateTensor {
        tensor: ProteinTensor,
        config: GenerationConfig,
        seed: u64,
    },
    Logits {
        tensor: ProteinTensor,
        config: LogitsConfig,
    },
    ForwardAndSample {
        tensor: ProteinTensor,
        config: SamplingConfig,
        seed: u64,
    },
    /// `fold`: structure from a sequence, deterministic.
    Fold {
        sequence: String,
    },
    /// `inverse_fold`: a sequence for backbone coordinates.
    InverseFold {
        coordinates: Vec<[[f32; 3]; 37]>,
        invalid_ids: Vec<i64>,
        temperature: f32,
        seed: u64,
    },
    EsmcEncode {
        sequence: String,
    },
    EsmcDecode {
        ids: Vec<i64>,
    },
    EsmcLogits {
        ids: Vec<i64>,
        config: LogitsConfig,
    },
}

/// Jobs with equal keys may run as one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchKey {
    kind: &'static str,
    config: GenerationConfig,
    residues: usize,
}

impl BatchKey {
    /// Whether `other` may join a batch this key opened: same job kind and configuration, and
    /// a length within 1.25× of the shorter, so padding stays a small part of each forward.
    pub fn admits(&self, other: &BatchKey) -> bool {
        let (a, b) = (
            self.residues.min(other.residues),
            self.residues.max(other.residues),
        );
        self.kind == other.kind && self.config == other.config && b * 4 <= a * 5
    }
}

impl Job {
    /// Residues this job processes (for metrics and limits).
    pub fn residues(&self) -> usize {
        match self {
            Job::Encode(p) | Job::Generate { protein: p, .. } => p.len().unwrap_or(0),
            Job::Decode(t)
            | Job::GenerateTensor { tensor: t, .. }
            | Job::Logits { tensor: t, .. }
            | Job::ForwardAndSample { tensor: t, .. } => t.len().saturating_sub(2),
            Job::Fold { sequence } | Job::EsmcEncode { sequence } => sequence.chars().count(),
            Job::InverseFold { coordinates, .. } => coordinates.len(),
            Job::EsmcDecode { ids } | Job::EsmcLogits { ids, .. } => ids.len().saturating_sub(2),
        }
    }

    /// `Some` for the generation jobs that batch.
    pub fn batch_key(&self) -> Option<BatchKey> {
        let residues = self.residues();
        match self {
            Job::Generate { config, .. } => Some(BatchKey {
                kind: "generate",
                config: config.clone(),
                residues,
            }),
            Job::Fold { .. } => Some(BatchKey {
                kind: "fold",
                config: fold_config(),
                residues,
            }),
            _ => None,
        }
    }
}

fn fold_config() -> GenerationConfig {
    GenerationConfig::folding()
}

fn esm3(model: &Model) -> R<&Esm3Pipeline> {
    match model {
        Model::Esm3(p) => Ok(p),
        Model::Esmc(_) => Err(JobError::bad(
            "this endpoint needs an ESM3 model; the requested model is ESM C",
        )),
    }
}

fn esmc(model: &Model) -> R<&Esmc> {
    match model {
        Model::Esmc(m) => Ok(m),
        Model::Esm3(_) => Err(JobError::bad("this endpoint needs an ESM C model")),
    }
}

/// Runs jobs that share a [`BatchKey`] (or one job of any kind); one result per job, in order.
pub fn run(model: &Model, jobs: Vec<Job>) -> Vec<R<Value>> {
    if jobs.len() > 1 {
        match run_generation_batch(model, &jobs) {
            Ok(results) => return results,
            Err(e) => return jobs.iter().map(|_| Err(e.clone())).collect(),
        }
    }
    jobs.into_iter().map(|j| run_one(model, j)).collect()
}

/// Generation for proteins with one plan, one seeded generator each (`generate_batch`).
fn run_generation_batch(model: &Model, jobs: &[Job]) -> R<Vec<R<Value>>> {
    let pipeline = esm3(model)?;
    let mut proteins = Vec::new();
    let mut seeds = Vec::new();
    let mut plan = None;
    let mut fold = false;
    for job in jobs {
        match job {
            Job::Generate {
                protein,
                config,
                seed,
            } => {
                proteins.push(protein.clone());
                seeds.push(*seed);
                plan = Some(config.clone());
            }
            Job::Fold { sequence } => {
                proteins.push(EsmProtein {
                    sequence: Some(sequence.clone()),
                    ..Default::default()
                });
                seeds.push(0);
                plan = Some(fold_config());
                fold = true;
            }
            _ => unreachable!("only generation jobs batch"),
        }
    }
    let plan = vec![plan.expect("at least one job")];
    let mut rngs: Vec<ChaCha20Rng> = seeds
        .iter()
        .map(|&s| ChaCha20Rng::seed_from_u64(s))
        .collect();
    let mut refs: Vec<&mut ChaCha20Rng> = rngs.iter_mut().collect();
    let out = pipeline.generate_batch(&proteins, &plan, &mut refs, |_, _, _| {})?;
    Ok(out
        .into_iter()
        .map(|r| {
            r.map_err(JobError::from).map(|p| {
                if fold {
                    fold_json(&p)
                } else {
                    json!({ "outputs": protein_json(&p) })
                }
            })
        })
        .collect())
}

fn fold_json(p: &EsmProtein) -> Value {
    json!({
        "coordinates": p.coordinates.as_deref().map(coordinates_json),
        "plddt": p.plddt.as_ref().map(|v| v.iter().map(|&x| finite(x)).collect::<Vec<_>>()),
        "ptm": p.ptm.map(finite),
    })
}

/// `generate` on a tensor prompt: one prompt's iterative sampling with its own generator.
fn generate_tensor(
    pipeline: &Esm3Pipeline,
    tensor: ProteinTensor,
    mut config: GenerationConfig,
    seed: u64,
) -> R<Value> {
    if let Some(e) = &pipeline.encoder {
        esm3_generate::pipeline::restrict_to_codebook(&mut config, e.n_codes());
    }
    let mut rngs = [ChaCha20Rng::seed_from_u64(seed)];
    let mut out = iterative_sampling_per_prompt(
        &pipeline.esm3,
        std::slice::from_ref(&tensor),
        &mut [config],
        pipeline.padding,
        &mut rngs,
        |_, _| {},
    )?;
    let t = out.pop().expect("one prompt")?;
    Ok(json!({ "outputs": tensor_json(&t) }))
}

/// A sequence for `coordinates`, as `esm3 inverse-fold`: the SDK's sequence defaults (20
/// steps, random order) at the requested temperature, without annealing.
fn inverse_fold(
    pipeline: &Esm3Pipeline,
    coordinates: Vec<[[f32; 3]; 37]>,
    invalid_ids: Vec<i64>,
    temperature: f32,
    seed: u64,
) -> R<Value> {
    let protein = EsmProtein {
        coordinates: Some(coordinates),
        ..Default::default()
    };
    let config = GenerationConfig {
        invalid_ids,
        temperature,
        temperature_annealing: false,
        ..GenerationConfig::new(Track::Sequence)
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let p = pipeline.generate(&protein, &[config], &mut rng, |_, _, _| {})?;
    Ok(json!({ "sequence": p.sequence }))
}

pub fn run_one(model: &Model, job: Job) -> R<Value> {
    match job {
        Job::Encode(p) => {
            let t = esm3(model)?.encode(&p)?;
            Ok(json!({ "outputs": tensor_json(&t) }))
        }
        Job::Decode(t) => {
            let pipeline = esm3(model)?;
            if t.structure.is_some() && pipeline.decoder.is_none() {
                return Err(JobError::unprocessable(
                    "this model directory has no structure_decoder/: structure tokens cannot be decoded",
                ));
            }
            let p = pipeline.decode(&t)?;
            Ok(json!({ "outputs": protein_json(&p) }))
        }
        job @ (Job::Generate { .. } | Job::Fold { .. }) => run_generation_batch(model, &[job])?
            .pop()
            .expect("one result"),
        Job::GenerateTensor {
            tensor,
            config,
            seed,
        } => generate_tensor(esm3(model)?, tensor, config, seed),
        Job::Logits { tensor, config } => esm3_logits(esm3(model)?, &tensor, &config),
        Job::ForwardAndSample {
            tensor,
            config,
            seed,
        } => forward_and_sample(esm3(model)?, tensor, &config, seed),
        Job::InverseFold {
            coordinates,
            invalid_ids,
            temperature,
            seed,
        } => inverse_fold(esm3(model)?, coordinates, invalid_ids, temperature, seed),
        Job::EsmcEncode { sequence } => {
            esmc(model)?;
            let ids = SequenceTokenizer::strict()
                .encode(&sequence)
                .map_err(|e| JobError::bad(format!("inputs.sequence: {e}")))?;
            // `esm.sdk.client()` builds the ESM3 client for any model name: it reads all seven
            // tensor keys, `ESMCForgeInferenceClient` only `sequence`.
            Ok(json!({ "outputs": tensor_json(&ProteinTensor {
                sequence: Some(ids.into_iter().map(i64::from).collect()),
                ..Default::default()
            }) }))
        }
        Job::EsmcDecode { ids } => {
            esmc(model)?;
            let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
            let s = SequenceTokenizer::strict()
                .decode(&ids)
                .map_err(|e| JobError::bad(format!("inputs.sequence: {e}")))?;
            Ok(json!({ "outputs": protein_json(&EsmProtein {
                sequence: Some(s),
                ..Default::default()
            }) }))
        }
        Job::EsmcLogits { ids, config } => esmc_logits(esmc(model)?, ids, &config),
    }
}

/// A tensor as nested lists, shape kept: the client turns them into tensors as they come, and
/// the local models' `logits()` outputs keep their batch dimension (`[1, L+2, V]`).
fn nested(t: &Tensor) -> R<Value> {
    let t = t.to_dtype(candle_core::DType::F32)?;
    if t.rank() == 1 {
        return Ok(Value::Array(
            t.to_vec1::<f32>()?.into_iter().map(short_float).collect(),
        ));
    }
    Ok(Value::Array(
        (0..t.dim(0)?)
            .map(|i| nested(&t.get(i)?))
            .collect::<R<Vec<_>>>()?,
    ))
}

/// An f32 as the shortest decimal that reads back as it (`1.7126957`, not the widened f64's
/// `1.7126957178115845`): half the bytes for logits and embeddings, the same value in float32.
fn short_float(x: f32) -> Value {
    if !x.is_finite() {
        return float_token(x);
    }
    let shortest: f64 = x.to_string().parse().expect("a float's own decimal parses");
    json!(shortest)
}

fn esm3_logits(pipeline: &Esm3Pipeline, tensor: &ProteinTensor, c: &LogitsConfig) -> R<Value> {
    if c.return_hidden_states {
        return Err(JobError::unprocessable(
            "return_hidden_states is not served for ESM3 (the reference's ESM3 has no hidden-state output either); use return_embeddings",
        ));
    }
    let started = std::time::Instant::now();
    let out = batch_logits(
        &pipeline.esm3,
        std::slice::from_ref(tensor),
        PaddingAttention::Masked,
    )?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "esm3 forward");
    let mut logits = serde_json::Map::new();
    for &track in &c.tracks {
        let t = match track {
            Track::Sequence => &out.sequence_logits,
            Track::Structure => &out.structure_logits,
            Track::SecondaryStructure => &out.secondary_structure_logits,
            Track::Sasa => &out.sasa_logits,
            Track::Function => &out.function_logits,
        };
        logits.insert(track.name().into(), nested(t)?);
    }
    if c.residue_annotations {
        logits.insert("residue_annotation".into(), nested(&out.residue_logits)?);
    }
    Ok(json!({
        "logits": logits,
        "embeddings": if c.return_embeddings { nested(&out.embeddings)? } else { Value::Null },
        "hidden_states": Value::Null,
    }))
}

fn esmc_logits(model: &Esmc, ids: Vec<i64>, c: &LogitsConfig) -> R<Value> {
    if let Some(t) = c.tracks.iter().find(|&&t| t != Track::Sequence) {
        return Err(JobError::bad(format!(
            "ESM C has only the sequence track, not {}",
            t.name()
        )));
    }
    let n = ids.len();
    let out = model
        .forward(&EsmcInput {
            sequence_tokens: Some(HostArray::new(vec![1, n], ids)),
            sequence_id: None,
        })
        .map_err(|e| JobError::from(GenerationError::from(e)))?;
    let mut logits = serde_json::Map::new();
    if c.tracks.contains(&Track::Sequence) {
        logits.insert("sequence".into(), nested(&out.sequence_logits)?);
    }
    // As the reference: every layer `[n_layers, 1, L+2, d]` for ith_hidden_layer = -1, else
    // that layer alone as `[1, 1, L+2, d]`.
    let hidden = if !c.return_hidden_states {
        Value::Null
    } else if c.ith_hidden_layer == -1 {
        nested(&out.hidden_states)?
    } else {
        let layers = out.hidden_states.dim(0)? as i64;
        let i = if c.ith_hidden_layer < 0 {
            layers + c.ith_hidden_layer
        } else {
            c.ith_hidden_layer
        };
        if !(0..layers).contains(&i) {
            return Err(JobError::bad(format!(
                "logits_config.ith_hidden_layer {} is outside this model's {layers} layers",
                c.ith_hidden_layer
            )));
        }
        nested(&out.hidden_states.narrow(0, i as usize, 1)?)?
    };
    Ok(json!({
        "logits": logits,
        "embeddings": if c.return_embeddings { nested(&out.embeddings)? } else { Value::Null },
        "hidden_states": hidden,
    }))
}

/// SASA bin midpoints (Å²) of ids 3..=17 (spec §6.3).
const SASA_MIDPOINTS: [f32; 15] = [
    0.4, 2.4, 6.8, 13.0, 20.45, 28.7, 37.45, 46.75, 56.35, 66.05, 76.25, 87.45, 100.25, 116.3,
    138.4,
];

/// Rows of a `[1, L, V]` logits tensor.
fn rows_of(t: &Tensor) -> R<Vec<Vec<f32>>> {
    Ok(t.squeeze(0)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?)
}

/// `forward_and_sample` (spec §6.10, §6.3): one forward with every track, then each configured
/// track sampled with its `SamplingTrackConfig`, with per-position metadata.
fn forward_and_sample(
    pipeline: &Esm3Pipeline,
    tensor: ProteinTensor,
    config: &SamplingConfig,
    seed: u64,
) -> R<Value> {
    let n = tensor.len();
    let mut filled = tensor.clone();
    let empty = ProteinTensor::empty(n - 2);
    for track in [
        Track::Sequence,
        Track::Structure,
        Track::SecondaryStructure,
        Track::Sasa,
    ] {
        if filled.ids(track).is_none() {
            filled.set_ids(track, empty.ids(track).expect("empty has it").clone());
        }
    }
    filled.function.get_or_insert_with(|| vec![[0; 8]; n]);
    filled
        .residue_annotations
        .get_or_insert_with(|| vec![[0; 16]; n]);
    let out = batch_logits(
        &pipeline.esm3,
        std::slice::from_ref(&filled),
        PaddingAttention::Masked,
    )?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut body = serde_json::Map::new();
    for track in Track::ALL {
        body.insert(track.name().into(), Value::Null);
    }
    for (track, c) in &config.tracks {
        let value = match track {
            Track::Function => {
                let logits = out.function_logits.squeeze(0)?.to_vec3::<f32>()?;
                sample_function(&filled, &logits, c)?
            }
            Track::Sasa => {
                let logits = rows_of(&out.sasa_logits)?;
                sample_sasa(&filled, &logits, c)
            }
            t => {
                let head = match t {
                    Track::Sequence => &out.sequence_logits,
                    Track::Structure => &out.structure_logits,
                    _ => &out.secondary_structure_logits,
                };
                sample_integer(*t, &filled, &rows_of(head)?, c, &mut rng)
            }
        };
        body.insert(track.name().into(), value);
    }
    let embeddings = out
        .embeddings
        .squeeze(0)?
        .to_dtype(candle_core::DType::F32)?;
    body.insert(
        "embeddings".into(),
        json!({
            "per_residue": if config.per_residue_embedding { json!(embeddings.to_vec2::<f32>()?) } else { Value::Null },
            // The reference's mean is over all L + 2 slots (spec §9.1).
            "sequence": if config.mean_embedding { json!(embeddings.mean(0)?.to_vec1::<f32>()?) } else { Value::Null },
        }),
    );
    Ok(Value::Object(body))
}

/// Whether position `i` is sampled (spec §6.3 step 6).
fn samples_here(i: usize, n: usize, current: i64, mask: i64, c: &TrackSampling) -> bool {
    i != 0
        && i + 1 != n
        && !(current != mask && c.invalid_ids.contains(&current))
        && (!c.only_sample_masked_tokens || current == mask)
}

fn topk(log_probs: &[f32], k: usize) -> (Vec<f32>, Vec<i64>) {
    let mut order: Vec<usize> = (0..log_probs.len()).collect();
    order.sort_by(|&a, &b| log_probs[b].total_cmp(&log_probs[a]));
    order.truncate(k);
    (
        order.iter().map(|&i| log_probs[i]).collect(),
        order.iter().map(|&i| i as i64).collect(),
    )
}

/// A float list for JSON where −∞ (a masked id) is spelled as the protocol's sentinel.
fn floats(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|&x| float_token(x)).collect())
}

/// Non-finite floats the client must receive as such (a −∞ log-probability, a +∞ SASA) are
/// written as the marker strings [`crate::http`] turns into bare `Infinity` / `-Infinity` /
/// `NaN` tokens, which the client's JSON parser reads as floats (spec §9.2).
pub fn float_token(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!(crate::NAN_MARKER)
    } else if x > 0.0 {
        json!(crate::INF_MARKER)
    } else {
        json!(crate::NEG_INF_MARKER)
    }
}

fn sample_integer(
    track: Track,
    t: &ProteinTensor,
    logits: &[Vec<f32>],
    c: &TrackSampling,
    rng: &mut ChaCha20Rng,
) -> Value {
    let current = t.ids(track).expect("filled");
    let n = current.len();
    let samplable = track.samplable_ids();
    let mask = track.mask_id();
    let (mut tokens, mut logprobs, mut entropies) = (Vec::new(), Vec::new(), Vec::new());
    let (mut top_lp, mut top_ids) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut l = logits[i].clone();
        let valid: Vec<bool> = (0..l.len() as i64)
            .map(|id| samplable.contains(&id) && !c.invalid_ids.contains(&id))
            .collect();
        top_p_filter(&mut l, c.top_p);
        mask_invalid(&mut l, &valid);
        let lp = log_softmax(&l);
        let sampled = samples_here(i, n, current[i], mask, c);
        let id = if !sampled {
            current[i]
        } else if c.temperature == 0.0 {
            argmax(&l) as i64
        } else {
            sample_categorical(&l, c.temperature, rng) as i64
        };
        tokens.push(id);
        logprobs.push(if sampled { lp[id as usize] } else { 0.0 });
        entropies.push(entropy(&lp));
        if c.topk_logprobs > 0 {
            let (v, k) = topk(&lp, c.topk_logprobs);
            top_lp.push(floats(&v));
            top_ids.push(json!(k));
        }
    }
    json!({
        "tokens": tokens,
        "logprobs": floats(&logprobs),
        "entropy": floats(&entropies),
        "topk_logprobs": if c.topk_logprobs > 0 { Value::Array(top_lp) } else { Value::Null },
        "topk_tokens": if c.topk_logprobs > 0 { Value::Array(top_ids) } else { Value::Null },
    })
}

/// SASA as the expected value over the bins' midpoints (spec §6.3, `decode_sasa_tokens`).
fn sample_sasa(t: &ProteinTensor, logits: &[Vec<f32>], c: &TrackSampling) -> Value {
    let current = t.sasa.as_ref().expect("filled");
    let n = current.len();
    let samplable = Track::Sasa.samplable_ids();
    let (mut values, mut entropies) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut l = logits[i].clone();
        let valid: Vec<bool> = (0..l.len() as i64)
            .map(|id| samplable.contains(&id) && !c.invalid_ids.contains(&id))
            .collect();
        mask_invalid(&mut l, &valid);
        let lp = log_softmax(&l);
        let e = entropy(&lp);
        entropies.push(if e.is_nan() { 0.0 } else { e });
        let sampled = samples_here(i, n, current[i], Track::Sasa.mask_id(), c);
        let value = if !sampled || argmax(&l) == 18 {
            f32::INFINITY
        } else {
            (3..=17).map(|k| lp[k].exp() * SASA_MIDPOINTS[k - 3]).sum()
        };
        values.push(value);
    }
    json!({
        "tokens": floats(&values),
        "logprobs": Value::Null,
        "entropy": floats(&entropies),
        "topk_logprobs": Value::Null,
        "topk_tokens": Value::Null,
    })
}

/// Function tokens (spec §6.3, function track): `<none>` or per-slot argmax, committed only in
/// the sampling mask; entropy summed over the 8 slots.
fn sample_function(t: &ProteinTensor, logits: &[Vec<Vec<f32>>], c: &TrackSampling) -> R<Value> {
    let current = t.function.as_ref().expect("filled");
    let n = current.len();
    let (mut tokens, mut entropies) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (ids, e) = sample_function_position(&logits[i], c.temperature, c.top_p);
        let unset = current[i].iter().all(|&x| x == 0);
        let sampled = i != 0 && i + 1 != n && (!c.only_sample_masked_tokens || unset);
        tokens.push(json!(if sampled { ids } else { current[i] }));
        entropies.push(float_token(e));
    }
    Ok(json!({
        "tokens": tokens,
        "logprobs": Value::Null,
        "entropy": entropies,
        "topk_logprobs": Value::Null,
        "topk_tokens": Value::Null,
    }))
}
