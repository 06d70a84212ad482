#!/usr/bin/env python3
"""How many natural chains the design complexity check flags.

An independent re-implementation in plain Python of esm3_protein::complexity (SEG's trigger
stage: 12-residue windows under 2.2 bits; longest one-letter run), run over the ProMod3
chains in ../shared/data. It prints the flagged fractions for the default thresholds. With
--write-fixture FILE it also writes `pdb_chain<TAB>fraction<TAB>longest_run` for every flagged
chain and every 50th other one: the oracle the Rust unit test
(esm3-protein complexity::tests::agrees_with_the_python_oracle_on_promod3_chains) compares to.

usage: python3 tools/complexity_calibration.py [--write-fixture fixtures/complexity/promod3_oracle.tsv]
"""
import argparse, gzip, math, os
from collections import Counter

W, K1 = 12, 2.2
MAX_FRACTION, MAX_RUN = 0.2, 6


def entropy(s):
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def measure(seq):
    s = seq.upper()
    covered = [False] * len(s)
    if len(s) >= W:
        for i in range(len(s) - W + 1):
            if entropy(s[i:i + W]) < K1:
                for k in range(i, i + W):
                    covered[k] = True
    elif s and entropy(s) < K1:
        covered = [True] * len(s)
    run = longest = 0
    for i, c in enumerate(s):
        run = run + 1 if i and s[i - 1] == c else 1
        longest = max(longest, run)
    return (sum(covered) / len(s) if s else 0.0), longest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-fixture")
    ap.add_argument("--db", default=os.path.join(os.path.dirname(__file__), "../../shared/data/promod3_structdb/chains.tsv.gz"))
    a = ap.parse_args()
    seqs = {}
    with gzip.open(a.db, "rt") as f:
        next(f)
        for line in f:
            p = line.rstrip("\n").split("\t")
            seqs[f"{p[1]}_{p[2]}"] = p[5]
    res = {k: measure(s) for k, s in seqs.items()}
    n = len(res)
    by_frac = sum(fr > MAX_FRACTION for fr, _ in res.values())
    by_run = sum(r > MAX_RUN for _, r in res.values())
    either = sum(fr > MAX_FRACTION or r > MAX_RUN for fr, r in res.values())
    print(f"chains\t{n}")
    print(f"low-complexity fraction > {MAX_FRACTION}\t{by_frac}\t{100 * by_frac / n:.2f}%")
    print(f"homopolymer run > {MAX_RUN}\t{by_run}\t{100 * by_run / n:.2f}%")
    print(f"flagged (either)\t{either}\t{100 * either / n:.2f}%")
    print(f"mean low-complexity fraction\t{sum(fr for fr, _ in res.values()) / n:.4f}")
    if a.write_fixture:
        os.makedirs(os.path.dirname(a.write_fixture) or ".", exist_ok=True)
        with open(a.write_fixture, "w") as f:
            for i, (k, (fr, run)) in enumerate(res.items()):
                if fr > MAX_FRACTION or run > MAX_RUN or i % 50 == 0:
                    f.write(f"{k}\t{fr!r}\t{run}\n")


if __name__ == "__main__":
    main()
