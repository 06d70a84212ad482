#!/usr/bin/env python
"""Self-check of fixtures/reference: rebuild each model from config.json + model.safetensors
(and from the .pth where present, with torch.load(weights_only=True)), re-run every case from
input.safetensors and compare with expected.safetensors.

    tools/reference/.venv/bin/python tools/reference/verify_fixtures.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import safetensors.torch
import torch

from esm.models.esm3 import ESM3
from esm.models.esmc import ESMC
from esm.tokenization import EsmSequenceTokenizer

ROOT = Path(__file__).resolve().parents[2] / "fixtures" / "reference"
torch.set_num_threads(1)


def build(cfg: dict):
    if cfg["model_type"] == "esm3":
        return ESM3(
            d_model=cfg["d_model"], n_heads=cfg["n_heads"], v_heads=cfg["v_heads"], n_layers=cfg["n_layers"],
            structure_encoder_fn=None, structure_decoder_fn=None, function_decoder_fn=None,
            tokenizers=SimpleNamespace(sequence=SimpleNamespace(mask_token_id=32)),
        )
    return ESMC(d_model=cfg["d_model"], n_heads=cfg["n_heads"], n_layers=cfg["n_layers"],
                tokenizer=EsmSequenceTokenizer(), use_flash_attn=False)


def main() -> int:
    manifest = json.loads((ROOT / "MANIFEST.json").read_text())
    worst_all = 0.0
    for name in manifest["models"]:
        cfg = json.loads((ROOT / name / "model" / "config.json").read_text())
        sd = safetensors.torch.load_file(str(ROOT / name / "model" / "model.safetensors"))
        model = build(cfg).float().eval()
        model.load_state_dict(sd, strict=True)
        pth = ROOT / name / f"{name}.pth"
        if pth.exists():
            sd2 = torch.load(pth, weights_only=True)
            assert sd2.keys() == sd.keys(), f"{pth}: keys differ"
            assert all(torch.equal(sd[k], sd2[k]) for k in sd), f"{pth}: tensors differ"
        for case in manifest["cases"][name]:
            cdir = ROOT / name / "cases" / case
            inputs = safetensors.torch.load_file(str(cdir / "input.safetensors"))
            exp = safetensors.torch.load_file(str(cdir / "expected.safetensors"))
            mask = exp.pop("position_mask").bool()
            with torch.no_grad():
                out = model(**inputs)
            worst = 0.0
            for k, e in exp.items():
                got = getattr(out, k)
                assert got.shape == e.shape, (name, case, k, got.shape, e.shape)
                d = (got - e).abs()
                d = d[:, mask] if k == "hidden_states" else d[mask]
                worst = max(worst, float(d.max()))
            print(f"{name}/{case}: max |diff| on real positions = {worst:.3g}")
            worst_all = max(worst_all, worst)
    ok = worst_all <= 1e-5
    print(("OK" if ok else "FAIL") + f": worst {worst_all:.3g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
