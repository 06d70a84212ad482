#!/usr/bin/env python
"""Generation parity fixtures: the reference's iterative sampling on the deterministic path.

    tools/reference/.venv/bin/python tools/reference/make_generation_fixtures.py

Runs `ESM3.batch_generate` of the reference on the random-weight `esm3_d64` fixture model with
strategy=entropy, temperature=0, no annealing (the only path that does not depend on torch's RNG)
and writes, per case, under fixtures/reference/generation/<case>/:

    prompt_<i>.safetensors   the ESMProteinTensor tracks given (int64 ids, float32 coordinates)
    config.json              one GenerationConfig per prompt + notes
    expected_<i>.safetensors the generated track of each prompt after generation
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import attr
import numpy as np
import safetensors.numpy
import safetensors.torch
import torch

from esm.models.esm3 import ESM3
from esm.sdk.api import ESMProteinTensor, GenerationConfig
from types import SimpleNamespace

from esm.tokenization import TokenizerCollection
from esm.tokenization.sasa_tokenizer import SASADiscretizingTokenizer
from esm.tokenization.sequence_tokenizer import EsmSequenceTokenizer
from esm.tokenization.ss_tokenizer import SecondaryStructureTokenizer
from esm.tokenization.structure_tokenizer import StructureTokenizer
from esm.tokenization.residue_tokenizer import ResidueAnnotationsTokenizer
from esm.utils.structure.protein_chain import ProteinChain

import make_fixtures as mf

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "fixtures" / "reference" / "generation"
MODEL_DIR = REPO / "fixtures" / "reference" / "esm3_d64" / "model"

torch.set_num_threads(1)
warnings.filterwarnings("ignore")


def load_model() -> ESM3:
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    # get_esm3_model_tokenizers() reaches for the model hub (residue-annotation CSV, LSH
    # hyperplanes). Generation of the non-function tracks only reads the function and residue
    # tokenizers' special ids (all 0) and the function depth, so small stand-ins carry those.
    csv = Path(tempfile.mkdtemp()) / "residue.csv"
    csv.write_text("label,label_clean,count\nfoo,foo,1\n")
    zero_ids = dict(mask_token_id=0, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    tok = TokenizerCollection(
        sequence=EsmSequenceTokenizer(),
        structure=StructureTokenizer(),
        secondary_structure=SecondaryStructureTokenizer(kind="ss8"),
        sasa=SASADiscretizingTokenizer(),
        function=SimpleNamespace(depth=8, **zero_ids),
        residue_annotations=ResidueAnnotationsTokenizer(csv_path=str(csv)),
    )
    model = ESM3(
        d_model=cfg["d_model"], n_heads=cfg["n_heads"], v_heads=cfg["v_heads"], n_layers=cfg["n_layers"],
        structure_encoder_fn=None, structure_decoder_fn=None, function_decoder_fn=None, tokenizers=tok,
    )
    sd = safetensors.torch.load_file(str(MODEL_DIR / "model.safetensors"))
    model.load_state_dict(sd)
    return model.float().eval()


def chain(file: str, cid: str) -> ProteinChain:
    return mf.load_chain(file, cid)


def seq_ids(s: str) -> torch.Tensor:
    return torch.tensor(mf.seq_tokens(s), dtype=torch.long)


def coords(pc: ProteinChain) -> torch.Tensor:
    return torch.tensor(mf.coords_with_ends(pc), dtype=torch.float32)


def masked(ids: torch.Tensor, frac: float, rng: np.random.Generator, mask_id: int) -> torch.Tensor:
    ids = ids.clone()
    n = ids.shape[0] - 2
    pick = rng.choice(n, size=int(round(frac * n)), replace=False) + 1
    ids[torch.tensor(pick)] = mask_id
    return ids


def deterministic(track: str, num_steps: int, **kw) -> GenerationConfig:
    return GenerationConfig(
        track=track, num_steps=num_steps, strategy="entropy", temperature=0.0,
        temperature_annealing=False, schedule=kw.pop("schedule", "cosine"), **kw,
    )


def cases(rng: np.random.Generator) -> dict:
    a = chain("emboss-test/1ii7.ent.gz", "A")
    b = chain("pdb2pqr/1BX8.pdb.gz", "A")
    c = chain("pymol-data/1tii.pdb.gz", "C")
    out = {}
    out["sequence_design"] = (
        [ESMProteinTensor(sequence=masked(seq_ids(a.sequence), 0.6, rng, 32))],
        [deterministic("sequence", 8)],
        "60% of a real sequence masked; fill it in 8 steps",
    )
    out["sequence_linear_top_p"] = (
        [ESMProteinTensor(sequence=masked(seq_ids(b.sequence), 0.5, rng, 32))],
        [deterministic("sequence", 6, schedule="linear", top_p=0.7, invalid_ids=[23, 22])],
        "linear schedule, nucleus 0.7 (changes the entropies), C and W forbidden",
    )
    out["inverse_fold"] = (
        [ESMProteinTensor(coordinates=coords(c))],
        [deterministic("sequence", 10)],
        "whole sequence from real coordinates only",
    )
    out["fold"] = (
        [ESMProteinTensor(sequence=seq_ids(a.sequence))],
        [deterministic("structure", 12)],
        "structure tokens from a real sequence",
    )
    out["ss8_from_sequence"] = (
        [ESMProteinTensor(sequence=seq_ids(b.sequence))],
        [deterministic("secondary_structure", 7)],
        "SS8 from a real sequence",
    )
    out["sasa_with_coords"] = (
        [ESMProteinTensor(sequence=seq_ids(c.sequence), coordinates=coords(c))],
        [deterministic("sasa", 5)],
        "SASA tokens from sequence + coordinates",
    )
    out["batch_two_lengths"] = (
        [
            ESMProteinTensor(sequence=masked(seq_ids(a.sequence), 0.5, rng, 32)),
            ESMProteinTensor(sequence=masked(seq_ids(b.sequence), 0.4, rng, 32)),
        ],
        [deterministic("sequence", 6), deterministic("sequence", 9)],
        "two prompts of different lengths in one batch: the reference attends to padding (spec 6.7)",
    )
    return out


TRACKS = ["sequence", "structure", "secondary_structure", "sasa", "function", "residue_annotations", "coordinates"]


def save_tensor(t: ESMProteinTensor, path: Path) -> None:
    d = {}
    for name in TRACKS:
        v = getattr(t, name)
        if v is not None:
            d[name] = v.detach().cpu().contiguous().numpy()
    safetensors.numpy.save_file(d, str(path))


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    model = load_model()
    rng = np.random.default_rng(20261121)
    manifest = {}
    for name, (prompts, configs, note) in cases(rng).items():
        d = OUT / name
        d.mkdir(parents=True)
        for i, p in enumerate(prompts):
            save_tensor(p, d / f"prompt_{i}.safetensors")
        cfg_json = [attr.asdict(c) for c in configs]
        with torch.no_grad():
            results = model.batch_generate(prompts, configs)
        for i, (r, c) in enumerate(zip(results, configs)):
            assert isinstance(r, ESMProteinTensor), f"{name}: {r}"
            v = getattr(r, c.track)
            safetensors.numpy.save_file({c.track: v.cpu().contiguous().numpy()}, str(d / f"expected_{i}.safetensors"))
        # num_steps after the reference lowered it to the number of masks
        (d / "config.json").write_text(json.dumps({"configs": cfg_json, "note": note}, indent=2) + "\n")
        manifest[name] = {"prompts": len(prompts), "note": note, "effective_num_steps": [c.num_steps for c in configs]}
        print(name, manifest[name], flush=True)
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()


def scoring_fixtures() -> None:
    """Pseudo-log-likelihood and masked marginals computed directly with the reference forward
    (the package has no scoring helper): one masked copy per residue, log_softmax at the mask."""
    from esm.models.esmc import ESMC

    out = REPO / "fixtures" / "reference" / "scoring"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    seq = chain("pdb2pqr/1BX8.pdb.gz", "A").sequence[:40]
    variants = ["%s3V" % seq[2], "%s10W:%s20A" % (seq[9], seq[19]), "%s40G" % seq[39]]
    esm3 = load_model()
    cfg = json.loads((REPO / "fixtures/reference/esmc_d64/model/config.json").read_text())
    esmc = ESMC(d_model=cfg["d_model"], n_heads=cfg["n_heads"], n_layers=cfg["n_layers"],
                tokenizer=EsmSequenceTokenizer(), use_flash_attn=False)
    esmc.load_state_dict(safetensors.torch.load_file(str(REPO / "fixtures/reference/esmc_d64/model/model.safetensors")))
    esmc = esmc.float().eval()
    ids = seq_ids(seq)

    def log_probs(model, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if isinstance(model, ESM3):
                logits = model(sequence_tokens=rows).sequence_logits
            else:
                logits = model(sequence_tokens=rows).sequence_logits
        return torch.log_softmax(logits.float(), dim=-1)

    result = {"sequence": seq, "variants": variants}
    for name, model in [("esm3_d64", esm3), ("esmc_d64", esmc)]:
        rows = ids.repeat(len(seq), 1)
        for i in range(len(seq)):
            rows[i, i + 1] = 32
        lp = log_probs(model, rows)
        per_res = [float(lp[i, i + 1, ids[i + 1]]) for i in range(len(seq))]
        scores = []
        for v in variants:
            muts = [(m[0], int(m[1:-1]), m[-1]) for m in v.split(":")]
            row = ids.clone()
            for _, p, _ in muts:
                row[p] = 32
            l = log_probs(model, row[None])[0]
            tok = EsmSequenceTokenizer()
            s = sum(float(l[p, tok.convert_tokens_to_ids(mt)] - l[p, tok.convert_tokens_to_ids(wt)]) for wt, p, mt in muts)
            scores.append(s)
        result[name] = {"per_residue": per_res, "pll": sum(per_res), "masked_marginals": scores}
    (out / "expected.json").write_text(json.dumps(result, indent=2) + "\n")
    print("scoring", {k: result[k]["pll"] for k in ("esm3_d64", "esmc_d64")})


if __name__ == "__main__":
    scoring_fixtures()
