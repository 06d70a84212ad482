#!/usr/bin/env python3
"""How far `--dtype bf16` lands from f32 (dev only; no test asserts these numbers).

Two measurements, both with this repository's `esm3` binary:

1. Trunk logits at the esm3-sm-open-v1 size (the random-weight model and inputs that
   `forward_bench.py` writes under bench-out/; run it first): `esm3 forward` in f32 and in bf16 on
   the same inputs; per output the max |bf16 - f32| (and max |f32| for scale), and for every
   `*_logits` the top-1 agreement over positions (sequence tokens, structure tokens, SS8, SASA...).
2. Folding with the bundled trained model on 45 real globin sequences
   (`../shared/data/sequences/small_sets/hmmer-examples__globins45.fa.gz`): `esm3 fold` in f32 and in
   bf16 (same seed, argmax decoding); per record the pLDDT and pTM difference and the Cα RMSD
   between the two predicted structures after superposition.

    tools/reference/.venv/bin/python tools/bench/bf16_accuracy.py [--lengths 64 256 512] [--json FILE]

Needs numpy and safetensors (the reference venv has both). Prints markdown tables.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench-out"
GLOBINS = REPO.parent / "shared" / "data" / "sequences" / "small_sets" / "hmmer-examples__globins45.fa.gz"


def run(cmd, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stderr[-2000:]}")


def trunk(esm3, lengths, threads, tmp):
    model = BENCH / "esm3_sm_size"
    rows = []
    for L in lengths:
        inp = BENCH / "forward_bench" / f"L{L}" / "input.safetensors"
        if not inp.exists():
            sys.exit(f"{inp} missing: run tools/bench/forward_bench.py --lengths {L} first")
        outs = {}
        for dtype in ("f32", "bf16"):
            out = tmp / f"trunk_{L}_{dtype}.safetensors"
            run([esm3, "forward", "--model-dir", model, "--input", inp, "--output", out, "--dtype", dtype], threads)
            outs[dtype] = load_file(str(out))
        for name in sorted(outs["f32"]):
            a, b = outs["f32"][name].astype(np.float64), outs["bf16"][name].astype(np.float64)
            row = {"L": L, "output": name, "max_abs_diff": float(np.abs(a - b).max()),
                   "max_abs_f32": float(np.abs(a).max())}
            if name.endswith("_logits"):
                row["top1_agreement"] = float((a.argmax(-1) == b.argmax(-1)).mean())
            rows.append(row)
    return rows


def ca_and_plddt(pdb: Path):
    xyz, b = [], []
    for line in pdb.read_text().splitlines():
        if line.startswith("ATOM") and line[12:16].strip() == "CA":
            xyz.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
            b.append(float(line[60:66]))
    return np.array(xyz), np.array(b)


def kabsch_rmsd(p, q):
    p, q = p - p.mean(0), q - q.mean(0)
    u, _, vt = np.linalg.svd(p.T @ q)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1, 1, d]) @ vt
    return float(np.sqrt(((p @ r - q) ** 2).sum(1).mean()))


def fold(esm3, threads, tmp):
    fasta = tmp / "globins45.fa"
    fasta.write_bytes(gzip.decompress(GLOBINS.read_bytes()))
    dirs = {}
    for dtype in ("f32", "bf16"):
        dirs[dtype] = tmp / f"fold_{dtype}"
        run([esm3, "fold", fasta, "-o", dirs[dtype], "--dtype", dtype, "--seed", "0"], threads)
    records = []
    for j in sorted(dirs["f32"].glob("*.json")):
        a, b = json.loads(j.read_text()), json.loads((dirs["bf16"] / j.name).read_text())
        ca_a, pl_a = ca_and_plddt(dirs["f32"] / a["structure_file"])
        ca_b, pl_b = ca_and_plddt(dirs["bf16"] / b["structure_file"])
        records.append({"name": a["name"], "length": a["length"],
                        "mean_plddt_f32": a["mean_plddt"], "mean_plddt_bf16": b["mean_plddt"],
                        "ptm_f32": a["ptm"], "ptm_bf16": b["ptm"],
                        "max_residue_plddt_diff": float(np.abs(pl_a - pl_b).max()) / 100.0,
                        "ca_rmsd": kabsch_rmsd(ca_a, ca_b)})
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--esm3", default=str(REPO / "target" / "release" / "esm3"))
    ap.add_argument("--json", help="also write every number here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        trunk_rows = trunk(args.esm3, args.lengths, args.threads, tmp)
        fold_rows = fold(args.esm3, args.threads, tmp)
    print("Trunk, esm3-sm-open-v1 size (random weights), bf16 vs f32:\n")
    print("| L | output | max abs diff | max abs f32 | top-1 agreement |")
    print("|---:|---|---:|---:|---:|")
    for r in trunk_rows:
        top1 = f"{r['top1_agreement']:.4f}" if "top1_agreement" in r else ""
        print(f"| {r['L']} | {r['output']} | {r['max_abs_diff']:.3g} | {r['max_abs_f32']:.3g} | {top1} |")
    d_pl = np.array([abs(r["mean_plddt_f32"] - r["mean_plddt_bf16"]) for r in fold_rows])
    d_ptm = np.array([abs(r["ptm_f32"] - r["ptm_bf16"]) for r in fold_rows])
    rmsd = np.array([r["ca_rmsd"] for r in fold_rows])
    res = np.array([r["max_residue_plddt_diff"] for r in fold_rows])
    print(f"\nFolding {len(fold_rows)} globins with the bundled model, bf16 vs f32 (|difference| per record):\n")
    print("| quantity | median | max |")
    print("|---|---:|---:|")
    print(f"| mean pLDDT | {np.median(d_pl):.4f} | {d_pl.max():.4f} |")
    print(f"| per-residue pLDDT (max over residues) | {np.median(res):.4f} | {res.max():.4f} |")
    print(f"| pTM | {np.median(d_ptm):.4f} | {d_ptm.max():.4f} |")
    print(f"| Cα RMSD between the two predictions, Å | {np.median(rmsd):.3f} | {rmsd.max():.3f} |")
    print(f"\nIdentical structures (Cα RMSD < 0.01 Å): {int((rmsd < 0.01).sum())} of {len(rmsd)}.")
    if args.json:
        Path(args.json).write_text(json.dumps({"trunk": trunk_rows, "fold": fold_rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
