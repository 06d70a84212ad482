#!/usr/bin/env python3
"""torch's CPU GEMM (MKL) on the trunk's Linear shapes, GFLOP/s; the counterpart of
`cargo run --release -p esm3-nn --example gemm_bench` (dev only).

    tools/reference/.venv/bin/python tools/bench/gemm_torch.py [--threads 2] [--reps 5]
"""
import argparse
import time

import torch

# (name, out, in) of the esm3-sm-open-v1 trunk's Linear layers, as in gemm_bench.rs.
SHAPES = [("attn qkv", 4608, 1536), ("attn out", 1536, 1536), ("geom proj", 3840, 1536),
          ("geom out", 1536, 768), ("ffn up", 8192, 1536), ("ffn down", 1536, 4096)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rows", type=int, nargs="+", default=[64, 256, 512])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    print("| layer | M | N | K | torch f32 GFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    total_t = total_f = 0.0
    for m in args.rows:
        for name, n, k in SHAPES:
            x, lin = torch.randn(1, m, k), torch.nn.Linear(k, n)
            with torch.no_grad():
                lin(x)
                ts = []
                for _ in range(args.reps):
                    t = time.perf_counter()
                    lin(x)
                    ts.append(time.perf_counter() - t)
            t = sorted(ts)[len(ts) // 2]
            f = 2.0 * m * n * k
            total_t, total_f = total_t + t, total_f + f
            print(f"| {name} | {m} | {n} | {k} | {f / t / 1e9:.1f} |")
    print(f"| all | | | | {total_f / total_t / 1e9:.1f} |")


if __name__ == "__main__":
    main()
