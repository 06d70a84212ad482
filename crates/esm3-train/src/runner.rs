//! The training loop shared by every objective: step, clip, update, log, validate, checkpoint,
//! resume. Objectives (the trunk's masked loss, the VQ-VAE) plug in through [`Objective`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::checkpoint;
use crate::metrics::MetricsLog;
use crate::optim::{AdamW, LrSchedule};
use crate::trainable::Trainable;
use crate::TrainError;

/// Loop settings common to every objective (`[run]` in a training config).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Optimizer steps in total.
    pub steps: usize,
    /// Seed of data order, noise and initialisation.
    pub seed: u64,
    pub log_every: usize,
    pub validate_every: usize,
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (older ones are deleted).
    pub keep_checkpoints: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            seed: 0,
            log_every: 10,
            validate_every: 200,
            checkpoint_every: 200,
            keep_checkpoints: 2,
        }
    }
}

/// What one training step computed.
pub struct StepLoss {
    /// The scalar that is differentiated.
    pub loss: Tensor,
    /// Named values for the log (each loss term, mask rates, …).
    pub values: Vec<(String, f64)>,
    /// Supervised tokens (or residues) in the batch, for throughput.
    pub tokens: usize,
}

pub trait Objective {
    /// Everything besides weights and optimizer that a bit-exact resume needs.
    type State: Serialize + DeserializeOwned;

    fn name(&self) -> &str;
    fn loss(&mut self, model: &Trainable, step: usize) -> crate::Result<StepLoss>;
    /// Runs after every optimizer update (e.g. codebook moving averages).
    fn after_update(&mut self, _model: &Trainable, _step: usize) -> crate::Result<()> {
        Ok(())
    }
    fn validate(&mut self, model: &Trainable) -> crate::Result<Vec<(String, f64)>>;
    fn state(&self) -> Self::State;
    /// Called after the checkpoint's weights are back in `model`.
    fn restore(&mut self, model: &Trainable, state: Self::State) -> crate::Result<()>;
    /// Non-parameter tensors to checkpoint (named), and their restore.
    fn extra_tensors(&self) -> HashMap<String, Tensor> {
        HashMap::new()
    }
    fn restore_extra(&mut self, _extra: HashMap<String, Tensor>) -> crate::Result<()> {
        Ok(())
    }
}

/// Where a run stopped, for the caller's summary.
pub struct RunSummary {
    pub steps: usize,
    pub seconds: f64,
    pub last_validation: Vec<(String, f64)>,
    pub checkpoint: Option<PathBuf>,
}

/// Trains `objective` until `run.steps`, resuming from `out`'s latest checkpoint when `resume`.
pub fn train<O: Objective>(
    objective: &mut O,
    model: &Trainable,
    optimizer: &mut AdamW,
    schedule: &LrSchedule,
    run: &RunConfig,
    out: &Path,
    resume: bool,
    show_progress: bool,
) -> crate::Result<RunSummary> {
    crate::heap::retain_freed_memory();
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let start = if resume {
        resume_from_latest(objective, model, optimizer, out)?
    } else {
        0
    };
    let mut log = MetricsLog::open(out, resume.then_some(start)).map_err(TrainError::io(out))?;
    let bar = progress_bar(show_progress, objective.name(), run.steps, start);
    let started = Instant::now();
    let mut window_tokens = 0usize;
    let mut window_start = Instant::now();
    let mut last_validation = Vec::new();
    let mut last_checkpoint = None;
    for step in start..run.steps {
        let lr = schedule.at(step);
        let StepLoss {
            loss,
            mut values,
            tokens,
        } = objective.loss(model, step)?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        if !loss_value.is_finite() {
            return Err(TrainError::Msg(format!(
                "step {}: the loss is {loss_value}; stopping (lower the learning rate?)",
                step + 1
            )));
        }
        let grads = loss.backward()?;
        let report = optimizer.step(&grads, lr)?;
        drop(grads);
        objective.after_update(model, step)?;
        window_tokens += tokens;
        let done = step + 1;
        values.insert(0, ("loss".into(), loss_value));
        values.push(("lr".into(), lr));
        values.push(("grad_norm".into(), report.grad_norm));
        if done % run.log_every.max(1) == 0 || done == run.steps {
            let secs = window_start.elapsed().as_secs_f64().max(1e-9);
            values.push(("tokens_per_s".into(), window_tokens as f64 / secs));
            bar.set_message(format!(
                "loss {loss_value:.3} · {:.0} tok/s · lr {lr:.2e}",
                window_tokens as f64 / secs
            ));
            window_tokens = 0;
            window_start = Instant::now();
            log.record("train", done, &values)
                .map_err(TrainError::io(out))?;
        }
        bar.set_position(done as u64);
        let validate = done % run.validate_every.max(1) == 0 || done == run.steps;
        if validate {
            last_validation = objective.validate(model)?;
            log.record("valid", done, &last_validation)
                .map_err(TrainError::io(out))?;
            log.render(objective.name()).map_err(TrainError::io(out))?;
            bar.println(format!("step {done}: valid {}", brief(&last_validation)));
        }
        if done % run.checkpoint_every.max(1) == 0 || done == run.steps {
            last_checkpoint = Some(checkpoint::save(
                out,
                done,
                model,
                optimizer,
                &objective.extra_tensors(),
                &objective.state(),
                run.keep_checkpoints,
            )?);
        }
    }
    bar.finish_and_clear();
    log.render(objective.name()).map_err(TrainError::io(out))?;
    Ok(RunSummary {
        steps: run.steps,
        seconds: started.elapsed().as_secs_f64(),
        last_validation,
        checkpoint: last_checkpoint,
    })
}

/// The first four validation values, for the progress line.
fn brief(values: &[(String, f64)]) -> String {
    let parts: Vec<String> = values
        .iter()
        .take(4)
        .map(|(k, v)| format!("{k} {v:.3}"))
        .collect();
    parts.join(", ")
}

/// Restores model, optimizer and objective from `out`'s latest checkpoint; returns its step.
fn resume_from_latest<O: Objective>(
    objective: &mut O,
    model: &Trainable,
    optimizer: &mut AdamW,
    out: &Path,
) -> crate::Result<usize> {
    let Some(dir) = checkpoint::latest(out) else {
        return Err(TrainError::Msg(format!(
            "{}: --resume given but the run has no checkpoint (checkpoints/latest)",
            out.display()
        )));
    };
    let restored = checkpoint::restore::<O::State>(&dir, model, optimizer)?;
    objective.restore(model, restored.state)?;
    objective.restore_extra(restored.extra)?;
    tracing::info!("resumed from {} at step {}", dir.display(), restored.step);
    Ok(restored.step)
}

/// The run's progress bar (hidden unless `show`), at `start` of `steps`.
fn progress_bar(show: bool, name: &str, steps: usize, start: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(name.to_string());
    bar.set_position(start as u64);
    bar
}

/// Seeded epoch-wise shuffling of `n` items: item order is a pure function of (seed, epoch), so
/// the position (epoch, index) is all a checkpoint needs to resume the data stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sampler {
    pub n: usize,
    pub seed: u64,
    pub epoch: u64,
    pub index: usize,
    #[serde(skip)]
    order: Vec<usize>,
}

impl Sampler {
    pub fn new(n: usize, seed: u64) -> Self {
        let mut s = Self {
            n,
            seed,
            epoch: 0,
            index: 0,
            order: Vec::new(),
        };
        s.shuffle();
        s
    }

    fn shuffle(&mut self) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ self.epoch.wrapping_mul(0x9E37_79B9));
        self.order = (0..self.n).collect();
        self.order.shuffle(&mut rng);
    }

    /// Restores a position saved by a checkpoint.
    pub fn restore(&mut self, saved: &Sampler) {
        self.epoch = saved.epoch;
        self.index = saved.index;
        self.shuffle();
    }

    pub fn next_index(&mut self) -> usize {
        if self.index >= self.n {
            self.epoch += 1;
            self.index = 0;
            self.shuffle();
        }
        let i = self.order[self.index];
        self.index += 1;
        i
    }
}

#[cfg(test)]
mod tests {
    use super::Sampler;

    #[test]
    fn sampler_visits_every_item_each_epoch_and_resumes() {
        let mut s = Sampler::new(7, 3);
        let first: Vec<usize> = (0..7).map(|_| s.next_index()).collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        let _ = s.next_index();
        let saved = s.clone();
        let rest: Vec<usize> = (0..10).map(|_| s.next_index()).collect();
        let mut t = Sampler::new(7, 3);
        t.restore(&serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap());
        let again: Vec<usize> = (0..10).map(|_| t.next_index()).collect();
        assert_eq!(rest, again);
    }
}
