#!/usr/bin/env python3
"""Backbone geometry of PDB files, read from their ATOM records with nothing but the standard
library: an independent check of what `esm3` writes (it shares no code with esm3_protein::relax).

    python3 tools/check_backbone.py designs/*.pdb
"""
import math
import sys


def check(path):
    atoms = {}
    for line in open(path):
        if line.startswith("ATOM"):
            name, res = line[12:16].strip(), int(line[22:26])
            atoms[(res, name)] = tuple(float(line[30 + 8 * k:38 + 8 * k]) for k in range(3))
    res = sorted({r for r, _ in atoms})
    d = math.dist
    ca = [atoms[(r, "CA")] for r in res]
    ca_ca = [d(a, b) for a, b in zip(ca, ca[1:])]
    in_range = sum(abs(x - 3.8) <= 0.2 for x in ca_ca) / len(ca_ca)
    clashes = sum(1 for i in range(len(ca)) for j in range(i + 1, len(ca)) if d(ca[i], ca[j]) < 3.0)
    n_ca = [d(atoms[(r, "N")], atoms[(r, "CA")]) for r in res]
    c_n = [d(atoms[(r, "C")], atoms[(s, "N")]) for r, s in zip(res, res[1:])]
    print(f"{path}: Cα–Cα in 3.8±0.2 Å {in_range:.3f}, Cα pairs < 3 Å {clashes}, "
          f"N–Cα {min(n_ca):.3f}–{max(n_ca):.3f} Å, C–N {min(c_n):.3f}–{max(c_n):.3f} Å")


for p in sys.argv[1:]:
    check(p)
