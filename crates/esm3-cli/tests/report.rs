//! The pictures of a run: PNGs written by the real binary, and `report.html` opened in headless
//! Chromium through ChromeDriver (WebDriver over HTTP): every record listed, the 3D view drawn,
//! sorting by pTM, no console errors. The browser test is skipped, saying so, where Debian's
//! `chromium` and `chromium-driver` are not installed (`apt-get install chromium chromium-driver`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{esm3, ok, s};
use serde_json::{json, Value};

fn bundled_model() -> PathBuf {
    esm3_test_support::repo_root().join("models/esm3-rs-small")
}

fn generate(out: &Path, n: usize) {
    ok(&esm3(&[
        "generate",
        "--length",
        "48",
        "-n",
        &n.to_string(),
        "--seed",
        "3",
        "-o",
        s(out),
        "--model-dir",
        s(&bundled_model()),
    ]));
}

/// Width, height and RGB(A) rows of a PNG.
fn decode_png(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(bytes).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("one frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type.samples(), buf)
}

fn distinct_colours(channels: usize, pixels: &[u8]) -> usize {
    let set: std::collections::HashSet<&[u8]> = pixels.chunks(channels).map(|c| &c[..3]).collect();
    set.len()
}

#[test]
fn generate_writes_a_png_per_design_and_a_report_and_no_report_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("designs");
    generate(&out, 2);
    for k in 0..2 {
        let bytes = std::fs::read(out.join(format!("design_{k}.png"))).unwrap();
        let (w, h, channels, pixels) = decode_png(&bytes);
        assert_eq!((w, h), (1200, 480));
        assert!(
            distinct_colours(channels, &pixels) > 50,
            "design_{k}.png looks blank"
        );
        let js = std::fs::read_to_string(out.join(format!("report_data/{k}.js"))).unwrap();
        assert!(
            js.contains("ATOM"),
            "structure of record {k} in the report's data"
        );
    }
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("\"name\":\"design_0\"") && page.contains("\"name\":\"design_1\""));

    let quiet = dir.path().join("quiet");
    ok(&esm3(&[
        "generate",
        "--length",
        "30",
        "-o",
        s(&quiet),
        "--model-dir",
        s(&bundled_model()),
        "--no-report",
    ]));
    let mut names: Vec<String> = std::fs::read_dir(&quiet)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["design.fasta", "design.json", "design.pdb"]);
}

#[test]
fn structure_decode_writes_its_own_page_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("t.json");
    std::fs::write(
        &tokens,
        json!({"structure_tokens": (0..40).map(|i| (i * 37) % 4096).collect::<Vec<_>>()})
            .to_string(),
    )
    .unwrap();
    let out = dir.path().join("dec.pdb");
    ok(&esm3(&[
        "structure",
        "decode",
        s(&tokens),
        "-o",
        s(&out),
        "--model-dir",
        s(&bundled_model()),
    ]));
    let (w, h, _, _) = decode_png(&std::fs::read(dir.path().join("dec.png")).unwrap());
    assert_eq!((w, h), (1200, 480));
    assert!(dir.path().join("dec_report.html").is_file());
    assert!(dir.path().join("dec_report_data/0.js").is_file());
}

// --- a minimal WebDriver client: JSON over HTTP/1.1 to ChromeDriver on loopback ---

struct Driver {
    port: u16,
    process: Child,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // ChromeDriver may keep the connection open whatever we ask: read by Content-Length.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "{method} {path}: connection closed"
            )));
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => {
            while raw.len() < head_end + len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut raw)?;
        }
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).to_string();
    let payload = if head.contains("transfer-encoding: chunked") {
        dechunk(&rest)
    } else {
        rest
    };
    serde_json::from_str(&payload)
        .map_err(|e| std::io::Error::other(format!("{method} {path}: {e}: {head}\n{payload}")))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn find_program(env: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    p.is_file().then_some(p)
}

impl Driver {
    fn start(chromium: &Path, chromedriver: &Path, profile: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(port, "GET", "/status", None).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Software WebGL (SwiftShader) stands in for a GPU; the network flags keep Chromium
        // from reaching out of this closed machine at start.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1500,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain(std::iter::once(format!(
            "--user-data-dir={}",
            profile.display()
        )))
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let reply = http(port, "POST", "/session", Some(&caps)).unwrap();
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_string();
        Self {
            port,
            process,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
        .unwrap();
        assert!(
            reply["value"].get("error").is_none(),
            "{method} {path}: {reply}"
        );
        reply["value"].clone()
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    fn wait_for(&self, what: &str, js: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.script(js);
            if !v.is_null() && v != json!(false) && v != json!("") {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn element_png(&self, css: &str) -> Vec<u8> {
        let id = self.element(css);
        let b64 = self.call("GET", &format!("/element/{id}/screenshot"), None);
        base64_decode(b64.as_str().unwrap())
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// pTM of each record as the page lists it, top to bottom.
const LISTED_PTM: &str =
    "return Array.from(document.querySelectorAll('#rows tr')).map(r => r.children[4].textContent)";

#[test]
fn report_renders_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        find_program("ESM3_CHROMIUM", "/usr/bin/chromium"),
        find_program("ESM3_CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) else {
        eprintln!(
            "SKIPPED report_renders_in_headless_chromium: no /usr/bin/chromium and /usr/bin/chromedriver \
             (apt-get install chromium chromium-driver, or set ESM3_CHROMIUM / ESM3_CHROMEDRIVER)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("designs");
    let n = 4;
    generate(&out, n);
    let ptm: Vec<f64> = (0..n)
        .map(|k| {
            let j: Value = serde_json::from_str(
                &std::fs::read_to_string(out.join(format!("design_{k}.json"))).unwrap(),
            )
            .unwrap();
            j["ptm"].as_f64().unwrap()
        })
        .collect();

    let driver = Driver::start(&chromium, &chromedriver, &dir.path().join("profile"));
    let url = format!("file://{}", out.join("report.html").display());
    driver.call("POST", "/url", Some(json!({"url": url})));

    // Every record is listed, and the first one's structure is drawn in the 3D view.
    let names = driver.script(
        "return Array.from(document.querySelectorAll('#rows tr')).map(r => r.dataset.name)",
    );
    let want: Vec<String> = (0..n).map(|k| format!("design_{k}")).collect();
    assert_eq!(names, json!(want));
    driver.wait_for(
        "the first structure",
        "return document.getElementById('viewer').dataset.rendered === 'design_0'",
    );
    let images_loaded = driver.wait_for(
        "the PNGs",
        "const i = Array.from(document.querySelectorAll('#rows img')); return i.length > 0 && i.every(x => x.complete && x.naturalWidth === 1200) ? i.length : null",
    );
    assert_eq!(images_loaded, json!(n));
    let shot = driver.element_png("#viewer canvas");
    let (w, h, channels, pixels) = decode_png(&shot);
    assert!(w > 300 && h > 300, "canvas {w}×{h}");
    let drawn = pixels
        .chunks(channels)
        .filter(|p| p[..3].iter().any(|&c| c < 200))
        .count();
    assert!(
        drawn > 2000 && distinct_colours(channels, &pixels) > 20,
        "the 3D canvas looks blank: {drawn} coloured pixels"
    );

    // Sorting by pTM: highest first, then lowest first.
    let mut desc = ptm.clone();
    desc.sort_by(|a, b| b.total_cmp(a));
    let shown = |v: &[f64]| json!(v.iter().map(|p| format!("{p:.3}")).collect::<Vec<_>>());
    driver.click("th[data-key=ptm]");
    assert_eq!(driver.script(LISTED_PTM), shown(&desc));
    driver.click("th[data-key=ptm]");
    desc.reverse();
    assert_eq!(driver.script(LISTED_PTM), shown(&desc));

    // Another record in the 3D view.
    driver.click("#rows tr[data-name=design_2]");
    driver.wait_for(
        "design_2 in 3D",
        "return document.getElementById('viewer').dataset.rendered === 'design_2'",
    );

    let logs = driver.call("POST", "/se/log", Some(json!({"type": "browser"})));
    let errors: Vec<&Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
