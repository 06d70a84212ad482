//! Iterative unmasking over a batch of prompts (`iterative_sampling_tokens`, spec §6.2–6.5).

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::Rng;
use thiserror::Error;

use esm3_models::{Esm3, Esm3Input, Esm3Output, HostArray, ModelError};
use esm3_tokens::sequence as seq;

use crate::config::{GenerationConfig, PaddingAttention, Strategy};
use crate::sampling::{sample_function_position, sample_position};
use crate::schedule::{annealed_temperature, positions_to_commit};
use crate::tensor::{mocked_ids, ProteinTensor};
use crate::track::Track;

#[derive(Debug, Error)]
pub enum GenerationError {
    #[error("prompt {prompt}: {message}")]
    Prompt { prompt: usize, message: String },
    /// Bad input that is not about one prompt of a batch.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

fn prompt_err(prompt: usize, message: impl Into<String>) -> GenerationError {
    GenerationError::Prompt {
        prompt,
        message: message.into(),
    }
}

/// One forward over a right-padded batch, as the reference's `logits()` call: average pLDDT 1,
/// per-residue pLDDT 1 where any atom is finite, no chain ids. With [`PaddingAttention::Masked`]
/// padding sits in its own sequence id so real tokens never see it.
pub fn batch_logits(
    model: &Esm3,
    batch: &[ProteinTensor],
    padding: PaddingAttention,
) -> Result<Esm3Output, GenerationError> {
    Ok(model.forward(&batch_input(batch, padding))?)
}

/// The model input [`batch_logits`] runs: every track right-padded to the longest prompt.
pub fn batch_input(batch: &[ProteinTensor], padding: PaddingAttention) -> Esm3Input {
    let b = batch.len();
    let lens: Vec<usize> = batch.iter().map(ProteinTensor::len).collect();
    let l = lens.iter().copied().max().unwrap_or(0);
    // Like the reference, every token track is present in the batch: a prompt without it gets
    // the fully masked track with BOS/EOS ids.
    let int_track = |get: &dyn Fn(&ProteinTensor) -> Option<&Vec<i64>>, track: Track| {
        let mut data = Vec::with_capacity(b * l);
        for (p, &n) in batch.iter().zip(&lens) {
            match get(p) {
                Some(v) => data.extend_from_slice(v),
                None => data.extend(mocked_ids(track, n)),
            }
            data.extend(std::iter::repeat_n(track.pad_id(), l - n));
        }
        Some(HostArray::new(vec![b, l], data))
    };
    let deep = |rows: Vec<Option<Vec<i64>>>, depth: usize| -> Option<HostArray<i64>> {
        let mut data = Vec::with_capacity(b * l * depth);
        for (r, &n) in rows.into_iter().zip(&lens) {
            match r {
                Some(v) => data.extend(v),
                None => data.extend(std::iter::repeat_n(0, n * depth)),
            }
            data.extend(std::iter::repeat_n(0, (l - n) * depth));
        }
        Some(HostArray::new(vec![b, l, depth], data))
    };
    let function = deep(
        batch
            .iter()
            .map(|p| {
                p.function
                    .as_ref()
                    .map(|f| f.iter().flatten().copied().collect())
            })
            .collect(),
        8,
    );
    let residue = deep(
        batch
            .iter()
            .map(|p| {
                p.residue_annotations
                    .as_ref()
                    .map(|f| f.iter().flatten().copied().collect())
            })
            .collect(),
        16,
    );
    let (coords, per_res) = padded_coordinates(batch, &lens, l);
    let sequence_id = match padding {
        PaddingAttention::Reference => None,
        PaddingAttention::Masked => Some(HostArray::new(
            vec![b, l],
            lens.iter()
                .flat_map(|&n| (0..l).map(move |i| i64::from(i >= n)))
                .collect(),
        )),
    };
    Esm3Input {
        sequence_tokens: int_track(&|p| p.sequence.as_ref(), Track::Sequence),
        structure_tokens: int_track(&|p| p.structure.as_ref(), Track::Structure),
        ss8_tokens: int_track(
            &|p| p.secondary_structure.as_ref(),
            Track::SecondaryStructure,
        ),
        sasa_tokens: int_track(&|p| p.sasa.as_ref(), Track::Sasa),
        function_tokens: function,
        residue_annotation_tokens: residue,
        average_plddt: Some(HostArray::new(vec![1, 1], vec![1.0])),
        per_res_plddt: per_res,
        structure_coords: coords,
        chain_id: None,
        sequence_id,
    }
}

/// `[B, L, 37, 3]` coordinates (+∞ where a prompt has none and on padding) and `[B, L]`
/// per-residue pLDDT (1 where any atom is finite), or neither when no prompt has coordinates.
fn padded_coordinates(
    batch: &[ProteinTensor],
    lens: &[usize],
    l: usize,
) -> (Option<HostArray<f32>>, Option<HostArray<f32>>) {
    if !batch.iter().any(|p| p.coordinates.is_some()) {
        return (None, None);
    }
    let b = batch.len();
    let mut c = Vec::with_capacity(b * l * 37 * 3);
    let mut plddt = Vec::with_capacity(b * l);
    for (p, &n) in batch.iter().zip(lens) {
        let rows: Vec<[[f32; 3]; 37]> = match &p.coordinates {
            Some(v) => v.clone(),
            None => vec![[[f32::INFINITY; 3]; 37]; n],
        };
        for r in rows
            .iter()
            .chain(std::iter::repeat_n(&[[f32::INFINITY; 3]; 37], l - n))
        {
            c.extend(r.iter().flatten());
            let any_atom = r.iter().any(|a| a.iter().all(|v| v.is_finite()));
            plddt.push(if any_atom { 1.0 } else { 0.0 });
        }
    }
    (
        Some(HostArray::new(vec![b, l, 37, 3], c)),
        Some(HostArray::new(vec![b, l], plddt)),
    )
}

fn track_logits(out: &Esm3Output, track: Track) -> &Tensor {
    match track {
        Track::Sequence => &out.sequence_logits,
        Track::Structure => &out.structure_logits,
        Track::SecondaryStructure => &out.secondary_structure_logits,
        Track::Sasa => &out.sasa_logits,
        Track::Function => &out.function_logits,
    }
}

/// Number of positions a prompt asks to fill (spec §6.2 step 3).
fn positions_to_fill(p: &ProteinTensor, track: Track) -> usize {
    let n = p.len();
    if !p.has_track(track) {
        return match &p.sequence {
            None => n - 2,
            Some(s) => s
                .iter()
                .filter(|&&id| {
                    ![seq::BOS, seq::PAD, seq::EOS, seq::UNK, seq::CHAINBREAK]
                        .contains(&(id as u32))
                })
                .count(),
        };
    }
    (1..n - 1).filter(|&i| p.is_masked(track, i)).count()
}

/// Generates `config.track` of every prompt by iterative unmasking. Each prompt gets its own
/// config (whose `num_steps` is lowered to the number of masked positions, as the reference
/// does). Failed prompts come back as errors without stopping the others.
pub fn iterative_sampling(
    model: &Esm3,
    prompts: &[ProteinTensor],
    configs: &mut [GenerationConfig],
    padding: PaddingAttention,
    rng: &mut impl Rng,
    on_step: impl FnMut(usize, usize),
) -> Result<Vec<Result<ProteinTensor, GenerationError>>, GenerationError> {
    sample_batch(model, prompts, configs, padding, Rngs::Shared(rng), on_step)
}

/// [`iterative_sampling`] with one random generator per prompt: prompt `i` draws only from
/// `rngs[i]`, so its result does not depend on which other prompts share the batch (with
/// [`PaddingAttention::Masked`] it equals generating the prompt alone with that generator).
pub fn iterative_sampling_per_prompt<R: Rng>(
    model: &Esm3,
    prompts: &[ProteinTensor],
    configs: &mut [GenerationConfig],
    padding: PaddingAttention,
    rngs: &mut [R],
    on_step: impl FnMut(usize, usize),
) -> Result<Vec<Result<ProteinTensor, GenerationError>>, GenerationError> {
    assert_eq!(prompts.len(), rngs.len(), "one generator per prompt");
    sample_batch(
        model,
        prompts,
        configs,
        padding,
        Rngs::PerPrompt(rngs),
        on_step,
    )
}

enum Rngs<'a, R> {
    Shared(&'a mut R),
    PerPrompt(&'a mut [R]),
}

impl<R> Rngs<'_, R> {
    fn get(&mut self, prompt: usize) -> &mut R {
        match self {
            Rngs::Shared(r) => r,
            Rngs::PerPrompt(rs) => &mut rs[prompt],
        }
    }
}

fn sample_batch<R: Rng>(
    model: &Esm3,
    prompts: &[ProteinTensor],
    configs: &mut [GenerationConfig],
    padding: PaddingAttention,
    mut rngs: Rngs<'_, R>,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Vec<Result<ProteinTensor, GenerationError>>, GenerationError> {
    assert_eq!(prompts.len(), configs.len(), "one config per prompt");
    let mut errors: Vec<Option<GenerationError>> = (0..prompts.len()).map(|_| None).collect();
    let mut work: Vec<ProteinTensor> = prompts.to_vec();
    let totals = prepare_prompts(&mut work, configs, &mut errors);
    let max_steps = configs
        .iter()
        .zip(&errors)
        .filter(|(_, e)| e.is_none())
        .map(|(c, _)| c.num_steps)
        .max()
        .unwrap_or(0);

    for t in 0..max_steps {
        let active: Vec<usize> = (0..work.len())
            .filter(|&i| errors[i].is_none() && t < configs[i].num_steps)
            .collect();
        if active.is_empty() {
            break;
        }
        let out = batch_logits(model, &work, padding)?;
        for &i in &active {
            let step = StepOf {
                t,
                total: totals[i],
            };
            if let Err(message) =
                unmask_step(&out, i, &mut work[i], &configs[i], step, rngs.get(i))?
            {
                errors[i] = Some(prompt_err(i, message));
            }
        }
        on_step(t + 1, max_steps);
    }
    Ok(keep_generated_tracks(work, prompts, errors, configs))
}

/// Validates each prompt (failures go to `errors`), drops structure tokens where coordinates
/// condition instead, lowers `num_steps` to the positions there are to fill, and mocks the
/// generated track where it is absent. Returns each prompt's number of positions to fill.
fn prepare_prompts(
    work: &mut [ProteinTensor],
    configs: &mut [GenerationConfig],
    errors: &mut [Option<GenerationError>],
) -> Vec<usize> {
    let mut totals = Vec::with_capacity(work.len());
    for (i, (p, c)) in work.iter_mut().zip(configs.iter_mut()).enumerate() {
        if let Err(m) = c.validate().and_then(|_| p.check_lengths().map(|_| ())) {
            errors[i] = Some(prompt_err(i, m));
            totals.push(0);
            continue;
        }
        if c.condition_on_coordinates_only && p.coordinates.is_some() {
            p.structure = None;
        }
        let total = positions_to_fill(p, c.track);
        if total > 0 && total < c.num_steps {
            c.num_steps = total;
        }
        // The generated track must exist to be written into: mock it as the reference does.
        if !p.has_track(c.track) {
            let n = p.len();
            match c.track {
                Track::Function => p.function = Some(vec![[0; 8]; n]),
                t => p.set_ids(t, mocked_ids(t, n)),
            }
        }
        totals.push(total);
    }
    totals
}

/// Where one prompt stands: step `t` of its schedule, over `total` positions to fill.
#[derive(Clone, Copy)]
struct StepOf {
    t: usize,
    total: usize,
}

/// What one step drew at each candidate position.
enum Draws {
    Function(Vec<[i64; 8]>),
    Ids(Vec<i64>),
}

/// One unmasking step of prompt `i` (row `i` of `out`): samples every masked position, then
/// commits the schedule's share of them in the strategy's order. `Ok(Err(message))` is this
/// prompt's own failure; `Err` fails the batch.
fn unmask_step(
    out: &Esm3Output,
    i: usize,
    prompt: &mut ProteinTensor,
    config: &GenerationConfig,
    step: StepOf,
    rng: &mut impl Rng,
) -> Result<Result<(), String>, GenerationError> {
    let track = config.track;
    let n = prompt.len();
    let temperature = if config.temperature_annealing {
        annealed_temperature(step.t, config.num_steps, config.temperature)
    } else {
        config.temperature
    };
    let logits = track_logits(out, track).get(i)?.narrow(0, 0, n)?;
    // Candidates: masked positions between BOS and EOS.
    let candidates: Vec<usize> = (1..n - 1).filter(|&p| prompt.is_masked(track, p)).collect();
    if candidates.is_empty() {
        return Ok(Err(format!(
            "Cannot sample {} when input has no masks.",
            track.name()
        )));
    }
    let mut entropies = Vec::with_capacity(candidates.len());
    let draws = if track == Track::Function {
        let l = logits.to_vec3::<f32>()?;
        let mut ids = Vec::with_capacity(candidates.len());
        for &p in &candidates {
            let (id, h) = sample_function_position(&l[p], temperature, config.top_p);
            ids.push(id);
            entropies.push(h);
        }
        Draws::Function(ids)
    } else {
        let l = logits.to_vec2::<f32>()?;
        let valid = valid_ids(track, config, l[0].len());
        let mut ids = Vec::with_capacity(candidates.len());
        for &p in &candidates {
            let s = sample_position(&l[p], &valid, temperature, config.top_p, rng);
            ids.push(s.id);
            entropies.push(s.entropy);
        }
        Draws::Ids(ids)
    };
    let k = positions_to_commit(
        config.schedule,
        step.t,
        config.num_steps,
        step.total,
        candidates.len(),
    );
    for j in commit_order(config.strategy, &entropies, k, rng) {
        let p = candidates[j];
        match &draws {
            Draws::Function(ids) => prompt.function.as_mut().expect("mocked")[p] = ids[j],
            Draws::Ids(ids) => prompt.ids_mut(track).expect("mocked")[p] = ids[j],
        }
    }
    Ok(Ok(()))
}

/// Per vocabulary id of a `width`-wide head: whether the track may sample it under `config`.
fn valid_ids(track: Track, config: &GenerationConfig, width: usize) -> Vec<bool> {
    let ids = track.samplable_ids();
    let invalid: std::collections::HashSet<i64> = config.invalid_ids.iter().copied().collect();
    (0..width as i64)
        .map(|id| ids.contains(&id) && !invalid.contains(&id))
        .collect()
}

/// The `k` candidates (indices into `entropies`) to commit this step.
fn commit_order(strategy: Strategy, entropies: &[f32], k: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entropies.len()).collect();
    match strategy {
        // Lowest entropy first; equal entropies keep position order.
        Strategy::Entropy => {
            order.sort_by(|&a, &b| entropies[a].total_cmp(&entropies[b]).then(a.cmp(&b)))
        }
        Strategy::Random => order.shuffle(rng),
    }
    order.truncate(k);
    order
}

/// Each result: the prompt as given with only the generated track replaced, or its error.
fn keep_generated_tracks(
    work: Vec<ProteinTensor>,
    prompts: &[ProteinTensor],
    errors: Vec<Option<GenerationError>>,
    configs: &[GenerationConfig],
) -> Vec<Result<ProteinTensor, GenerationError>> {
    work.into_iter()
        .zip(prompts)
        .zip(errors)
        .zip(configs.iter())
        .map(|(((out, original), err), config)| {
            if let Some(e) = err {
                return Err(e);
            }
            let mut result = original.clone();
            match config.track {
                Track::Function => result.function = out.function,
                t => result.set_ids(t, out.ids(t).expect("generated").clone()),
            }
            Ok(result)
        })
        .collect()
}
