//! One worker thread per model behind a bounded queue, with dynamic batching.
//!
//! The HTTP side only ever `try_send`s: a full queue is answered 429 at once, so memory stays
//! bounded whatever the number of clients. A job whose client went away (its reply channel is
//! closed) is dropped before it runs. Generation jobs with equal [`BatchKey`]s that are queued
//! together, or arrive within the batch window, run as one batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::engine::{self, Job, JobError, Model};
use crate::metrics::Metrics;

pub struct Work {
    pub job: Job,
    pub reply: oneshot::Sender<Result<Value, JobError>>,
    pub request_id: String,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most jobs in one batch.
    pub max_batch: usize,
    /// How long the worker waits for more batchable jobs once it holds one.
    pub window: Duration,
}

/// The sending side of a model's queue.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Work>,
    depth: Arc<AtomicUsize>,
    pub capacity: usize,
}

pub enum Submit {
    Queued,
    /// The queue is full (429) or the worker has stopped (503).
    Full(Work),
    Closed(Work),
}

impl Queue {
    pub fn submit(&self, work: Work) -> Submit {
        // Count first, so the worker never sees a negative depth.
        self.depth.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(work) {
            Ok(()) => Submit::Queued,
            Err(TrySendError::Full(w)) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Submit::Full(w)
            }
            Err(TrySendError::Disconnected(w)) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Submit::Closed(w)
            }
        }
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

/// Starts the worker thread of `model`; it ends when every [`Queue`] clone is dropped and the
/// queue is drained.
pub fn start(
    name: String,
    model: Model,
    capacity: usize,
    policy: BatchPolicy,
    metrics: Arc<Metrics>,
) -> (Queue, std::thread::JoinHandle<()>) {
    let (tx, rx) = sync_channel(capacity);
    let depth = Arc::new(AtomicUsize::new(0));
    let queue = Queue {
        tx,
        depth: depth.clone(),
        capacity,
    };
    let handle = std::thread::Builder::new()
        .name(format!("model {name}"))
        .spawn(move || serve_queue(&name, &model, rx, &depth, policy, &metrics))
        .expect("spawning a worker thread");
    (queue, handle)
}

fn serve_queue(
    name: &str,
    model: &Model,
    rx: Receiver<Work>,
    depth: &AtomicUsize,
    policy: BatchPolicy,
    metrics: &Metrics,
) {
    // Jobs taken off the channel while filling a batch they could not join.
    let mut held: VecDeque<Work> = VecDeque::new();
    loop {
        let first = match held.pop_front() {
            Some(w) => w,
            None => match rx.recv() {
                Ok(w) => taken(w, depth),
                Err(_) => return,
            },
        };
        let batch = fill_batch(first, &mut held, &rx, depth, policy);
        // A client that disconnected while queued cancels its job.
        let (live, gone): (Vec<Work>, Vec<Work>) =
            batch.into_iter().partition(|w| !w.reply.is_closed());
        for w in &gone {
            tracing::info!(request_id = %w.request_id, model = name, "client gone: job cancelled before it ran");
            metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        if !live.is_empty() {
            run_batch(name, model, live, metrics);
        }
    }
}

/// `w`, counted off the queue's depth.
fn taken(w: Work, depth: &AtomicUsize) -> Work {
    depth.fetch_sub(1, Ordering::SeqCst);
    w
}

/// `first` and the jobs that may share its batch: held jobs first (they are older), then the
/// channel, until the batch is full or the window closes. Jobs taken that cannot join are held.
fn fill_batch(
    first: Work,
    held: &mut VecDeque<Work>,
    rx: &Receiver<Work>,
    depth: &AtomicUsize,
    policy: BatchPolicy,
) -> Vec<Work> {
    let mut batch = vec![first];
    let Some(key) = batch[0].job.batch_key() else {
        return batch;
    };
    let mut i = 0;
    while i < held.len() && batch.len() < policy.max_batch {
        if held[i].job.batch_key().is_some_and(|k| key.admits(&k)) {
            batch.push(held.remove(i).expect("in range"));
        } else {
            i += 1;
        }
    }
    let deadline = Instant::now() + policy.window;
    while batch.len() < policy.max_batch {
        let now = Instant::now();
        let next = if now >= deadline {
            match rx.try_recv() {
                Ok(w) => w,
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(deadline - now) {
                Ok(w) => w,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let w = taken(next, depth);
        if w.job.batch_key().is_some_and(|k| key.admits(&k)) {
            batch.push(w);
        } else {
            held.push_back(w);
        }
    }
    batch
}

/// Runs one batch and answers each job; a panic in the model answers every job with a 500.
fn run_batch(name: &str, model: &Model, live: Vec<Work>, metrics: &Metrics) {
    metrics.observe_batch(live.len());
    let residues: usize = live.iter().map(|w| w.job.residues()).sum();
    let started = Instant::now();
    let (jobs, replies): (Vec<Job>, Vec<(oneshot::Sender<_>, String)>) = live
        .into_iter()
        .map(|w| (w.job, (w.reply, w.request_id)))
        .unzip();
    let results =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine::run(model, jobs)))
            .unwrap_or_else(|_| {
                (0..replies.len())
                    .map(|_| {
                        Err(JobError {
                            status: 500,
                            message: "internal error while running the model (see the server log)"
                                .into(),
                        })
                    })
                    .collect()
            });
    let elapsed = started.elapsed();
    metrics
        .residues
        .fetch_add(residues as u64, Ordering::Relaxed);
    metrics.observe_compute(elapsed);
    for ((reply, request_id), result) in replies.into_iter().zip(results) {
        tracing::debug!(request_id = %request_id, model = name, ms = elapsed.as_millis() as u64, "job done");
        // The client may have gone meanwhile; nothing to do then.
        let _ = reply.send(result);
    }
}
