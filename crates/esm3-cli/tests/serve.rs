//! `esm3 serve` end to end: the real binary on 127.0.0.1, spoken to over raw HTTP/1.1.
//! (The official `esm` client's acceptance run is tools/serve/acceptance.py.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

fn repo() -> PathBuf {
    esm3_test_support::repo_root()
}

/// A running server; killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str], env_tokens: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_esm3"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--model-dir"])
        .arg(repo().join("fixtures/random-bundle-d64"))
        .arg("--esmc-model-dir")
        .arg(repo().join("fixtures/reference/esmc_d64/model"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match env_tokens {
        Some(t) => cmd.env("ESM3_SERVE_TOKENS", t),
        None => cmd.env_remove("ESM3_SERVE_TOKENS"),
    };
    let mut child = cmd.spawn().expect("start esm3 serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no `listening on` line; stderr so far: {seen:?}");
        };
        if let Some(rest) = line.strip_prefix("listening on http://127.0.0.1:") {
            let port = rest.split_whitespace().next().unwrap().parse().unwrap();
            return Server {
                child,
                port,
                log: rx,
            };
        }
        seen.push(line);
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading a large body; ignore a reset then.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn post(port: u16, endpoint: &str, token: Option<&str>, body: &Value) -> Reply {
    request(
        port,
        "POST",
        &format!("/api/v1/{endpoint}"),
        token,
        body.to_string().as_bytes(),
    )
}

const TOKEN: &str = "t0ken-for-tests";

fn logits_body(len: usize) -> Value {
    let mut ids = vec![0];
    ids.extend((0..len).map(|i| 4 + (i % 20) as i64));
    ids.push(2);
    json!({
        "model": "esmc-300m-2024-12",
        "inputs": {"sequence": ids},
        "logits_config": {"sequence": true, "return_embeddings": true},
    })
}

#[test]
fn auth_is_required_and_checked() {
    let server = start(&[], Some(TOKEN));
    let p = server.port;
    let none = post(p, "logits", None, &logits_body(5));
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = post(p, "logits", Some("not-the-token"), &logits_body(5));
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert!(wrong.json()["detail"]
        .as_str()
        .unwrap()
        .contains("not valid"));
    let right = post(p, "logits", Some(TOKEN), &logits_body(5));
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(right.header("content-type"), Some("application/json"));
    // [1, L+2, 64] and [1, L+2, d], as the client expects them.
    let v = right.json();
    assert_eq!(v["logits"]["sequence"][0].as_array().unwrap().len(), 7);
    assert_eq!(v["logits"]["sequence"][0][0].as_array().unwrap().len(), 64);
    assert_eq!(v["embeddings"][0].as_array().unwrap().len(), 7);
    // Probes need no token.
    assert_eq!(request(p, "GET", "/health", None, b"").status, 200);
    assert_eq!(request(p, "GET", "/ready", None, b"").status, 200);
    let metrics = request(p, "GET", "/metrics", None, b"").body;
    assert!(
        metrics.contains("esm3_requests_total{endpoint=\"logits\",status=\"403\"} 1"),
        "{metrics}"
    );
}

#[test]
fn unsafe_configurations_are_refused_at_start() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_esm3"))
            .args(["serve", "--model-dir"])
            .arg(repo().join("fixtures/random-bundle-d64"))
            .args(args)
            .env_remove("ESM3_SERVE_TOKENS")
            .output()
            .unwrap()
    };
    let open = run(&["--no-auth", "--bind", "0.0.0.0:0"]);
    assert!(!open.status.success());
    assert!(
        common::stderr(&open).contains("only allowed on a loopback"),
        "{}",
        common::stderr(&open)
    );
    let tokenless = run(&["--bind", "127.0.0.1:0"]);
    assert!(!tokenless.status.success());
    assert!(
        common::stderr(&tokenless).contains("no tokens"),
        "{}",
        common::stderr(&tokenless)
    );
}

#[test]
fn bad_requests_get_clear_4xx_and_the_server_keeps_serving() {
    let server = start(&["--max-length", "50", "--max-body-mib", "1"], Some(TOKEN));
    let p = server.port;
    let t = Some(TOKEN);
    let cases: Vec<(Reply, u16, &str)> = vec![
        (
            request(p, "POST", "/api/v1/logits", t, b"{\"model\": "),
            400,
            "not valid JSON",
        ),
        (
            request(p, "POST", "/api/v1/logits", t, b"[1, 2]"),
            400,
            "a JSON object",
        ),
        (
            request(p, "POST", "/api/v1/logits", t, b"{\"inputs\": [-Infinity]}"),
            400,
            "infinite",
        ),
        (
            post(p, "logits", t, &json!({"model": "esm4", "inputs": {}})),
            404,
            "unknown model `esm4`; this server has: esm3-open, esm3-sm-open-v1, esmc-300m-2024-12",
        ),
        (
            post(p, "teleport", t, &json!({"model": "esm3-open"})),
            404,
            "no endpoint `teleport`",
        ),
        (
            post(p, "logits", t, &json!({"inputs": {}})),
            400,
            "no `model`",
        ),
        (
            post(
                p,
                "generate",
                t,
                &json!({"model": "esm3-open", "inputs": {"sequence": "MKZ1"}}),
            ),
            422,
            "sequence",
        ),
        (
            post(
                p,
                "generate",
                t,
                &json!({"model": "esm3-open", "inputs": {"sequence": "MKV", "coordinates": [[[1, 2, 3]], [], []]}}),
            ),
            400,
            "inputs.coordinates[0]: expected 37 atoms",
        ),
        (
            post(
                p,
                "generate",
                t,
                &json!({"model": "esm3-open", "inputs": {"sequence": "MKV"}, "track": "colour"}),
            ),
            400,
            "`colour` is not a track",
        ),
        (
            post(
                p,
                "decode",
                t,
                &json!({"model": "esm3-open", "inputs": {"sequence": [0, 99, 2]}}),
            ),
            400,
            "inputs.sequence[1]: id 99",
        ),
        (
            post(
                p,
                "generate",
                t,
                &json!({"model": "esm3-open", "inputs": {"sequence": "A".repeat(51)}}),
            ),
            413,
            "51 residues is longer than this server's limit of 50",
        ),
        (
            request(p, "POST", "/api/v1/logits", t, &vec![b' '; 2 << 20]),
            413,
            "",
        ),
        (request(p, "GET", "/nowhere", t, b""), 404, "no such route"),
    ];
    for (reply, status, needle) in &cases {
        assert_eq!(reply.status, *status, "{needle}: {}", reply.body);
        assert!(reply.body.contains(needle), "{needle}: {}", reply.body);
    }
    let fine = post(p, "logits", t, &logits_body(10));
    assert_eq!(fine.status, 200, "{}", fine.body);
    assert_eq!(request(p, "GET", "/health", None, b"").status, 200);
}

/// A generation that keeps the worker busy for about 2 s (400 residues, 60 steps).
fn slow_generate(seed: u64) -> Value {
    json!({
        "model": "esm3-open",
        "inputs": {"sequence": "_".repeat(400)},
        "track": "sequence", "num_steps": 60, "seed": seed,
    })
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let server = start(&["--queue", "1", "--max-batch", "1"], Some(TOKEN));
    let p = server.port;
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| s.spawn(move || post(p, "generate", Some(TOKEN), &slow_generate(i))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let full: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        ok + full.len(),
        6,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert!(ok >= 1 && !full.is_empty(), "{ok} ok, {} full", full.len());
    for r in full {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.body.contains("queue"), "{}", r.body);
    }
    let metrics = request(p, "GET", "/metrics", None, b"").body;
    assert!(
        !metrics.contains("esm3_rejected_queue_full_total 0"),
        "{metrics}"
    );
}

fn generate(len: usize, seed: u64) -> Value {
    json!({
        "model": "esm3-open",
        "inputs": {"sequence": format!("M{}", "_".repeat(len - 1))},
        "track": "sequence", "num_steps": 8, "temperature": 1.0, "seed": seed,
    })
}

#[test]
fn batched_generations_equal_single_ones() {
    let server = start(
        &["--batch-window-ms", "500", "--max-batch", "8"],
        Some(TOKEN),
    );
    let p = server.port;
    let lengths = [30usize, 32, 34, 36];
    let together: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = lengths
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                s.spawn(move || post(p, "generate", Some(TOKEN), &generate(l, 100 + i as u64)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h.join().unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                r.json()
            })
            .collect()
    });
    let metrics = request(p, "GET", "/metrics", None, b"").body;
    let value = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // Four jobs in fewer batches: they were batched.
    assert_eq!(value("esm3_batch_size_sum"), 4.0, "{metrics}");
    assert!(value("esm3_batch_size_count") < 4.0, "{metrics}");
    for (i, &l) in lengths.iter().enumerate() {
        let alone = post(p, "generate", Some(TOKEN), &generate(l, 100 + i as u64));
        assert_eq!(alone.status, 200);
        let seq = alone.json()["outputs"]["sequence"].clone();
        assert_eq!(seq.as_str().unwrap().len(), l);
        assert_eq!(together[i]["outputs"]["sequence"], seq, "length {l}");
    }
    // A different seed gives a different protein: the comparison above can fail.
    let other = post(p, "generate", Some(TOKEN), &generate(36, 7)).json();
    assert_ne!(
        other["outputs"]["sequence"],
        together[3]["outputs"]["sequence"]
    );
}

#[test]
fn a_disconnected_client_cancels_its_queued_job_and_sigterm_finishes_accepted_work() {
    let server = start(&["--max-batch", "1"], Some(TOKEN));
    let p = server.port;
    std::thread::scope(|s| {
        let busy = s.spawn(|| post(p, "generate", Some(TOKEN), &slow_generate(1)));
        std::thread::sleep(Duration::from_millis(400));
        // Queued behind the busy job, then the client goes away.
        let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
        let body = slow_generate(2).to_string();
        write!(
            c,
            "POST /api/v1/generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
        assert_eq!(busy.join().unwrap().status, 200);
    });
    std::thread::sleep(Duration::from_millis(300));
    let metrics = request(p, "GET", "/metrics", None, b"").body;
    assert!(metrics.contains("esm3_cancelled_total 1"), "{metrics}");

    // SIGTERM while a request runs: it is answered, then the server exits cleanly.
    let mut server = server;
    std::thread::scope(|s| {
        let running = s.spawn(|| post(p, "generate", Some(TOKEN), &slow_generate(3)));
        std::thread::sleep(Duration::from_millis(400));
        let pid = server.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        assert_eq!(running.join().unwrap().status, 200);
    });
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("shutdown")), "{log:?}");
}

#[test]
fn structure_endpoints_and_esmc_under_the_esm3_client_shape() {
    let server = start(&[], Some(TOKEN));
    let p = server.port;
    let t = Some(TOKEN);
    // The structure client sends `"model": ""` by default.
    let fold = post(
        p,
        "fold",
        t,
        &json!({"model": "", "sequence": "MKTAYIAKQR"}),
    );
    assert_eq!(fold.status, 200, "{}", fold.body);
    let f = fold.json();
    let coords = f["coordinates"].as_array().unwrap();
    assert_eq!(coords.len(), 10);
    assert!(coords.iter().all(|r| r.as_array().unwrap().len() == 37));
    assert_eq!(f["plddt"].as_array().unwrap().len(), 10);
    assert!((0.0..=1.0).contains(&f["ptm"].as_f64().unwrap()));
    let inv = post(
        p,
        "inverse_fold",
        t,
        &json!({"model": "", "coordinates": f["coordinates"], "inverse_folding_config": {"invalid_ids": [], "temperature": 0.5}}),
    );
    assert_eq!(inv.status, 200, "{}", inv.body);
    assert_eq!(inv.json()["sequence"].as_str().unwrap().chars().count(), 10);
    // `esm.sdk.client()` talks to ESM C with the ESM3 client's bodies and reads all seven keys.
    let enc = post(
        p,
        "encode",
        t,
        &json!({"model": "esmc-300m-2024-12", "inputs": {"sequence": "MKV", "structure": null, "secondary_structure": null, "sasa": null, "function": null, "residue_annotation": null, "coordinates": null}}),
    );
    assert_eq!(enc.status, 200, "{}", enc.body);
    let outputs = &enc.json()["outputs"];
    assert_eq!(outputs["sequence"], json!([0, 20, 15, 7, 2]));
    for key in [
        "structure",
        "secondary_structure",
        "sasa",
        "function",
        "residue_annotation",
        "coordinates",
    ] {
        assert!(
            outputs.get(key).is_some_and(Value::is_null),
            "{key}: {outputs}"
        );
    }
    // Encode of a chain: the BOS/EOS coordinate rows are null (the client sends them back, and
    // it cannot send an infinity).
    // (A real PDB chain is the acceptance run's; here a hand-made one-residue backbone.)
    let mut residue = vec![Value::Null; 37];
    for (a, x) in [(0usize, 0.0), (1, 1.46), (2, 2.0)] {
        residue[a] = json!([x, 0.0, 0.0]);
    }
    let enc = post(
        p,
        "encode",
        t,
        &json!({"model": "esm3-open", "inputs": {"sequence": "G", "coordinates": [residue.iter().map(|r| if r.is_null() { json!([null, null, null]) } else { r.clone() }).collect::<Vec<_>>()]}}),
    );
    assert_eq!(enc.status, 200, "{}", enc.body);
    let c = &enc.json()["outputs"]["coordinates"];
    assert_eq!(c.as_array().unwrap().len(), 3, "{c}");
    for slot in [0, 2] {
        assert!(
            c[slot]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a == &json!([null, null, null])),
            "{c}"
        );
    }
    // The residue's own atoms are finite (centred, as the reference's encode does).
    assert!(c[1][1].as_array().unwrap().iter().all(Value::is_f64), "{c}");
    assert_eq!(c[1][3], json!([null, null, null]));
}
