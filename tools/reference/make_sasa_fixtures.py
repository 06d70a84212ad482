#!/usr/bin/env python3
"""Reference fixtures for esm3-rs's geometry (fixtures/reference/geometry/):
* sasa_biotite.tsv: per-residue SASA of real chains exactly as the reference computes it;
* tokenizers.json: SS8 / SASA tokenizer ids, decodes and midpoints;
* metrics.json: the reference's LDDT (CA, all-atom), GDT-TS and RMSD on real chain pairs.

`ProteinChain.from_pdb(path, chain_id).sasa()` (esm 3.2.1.post1) = biotite.structure.sasa with its
defaults (ProtOr radii, probe 1.4, 1000 Fibonacci points) on the atom37 atoms, summed per residue.
Chains are a deterministic subset of PDB-format files in shared/data/structures whose polymer has
no HETATM residue (the reference reader drops hetero residues, ours keeps MSE), so both sides see
the same atoms. Output: fixtures/reference/geometry/sasa_biotite.tsv (file, chain, resnum, icode,
sasa with 4 decimals).

Run: tools/reference/.venv/bin/python tools/reference/make_sasa_fixtures.py [--skip-sasa]
(--skip-sasa writes only tokenizers.json and metrics.json; the SASA table takes a minute.)
"""
import csv, gzip, os, sys, tempfile

import numpy as np
from esm.utils.structure.protein_chain import ProteinChain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "..", "shared", "data", "structures")
OUT = os.path.join(ROOT, "fixtures", "reference", "geometry", "sasa_biotite.tsv")
N_CHAINS = 24
MAX_RESIDUES = 400


def main():
    rows = list(csv.DictReader(open(os.path.join(DATA, "MANIFEST.tsv")), delimiter="\t"))
    rows = [r for r in rows if r["format"] == "pdb" and not r["file"].startswith("format_pairs/")]
    rows.sort(key=lambda r: r["file"])
    out = open(OUT, "w")
    out.write("file\tchain\tresnum\ticode\tsasa\n")
    n = 0
    for r in rows[::5]:
        if n >= N_CHAINS:
            break
        text = gzip.open(os.path.join(DATA, r["file"]), "rt", errors="replace").read()
        lines = [l for l in text.splitlines() if l.startswith(("ATOM", "HETATM", "TER", "MODEL", "ENDMDL", "END"))]
        if any(l.startswith("HETATM") and l[17:20] not in ("HOH", "WAT") for l in lines):
            continue
        chain = next((l[21] for l in lines if l.startswith("ATOM")), None)
        if chain is None or chain == " ":
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".pdb") as tmp:
            tmp.write("\n".join(lines) + "\n")
            tmp.flush()
            try:
                pc = ProteinChain.from_pdb(tmp.name, chain_id=chain)
                if len(pc) > MAX_RESIDUES or len(pc) < 20:
                    continue
                sasa = pc.sasa()
            except Exception as e:  # reference cannot handle the file: skip it
                print(f"skip {r['file']}: {e!r}"[:200], file=sys.stderr)
                continue
        for resnum, icode, s in zip(pc.residue_index, pc.insertion_code, sasa):
            out.write(f"{r['file']}\t{chain}\t{resnum}\t{icode}\t{s:.4f}\n")
        n += 1
        print(r["file"], chain, len(pc), file=sys.stderr)
    out.close()
    print(f"wrote {n} chains to {OUT}", file=sys.stderr)


def tokenizers():
    """Reference ids for the SS8 and SASA tokenizers: fixtures/reference/geometry/tokenizers.json."""
    import json
    from esm.tokenization.sasa_tokenizer import SASADiscretizingTokenizer
    from esm.tokenization.ss_tokenizer import SecondaryStructureTokenizer
    from esm.utils.constants import esm3 as C
    from esm.utils.encoding import tokenize_sasa, tokenize_secondary_structure

    ss, st = SecondaryStructureTokenizer("ss8"), SASADiscretizingTokenizer()
    ss_inputs = ["GHITEBSC", "CCHHHH_EE<pad>TT", "", "HHHHHHHHHHGGGIIIII"]
    b = C.SASA_DISCRETIZATION_BOUNDARIES
    values = [0.0, -1.0, 1e-3, 300.0, 1000.0] + b + [x + 1e-4 for x in b] + [x - 1e-4 for x in b]
    sasa_inputs = [values, [None, 12.5, None, 0.8]]
    out = {
        "ss8_vocab": ss.vocab,
        "ss8": [{"input": s, "ids": tokenize_secondary_structure(s, ss).tolist()} for s in ss_inputs],
        "ss8_decode": [{"ids": x["ids"], "text": ss.decode(torch.tensor(x["ids"][1:-1]))} for x in
                       [{"ids": tokenize_secondary_structure(s, ss).tolist()} for s in ss_inputs]],
        "sasa_vocab": st.vocab,
        "sasa": [{"input": v, "ids": tokenize_sasa(v, st).tolist()} for v in sasa_inputs],
        "sasa_midpoints": st.midpoints_tensor.tolist(),
    }
    path = os.path.join(ROOT, "fixtures", "reference", "geometry", "tokenizers.json")
    json.dump(out, open(path, "w"), indent=1, default=lambda x: None)
    print(f"wrote {path}", file=sys.stderr)


def metrics():
    """Reference metric values on real chain pairs paired residue by residue:
    fixtures/reference/geometry/metrics.json (compute_lddt_ca, compute_lddt on atom37 with the
    true structure's mask, compute_gdt_ts on CA, compute_affine_and_rmsd on CA)."""
    import json
    from esm.utils.structure.metrics import compute_gdt_ts, compute_lddt, compute_lddt_ca
    from esm.utils.structure.protein_structure import compute_affine_and_rmsd

    pairs = [("emboss-test/2hhb.ent.gz", "r-bioc-rcpi/4HHB.pdb.gz", "A"),
             ("emboss-test/2hhb.ent.gz", "r-bioc-rcpi/4HHB.pdb.gz", "B"),
             ("theseus-examples/6ldh_A.pdb.gz", "theseus-examples/1ldm_A.pdb.gz", "A")]
    out = []
    for model_file, ref_file, chain in pairs:
        chains = []
        for rel in (model_file, ref_file):
            text = gzip.open(os.path.join(DATA, rel), "rt", errors="replace").read()
            with tempfile.NamedTemporaryFile("w", suffix=".pdb") as tmp:
                tmp.write(text)
                tmp.flush()
                chains.append(ProteinChain.from_pdb(tmp.name, chain_id=chain))
        a, b = chains
        # Pair by author residue number (both sides hold the same residues here).
        common = sorted(set(a.residue_index.tolist()) & set(b.residue_index.tolist()))
        ia = [a.residue_index.tolist().index(r) for r in common]
        ib = [b.residue_index.tolist().index(r) for r in common]
        pa = torch.tensor(a.atom37_positions[ia], dtype=torch.float32)
        pb = torch.tensor(b.atom37_positions[ib], dtype=torch.float32)
        mb = torch.tensor(b.atom37_mask[ib], dtype=torch.bool)
        # NaN coordinates would poison the masked sums, so missing atoms are zeroed first.
        pa0, pb0 = torch.nan_to_num(pa), torch.nan_to_num(pb)
        lddt_ca = compute_lddt_ca(pa0[None], pb0[None], mb[None].float(), per_residue=False).item()
        lddt_all = compute_lddt(pa0.reshape(1, -1, 3), pb0.reshape(1, -1, 3), mb.reshape(1, -1, 1).float(),
                                per_residue=False).item()
        ca_a, ca_b = pa[:, 1], pb[:, 1]
        gdt = compute_gdt_ts(ca_a[None], ca_b[None], reduction="per_sample").item()
        _, rmsd = compute_affine_and_rmsd(ca_a[None], ca_b[None])
        out.append({"model": model_file, "reference": ref_file, "chain": chain, "residues": common,
                    "lddt_ca": lddt_ca, "lddt_all_atom": lddt_all, "gdt_ts": gdt, "rmsd_ca": rmsd.item()})
        print(model_file, ref_file, chain, out[-1]["lddt_ca"], lddt_all, gdt, rmsd.item(), file=sys.stderr)
    path = os.path.join(ROOT, "fixtures", "reference", "geometry", "metrics.json")
    json.dump(out, open(path, "w"), indent=1)


if __name__ == "__main__":
    import torch
    metrics()
    tokenizers()
    if "--skip-sasa" not in sys.argv:
        main()
