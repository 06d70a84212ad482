#!/usr/bin/env python
"""Parity fixtures for the reference's `ESM3.forward_and_sample` (spec 6.3, 6.10).

    tools/reference/.venv/bin/python tools/reference/make_forward_and_sample_fixtures.py

Runs `ESM3.forward_and_sample` of `esm` 3.2.1.post1 (CPU, float32, one thread) on the random-weight
`esm3_d64` fixture model -- the same weights as `fixtures/reference/esm3_d64/model/` and
`fixtures/random-bundle-d64/` (symlinks to it), loaded exactly as make_generation_fixtures.py does --
and writes one JSON file:

    fixtures/reference/forward_and_sample/cases.json

Every case uses temperature 0 on its integer tracks: the reference's `sample_logits` takes the
argmax when every temperature is 0, so no case depends on torch's RNG. The file layout (no batch
dimension anywhere; L = residues, every per-position list has L + 2 rows, BOS and EOS included):

    {"package": ..., "model_dir": ..., "float_encoding": ..., "quirks": [...],
     "cases": {<name>: {
        "note": str, "residues": L,
        "input": {<track>: [L+2] ints},                  only the tracks given
        "sampling_config": {<track>: {temperature, top_p, only_sample_masked_tokens,
                                      invalid_ids, topk_logprobs}  (configured tracks only),
                            "return_per_residue_embeddings": bool, "return_mean_embedding": bool},
        "sampled_tracks": [<track>, ...],
        "output": {
          "protein_tensor": {<track>: [L+2] ints | [L+2] floats (sasa, sampled) | [L+2][8] / [L+2][16]},
          "entropy" | "prob" | "logprob" | "top_prob": {<track>: [L+2] floats},
          "topk_logprob": {<track>: [L+2][k] floats}, "topk_tokens": {<track>: [L+2][k] ints},
          "per_residue_embedding": [L+2][64] floats, "mean_embedding": [64] floats}}}}

A metadata key or track is absent where the reference returned None. Non-finite floats are the
strings "inf", "-inf", "nan".
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import attr
import numpy as np
import torch

import esm
from esm.sdk.api import ESMProteinTensor, LogitsConfig, SamplingConfig, SamplingTrackConfig
from esm.utils.sampling import top_p_logits

import make_fixtures as mf
import make_generation_fixtures as mg

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "fixtures" / "reference" / "forward_and_sample"
MODEL_DIR = mg.MODEL_DIR

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

SEQ_MASK, STRUCT_MASK, SS8_MASK, SASA_MASK = 32, 4096, 0, 0
STRUCT_BOS, STRUCT_EOS = 4098, 4097
# 20 residues with a W (id 22) at residue 3 and a C (id 23) at residue 11, so that
# invalid_ids=[23, 22] also meets them as *current* ids (they are then not resampled).
SEQ20 = "MKWVTFISLLCLFSSAYSRG"
SEQ24 = "GSHMKELIEKAKRLAEEALRLAKE"
SEQ18 = "MADQLTEEQIAEFKEAFS"

METADATA = ["entropy", "prob", "logprob", "top_prob", "topk_logprob", "topk_tokens"]
TRACKS = ["sequence", "structure", "secondary_structure", "sasa", "function", "residue_annotations"]


def ids(seq: str) -> torch.Tensor:
    return torch.tensor(mf.seq_tokens(seq), dtype=torch.long)


def mask_positions(t: torch.Tensor, positions: list[int], mask_id: int) -> torch.Tensor:
    t = t.clone()
    t[torch.tensor(positions)] = mask_id
    return t


def pick(rng: np.random.Generator, n_res: int, k: int) -> list[int]:
    return sorted(int(p) + 1 for p in rng.choice(n_res, size=k, replace=False))


def track_cfg(**kw) -> SamplingTrackConfig:
    kw.setdefault("temperature", 0.0)
    return SamplingTrackConfig(**kw)


def cases() -> dict:
    rng = np.random.default_rng(20261207)
    out = {}

    seq_masked = mask_positions(ids(SEQ20), pick(rng, 20, 8), SEQ_MASK)
    # residues 3 (W) and 11 (C) stay unmasked for case 4
    assert seq_masked[3] == 22 and seq_masked[11] == 23, seq_masked
    out["sequence_masked_only"] = (
        ESMProteinTensor(sequence=seq_masked),
        SamplingConfig(
            sequence=track_cfg(only_sample_masked_tokens=True, topk_logprobs=3, invalid_ids=[]),
            return_per_residue_embeddings=True, return_mean_embedding=True,
        ),
        "20 residues, 8 masked (32); sequence track only, argmax at the masks, top-3",
    )

    n = len(SEQ24)
    structure = torch.tensor(rng.integers(0, 4096, size=n + 2), dtype=torch.long)
    structure[0], structure[-1] = STRUCT_BOS, STRUCT_EOS
    structure = mask_positions(structure, pick(rng, n, 10), STRUCT_MASK)
    ss8 = torch.tensor(rng.integers(3, 11, size=n + 2), dtype=torch.long)
    ss8[0], ss8[-1] = 0, 0  # the SS8 tokenizer's BOS/EOS/pad/mask are all 0
    ss8 = mask_positions(ss8, pick(rng, n, 9), SS8_MASK)
    out["structure_and_ss8"] = (
        ESMProteinTensor(sequence=ids(SEQ24), structure=structure, secondary_structure=ss8),
        SamplingConfig(
            structure=track_cfg(only_sample_masked_tokens=True, topk_logprobs=3),
            secondary_structure=track_cfg(only_sample_masked_tokens=True, topk_logprobs=2),
            return_per_residue_embeddings=True, return_mean_embedding=True,
        ),
        "full sequence; structure tokens with 10 of 24 masked (4096); SS8 with 9 masked (0); "
        "both tracks argmax at their masks",
    )

    n = len(SEQ18)
    sasa = torch.tensor(rng.integers(3, 19, size=n + 2), dtype=torch.long)
    sasa[0], sasa[-1] = 0, 0
    sasa = mask_positions(sasa, pick(rng, n, 6), SASA_MASK)
    out["sasa_all_positions"] = (
        ESMProteinTensor(sequence=ids(SEQ18), sasa=sasa),
        SamplingConfig(
            sasa=track_cfg(only_sample_masked_tokens=False),
            return_per_residue_embeddings=True, return_mean_embedding=True,
        ),
        "sequence + SASA tokens (6 of 18 masked); SASA float path (expected value over bin "
        "midpoints) at every residue",
    )

    out["sequence_all_positions_invalid_top_p"] = (
        ESMProteinTensor(sequence=seq_masked.clone()),
        SamplingConfig(
            sequence=track_cfg(only_sample_masked_tokens=False, topk_logprobs=3, invalid_ids=[23, 22], top_p=0.9),
            return_per_residue_embeddings=True, return_mean_embedding=True,
        ),
        "case sequence_masked_only's input; every residue resampled except those whose current id "
        "is 22 (W) or 23 (C); C/W forbidden, nucleus 0.9",
    )

    sasa2 = sasa.clone()
    sasa2[2] = 18  # a current id in invalid_ids - {mask}: outside the sampling mask
    out["sasa_all_positions_invalid_18"] = (
        ESMProteinTensor(sequence=ids(SEQ18), sasa=sasa2),
        SamplingConfig(
            sasa=track_cfg(only_sample_masked_tokens=False, invalid_ids=[18]),
            return_per_residue_embeddings=False, return_mean_embedding=True,
        ),
        "SASA float path at every residue, id 18 (the last bin) forbidden; residue 2's current id "
        "is 18, so it is not sampled (inf); no per-residue embedding requested",
    )

    out["sasa_masked_only"] = (
        ESMProteinTensor(sequence=ids(SEQ18), sasa=sasa.clone()),
        SamplingConfig(
            sasa=track_cfg(only_sample_masked_tokens=True),
            return_per_residue_embeddings=False, return_mean_embedding=False,
        ),
        "SASA float path at the 6 masks only (inf elsewhere); no embeddings requested",
    )
    return out


def enc(x):
    """Tensor -> nested lists; non-finite floats as strings."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.to(torch.float32)
        x = x.tolist()
    if isinstance(x, list):
        return [enc(v) for v in x]
    if isinstance(x, float):
        if x != x:
            return "nan"
        if x in (float("inf"), float("-inf")):
            return "inf" if x > 0 else "-inf"
    return x


def shape(x) -> list[int]:
    s = []
    while isinstance(x, list):
        s.append(len(x))
        x = x[0] if x else None
    return s


def run_case(model, inp: ESMProteinTensor, cfg: SamplingConfig) -> dict:
    with torch.no_grad():
        r = model.forward_and_sample(inp, cfg)
    o = {"protein_tensor": {}}
    for t in TRACKS:
        v = getattr(r.protein_tensor, t)
        if v is not None:
            o["protein_tensor"][t] = enc(v)
    for m in METADATA:
        fd = getattr(r, m)
        if fd is None:
            continue
        o[m] = {t: enc(getattr(fd, t)) for t in TRACKS[:5] if getattr(fd, t, None) is not None}
    for m in ["per_residue_embedding", "mean_embedding"]:
        v = getattr(r, m)
        if v is not None:
            o[m] = enc(v)
    return o, r


def check_quirks(model, name: str, inp: ESMProteinTensor, cfg: SamplingConfig, r) -> list[str]:
    """Re-derive the outputs from a plain `logits()` call to pin down the reference's behaviour."""
    found = []
    full = attr.evolve(inp)
    empty = ESMProteinTensor.empty(len(inp) - 2, tokenizers=model.tokenizers)
    for f in attr.fields(ESMProteinTensor):
        if getattr(full, f.name) is None:
            setattr(full, f.name, getattr(empty, f.name))
    with torch.no_grad():
        lo = model.logits(full, LogitsConfig(
            sequence=True, structure=True, secondary_structure=True, sasa=True,
            function=True, residue_annotations=True, return_embeddings=True))
    emb = lo.embeddings[0]
    if r.per_residue_embedding is not None:
        assert torch.equal(r.per_residue_embedding, emb)
    if r.mean_embedding is not None:
        assert torch.allclose(r.mean_embedding, emb.mean(0), atol=0, rtol=0), "mean over L+2 rows"
    for t in ["sequence", "structure", "secondary_structure"]:
        c = getattr(cfg, t)
        if c is None:
            continue
        raw = getattr(lo.logits, t)[0]
        tok = getattr(model.tokenizers, t)
        valid = sorted(set(tok.all_token_ids) - set(tok.special_token_ids) - set(c.invalid_ids))
        masked = raw.clone()
        if c.top_p < 1.0:
            masked = top_p_logits(masked, top_p=c.top_p)
        keep = torch.zeros(raw.shape[-1], dtype=torch.bool)
        keep[valid] = True
        masked[:, ~keep] = -torch.inf
        lp_masked = masked.log_softmax(-1)
        ent_masked = torch.distributions.Categorical(logits=lp_masked).entropy()
        ent_raw = torch.distributions.Categorical(logits=raw.log_softmax(-1)).entropy()
        ent = getattr(r.entropy, t)
        assert torch.allclose(ent, ent_masked, atol=1e-5), (name, t)
        if not torch.allclose(ent, ent_raw, atol=1e-3):
            found.append(f"{name}/{t}: entropy/logprob/top-k come from the invalid-id (and top-p) "
                         f"masked logits, not the raw ones (max |diff| vs raw "
                         f"{float((ent - ent_raw).abs().max()):.3f})")
        argmax = masked.argmax(-1)
        tokens = getattr(r.protein_tensor, t)
        cur = getattr(full, t)
        sm = torch.ones_like(cur, dtype=torch.bool)
        sm[0] = sm[-1] = False
        for bad in set(c.invalid_ids) - {tok.mask_token_id}:
            sm &= cur != bad
        if c.only_sample_masked_tokens:
            sm &= cur == tok.mask_token_id
        assert torch.equal(tokens, torch.where(sm, argmax, cur)), (name, t)
        lp = getattr(r.logprob, t)
        assert torch.all(lp[~sm] == 0), "logprob is 0 outside the sampling mask"
        assert torch.allclose(lp[sm], lp_masked[sm, tokens[sm]]), (name, t)
        assert torch.all(getattr(r.prob, t)[~sm] == 1)
        assert torch.all(ent[~sm] > 0), "entropy is computed at every position"
        if c.topk_logprobs:
            k = getattr(r.topk_tokens, t)
            assert k.shape == (len(cur), c.topk_logprobs)
            assert torch.equal(k, lp_masked.topk(c.topk_logprobs, dim=-1).indices), (name, t)
    if cfg.sasa is not None:
        ent = r.entropy.sasa
        assert torch.all(torch.isfinite(ent))
        assert r.logprob is None or r.logprob.sasa is None
        raw = lo.logits.sasa[0].clone()
        keep = torch.zeros(raw.shape[-1], dtype=torch.bool)
        keep[sorted({*range(3, 19)} - set(cfg.sasa.invalid_ids))] = True
        raw[:, ~keep] = -torch.inf
        p = raw.softmax(-1)
        mid = torch.tensor([0.4, 2.4, 6.8, 13.0, 20.45, 28.7, 37.45, 46.75, 56.35, 66.05, 76.25,
                            87.45, 100.25, 116.3, 138.4])
        val = (p[:, 3:18] * mid).sum(-1)
        cur = full.sasa
        sm = torch.ones_like(cur, dtype=torch.bool)
        sm[0] = sm[-1] = False
        for bad in set(cfg.sasa.invalid_ids) - {0}:
            sm &= cur != bad
        if cfg.sasa.only_sample_masked_tokens:
            sm &= cur == 0
        sm &= p.argmax(-1) != 18
        got = r.protein_tensor.sasa
        assert got.dtype == torch.float32
        assert torch.all(torch.isinf(got[~sm])) and torch.allclose(got[sm], val[sm], atol=1e-4), name
    return found


def main() -> None:
    model = mg.load_model()
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {
        "package": f"esm {esm.__version__}, torch {torch.__version__}, CPU float32, 1 thread",
        "model_dir": "fixtures/reference/esm3_d64/model (= fixtures/random-bundle-d64/config.json + model.safetensors)",
        "float_encoding": "JSON numbers are float32 values; non-finite as the strings inf, -inf, nan",
        "quirks": [],
        "cases": {},
    }
    observed: list[str] = []
    for name, (inp, cfg, note) in cases().items():
        o, r = run_case(model, inp, cfg)
        o2, _ = run_case(model, attr.evolve(inp), cfg)
        assert json.dumps(o) == json.dumps(o2), f"{name}: not deterministic"
        observed += check_quirks(model, name, inp, cfg, r)
        sc = {t: attr.asdict(getattr(cfg, t)) for t in ["sequence", "structure", "secondary_structure", "sasa", "function"]
              if getattr(cfg, t) is not None}
        for t in sc.values():
            t["invalid_ids"] = list(t["invalid_ids"])
        sc["return_per_residue_embeddings"] = cfg.return_per_residue_embeddings
        sc["return_mean_embedding"] = cfg.return_mean_embedding
        doc["cases"][name] = {
            "note": note,
            "residues": len(inp) - 2,
            "input": {t: enc(getattr(inp, t)) for t in TRACKS if getattr(inp, t) is not None},
            "sampling_config": sc,
            "sampled_tracks": [t for t in ["sequence", "structure", "secondary_structure", "sasa", "function"]
                               if getattr(cfg, t) is not None],
            "output": o,
        }
        print(f"== {name}: L+2 = {len(inp)}  ({note})")
        for k, v in doc["cases"][name]["input"].items():
            print(f"   input.{k}: {shape(v)}")
        for k, v in o.items():
            if isinstance(v, dict):
                for t, x in v.items():
                    print(f"   output.{k}.{t}: {shape(x)}")
            else:
                print(f"   output.{k}: {shape(v)}")
    doc["quirks"] = QUIRKS + observed
    path = OUT / "cases.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    for q in doc["quirks"]:
        print(" *", q)


QUIRKS = [
    "temperature 0 (all positions) = argmax over the masked logits (first maximal index); the metadata "
    "never uses the temperature",
    "entropy, prob/logprob, top_prob and top-k are computed at EVERY position (BOS/EOS and non-sampled "
    "ones included) from log_softmax of the logits AFTER the in-place top-p (f32::MIN) and invalid-id "
    "(-inf) masking; valid ids exclude the tokenizer's special ids (sequence 4..30; the 31 padded slots "
    "33..63 are -inf too)",
    "logprob = 0 and prob = 1 outside the sampling mask (first/last slot, positions whose current id is "
    "in invalid_ids - {mask}, and unmasked positions when only_sample_masked_tokens)",
    "tracks without a config are returned as copies of the input, with missing tracks filled from "
    "ESMProteinTensor.empty (sequence BOS/32.../EOS; structure 4098/4096.../4097; ss8, sasa all 0; "
    "function [L+2][8] and residue_annotations [L+2][16] all 0); coordinates stay absent",
    "SASA: no token sampling, no temperature/top_p/top-k; value = sum over ids 3..17 of p_k * midpoint_k "
    "with p from the invalid-masked softmax (id 18's mass ignored, no renormalisation); inf where argmax "
    "is 18 or outside the sampling mask (BOS/EOS always inf); only entropy is returned as metadata "
    "(NaN -> 0 terms); the returned sasa track is float32",
    "mean_embedding = mean of the [L+2, d] embeddings over ALL L+2 rows (BOS and EOS included); "
    "per_residue_embedding is the forward's `embeddings` output (the PRE-final-norm residual stream), [L+2, d]",
    "SS8 and SASA tokenizers use id 0 for BOS, EOS, pad and mask alike",
]


if __name__ == "__main__":
    main()
