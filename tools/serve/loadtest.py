#!/usr/bin/env python3
"""Loopback load test of `esm3 serve`'s POST /api/v1/logits (dev only, Python stdlib only).

    python3 tools/serve/loadtest.py --url http://127.0.0.1:8080 --token TOKEN \
        --model esmc-300m-2024-12 --length 200 --requests 200 --seconds 30 --pid PID

or let it start (and stop) the server itself, so that its peak RSS can be read:

    python3 tools/serve/loadtest.py --url http://127.0.0.1:8080 --token T \
        --server-cmd "target/release/esm3 serve --model-dir models/esm3-rs-small \
                      --esmc-model-dir fixtures/reference/esmc_d64/model --bind 127.0.0.1:8080 --no-auth"

For each concurrency level (default 1,4,16) it runs that many keep-alive HTTP/1.1 connections that
POST the same request (a fixed sequence of --length residues, body shaped like the official client's:
ESMCForgeInferenceClient for `esmc*` model names, ESM3ForgeInferenceClient otherwise) until --requests
requests have been sent or --seconds have passed, whichever comes first. Then it prints one table row:
requests, ok (HTTP 200 with Content-Type exactly application/json), 429s, errors (anything else,
including connection failures), req/s, p50/p99 latency of the ok requests, and the server's peak RSS
so far (VmHWM of /proc/<pid>/status; it only grows, so each row is the peak up to that level).
Only 127.0.0.1 is accepted as host.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

# Sequence-track vocabulary of ESM3 / ESM C (spec §1.1).
VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-|", "<mask>"]
BASE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHALALTGDEDRAELLQHPLLFNVKEEFGELLTQ"


def fixed_sequence(n: int) -> str:
    return (BASE * (n // len(BASE) + 1))[:n]


def request_body(model: str, length: int, embeddings: bool, style: str) -> bytes:
    ids = [0] + [VOCAB.index(c) for c in fixed_sequence(length)] + [2]
    if style == "auto":
        style = "esmc" if model.lower().startswith("esmc") else "esm3"
    if style == "esmc":  # ESMCForgeInferenceClient._process_logits_request
        body = {
            "model": model,
            "inputs": {"sequence": ids},
            "logits_config": {
                "sequence": True,
                "return_embeddings": embeddings,
                "return_hidden_states": False,
                "ith_hidden_layer": -1,
            },
        }
    else:  # ESM3ForgeInferenceClient._process_logits_request
        inputs = {k: None for k in ["sequence", "structure", "secondary_structure", "sasa", "function", "coordinates", "residue_annotation"]}
        inputs["sequence"] = ids
        body = {
            "model": model,
            "inputs": inputs,
            "logits_config": {
                "sequence": True,
                "structure": False,
                "secondary_structure": False,
                "sasa": False,
                "function": False,
                "residue_annotations": False,
                "return_embeddings": embeddings,
                "return_hidden_states": False,
                "ith_hidden_layer": -1,
            },
        }
    body["potential_sequence_of_concern"] = False
    return json.dumps(body, separators=(",", ":")).encode()


def read_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[k]


class Level:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = 0
        self.too_many = 0
        self.errors = 0
        self.lat_ok: list[float] = []
        self.first_error = ""


def run_level(host: str, port: int, headers: dict, body: bytes, conc: int, max_requests: int,
              seconds: float, timeout: float) -> tuple[Level, float]:
    st = Level()
    deadline = time.monotonic() + seconds

    def take() -> bool:
        with st.lock:
            if st.sent >= max_requests or time.monotonic() >= deadline:
                return False
            st.sent += 1
            return True

    def worker():
        conn = None
        while take():
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                conn.request("POST", "/api/v1/logits", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                dt = time.perf_counter() - t0
                ctype = resp.getheader("Content-Type")
                if resp.getheader("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                with st.lock:
                    if resp.status == 200 and ctype in (None, "application/json"):
                        st.ok += 1
                        st.lat_ok.append(dt)
                    elif resp.status == 429:
                        st.too_many += 1
                    else:
                        st.errors += 1
                        if not st.first_error:
                            st.first_error = f"HTTP {resp.status} Content-Type {ctype!r}: {data[:200]!r}"
            except Exception as e:  # noqa: BLE001 - connection refused/reset, timeout, ...
                with st.lock:
                    st.errors += 1
                    if not st.first_error:
                        st.first_error = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return st, time.perf_counter() - t0


def wait_ready(host: str, port: int, seconds: float, proc: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode} before becoming ready")
        for path in ("/ready", "/health"):
            try:
                c = http.client.HTTPConnection(host, port, timeout=2)
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
                last = f"GET {path}: HTTP {r.status}"
            except Exception as e:  # noqa: BLE001
                last = f"{type(e).__name__}: {e}"
        time.sleep(0.25)
    raise SystemExit(f"server not ready after {seconds:.0f} s ({last})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL (host must be 127.0.0.1)")
    ap.add_argument("--token", default=os.environ.get("ESM3_SERVE_TOKEN", "loadtest"),
                    help="bearer token (default $ESM3_SERVE_TOKEN or 'loadtest', fine with --no-auth)")
    ap.add_argument("--model", default="esmc-300m-2024-12", help="model name, e.g. esmc-300m-2024-12 or esm3-sm-open-v1")
    ap.add_argument("--body-style", choices=["auto", "esm3", "esmc"], default="auto",
                    help="request shape: auto = ESM C client for esmc* names, ESM3 client otherwise")
    ap.add_argument("--length", type=int, default=200, help="residues in the fixed sequence")
    ap.add_argument("--no-embeddings", action="store_true", help="request logits only (return_embeddings false)")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated concurrency levels")
    ap.add_argument("--requests", type=int, default=100, help="max requests per level")
    ap.add_argument("--seconds", type=float, default=30.0, help="max seconds per level")
    ap.add_argument("--timeout", type=float, default=300.0, help="per-request socket timeout, s")
    ap.add_argument("--warmup", type=int, default=1, help="sequential requests before the first level (not counted)")
    ap.add_argument("--gzip", action="store_true", help="send Accept-Encoding: gzip (the official client offers gzip, deflate, br)")
    ap.add_argument("--pid", type=int, help="server pid, for its peak RSS (VmHWM)")
    ap.add_argument("--server-cmd", help="start this server command (no shell), measure it, stop it at the end")
    ap.add_argument("--server-log", help="file for the started server's stdout/stderr (default: a temp file)")
    ap.add_argument("--ready-timeout", type=float, default=300.0, help="wait this long for GET /ready (or /health) == 200")
    args = ap.parse_args()

    u = urllib.parse.urlsplit(args.url)
    if u.scheme != "http" or u.hostname != "127.0.0.1":
        ap.error(f"refusing {args.url!r}: only http://127.0.0.1[:port] (loopback) is allowed")
    host, port = "127.0.0.1", u.port or 80
    if args.pid and args.server_cmd:
        ap.error("give --pid or --server-cmd, not both")
    if args.requests < 1 or args.seconds <= 0:
        ap.error("--requests must be >= 1 and --seconds > 0")
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        ap.error("--concurrency needs positive integers")

    proc = None
    pid = args.pid
    log_path = None
    try:
        if args.server_cmd:
            cmd = shlex.split(args.server_cmd)
            log_path = args.server_log or tempfile.mkstemp(prefix="esm3-serve-", suffix=".log")[1]
            log = open(log_path, "wb")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            pid = proc.pid
            print(f"# started server pid {pid}: {' '.join(cmd)} (log: {log_path})", flush=True)
        wait_ready(host, port, args.ready_timeout if proc else 10.0, proc)

        body = request_body(args.model, args.length, not args.no_embeddings, args.body_style)
        headers = {
            "Authorization": f"Bearer {args.token}",
            "Content-Type": "application/json",
            "Accept": "application/vnd.evolutionaryscale.pickle;protocol=5, application/json",
            "return-bytes": "true",
            "Connection": "keep-alive",
        }
        if args.gzip:
            headers["Accept-Encoding"] = "gzip"
        print(f"# POST {args.url}/api/v1/logits model={args.model} length={args.length} "
              f"embeddings={not args.no_embeddings} body={len(body)} B; per level <= {args.requests} requests / {args.seconds:g} s",
              flush=True)
        if args.warmup:
            w, _ = run_level(host, port, headers, body, 1, args.warmup, args.ready_timeout, args.timeout)
            if w.ok == 0:
                print(f"# warm-up failed: {w.first_error}", flush=True)

        hdr = f"{'conc':>5} {'requests':>8} {'ok':>6} {'429s':>6} {'errors':>6} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'peak RSS MiB':>13}"
        print(hdr)
        print("-" * len(hdr))
        errors = []
        for conc in levels:
            st, wall = run_level(host, port, headers, body, conc, args.requests, args.seconds, args.timeout)
            hwm = read_kib(pid, "VmHWM") if pid else None
            rss = f"{hwm / 1024:.0f}" if hwm is not None else "n/a"
            done = st.ok + st.too_many + st.errors
            print(f"{conc:>5} {done:>8} {st.ok:>6} {st.too_many:>6} {st.errors:>6} {st.ok / wall:>8.2f} "
                  f"{percentile(st.lat_ok, 0.50) * 1e3:>9.1f} {percentile(st.lat_ok, 0.99) * 1e3:>9.1f} {rss:>13}", flush=True)
            if st.first_error:
                errors.append(f"conc {conc}: first error: {st.first_error}")
            if proc is not None and proc.poll() is not None:
                errors.append(f"server exited with status {proc.returncode} (log: {log_path})")
                break
        for e in errors:
            print(f"# {e}")
        return 1 if errors else 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
