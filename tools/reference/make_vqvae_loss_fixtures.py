#!/usr/bin/env python3
"""Independent NumPy implementation of the VQ-VAE training losses (spec esm3-training.md §3.2-3.4)
on a small fixed example; writes fixtures/training/vqvae_losses.json for
crates/esm3-train/tests/vqvae_fixture.rs.

Logits are defined by closed formulas (evaluated on both sides) so the JSON stays small.
Run: tools/reference/.venv/bin/python tools/reference/make_vqvae_loss_fixtures.py
"""
import json
import os

import numpy as np

B, L = 2, 5
EPS = 1e-8


def chain(rng, n):
    ca = np.cumsum(rng.normal(size=(n, 3)) * 2.2, axis=0)
    out = np.zeros((n, 3, 3))
    for a, off in enumerate([[-1.0, 0.8, 0.3], [0.0, 0.0, 0.0], [1.2, 0.4, -0.5]]):
        out[:, a] = ca + np.array(off) + 0.1 * rng.normal(size=(n, 3))
    return np.round(out, 3)


def pair_logits(b, l):
    i, j, c = np.meshgrid(np.arange(l), np.arange(l), np.arange(224), indexing="ij")
    return np.stack([2.0 * np.sin(0.37 * r + 0.71 * i + 0.29 * j + 0.113 * c + 0.05 * i * j)
                     for r in range(b)])


def if_logits(b, l):
    i, v = np.meshgrid(np.arange(l), np.arange(64), indexing="ij")
    return np.stack([1.5 * np.cos(0.3 * r + 0.53 * i + 0.17 * v) for r in range(b)])


def plddt_logits(b, l):
    i, k = np.meshgrid(np.arange(l), np.arange(50), indexing="ij")
    return np.stack([1.7 * np.sin(0.41 * r + 0.23 * i + 0.19 * k) for r in range(b)])


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def ce(logits, labels, mask):
    nll = -np.take_along_axis(log_softmax(logits), labels[..., None], -1)[..., 0]
    return float((nll * mask).sum() / max(mask.sum(), 1.0))


def normalize(v):
    # Zero vectors (coordinates of invalid residues are zeroed) stay zero; they are masked.
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def main():
    rng = np.random.default_rng(7)
    truth = np.stack([chain(rng, L), chain(rng, L)])
    truth[0, 1, 2, 0] = np.nan  # residue (0, 1) lacks C
    real = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], bool)
    truth[1, 4] = np.nan  # padding
    residue_index = np.array([[0, 1, 2, 4, 5], [0, 1, 2, 3, 4]])
    sequence = np.array([[4, 5, 24, 9, 12], [7, 18, 22, 13, 1]])  # 24 = X, 1 = PAD
    pred = np.round(np.nan_to_num(truth) + rng.normal(size=truth.shape) * 0.6, 3)
    pred[0, 3, 0] += np.array([8.0, -3.0, 1.0])  # one far-off atom: exercises the clamps

    valid = real & np.isfinite(truth).all(axis=(2, 3))
    t = np.where(valid[:, :, None, None], truth, 0.0)

    # (1) distance loss over 3L points.
    def dmat(x):
        p = x.reshape(B, 3 * L, 3)
        return np.sqrt(((p[:, :, None] - p[:, None]) ** 2).sum(-1) + EPS)

    am = np.repeat(valid, 3, axis=1).astype(float)
    pm3 = am[:, :, None] * am[:, None]
    e = np.minimum((dmat(pred) - dmat(t)) ** 2, 25.0)
    distance = float((e * pm3).sum() / pm3.sum())

    # (2) direction loss over 6L vectors.
    bonded = np.zeros((B, L), bool)
    bonded[:, :-1] = valid[:, :-1] & valid[:, 1:] & (np.diff(residue_index, axis=1) == 1)

    def vectors(x):
        n, ca, c = x[:, :, 0], x[:, :, 1], x[:, :, 2]
        n_next = np.concatenate([n[:, 1:], np.zeros((B, 1, 3))], 1)
        c_prev = np.concatenate([np.zeros((B, 1, 3)), c[:, :-1]], 1)
        v1, v2 = ca - n, c - ca
        v3 = n_next - c
        return np.stack([v1, v2, v3, -np.cross(v1, v2), np.cross(n - c_prev, v1),
                         np.cross(v2, v3)], 2).reshape(B, 6 * L, 3)

    prev = np.concatenate([np.zeros((B, 1), bool), bonded[:, :-1]], 1)
    vm = np.stack([valid, valid, bonded, valid, prev, bonded], 2).reshape(B, 6 * L).astype(float)
    gp = np.einsum("bik,bjk->bij", vectors(pred), vectors(pred))
    gt = np.einsum("bik,bjk->bij", vectors(t), vectors(t))
    e = np.minimum((gp - gt) ** 2, 20.0)
    pm6 = vm[:, :, None] * vm[:, None]
    direction = float((e * pm6).sum() / pm6.sum())

    pair_mask = (valid[:, :, None] & valid[:, None]).astype(float)
    logits = pair_logits(B, L)

    # (3) binned direction classification.
    u1 = normalize(t[:, :, 2] - t[:, :, 1])
    u2 = normalize(t[:, :, 0] - t[:, :, 1])
    u3 = normalize(np.cross(u1, u2))
    u = np.stack([u1, u2, u3], 2)  # [B, L, 3, 3]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    dots = np.stack([np.einsum("bik,bjk->bij", u[:, :, a], u[:, :, c]) for a, c in pairs], -1)
    # 1e-9 bin tolerance: diagonal products are 0 exactly, up to rounding, and must not flip.
    dir_labels = np.clip(np.floor((dots + 1.0) / 0.125 + 1e-9), 0, 15).astype(int)
    dir_logits = logits[..., 64:160].reshape(B, L, L, 6, 16)
    binned_direction = ce(dir_logits, dir_labels, np.repeat(pair_mask[..., None], 6, -1))

    # (4) distogram on virtual Cb.
    bv = t[:, :, 1] - t[:, :, 0]
    cv = t[:, :, 2] - t[:, :, 1]
    nv = np.cross(bv, cv)
    cb = -0.58273431 * nv + 0.56802827 * bv - 0.54067466 * cv + t[:, :, 1]
    d2 = ((cb[:, :, None] - cb[:, None]) ** 2).sum(-1)
    lower = np.concatenate([[0.0], (2.3125 + 0.3125 * np.arange(63)) ** 2])
    dg_labels = (d2[..., None] >= lower).sum(-1) - 1
    distogram = ce(logits[..., :64], dg_labels, pair_mask)

    # (5) inverse folding.
    if_mask = (valid & (sequence >= 4) & (sequence <= 23)).astype(float)
    inverse_folding = ce(if_logits(B, L), sequence, if_mask)

    # pLDDT: LDDT-Ca of pred vs truth.
    ca_t, ca_p = t[:, :, 1], pred[:, :, 1]
    dt = np.linalg.norm(ca_t[:, :, None] - ca_t[:, None], axis=-1)
    dp = np.linalg.norm(ca_p[:, :, None] - ca_p[:, None], axis=-1)
    incl = (dt < 15.0) & pair_mask.astype(bool) & ~np.eye(L, dtype=bool)[None]
    delta = np.abs(dt - dp)
    hits = sum((delta < th).astype(float) for th in [0.5, 1.0, 2.0, 4.0]) / 4.0
    n_incl = incl.sum(-1)
    lddt = np.where(n_incl > 0, (hits * incl).sum(-1) / np.maximum(n_incl, 1), 0.0)
    pl_labels = np.minimum(np.floor(lddt * 50), 49).astype(int)
    pl_mask = (valid & (n_incl > 0)).astype(float)
    plddt = ce(plddt_logits(B, L), pl_labels, pl_mask)

    # pAE: aligned error with frames (x from C to CA, N in xy plane, origin CA).
    def frames(x):
        e0 = normalize(x[:, :, 1] - x[:, :, 2])
        xy = x[:, :, 0] - x[:, :, 1]
        e1 = normalize(xy - (e0 * xy).sum(-1, keepdims=True) * e0)
        return np.stack([e0, e1, np.cross(e0, e1)], -2), x[:, :, 1]  # rows = axes

    rp, op = frames(pred)
    rt, ot = frames(np.where(valid[:, :, None, None], t, np.array([[0, 1, 0], [0, 0, 0], [-1, 0, 0]])))
    loc_p = np.einsum("biak,bijk->bija", rp, pred[:, None, :, 1] - op[:, :, None])
    loc_t = np.einsum("biak,bijk->bija", rt, t[:, None, :, 1] - ot[:, :, None])
    err2 = ((loc_p - loc_t) ** 2).sum(-1)
    edges2 = np.linspace(0.0, 31.0, 63) ** 2
    pae_labels = (err2[..., None] > edges2).sum(-1)
    pae = ce(logits[..., 160:224], pae_labels, pair_mask)

    # Codebook EMA step on a hand-made example (K = 4 codes, d = 2).
    cb_n = np.array([2.0, 0.5, 1.2, 0.0])
    cb_s = np.array([[2.0, 0.0], [0.5, 0.5], [-1.0, 1.0], [0.0, 0.0]])
    z = np.array([[1.0, 0.2], [0.8, -0.2], [-1.0, 1.2], [0.4, 0.4]])
    codes = np.array([0, 0, 2, 1])
    n_k = np.bincount(codes, minlength=4).astype(float)
    s_k = np.zeros((4, 2))
    np.add.at(s_k, codes, z)
    new_n = 0.99 * cb_n + 0.01 * n_k
    new_s = 0.99 * cb_s + 0.01 * s_k
    tot = new_n.sum()
    w = (new_n + 1e-7) / (tot + 4 * 1e-7) * tot
    new_e = new_s / w[:, None]

    def nan_to_none(a):
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(a).ravel()]

    out = {
        "batch": B, "len": L,
        "truth": nan_to_none(truth), "pred": [float(v) for v in pred.ravel()],
        "real": [bool(v) for v in real.ravel()],
        "residue_index": [int(v) for v in residue_index.ravel()],
        "sequence": [int(v) for v in sequence.ravel()],
        "logit_formulas": {
            "pair": "2 sin(0.37 b + 0.71 i + 0.29 j + 0.113 c + 0.05 i j), c < 224",
            "inverse_folding": "1.5 cos(0.3 b + 0.53 i + 0.17 v), v < 64",
            "plddt": "1.7 sin(0.41 b + 0.23 i + 0.19 k), k < 50",
        },
        "labels": {
            "distogram": [int(v) for v in dg_labels.ravel()],
            "direction": [int(v) for v in dir_labels.ravel()],
            "plddt": [int(v) for v in pl_labels.ravel()],
            "plddt_mask": [bool(v) for v in pl_mask.ravel()],
            "pae": [int(v) for v in pae_labels.ravel()],
        },
        "losses": {
            "distance": distance, "direction": direction,
            "binned_direction": binned_direction, "distogram": distogram,
            "inverse_folding": inverse_folding, "plddt": plddt, "pae": pae,
        },
        "codebook": {
            "counts": cb_n.tolist(), "sums": cb_s.ravel().tolist(),
            "z": z.ravel().tolist(), "codes": codes.tolist(),
            "new_counts": new_n.tolist(), "new_sums": new_s.ravel().tolist(),
            "new_embeddings": new_e.ravel().tolist(),
        },
    }
    path = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "training",
                        "vqvae_losses.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(path, json.dumps(out["losses"], indent=1))


if __name__ == "__main__":
    main()
