#!/usr/bin/env python
"""Side-by-side training-step benchmark: esm3-rs vs the reference modules in PyTorch, same shapes.

Run with the reference venv (tools/reference/setup.sh creates it), from the repository root:

    tools/reference/.venv/bin/python tools/bench/train_step_bench.py             # 6 steps each
    tools/reference/.venv/bin/python tools/bench/train_step_bench.py --steps 4 --json out.json

Two objectives, each at the bundled model's shape, each one optimizer step = forward, backward,
global-norm clip 1.0 and AdamW (β 0.9/0.95, weight decay 0.01):

* `vqvae`: stage 2 of the structure tokenizer with the confidence heads
  (`configs/vqvae-stage2b.toml`: encoder 96/1/8/2 → 32 × 256 codes, frozen, run for the codes;
  decoder 128/4/3 trained), 4 chains × 128 residues. Loss terms (spec esm3-training.md §3.3-3.4):
  backbone distance, backbone direction, binned direction, distogram, pLDDT and pAE
  cross-entropies, their labels computed from the batch inside the step on both sides.
  Ours: `cargo run --release -p esm3-train --example vqvae_step_bench`. Reference:
  `esm.models.vqvae.StructureTokenEncoder` / `StructureTokenDecoder` with the same losses
  written below in torch.
* `trunk`: the ESM3 trunk of `configs/esm3-small.toml` (d_model 256, 4 heads, 8 geometric
  heads, 4 layers), 8 proteins × 128 residues. Ours: `--example trunk_step_bench` (the training
  noise pipeline, every track, cross-entropy on the masked positions). Reference:
  `esm.models.esm3.ESM3` forward over all tracks with coordinates, cross-entropy of the sequence,
  structure, SS8 and SASA heads on a random 30 % of positions each (the reference computes every
  head at every position, so its head cost does not depend on the masking).

Weights are each side's random initialisation and chains are synthetic (timing depends on the
shapes only). Each side runs in its own process with T threads (torch.set_num_threads /
RAYON_NUM_THREADS); the first step is a warm-up and is dropped; the median of the rest is
reported. Prints a markdown table with the ratio (reference time / ours: > 1 means esm3-rs is
faster); --json writes the same numbers. No timing is asserted anywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------
# Reference side (torch)


def adamw(params):
    import torch

    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01, eps=1e-8)


def synthetic_backbone(batch: int, length: int):
    """The same kind of chain the Rust benches use: a noisy helix-like walk."""
    import torch

    g = torch.Generator().manual_seed(0)
    out = torch.zeros(batch, length, 3, 3)
    for s in range(batch):
        ca = torch.zeros(3)
        for i in range(length):
            t = i * 1.745
            step = torch.tensor([2.3 * torch.cos(torch.tensor(t)), 2.3 * torch.sin(torch.tensor(t)), 1.5])
            ca = ca + 0.6 * (step + 0.3 * (torch.rand(3, generator=g) * 2 - 1) * torch.tensor([1.0, 1.0, 0.0]))
            out[s, i, 0] = ca + torch.tensor([-1.2, 0.4, -0.5])
            out[s, i, 1] = ca
            out[s, i, 2] = ca + torch.tensor([0.8, 1.1, 0.4])
    return out


def frames(bb):
    """Rotation rows (x from C to CA, N in the xy plane) and origin CA of [..., 3, 3] backbones."""
    import torch

    n, ca, c = bb[..., 0, :], bb[..., 1, :], bb[..., 2, :]
    e0 = torch.nn.functional.normalize(ca - c, dim=-1)
    xy = n - ca
    e1 = torch.nn.functional.normalize(xy - e0 * (e0 * xy).sum(-1, keepdim=True), dim=-1)
    e2 = torch.cross(e0, e1, dim=-1)
    return torch.stack([e0, e1, e2], dim=-2), ca


def backbone_vectors(bb):
    import torch

    n, ca, c = bb[:, :, 0], bb[:, :, 1], bb[:, :, 2]
    zero = torch.zeros_like(n[:, :1])
    n_next = torch.cat([n[:, 1:], zero], 1)
    c_prev = torch.cat([zero, c[:, :-1]], 1)
    v1, v2, v3 = ca - n, c - ca, n_next - c
    v4 = -torch.cross(v1, v2, dim=-1)
    v5 = torch.cross(n - c_prev, v1, dim=-1)
    v6 = torch.cross(v2, v3, dim=-1)
    return torch.stack([v1, v2, v3, v4, v5, v6], 2).reshape(bb.shape[0], -1, 3)


def vqvae_losses(enc, dec, coords):
    import torch
    import torch.nn.functional as F

    b, l = coords.shape[:2]
    with torch.no_grad():
        _, codes = enc.encode(coords, residue_index=torch.arange(l).expand(b, l))
    tokens = torch.cat(
        [torch.full((b, 1), dec.special_tokens["BOS"]), codes, torch.full((b, 1), dec.special_tokens["EOS"])], 1
    )
    x = dec.embed(tokens)
    zeros = torch.zeros_like(tokens)
    x, _, _ = dec.decoder_stack.forward(x, affine=None, affine_mask=None, sequence_id=zeros, chain_id=zeros)
    h = x[:, 1:-1]
    _, bb_pred = dec.affine_output_projection(h, affine=None, affine_mask=torch.zeros(b, l, dtype=torch.bool))
    pair = dec.pairwise_classification_head(h)
    plddt_logits = dec.plddt_head(h)

    def pdist(p):
        return ((p[:, :, None] - p[:, None]).square().sum(-1) + 1e-8).sqrt()

    dp, dt = pdist(bb_pred.reshape(b, -1, 3)), pdist(coords.reshape(b, -1, 3))
    distance = (dp - dt).square().clamp(max=25.0).mean()
    vp, vt = backbone_vectors(bb_pred), backbone_vectors(coords)
    vmask = torch.ones(b, l, 6)
    vmask[:, -1, 2] = 0
    vmask[:, -1, 5] = 0
    vmask[:, 0, 4] = 0
    vmask = vmask.reshape(b, -1)
    pm = vmask[:, :, None] * vmask[:, None]
    gerr = (vp @ vp.transpose(1, 2) - vt @ vt.transpose(1, 2)).square().clamp(max=20.0)
    direction = (gerr * pm).sum() / pm.sum()

    # Labels from the true chain (distogram on virtual Cβ, binned directions) and, detached, from
    # the prediction (pAE, pLDDT).
    n, ca, c = coords[:, :, 0], coords[:, :, 1], coords[:, :, 2]
    bv, cv = ca - n, c - ca
    cb = -0.58273431 * torch.cross(bv, cv, dim=-1) + 0.56802827 * bv - 0.54067466 * cv + ca
    d2 = (cb[:, :, None] - cb[:, None]).square().sum(-1)
    edges = torch.tensor([(2.3125 + 0.3125 * k) ** 2 for k in range(63)])
    dist_labels = torch.bucketize(d2, edges, right=True)
    u1 = F.normalize(c - ca, dim=-1)
    u2 = F.normalize(n - ca, dim=-1)
    u = torch.stack([u1, u2, F.normalize(torch.cross(u1, u2, dim=-1), dim=-1)], 2)
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    dots = torch.stack([(u[:, :, None, a] * u[:, None, :, cc]).sum(-1) for a, cc in pairs], -1)
    dir_labels = ((dots + 1) / 0.125 + 1e-9).floor().clamp(0, 15).long()
    with torch.no_grad():
        pred = bb_pred.detach()
        rp, op = frames(pred)
        rt, ot = frames(coords)
        local_p = torch.einsum("bikc,bjc->bijk", rp, pred[:, :, 1]) - torch.einsum("bikc,bic->bik", rp, op)[:, :, None]
        local_t = torch.einsum("bikc,bjc->bijk", rt, ca) - torch.einsum("bikc,bic->bik", rt, ot)[:, :, None]
        e2 = (local_p - local_t).square().sum(-1)
        pae_edges = torch.linspace(0, 31, 63).square()
        pae_labels = torch.bucketize(e2, pae_edges, right=False)
        dtrue = (ca[:, :, None] - ca[:, None]).norm(dim=-1)
        dpred = (pred[:, :, None, 1] - pred[:, None, :, 1]).norm(dim=-1)
        near = (dtrue < 15.0) & ~torch.eye(l, dtype=torch.bool)
        delta = (dtrue - dpred).abs()
        score = sum((delta < t).float() for t in (0.5, 1.0, 2.0, 4.0)) / 4
        lddt = (score * near).sum(-1) / near.sum(-1).clamp(min=1)
        plddt_labels = (lddt * 50).floor().clamp(max=49).long()

    ce = lambda logits, labels: F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    distogram = ce(pair[..., :64], dist_labels)
    binned = ce(pair[..., 64:160].reshape(b, l, l, 6, 16), dir_labels)
    pae = ce(pair[..., 160:224], pae_labels)
    plddt = ce(plddt_logits, plddt_labels)
    return distance + direction + distogram + binned + pae + plddt


def torch_vqvae(args) -> list[float]:
    import torch
    from esm.models.vqvae import StructureTokenDecoder, StructureTokenEncoder

    enc = StructureTokenEncoder(d_model=96, n_heads=1, v_heads=8, n_layers=2, d_out=32, n_codes=256)
    dec = StructureTokenDecoder(d_model=128, n_heads=4, n_layers=3)
    enc.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    dec.train()
    opt = adamw(dec.parameters())
    coords = synthetic_backbone(4, 128)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = vqvae_losses(enc, dec, coords)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t)
    return times


def torch_trunk(args) -> list[float]:
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    from esm.models.esm3 import ESM3

    model = ESM3(
        d_model=256, n_heads=4, v_heads=8, n_layers=4,
        structure_encoder_fn=None, structure_decoder_fn=None, function_decoder_fn=None,
        tokenizers=SimpleNamespace(sequence=SimpleNamespace(mask_token_id=32)),
    ).train()
    opt = adamw(model.parameters())
    b, l = 8, 130
    g = torch.Generator().manual_seed(1)
    rand = lambda lo, hi, *shape: torch.randint(lo, hi, shape, generator=g)
    inputs = dict(
        sequence_tokens=rand(4, 24, b, l),
        structure_tokens=rand(0, 4096, b, l),
        ss8_tokens=rand(3, 11, b, l),
        sasa_tokens=rand(3, 19, b, l),
        function_tokens=rand(0, 260, b, l, 8),
        residue_annotation_tokens=rand(0, 1478, b, l, 16),
        structure_coords=torch.cat([torch.full((b, 1, 3, 3), float("inf")),
                                    synthetic_backbone(b, l - 2),
                                    torch.full((b, 1, 3, 3), float("inf"))], 1),
    )
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        out = model(**inputs)
        loss = 0
        for name, target, vocab in [("sequence_logits", "sequence_tokens", 64),
                                    ("structure_logits", "structure_tokens", 4096),
                                    ("secondary_structure_logits", "ss8_tokens", 11),
                                    ("sasa_logits", "sasa_tokens", 19)]:
            keep = torch.rand(b, l, generator=g) < 0.3
            logits = getattr(out, name)[keep]
            loss = loss + F.cross_entropy(logits[:, :vocab].float(), inputs[target][keep])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t)
    return times


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    times = {"vqvae": torch_vqvae, "trunk": torch_trunk}[args.child](args)
    print(json.dumps({"times": times, "torch": torch.__version__, "threads": torch.get_num_threads()}))


# ------------------------------------------------------------------------------------------------
# Orchestrator


def ours(kind: str, steps: int, threads: int) -> list[float]:
    exe = REPO / "target" / "release" / "examples" / f"{kind}_step_bench"
    argv = {"vqvae": [str(exe), "2", "4", "128", str(steps)],
            "trunk": [str(exe), "256", "4", "8", "128", str(steps)]}[kind]
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return [float(m) for m in re.findall(r"total ([0-9.]+)s", out)]


def reference(kind: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--steps", str(args.steps), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="steps per side, the first dropped (default 6)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["vqvae", "trunk"], nargs="+", default=["vqvae", "trunk"])
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", choices=["vqvae", "trunk"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "esm3-train",
                    "--example", "vqvae_step_bench", "--example", "trunk_step_bench"], cwd=REPO, check=True)
    rows = []
    for kind in args.only:
        ref = reference(kind, args)
        mine = ours(kind, args.steps, args.threads)
        r, m = statistics.median(ref["times"][1:]), statistics.median(mine[1:])
        rows.append({"objective": kind, "reference_s": r, "esm3_rs_s": m, "ratio": r / m,
                     "reference_steps_s": ref["times"], "esm3_rs_steps_s": mine, "torch": ref["torch"]})
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"training step, {args.threads} threads, {cpu}, commit {head} (+ working tree), "
          f"torch {rows[0]['torch']}, {time.strftime('%Y-%m-%d')}")
    print("| objective | batch | reference (torch) s/step | esm3-rs s/step | ratio |")
    print("|---|---|---|---|---|")
    shapes = {"vqvae": "4 × 128", "trunk": "8 × 128"}
    for row in rows:
        print(f"| {row['objective']} | {shapes[row['objective']]} | {row['reference_s']:.3f} | "
              f"{row['esm3_rs_s']:.3f} | {row['ratio']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "commit": head, "threads": args.threads,
                                         "platform": platform.platform(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
