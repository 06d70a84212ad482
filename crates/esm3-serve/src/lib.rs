//! `esm3 serve`: a self-hosted server speaking the Forge HTTP protocol (spec §9), so that the
//! official `esm` client (`ESM3ForgeInferenceClient`, `ESMCForgeInferenceClient`) works
//! against our engine unchanged, with `url=` pointed here.
//!
//! Layout: [`json`] reads and writes the protocol's JSON, [`requests`] turns a body into a
//! [`engine::Job`], [`engine`] computes it on a loaded model, [`worker`] runs one model per
//! thread behind a bounded queue with dynamic batching, [`http`] is the axum side (auth,
//! limits, 429s, logs) and [`metrics`] the Prometheus text.

pub mod engine;
pub mod http;
pub mod json;
pub mod metrics;
pub mod requests;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why the server did not start or stopped: a refused configuration, or the network.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, ServeError>;

fn refuse<T>(message: impl Into<String>) -> Result<T> {
    Err(ServeError::Config(message.into()))
}

pub use engine::Model;
pub use worker::BatchPolicy;

/// Stand-ins for non-finite floats inside the response `Value`, replaced by bare tokens when
/// the body is written (serde_json cannot write `Infinity`, the client reads it).
pub const INF_MARKER: &str = "__esm3_inf__";
pub const NEG_INF_MARKER: &str = "__esm3_neg_inf__";
pub const NAN_MARKER: &str = "__esm3_nan__";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// Accepted bearer tokens; `None` serves without auth (loopback binds only).
    pub tokens: Option<Vec<String>>,
    pub max_body_bytes: usize,
    /// Longest protein, in residues.
    pub max_length: usize,
    /// Jobs each model's queue holds before answering 429.
    pub queue_capacity: usize,
    pub batch: BatchPolicy,
    /// Log each request's sequence (off: sequences are users' data).
    pub log_sequences: bool,
}

impl ServerConfig {
    /// Refuses a configuration that would expose an unauthenticated server.
    pub fn check(&self) -> Result<()> {
        match &self.tokens {
            None if !self.bind.ip().is_loopback() => refuse(format!(
                "--no-auth is only allowed on a loopback address (127.0.0.1 or ::1), not {}: give tokens with --token-file or ESM3_SERVE_TOKENS",
                self.bind
            )),
            Some(t) if t.is_empty() => refuse("no tokens: the token file or ESM3_SERVE_TOKENS is empty"),
            _ => Ok(()),
        }
    }
}

/// Reads bearer tokens: one per line, `#` comments and blank lines skipped.
pub fn read_tokens(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A model and the names clients may ask for it by.
pub struct ServedModel {
    pub names: Vec<String>,
    pub model: Model,
}

/// Serves until SIGTERM or Ctrl-C, then stops taking requests, finishes those already
/// accepted (queued jobs included) and returns. `on_listen` gets the bound address (port 0
/// picks a free one).
pub fn serve(
    config: ServerConfig,
    models: Vec<ServedModel>,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<()> {
    config.check()?;
    if models.is_empty() {
        return refuse("no model to serve");
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let mut by_name = HashMap::new();
    let mut routes = Vec::new();
    let mut workers = Vec::new();
    for m in models {
        let Some(name) = m.names.first().cloned() else {
            return refuse("a served model needs a name");
        };
        let kind = m.model.kind();
        let (queue, handle) = worker::start(
            name.clone(),
            m.model,
            config.queue_capacity,
            config.batch,
            metrics.clone(),
        );
        let route = Arc::new(http::Route { kind, queue, name });
        for n in m.names {
            if by_name.insert(n.clone(), route.clone()).is_some() {
                return refuse(format!("model name `{n}` is given twice"));
            }
        }
        routes.push(route);
        workers.push(handle);
    }
    let state = Arc::new(http::AppState {
        config: config.clone(),
        models: by_name,
        routes,
        metrics,
        ready: AtomicBool::new(true),
        next_id: AtomicU64::new(1),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr()?;
        on_listen(addr);
        let shutdown_state = state.clone();
        axum::serve(listener, http::router(state.clone()))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::info!("shutdown: no new requests; finishing the accepted ones");
                shutdown_state.ready.store(false, Ordering::SeqCst);
            })
            .await
            .map_err(ServeError::Io)
    })?;
    // Every request has been answered; dropping the routes closes the queues and ends the workers.
    drop(state);
    runtime.shutdown_timeout(Duration::from_secs(5));
    for w in workers {
        let _ = w.join();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
