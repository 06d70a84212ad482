#!/usr/bin/env python3
"""Throughput of the CLI jobs, batched vs one record at a time: residues per second.

    python3 tools/bench/throughput_bench.py                      # bundled model, 2 threads
    python3 tools/bench/throughput_bench.py --model-dir DIR --records 24 --batch-size 8 --json out.json

Standard library only (no torch needed): it runs the release binary `esm3` on real chains of
/work/shared/data/structures (CHAINS.tsv: the first --records full-atom chains of 40..--max-len
residues with only the 20 standard letters, in file order, spread over lengths) for

  fold          FASTA of those sequences -> structures (structure track, 20 steps by default)
  inverse-fold  their PDB/mmCIF files (first protein chain of each) -> sequences
  embed         FASTA -> per-residue and mean embeddings
  score         FASTA -> pseudo-log-likelihood (one masked copy per residue; the batch is copies)
  generate      --length --gen-length, -n --records designs (sequence then structure)

each twice: `--batch-size 1` and `--batch-size B`, same seed. Residues are counted from the
outputs (fold/inverse-fold/generate) or the inputs (embed/score); the time is the wall time of
the whole command (model load included; for the bundled model that is ~0.1 s). The batched run
must give the same files as the single run (fold, inverse-fold, generate: byte for byte;
embed/score: equal within 1e-4), which the table says. Nothing here is asserted: it is a
benchmark, the numbers are for the README.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STRUCTURES = Path(os.environ.get("ESM3RS_STRUCTURES", "/work/shared/data/structures"))
STANDARD = set("ACDEFGHIKLMNPQRSTVWY")


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def pick_chains(n: int, max_len: int) -> list[dict]:
    """First `n` usable chains in CHAINS.tsv order after bucketing by length, so the set spans
    short to long; one chain per file (inverse-fold designs each file's first protein chain)."""
    rows = []
    seen_files = set()
    with open(STRUCTURES / "CHAINS.tsv") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            seq = r["sequence_observed"]
            if r["ca_only"] != "False" or not 40 <= len(seq) <= max_len or set(seq) - STANDARD:
                continue
            if r["file"] in seen_files:
                continue
            seen_files.add(r["file"])
            rows.append({"file": r["file"], "chain": r["chain"], "sequence": seq})
    # Round-robin over four length buckets so every length range is represented.
    edges = [40 + (max_len - 40) * k / 4 for k in range(5)]
    buckets = [[r for r in rows if edges[k] <= len(r["sequence"]) < edges[k + 1] + (k == 3)] for k in range(4)]
    picked = []
    while len(picked) < n and any(buckets):
        for b in buckets:
            if b and len(picked) < n:
                picked.append(b.pop(0))
    return picked


def read_fasta(path: Path) -> list[tuple[str, str]]:
    out, name, seq = [], None, []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            if name is not None:
                out.append((name, "".join(seq)))
            name, seq = line[1:].split()[0], []
        elif line.strip():
            seq.append(line.strip())
    if name is not None:
        out.append((name, "".join(seq)))
    return out


def safetensors_arrays(path: Path) -> dict[str, list[float]]:
    """The f32 tensors of a safetensors file, flattened (standard library only)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        out[k] = struct.unpack(f"<{(b - a) // 4}f", raw[base + a:base + b])
    return out


def max_diff_safetensors(a: Path, b: Path) -> float:
    x, y = safetensors_arrays(a), safetensors_arrays(b)
    if x.keys() != y.keys():
        return math.inf
    return max((max(abs(p - q) for p, q in zip(x[k], y[k])) for k in x if x[k]), default=0.0)


def max_diff_tsv(a: Path, b: Path) -> float:
    worst = 0.0
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    if len(la) != len(lb):
        return math.inf
    for ra, rb in zip(la, lb):
        for ca, cb in zip(ra.split("\t"), rb.split("\t")):
            if ca == cb:
                continue
            try:
                worst = max(worst, abs(float(ca) - float(cb)))
            except ValueError:
                return math.inf
    return worst


def same_tree(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all((a / p).read_bytes() == (b / p).read_bytes() for p in fa)


def run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed (rc {p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--esm3", default=str(REPO / "target" / "release" / "esm3"))
    ap.add_argument("--model-dir", default=str(REPO / "models" / "esm3-rs-small"))
    ap.add_argument("--records", type=int, default=16, help="chains (and designs) per job (default 16)")
    ap.add_argument("--max-len", type=int, default=300, help="longest chain used (default 300)")
    ap.add_argument("--gen-length", type=int, default=120, help="residues per generated design (default 120)")
    ap.add_argument("--batch-size", type=int, default=8, help="the batched runs' --batch-size (default 8)")
    ap.add_argument("--threads", type=int, default=2, help="RAYON_NUM_THREADS (default 2)")
    ap.add_argument("--jobs", nargs="+", default=["fold", "inverse-fold", "embed", "score", "generate"])
    ap.add_argument("--json", help="also write every number to this file")
    args = ap.parse_args()

    esm3 = Path(args.esm3).resolve()
    if not esm3.is_file():
        sys.exit(f"{esm3} not found: run `cargo build --release` first")
    model_dir = Path(args.model_dir).resolve()
    env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads)}
    chains = pick_chains(args.records, args.max_len)
    if len(chains) < args.records:
        log(f"only {len(chains)} usable chains found")
    work = Path(tempfile.mkdtemp(prefix="esm3-throughput-"))
    fasta = work / "in.fasta"
    fasta.write_text("".join(f">{c['file'].replace('/', '_')}_{c['chain']}\n{c['sequence']}\n" for c in chains))
    lengths = [len(c["sequence"]) for c in chains]
    log(f"{len(chains)} chains, {sum(lengths)} residues (lengths {min(lengths)}..{max(lengths)}), "
        f"model {model_dir}, {args.threads} threads; scratch {work}")

    model = ["--model-dir", str(model_dir)]
    jobs = {
        "fold": lambda out, b: [str(esm3), "fold", str(fasta), "-o", str(out), "--batch-size", str(b)] + model,
        "inverse-fold": lambda out, b: [str(esm3), "inverse-fold", *[str(STRUCTURES / c["file"]) for c in chains],
                                        "-o", str(out / "designs.fasta"), "--batch-size", str(b)] + model,
        "embed": lambda out, b: [str(esm3), "embed", str(fasta), "-o", str(out / "emb.safetensors"),
                                 "--batch-size", str(b)] + model,
        "score": lambda out, b: [str(esm3), "score", str(fasta), "-o", str(out / "scores.tsv"),
                                 "--batch-size", str(b)] + model,
        "generate": lambda out, b: [str(esm3), "generate", "--length", str(args.gen_length), "-n", str(args.records),
                                    "-o", str(out), "--batch-size", str(b)] + model,
    }
    rows = []
    for job in args.jobs:
        row = {"job": job}
        for tag, b in (("single", 1), ("batched", args.batch_size)):
            out = work / job / tag
            out.mkdir(parents=True)
            cmd = jobs[job](out, b)
            wall = run(cmd, env)
            if job in ("fold", "generate"):
                residues = sum(len(s) for f in out.glob("*.fasta") for _, s in read_fasta(f))
            elif job == "inverse-fold":
                residues = sum(len(s) for _, s in read_fasta(out / "designs.fasta"))
            else:
                residues = sum(lengths)
            row[tag] = {"batch_size": b, "wall_s": wall, "residues": residues, "residues_per_s": residues / wall,
                        "command": f"RAYON_NUM_THREADS={args.threads} " + " ".join(cmd)}
            log(f"{job:13s} batch {b}: {wall:7.2f} s, {residues} residues, {residues / wall:8.1f} residues/s")
        single, batched = work / job / "single", work / job / "batched"
        if job == "embed":
            d = max_diff_safetensors(single / "emb.safetensors", batched / "emb.safetensors")
            row["same_output"] = f"max |Δ| {d:.1e}"
        elif job == "score":
            d = max_diff_tsv(single / "scores.tsv", batched / "scores.tsv")
            row["same_output"] = f"max |Δ| {d:.1e}"
        else:
            row["same_output"] = "identical files" if same_tree(single, batched) else "FILES DIFFER"
        row["speedup"] = row["batched"]["residues_per_s"] / row["single"]["residues_per_s"]
        rows.append(row)

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
    lines = [
        f"| job | records | residues | batch 1: s | batch 1: residues/s | batch {args.batch_size}: s | "
        f"batch {args.batch_size}: residues/s | batched / single | batched output |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s, b = r["single"], r["batched"]
        lines.append(f"| {r['job']} | {args.records} | {s['residues']} | {s['wall_s']:.2f} | {s['residues_per_s']:.1f} | "
                     f"{b['wall_s']:.2f} | {b['residues_per_s']:.1f} | {r['speedup']:.2f} | {r['same_output']} |")
    lines += ["", f"Model {model_dir.name}; {len(chains)} chains of {min(lengths)}..{max(lengths)} residues "
              f"(generate: {args.records} × {args.gen_length}); RAYON_NUM_THREADS={args.threads}; {cpu}, "
              f"{os.cpu_count()} logical CPUs; esm3-rs git {head}; wall time of each whole command."]
    md = "\n".join(lines)
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "chains": chains, "rows": rows,
                                               "machine": {"cpu": cpu, "logical_cpus": os.cpu_count(),
                                                           "kernel": platform.release()},
                                               "git_head": head}, indent=1) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
