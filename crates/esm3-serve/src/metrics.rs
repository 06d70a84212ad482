//! Prometheus metrics in the text exposition format.
//!
//! Written by hand: a handful of counters and fixed-bucket histograms is a few dozen lines,
//! while the registry crates bring global state and a dependency tree for the same output.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: [f64; 6] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, x: f64) {
        for (c, &b) in self.counts.iter_mut().zip(self.bounds) {
            if x <= b {
                *c += 1;
            }
        }
        self.sum += x;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(self.bounds) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

pub struct Metrics {
    /// (endpoint, status) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// endpoint → request latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    batch: Mutex<Histogram>,
    compute: Mutex<Histogram>,
    pub residues: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected_full: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            latency: Mutex::default(),
            batch: Mutex::new(Histogram::new(&BATCH_BUCKETS)),
            compute: Mutex::new(Histogram::new(&LATENCY_BUCKETS)),
            residues: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, endpoint: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .expect("metrics lock")
            .entry(endpoint.to_string())
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_batch(&self, size: usize) {
        self.batch
            .lock()
            .expect("metrics lock")
            .observe(size as f64);
    }

    pub fn observe_compute(&self, elapsed: Duration) {
        self.compute
            .lock()
            .expect("metrics lock")
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition text; `queues` gives (model, depth, capacity).
    pub fn render(&self, queues: &[(String, usize, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP esm3_requests_total Requests answered, by endpoint and HTTP status.\n# TYPE esm3_requests_total counter\n");
        for ((e, s), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "esm3_requests_total{{endpoint=\"{e}\",status=\"{s}\"}} {n}"
            );
        }
        out.push_str("# HELP esm3_request_duration_seconds Time from request to response, by endpoint.\n# TYPE esm3_request_duration_seconds histogram\n");
        for (e, h) in self.latency.lock().expect("metrics lock").iter() {
            h.write(
                &mut out,
                "esm3_request_duration_seconds",
                &format!("endpoint=\"{e}\""),
            );
        }
        out.push_str("# HELP esm3_batch_size Jobs run together in one model batch.\n# TYPE esm3_batch_size histogram\n");
        self.batch
            .lock()
            .expect("metrics lock")
            .write(&mut out, "esm3_batch_size", "");
        out.push_str("# HELP esm3_compute_seconds Model time per batch.\n# TYPE esm3_compute_seconds histogram\n");
        self.compute
            .lock()
            .expect("metrics lock")
            .write(&mut out, "esm3_compute_seconds", "");
        out.push_str(
            "# HELP esm3_queue_depth Jobs waiting for a model.\n# TYPE esm3_queue_depth gauge\n",
        );
        for (m, d, _) in queues {
            let _ = writeln!(out, "esm3_queue_depth{{model=\"{m}\"}} {d}");
        }
        out.push_str("# HELP esm3_queue_capacity Jobs a model's queue holds before answering 429.\n# TYPE esm3_queue_capacity gauge\n");
        for (m, _, c) in queues {
            let _ = writeln!(out, "esm3_queue_capacity{{model=\"{m}\"}} {c}");
        }
        let counters = [
            (
                "esm3_residues_total",
                "Residues processed by the models (divide by time for residues/s).",
                &self.residues,
            ),
            (
                "esm3_cancelled_total",
                "Jobs dropped because their client disconnected before they ran.",
                &self.cancelled,
            ),
            (
                "esm3_rejected_queue_full_total",
                "Requests answered 429 because a queue was full.",
                &self.rejected_full,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let m = Metrics::default();
        m.observe_request("logits", 200, Duration::from_millis(30));
        m.observe_request("logits", 200, Duration::from_millis(3));
        m.observe_request("logits", 429, Duration::from_millis(1));
        let text = m.render(&[("esmc".into(), 2, 64)]);
        assert!(
            text.contains("esm3_requests_total{endpoint=\"logits\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "esm3_request_duration_seconds_bucket{endpoint=\"logits\",le=\"0.005\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "esm3_request_duration_seconds_bucket{endpoint=\"logits\",le=\"0.05\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("esm3_request_duration_seconds_count{endpoint=\"logits\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("esm3_queue_depth{model=\"esmc\"} 2"),
            "{text}"
        );
    }
}
