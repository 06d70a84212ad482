#!/usr/bin/env python
"""Parity fixtures for multi-chain proteins through the reference's `ProteinComplex` path.

    tools/reference/.venv/bin/python tools/reference/make_complex_fixtures.py

Reference `esm` 3.2.1.post1, CPU, float32, one thread. Models: the random-weight ESM3
`fixtures/reference/esm3_d64/model` (loaded as make_generation_fixtures.load_model does) with the
random VQ-VAE `fixtures/reference/esm3_structure_encoder_d64/model` and
`fixtures/reference/esm3_structure_decoder_d64/model` attached as `structure_encoder_fn` /
`structure_decoder_fn`. Per case, the user-level path

    ProteinComplex  ->  ESMProtein.from_protein_complex  ->  ESM3.encode  ->  ESM3.logits
                    ->  ESM3.decode  ->  ESMProtein.to_protein_complex

is run and everything it produces is written to one JSON file:

    fixtures/reference/complex/cases.json

Layout (N = residues + chain-break rows of the complex, T = N + 2 token positions, BOS/EOS
included; atom37 lists are [rows][37][3]):

    {"package", "models", "float_encoding", "structure_logits_columns", "findings": [...],
     "cases": {<name>: {
        "note", "construction": str (the exact calls), "source": [{file, chain_id, n_residues}],
        "complex": {id, sequence, chain_id [N] ints, entity_id [N], sym_id [N], residue_index [N],
                    insertion_code [N], atom37_mask [N][37] 0/1, confidence [N],
                    metadata: {chain_boundaries, chain_lookup, entity_lookup}},
        "protein": {sequence, coordinates [N][37][3] (raw PDB frame), secondary_structure, sasa,
                    function_annotations, plddt, ptm, potential_sequence_of_concern,
                    chain_break_rows [..]},
        "tensor": {sequence [T], structure [T], coordinates [T][37][3] (normalised), coordinates_rows,
                   secondary_structure, sasa, function, residue_annotations,
                   potential_sequence_of_concern},            (None tracks written as null)
        "encoder_call": {residue_index [N] (what tokenize_structure passed the VQ-VAE encoder),
                         plddt [N]},
        "forward_inputs": {chain_id, sequence_id, per_res_plddt [T], average_plddt,
                           structure_tokens_after_forward_fill [T], affine_mask [T] 0/1},
        "logits": {sequence [T][64], structure_first8 [T][8] (columns 0..7 of [T][4096]),
                   structure_shape [T, 4096], embeddings [T][64]},
        "decoded": {sequence, coordinates [N][37][3], plddt [N], ptm},
        "decoded_complex": {n_chains, chains: [{chain_id, entity_id, sequence, n_residues,
                            residue_index}], complex: {sequence, chain_id, residue_index,
                            metadata}},
        "input_complex_roundtrip": same summary for `protein.to_protein_complex()` (no decode)
                                   and with copy_annotations_from_ground_truth=complex}}}

Non-finite floats are the strings "inf", "-inf", "nan".
"""
from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path

import attr
import numpy as np
import safetensors.torch
import torch

import esm
from esm.models.vqvae import StructureTokenDecoder, StructureTokenEncoder
from esm.sdk.api import ESMProtein, ESMProteinTensor, LogitsConfig
from esm.utils.structure.affine3d import build_affine3d_from_coordinates
from esm.utils.structure.protein_chain import ProteinChain
from esm.utils.structure.protein_complex import ProteinComplex

import make_generation_fixtures as mg

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "fixtures" / "reference" / "complex"
STRUCTURES = Path("/work/shared/data/structures")
if not STRUCTURES.is_dir():
    STRUCTURES = REPO.parent / "shared" / "data" / "structures"
ENC_DIR = REPO / "fixtures" / "reference" / "esm3_structure_encoder_d64" / "model"
DEC_DIR = REPO / "fixtures" / "reference" / "esm3_structure_decoder_d64" / "model"
STRUCT_COLS = 8

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")


def load_vqvae(cls, mdir: Path):
    cfg = {k: v for k, v in json.loads((mdir / "config.json").read_text()).items() if k != "model_type"}
    m = cls(**cfg)
    m.load_state_dict(safetensors.torch.load_file(str(mdir / "model.safetensors")))
    return m.float().eval()


def load_model():
    model = mg.load_model()
    enc = load_vqvae(StructureTokenEncoder, ENC_DIR)
    dec = load_vqvae(StructureTokenDecoder, DEC_DIR)
    model.structure_encoder_fn = lambda device: enc
    model.structure_decoder_fn = lambda device: dec
    # ESM3.decode fetches the function decoder even when the function track is None;
    # decode_protein_tensor accepts None there, so no function decoder is loaded.
    model.function_decoder_fn = lambda device: None
    return model


def pdb_text(file: str) -> str:
    with gzip.open(STRUCTURES / file, "rt") as fh:
        return fh.read()


def enc(x):
    """Tensor / array -> nested lists; non-finite floats as strings."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bool:
            x = x.long()
        elif x.is_floating_point():
            x = x.to(torch.float32)
        x = x.tolist()
    elif isinstance(x, np.ndarray):
        if x.dtype == bool:
            x = x.astype(np.int64)
        elif np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        x = x.tolist()
    elif isinstance(x, (np.floating,)):
        x = float(x)
    elif isinstance(x, (np.integer,)):
        x = int(x)
    if isinstance(x, (list, tuple)):
        return [enc(v) for v in x]
    if isinstance(x, dict):
        return {str(k): enc(v) for k, v in x.items()}
    if isinstance(x, float):
        if x != x:
            return "nan"
        if x in (float("inf"), float("-inf")):
            return "inf" if x > 0 else "-inf"
    return x


def complex_record(pc: ProteinComplex, full: bool = True) -> dict:
    d = {
        "id": pc.id,
        "sequence": pc.sequence,
        "chain_id": enc(pc.chain_id),
        "entity_id": enc(pc.entity_id),
        "sym_id": enc(pc.sym_id),
        "residue_index": enc(pc.residue_index),
        "insertion_code": [str(s) for s in pc.insertion_code.tolist()],
        "confidence": enc(np.asarray(pc.confidence, dtype=np.float32)),
        "metadata": {
            "chain_boundaries": enc([list(b) for b in pc.metadata.chain_boundaries]),
            "chain_lookup": enc(pc.metadata.chain_lookup),
            "entity_lookup": enc(pc.metadata.entity_lookup),
        },
    }
    if full:
        d["atom37_mask"] = enc(pc.atom37_mask)
    return d


def split_record(pc: ProteinComplex) -> dict:
    chains = []
    for ch in pc.chain_iter():
        chains.append({
            "chain_id": ch.chain_id,
            "entity_id": enc(ch.entity_id),
            "sequence": ch.sequence,
            "n_residues": len(ch.sequence),
            "residue_index": enc(ch.residue_index),
        })
    return {"n_chains": len(chains), "chains": chains, "complex": complex_record(pc, full=False)}


def protein_record(p: ESMProtein) -> dict:
    d = {}
    for f in attr.fields(ESMProtein):
        v = getattr(p, f.name)
        if f.name == "function_annotations" and v is not None:
            v = [repr(a) for a in v]
        d[f.name] = enc(v) if not isinstance(v, str) else v
    d["chain_break_rows"] = [i for i, c in enumerate(p.sequence) if c == "|"]
    return d


def tensor_record(t: ESMProteinTensor) -> dict:
    d = {}
    for f in attr.fields(ESMProteinTensor):
        d[f.name] = enc(getattr(t, f.name))
    d["coordinates_rows"] = None if t.coordinates is None else int(t.coordinates.shape[0])
    return d


def build_cases() -> dict:
    """(complex, construction string, source list, note) per case."""
    out = {}
    f2beg = "format_pairs/biopython/2BEG.pdb.gz"
    f1tii = "pymol-data/1tii.pdb.gz"

    # 1. two chains, one ProteinChain.from_pdb per chain, joined with ProteinComplex.from_chains
    chains = [ProteinChain.from_pdb(io.StringIO(pdb_text(f2beg)), chain_id=c, id="2BEG") for c in "AB"]
    out["2beg_AB_from_chains"] = (
        ProteinComplex.from_chains(chains),
        "ProteinComplex.from_chains([ProteinChain.from_pdb(io.StringIO(text), chain_id=c, id='2BEG') "
        "for c in 'AB'])",
        [(f2beg, c) for c in "AB"],
        "2BEG (NMR, model 1) chains A, B: 26 + 26 residues (PDB numbering 17..42), one chain break",
    )

    # 2. three chains, whole file read with ProteinComplex.from_pdb, chains picked with a
    #    boolean mask over the complex's integer chain_id (ProteinComplex.__getitem__)
    full = ProteinComplex.from_pdb(io.StringIO(pdb_text(f2beg)), id="2BEG")
    keep = [k for k, v in full.metadata.chain_lookup.items() if v in ("A", "B", "C")]
    sel = full[np.isin(full.chain_id, keep)]
    ref = ProteinComplex.from_chains(
        [ProteinChain.from_pdb(io.StringIO(pdb_text(f2beg)), chain_id=c, id="2BEG") for c in "ABC"])
    assert sel.sequence == ref.sequence
    assert np.array_equal(sel.atom37_positions, ref.atom37_positions, equal_nan=True)
    out["2beg_ABC_from_pdb_mask"] = (
        sel,
        "full = ProteinComplex.from_pdb(io.StringIO(text), id='2BEG'); "
        "keep = [k for k, v in full.metadata.chain_lookup.items() if v in 'ABC']; "
        "full[np.isin(full.chain_id, keep)]",
        [(f2beg, c) for c in "ABC"],
        "2BEG chains A, B, C of the 5 (26 each); two chain breaks; selected from the whole-file "
        "complex, so metadata (chain_boundaries, lookups) still describes all 5 chains",
    )

    # 3. two chains of different length and numbering (heteromer)
    chains = [ProteinChain.from_pdb(io.StringIO(pdb_text(f1tii)), chain_id=c, id="1TII") for c in "CD"]
    out["1tii_CD_from_chains"] = (
        ProteinComplex.from_chains(chains),
        "ProteinComplex.from_chains([ProteinChain.from_pdb(io.StringIO(text), chain_id=c, id='1TII') "
        "for c in 'CD'])",
        [(f1tii, c) for c in "CD"],
        "1TII chains C (36 residues, PDB numbering 195..230) and D (98, 1..98): unequal lengths",
    )
    return out


def forward_inputs(model, t: ESMProteinTensor) -> dict:
    """What ESM3.logits hands ESM3.forward, re-derived from the tensor the same way."""
    coords = t.coordinates[None]
    per_res = coords.isfinite().all(dim=-1).any(dim=-1).float()
    _, affine_mask = build_affine3d_from_coordinates(coords[..., :3, :])
    C = esm.utils.constants.esm3
    s = t.structure.clone()
    seq = t.sequence
    s = (s.masked_fill(s == -1, C.STRUCTURE_MASK_TOKEN)
         .masked_fill(seq == C.SEQUENCE_BOS_TOKEN, C.STRUCTURE_BOS_TOKEN)
         .masked_fill(seq == C.SEQUENCE_PAD_TOKEN, C.STRUCTURE_PAD_TOKEN)
         .masked_fill(seq == C.SEQUENCE_EOS_TOKEN, C.STRUCTURE_EOS_TOKEN)
         .masked_fill(seq == C.SEQUENCE_CHAINBREAK_TOKEN, C.STRUCTURE_CHAINBREAK_TOKEN))
    return {
        "chain_id": "None from ESM3.logits -> ESM3.forward defaults it to zeros [1, T] (one chain)",
        "sequence_id": "None -> plain attention over all T positions; geometric attention uses zeros",
        "residue_index": "none: ESM3.forward takes no residue index; rotary positions are 0..T-1",
        "average_plddt": 1.0,
        "per_res_plddt": enc(per_res[0]),
        "structure_tokens_after_forward_fill": enc(s),
        "affine_mask": enc(affine_mask[0]),
    }


def check(model, name: str, protein: ESMProtein, t: ESMProteinTensor, lo) -> list[str]:
    """Confirm the chain-break facts written in `findings` on this case."""
    found = []
    C = esm.utils.constants.esm3
    brk = [i + 1 for i, c in enumerate(protein.sequence) if c == "|"]  # token positions
    assert all(int(t.sequence[i]) == C.SEQUENCE_CHAINBREAK_TOKEN for i in brk)
    # break rows: NaN everywhere in the protein, NaN in the (normalised) tensor coordinates
    for i in brk:
        assert torch.isnan(protein.coordinates[i - 1]).all()
        assert torch.isnan(t.coordinates[i]).all()
    assert torch.isinf(t.coordinates[0]).all() and torch.isinf(t.coordinates[-1]).all()
    # the encoder's token at a break is the one every frameless row gets (z = 0 -> pre_vq_proj bias)
    enc_ = model.get_structure_encoder()
    with torch.no_grad():
        zero = enc_.pre_vq_proj(torch.zeros(1, 1, enc_.pre_vq_proj.in_features))
        _, code0, _ = enc_.codebook(zero)
    assert all(int(t.structure[i]) == int(code0) for i in brk), (name, t.structure[brk], code0)
    # explicit forward call with chain_id zeros / sequence_id None reproduces logits()
    per_res = t.coordinates[None].isfinite().all(dim=-1).any(dim=-1).float()
    kw = dict(sequence_tokens=t.sequence[None], structure_tokens=t.structure[None],
              average_plddt=torch.tensor(1.0), per_res_plddt=per_res, structure_coords=t.coordinates[None])
    with torch.no_grad():
        o0 = model.forward(**kw, chain_id=torch.zeros(1, len(t.sequence), dtype=torch.long))
        # the structure token at a break does not matter: forward overwrites it with 4100
        s2 = t.structure.clone()
        s2[brk] = 7
        o1 = model.forward(**{**kw, "structure_tokens": s2[None]})
        # real per-chain ids would change the result (geometric attention masks across chains)
        cid = torch.zeros(1, len(t.sequence), dtype=torch.long)
        for i in brk:
            cid[0, i:] += 1
        o2 = model.forward(**kw, chain_id=cid)
    assert torch.equal(o0.sequence_logits, lo.logits.sequence)
    assert torch.equal(o0.embeddings, lo.embeddings)
    assert torch.equal(o1.sequence_logits, lo.logits.sequence)
    diff = float((o2.sequence_logits - lo.logits.sequence).abs().max())
    found.append(f"{name}: forward with per-chain chain_id (0,1,..; break row counted with the next "
                 f"chain) would differ from logits() by max |d seq logit| = {diff:.3g}; logits() "
                 f"passes chain_id=None (-> zeros), so it does not")
    return found


def roundtrip(p: ESMProtein, gt: ProteinComplex | None = None) -> dict:
    pc = p.to_protein_complex(copy_annotations_from_ground_truth=gt)
    return split_record(pc)


def main() -> None:
    model = load_model()
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {
        "package": f"esm {esm.__version__}, torch {torch.__version__}, CPU float32, 1 thread",
        "models": {
            "esm3": "fixtures/reference/esm3_d64/model (loaded as make_generation_fixtures.load_model)",
            "structure_encoder": "fixtures/reference/esm3_structure_encoder_d64/model (64 codes)",
            "structure_decoder": "fixtures/reference/esm3_structure_decoder_d64/model",
        },
        "float_encoding": "JSON numbers are float32 values; non-finite as the strings inf, -inf, nan",
        "structure_logits_columns": f"logits.structure_first8 holds only columns 0..{STRUCT_COLS - 1} "
                                    "of the [T, 4096] structure logits (the output head has 4096 columns: codes only, no "
                                    "special-token columns); logits.structure_shape gives [T, 4096]",
        "findings": [],
        "cases": {},
    }
    observed = []
    for name, (pc, how, src, note) in build_cases().items():
        protein = ESMProtein.from_protein_complex(pc)
        with torch.no_grad():
            t = model.encode(protein)
            t2 = model.encode(protein)
        assert torch.equal(t.structure, t2.structure)
        # what tokenize_structure hands the encoder
        ch = ProteinChain.from_atom37(protein.coordinates, sequence=protein.sequence)
        _, plddt_in, ri_in = ch.to_structure_encoder_inputs()
        lcfg = LogitsConfig(sequence=True, structure=True, return_embeddings=True)
        with torch.no_grad():
            lo = model.logits(t, lcfg)
        observed += check(model, name, protein, t, lo)
        with torch.no_grad():
            dec = model.decode(t)
        assert dec.sequence == protein.sequence, (dec.sequence, protein.sequence)
        rows = [i for i, c in enumerate(protein.sequence) if c == "|"]
        bb = [0, 1, 2, 4]  # N, CA, C, O in atom37 order
        assert torch.isfinite(dec.coordinates[rows][:, bb]).all(), "decoded break rows are finite"
        other = [a for a in range(37) if a not in bb]
        assert torch.isposinf(dec.coordinates[:, other]).all(), "decoded side-chain atoms are +inf"
        assert torch.isnan(dec.coordinates[-1, 4]).all() and torch.isfinite(dec.coordinates[:-1, 4]).all()
        case = {
            "note": note,
            "construction": how + "; protein = ESMProtein.from_protein_complex(complex)",
            "source": [{"file": f"shared/data/structures/{f}", "chain_id": c} for f, c in src],
            "complex": complex_record(pc),
            "protein": protein_record(protein),
            "tensor": tensor_record(t),
            "encoder_call": {"residue_index": enc(ri_in[0]), "plddt": enc(plddt_in[0])},
            "forward_inputs": forward_inputs(model, t),
            "logits": {
                "sequence": enc(lo.logits.sequence[0]),
                "structure_first8": enc(lo.logits.structure[0, :, :STRUCT_COLS]),
                "structure_shape": list(lo.logits.structure[0].shape),
                "embeddings": enc(lo.embeddings[0]),
            },
            "decoded": {
                "sequence": dec.sequence,
                "coordinates": enc(dec.coordinates),
                "plddt": enc(dec.plddt),
                "ptm": enc(dec.ptm),
            },
            "decoded_complex": roundtrip(dec),
            "input_complex_roundtrip": {
                "default": roundtrip(protein),
                "copy_annotations_from_ground_truth": roundtrip(protein, pc),
            },
        }
        case["source"] = [dict(d, n_residues=len(c)) for d, c in
                          zip(case["source"], protein.sequence.split("|"))]
        doc["cases"][name] = case
        brk = case["protein"]["chain_break_rows"]
        print(f"== {name}: N={len(protein)} T={len(t)} breaks(rows)={brk} "
              f"seq@break={[int(t.sequence[i + 1]) for i in brk]} "
              f"struct@break={[int(t.structure[i + 1]) for i in brk]} "
              f"decoded chains={[c['chain_id'] for c in case['decoded_complex']['chains']]}")
    doc["findings"] = FINDINGS + observed
    path = OUT / "cases.json"
    # one line per case section keeps the file small (indent=1 puts every number on its own line)
    text = "{\n" + ",\n".join(
        f"{json.dumps(k)}: " + (json.dumps(v, separators=(",", ":")) if k != "cases" else
                               "{\n" + ",\n".join(
                                   f" {json.dumps(n)}: {{\n" + ",\n".join(
                                       f"  {json.dumps(sk)}: {json.dumps(sv, separators=(',', ':'))}"
                                       for sk, sv in c.items()) + "\n }"
                                   for n, c in v.items()) + "\n}")
        for k, v in doc.items()) + "\n}\n"
    assert json.loads(text) == json.loads(json.dumps(doc))
    path.write_text(text)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    for q in doc["findings"]:
        print(" *", q)


FINDINGS = [
    "ProteinComplex.from_chains joins chains with ONE separator row: sequence '|', atom37 all NaN, "
    "atom37_mask all 0, residue_index -1, insertion_code '', confidence 0, chain_id/entity_id/sym_id -1",
    "ESMProtein.from_protein_complex sets only sequence (with '|') and coordinates (float32 atom37, "
    "the complex's rows incl. the NaN break rows); secondary_structure/sasa/function_annotations/"
    "plddt/ptm stay None; the complex's residue_index/chain_id are DROPPED",
    "ESM3.encode: sequence '|' -> id 31; coordinates -> tokenize_structure: ProteinChain.from_atom37 "
    "(residue_index 1..N, CONTIGUOUS across breaks, break rows counted), normalize_coordinates, VQ-VAE "
    "encode with that residue_index and no sequence_id/chain info; the break row has no frame, so its "
    "embedding is zeroed before pre_vq_proj and it gets the same code as any frameless row (a normal "
    "code < 64, NOT 4100); tensor.coordinates = normalised atom37 with +inf BOS/EOS rows, NaN break rows",
    "ESM3.logits -> forward(chain_id=None, sequence_id=None): chain_id defaults to zeros, so geometric "
    "attention does not mask across chains; no residue index exists in ESM3.forward (rotary 0..T-1); "
    "chain breaks reach the model only through sequence id 31, structure id forced to 4100 where the "
    "sequence is 31 (forward overwrites the encoder's code), per_res_plddt 0 and no frame (affine_mask "
    "0) at the NaN break row",
    "ESM3.decode: the VQ-VAE decoder sees the encoder's codes (break row = an ordinary code, no chain "
    "info), so the decoded protein has FINITE backbone coordinates at break rows; sequence keeps '|'",
    "decoded atom37 (decode_structure -> ProteinChain.from_backbone_atom_coordinates + infer_oxygen): "
    "N, CA, C from the decoder, every other atom +INF (not NaN), O inferred from the row's N/CA/C and "
    "the NEXT row's N (so the O before a break uses the break row's decoded N), last row's O NaN",
    "ProteinChain.from_pdb sets entity_id = 1 for every chain, so ProteinComplex.from_chains gives ALL "
    "chains entity 0 (entity_lookup {0: 1}) even for a heteromer (1tii C, D); sym_id = chain order 0, 1, ..",
    "selecting chains with a boolean mask (ProteinComplex.__getitem__) keeps the break rows between kept "
    "chains and drops trailing/duplicate ones; the result equals from_chains of the same chains in "
    "sequence/atom37, but its metadata (chain_boundaries, chain_lookup) still lists ALL chains of the file",
    "ESMProtein.to_protein_complex splits on '|' (get_chainbreak_boundaries_from_sequence), drops the "
    "break rows, builds each chain with ProteinChain.from_atom37 (residue_index 1..n per chain) and "
    "chain ids 'A','B','C'.. in order (or the ground truth's chain ids/entity ids when "
    "copy_annotations_from_ground_truth is given), then ProteinComplex.from_chains re-inserts NaN "
    "break rows",
]


if __name__ == "__main__":
    main()
