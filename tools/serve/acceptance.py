#!/usr/bin/env python3
"""Acceptance test of `esm3 serve` with the official, unmodified `esm` Forge client (dev only).

Runs inside the reference venv (tools/reference/.venv, `bash tools/reference/setup.sh`):

    tools/reference/.venv/bin/python tools/serve/acceptance.py \
        --url http://127.0.0.1:8080 --token TOKEN \
        --esm3-model esm3-sm-open-v1 --esmc-model esmc-300m-2024-12 \
        --esm3-dir models/esm3-rs-small --esmc-dir fixtures/reference/esmc_d64/model \
        --pdb /work/shared/data/structures/freesasa/1ubq.pdb.gz

Every check prints one `PASS name: numbers` or `FAIL name: why` line; the exit status is 1 if any check
failed. Expected shapes follow the local reference models (what code written against `ESM3` / `ESMC`
objects sees): `logits.sequence` [1, L+2, 64], `embeddings` [1, L+2, d]; `forward_and_sample` is
unbatched (tokens [L+2], per-residue embedding [L+2, d], mean embedding [d]). `--allow-unbatched`
also accepts [L+2, …] for logits/embeddings.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from esm.sdk import client as esm_client
from esm.sdk.api import (
    ESMProtein,
    ESMProteinError,
    ESMProteinTensor,
    GenerationConfig,
    LogitsConfig,
    SamplingConfig,
    SamplingTrackConfig,
)
from esm.sdk.forge import ESM3ForgeInferenceClient, ESMCForgeInferenceClient
from esm.utils.structure.protein_chain import ProteinChain

REPO = Path(__file__).resolve().parents[2]
AMINO = set("ACDEFGHIKLMNPQRSTVWY")
SEQ_VOCAB_LETTERS = AMINO | set("XBUZO")  # letters a generated sequence may contain
MASK_ID = 32  # sequence-track mask id
SEQ_VOCAB = 64  # sequence head width (ESM3 and ESM C)


# --------------------------------------------------------------------------------------------
# Reporting


class Failure(Exception):
    pass


RESULTS: list[tuple[str, bool, str]] = []


def check(name: str):
    """Decorator: run the check, record PASS (returned detail string) or FAIL (exception)."""

    def wrap(fn):
        def run(*a, **kw):
            t0 = time.time()
            try:
                detail = fn(*a, **kw) or ""
                ok = True
            except Failure as e:
                detail, ok = str(e), False
            except Exception as e:  # noqa: BLE001 - report anything as a failure
                tb = traceback.format_exc(limit=4).strip().splitlines()
                detail, ok = f"{type(e).__name__}: {e} | {' / '.join(tb[-3:])}", False
            detail = f"{detail} [{time.time() - t0:.1f} s]"
            RESULTS.append((name, ok, detail))
            print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
            return ok

        return run

    return wrap


def need(cond: bool, msg: str):
    if not cond:
        raise Failure(msg)


def not_error(x, what: str):
    if isinstance(x, ESMProteinError):
        raise Failure(f"{what} returned ESMProteinError({x.error_code}): {x.error_msg[:300]}")
    return x


def shape(x) -> tuple:
    return tuple(np.asarray(x).shape) if not isinstance(x, torch.Tensor) else tuple(x.shape)


def to_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float32).cpu().numpy()
    return np.asarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Inputs


def load_chain(path: str, chain_id: str) -> ProteinChain:
    p = Path(path)
    if p.suffix == ".gz":
        text = gzip.open(p, "rt").read()
        return ProteinChain.from_pdb(io.StringIO(text), chain_id=chain_id)
    return ProteinChain.from_pdb(str(p), chain_id=chain_id)


def model_width(model_dir: str) -> int | None:
    try:
        return int(json.loads((Path(model_dir) / "config.json").read_text())["d_model"])
    except Exception:  # noqa: BLE001
        return None


def partly_masked(seq: str, every: int = 3) -> str:
    return "".join("_" if i % every == 1 else c for i, c in enumerate(seq))


def wait_ready(url: str, seconds: float) -> None:
    deadline = time.time() + seconds
    last = ""
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/ready", timeout=5) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except Exception as e:  # noqa: BLE001
            last = f"{type(e).__name__}: {e}"
        if time.time() > deadline:
            raise SystemExit(f"server at {url} not ready after {seconds:.0f} s ({last})")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------
# Checks


@check("auth: wrong token is rejected with 401/403")
def check_auth(args):
    bad = ESM3ForgeInferenceClient(
        model=args.esm3_model, url=args.url, token=args.token + "-wrong", request_timeout=args.request_timeout
    )
    try:
        r = bad.encode(ESMProtein(sequence="MKTAYIAK"))
    except ESMProteinError as e:  # raised instead of returned: still an ESMProteinError
        r = e
    need(isinstance(r, ESMProteinError), f"expected ESMProteinError, got {type(r).__name__}")
    need(r.error_code in (401, 403), f"error_code {r.error_code} (want 401 or 403): {r.error_msg[:200]}")
    return f"error_code={r.error_code} msg={r.error_msg[:120]!r}"


@check("ESM3 encode/decode round trip of a PDB chain")
def check_roundtrip(args, c, protein):
    L = len(protein)
    t = not_error(c.encode(protein), "encode")
    need(isinstance(t, ESMProteinTensor), f"encode returned {type(t).__name__}")
    need(t.sequence is not None and shape(t.sequence) == (L + 2,), f"sequence tokens shape {shape(t.sequence)} != ({L + 2},)")
    need(t.structure is not None and shape(t.structure) == (L + 2,), f"structure tokens shape {shape(t.structure) if t.structure is not None else None} != ({L + 2},)")
    st = t.structure.tolist()
    need(st[0] == 4098 and st[-1] == 4097, f"structure BOS/EOS {st[0]}/{st[-1]} != 4098/4097")
    need(all(0 <= x < 4096 for x in st[1:-1]), "structure tokens outside [0, 4096)")
    extra = ""
    if t.coordinates is not None:
        need(shape(t.coordinates) == (L + 2, 37, 3), f"encode coordinates shape {shape(t.coordinates)} != ({L + 2}, 37, 3)")
        n_inf = int(torch.isinf(t.coordinates).sum())
        need(n_inf == 0, f"encode coordinates contain {n_inf} ±inf values: the client cannot send this tensor back (httpx allow_nan=False); send null")
        extra = ", coordinates [L+2,37,3]"
    p = not_error(c.decode(t), "decode")
    need(isinstance(p, ESMProtein), f"decode returned {type(p).__name__}")
    need(p.sequence == protein.sequence, f"decoded sequence differs: {p.sequence!r} vs {protein.sequence!r}")
    need(p.coordinates is not None and shape(p.coordinates) == (L, 37, 3), f"decoded coordinates shape {shape(p.coordinates) if p.coordinates is not None else None} != ({L}, 37, 3)")
    need(p.plddt is not None and shape(p.plddt) == (L,), f"decoded plddt shape {shape(p.plddt) if p.plddt is not None else None} != ({L},)")
    need(p.ptm is not None and to_np(p.ptm).size == 1, f"decoded ptm {p.ptm!r}")
    rmsd = ca_rmsd(to_np(protein.coordinates)[:, 1], to_np(p.coordinates)[:, 1])
    return (
        f"L={L}, tokens [L+2]{extra}; decoded seq equal, coords {shape(p.coordinates)}, "
        f"mean pLDDT {float(to_np(p.plddt).mean()):.3f}, pTM {float(to_np(p.ptm).reshape(-1)[0]):.3f}, "
        f"CA RMSD to input {rmsd:.2f} Å (info)"
    )


def ca_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok] - a[ok].mean(0), b[ok] - b[ok].mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((b @ r - a) ** 2).sum(1).mean()))


@check("ESM3 sequence generation from a partly masked sequence")
def check_seq_generation(args, c, seq):
    prompt = partly_masked(seq)
    n_mask = prompt.count("_")
    out = not_error(c.generate(ESMProtein(sequence=prompt), GenerationConfig(track="sequence", num_steps=8)), "generate")
    need(isinstance(out, ESMProtein) and out.sequence is not None, f"generate returned {out!r:.200}")
    s = out.sequence
    need(len(s) == len(prompt), f"length {len(s)} != {len(prompt)}")
    need("_" not in s, f"{s.count('_')} positions still masked: {s}")
    kept = sum(1 for a, b in zip(prompt, s) if a != "_" and a == b)
    need(kept == len(prompt) - n_mask, f"only {kept}/{len(prompt) - n_mask} unmasked letters kept")
    bad = set(s) - SEQ_VOCAB_LETTERS
    need(not bad, f"unexpected letters {sorted(bad)}")
    same = sum(1 for a, b, m in zip(seq, s, prompt) if m == "_" and a == b)
    return f"L={len(s)}, {n_mask} masked filled, {kept} kept, native identity at masked {same}/{n_mask} (info)"


@check("ESM3 structure generation")
def check_struct_generation(args, c, seq):
    L = len(seq)
    out = not_error(c.generate(ESMProtein(sequence=seq), GenerationConfig(track="structure", num_steps=8)), "generate")
    need(isinstance(out, ESMProtein), f"generate returned {type(out).__name__}")
    need(out.sequence == seq, "sequence changed by structure generation")
    need(out.coordinates is not None and shape(out.coordinates) == (L, 37, 3), f"coordinates shape {shape(out.coordinates) if out.coordinates is not None else None} != ({L}, 37, 3)")
    bb = to_np(out.coordinates)[:, :3]
    need(np.isfinite(bb).all(), "non-finite backbone (N, CA, C) coordinates")
    need(out.plddt is not None and shape(out.plddt) == (L,), f"plddt shape {shape(out.plddt) if out.plddt is not None else None} != ({L},)")
    pl = to_np(out.plddt)
    need(np.isfinite(pl).all() and (pl >= 0).all() and (pl <= 1).all(), "plddt outside [0, 1]")
    need(out.ptm is not None, "ptm missing")
    ptm = float(to_np(out.ptm).reshape(-1)[0])
    need(math.isfinite(ptm) and 0 <= ptm <= 1, f"ptm {ptm} outside [0, 1]")
    return f"L={L}, coords {shape(out.coordinates)}, mean pLDDT {pl.mean():.3f}, pTM {ptm:.3f}"


@check("ESM3 inverse folding (coordinates only → sequence)")
def check_inverse_folding(args, c, protein):
    L = len(protein)
    out = not_error(
        c.generate(ESMProtein(coordinates=protein.coordinates), GenerationConfig(track="sequence", num_steps=8)),
        "generate",
    )
    need(isinstance(out, ESMProtein) and out.sequence is not None, f"generate returned {out!r:.200}")
    s = out.sequence
    need(len(s) == L, f"length {len(s)} != {L}")
    need("_" not in s, f"{s.count('_')} positions still masked")
    bad = set(s) - SEQ_VOCAB_LETTERS
    need(not bad, f"unexpected letters {sorted(bad)}")
    rec = sum(a == b for a, b in zip(s, protein.sequence)) / L
    return f"L={L}, recovery vs native {rec:.1%} (info): {s[:40]}…"


@check("ESM3 forward_and_sample (sequence track, topk_logprobs=3, embeddings)")
def check_forward_and_sample(args, c, seq, d):
    prompt = partly_masked(seq)
    t = not_error(c.encode(ESMProtein(sequence=prompt)), "encode")
    n = len(prompt) + 2
    cfg = SamplingConfig(
        sequence=SamplingTrackConfig(topk_logprobs=3),
        return_mean_embedding=True,
        return_per_residue_embeddings=True,
    )
    out = not_error(c.forward_and_sample(t, cfg), "forward_and_sample")
    tok = out.protein_tensor.sequence
    need(tok is not None and shape(tok) == (n,), f"protein_tensor.sequence shape {shape(tok) if tok is not None else None} != ({n},)")
    before, after = t.sequence.tolist(), tok.tolist()
    masked = [i for i, x in enumerate(before) if x == MASK_ID]
    need(all(after[i] != MASK_ID and 4 <= after[i] <= 30 for i in masked), "masked positions not filled with standard tokens")
    need(all(after[i] == before[i] for i in range(n) if i not in set(masked)), "unmasked tokens changed")
    for name, fd, want in [
        ("logprob", out.logprob, (n,)),
        ("prob", out.prob, (n,)),
        ("entropy", out.entropy, (n,)),
        ("topk_logprob", out.topk_logprob, (n, 3)),
        ("topk_tokens", out.topk_tokens, (n, 3)),
    ]:
        v = None if fd is None else fd.sequence
        need(v is not None and shape(v) == want, f"{name}.sequence shape {shape(v) if v is not None else None} != {want}")
    lp = to_np(out.logprob.sequence)
    need(np.all(lp[masked] <= 1e-6), "sampled-token logprob > 0")
    pr = out.per_residue_embedding
    me = out.mean_embedding
    need(pr is not None and me is not None, "embeddings missing")
    pr, me = to_np(pr), to_np(me)
    need(pr.ndim == 2 and pr.shape[0] == n, f"per_residue_embedding shape {pr.shape} != ({n}, d)")
    need(me.shape == (pr.shape[1],), f"mean_embedding shape {me.shape} != ({pr.shape[1]},)")
    if d is not None:
        need(pr.shape[1] == d, f"embedding width {pr.shape[1]} != d_model {d}")
    diff = float(np.abs(pr.mean(0) - me).max())
    need(diff <= 1e-4 * max(1.0, float(np.abs(me).max())), f"mean_embedding != mean of per_residue over L+2 (max diff {diff:.2e})")
    return (
        f"tokens [{n}], {len(masked)} masked filled, logprob/prob/entropy [{n}], topk [{n},3], "
        f"per_residue {pr.shape}, mean {me.shape} (= mean over L+2, diff {diff:.1e})"
    )


def run_embed(args, model_dir: str, seq: str) -> tuple[np.ndarray, np.ndarray]:
    binary = Path(args.esm3)
    if not binary.is_absolute():
        binary = (Path.cwd() / binary) if (Path.cwd() / binary).exists() else REPO / binary
    if not binary.exists():
        raise Failure(f"{binary} not found (build it: cargo build --release)")
    with tempfile.TemporaryDirectory() as tmp:
        fa, out = Path(tmp) / "in.fasta", Path(tmp) / "out.safetensors"
        fa.write_text(f">q\n{seq}\n")
        cmd = [str(binary), "embed", str(fa), "-o", str(out), "--model-dir", model_dir]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.request_timeout)
        if r.returncode != 0:
            raise Failure(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        from safetensors.numpy import load_file

        tensors = load_file(str(out))
    return tensors["q.per_residue"], tensors["q.mean"]


def check_logits_common(args, cl, seq, d, model_dir):
    L = len(seq)
    t = not_error(cl.encode(ESMProtein(sequence=seq)), "encode")
    need(t.sequence is not None and shape(t.sequence) == (L + 2,), f"encode sequence shape {shape(t.sequence) if t.sequence is not None else None}")
    out = not_error(cl.logits(t, LogitsConfig(sequence=True, return_embeddings=True)), "logits")
    need(out.logits is not None and out.logits.sequence is not None, "logits.sequence missing")
    lg, em = out.logits.sequence, out.embeddings
    need(em is not None, "embeddings missing")
    want_l, want_e = (1, L + 2, SEQ_VOCAB), (1, L + 2, d if d is not None else shape(em)[-1])
    ok_l = shape(lg) == want_l or (args.allow_unbatched and shape(lg) == want_l[1:])
    ok_e = shape(em) == want_e or (args.allow_unbatched and shape(em) == want_e[1:])
    need(ok_l, f"logits.sequence shape {shape(lg)} != {want_l}")
    need(ok_e, f"embeddings shape {shape(em)} != {want_e}")
    lg_np, em_np = to_np(lg).reshape(L + 2, -1), to_np(em).reshape(L + 2, -1)
    need(np.isfinite(em_np).all(), "non-finite embeddings")
    per_res, mean = run_embed(args, model_dir, seq)
    need(per_res.shape == (L, em_np.shape[1]), f"esm3 embed per_residue shape {per_res.shape} != ({L}, {em_np.shape[1]})")
    diff = float(np.abs(em_np[1:-1] - per_res).max())
    mdiff = float(np.abs(em_np[1:-1].mean(0) - mean).max())
    need(diff <= 1e-4, f"max |server − esm3 embed| = {diff:.2e} > 1e-4 (residue rows 1..L)")
    need(mdiff <= 1e-4, f"mean over residues differs from esm3 embed's by {mdiff:.2e}")
    return (
        f"L={L}, logits.sequence {shape(lg)}, embeddings {shape(em)}, argmax-top1 of logits row 1 = "
        f"{int(lg_np[1].argmax())}; vs `esm3 embed`: max abs diff {diff:.2e}, mean diff {mdiff:.2e}"
    )


@check("ESM3 logits(sequence, return_embeddings) + parity with `esm3 embed`")
def check_esm3_logits(args, c, seq, d):
    return check_logits_common(args, c, seq, d, args.esm3_dir)


@check("ESM C logits via ESMCForgeInferenceClient + parity with `esm3 embed`")
def check_esmc_logits(args, seq, d):
    cl = ESMCForgeInferenceClient(model=args.esmc_model, url=args.url, token=args.token, request_timeout=args.request_timeout)
    return check_logits_common(args, cl, seq, d, args.esmc_dir)


@check("ESM C via esm.sdk.client(model=ESMC) (ESM3 client class, as the cookbook does)")
def check_esmc_via_sdk_client(args, seq, d):
    cl = esm_client(model=args.esmc_model, url=args.url, token=args.token, request_timeout=args.request_timeout)
    need(isinstance(cl, ESM3ForgeInferenceClient), f"unexpected client class {type(cl).__name__}")
    return check_logits_common(args, cl, seq, d, args.esmc_dir)


@check("ESM C hidden_states (ith_hidden_layer=-1: all layers; =0: one layer)")
def check_esmc_hidden(args, seq, d, n_layers):
    L = len(seq)
    cl = ESMCForgeInferenceClient(model=args.esmc_model, url=args.url, token=args.token, request_timeout=args.request_timeout)
    t = not_error(cl.encode(ESMProtein(sequence=seq)), "encode")
    all_h = not_error(cl.logits(t, LogitsConfig(return_hidden_states=True)), "logits").hidden_states
    one_h = not_error(cl.logits(t, LogitsConfig(return_hidden_states=True, ith_hidden_layer=0)), "logits").hidden_states
    need(all_h is not None and one_h is not None, "hidden_states missing")
    dd = d if d is not None else shape(all_h)[-1]
    nl = n_layers if n_layers is not None else shape(all_h)[0]
    need(shape(all_h) == (nl, 1, L + 2, dd), f"ith_hidden_layer=-1 shape {shape(all_h)} != ({nl}, 1, {L + 2}, {dd}) (reference: all layers)")
    need(shape(one_h) == (1, 1, L + 2, dd), f"ith_hidden_layer=0 shape {shape(one_h)} != (1, 1, {L + 2}, {dd})")
    diff = float(np.abs(to_np(all_h)[0] - to_np(one_h)[0]).max())
    need(diff <= 1e-5, f"layer 0 differs between the two calls by {diff:.2e}")
    return f"all {shape(all_h)}, one {shape(one_h)}"


@check("ESM3 batch_generate of 8 prompts of mixed lengths")
def check_batch_generate(args, c, seq):
    lengths = [8, 13, 21, 30, 44, 57, 68, len(seq)]
    prompts = [partly_masked((seq * 3)[i : i + n], every=2) for i, n in enumerate(lengths)]
    configs = [GenerationConfig(track="sequence", num_steps=4) for _ in prompts]
    t0 = time.time()
    outs = c.batch_generate([ESMProtein(sequence=p) for p in prompts], configs)
    dt = time.time() - t0
    need(len(outs) == len(prompts), f"{len(outs)} results for {len(prompts)} prompts")
    bad = []
    for p, o in zip(prompts, outs):
        if isinstance(o, ESMProteinError):
            bad.append(f"L={len(p)}: ESMProteinError({o.error_code}) {o.error_msg[:120]}")
        elif not isinstance(o, ESMProtein) or o.sequence is None or len(o.sequence) != len(p) or "_" in o.sequence:
            bad.append(f"L={len(p)}: bad output {getattr(o, 'sequence', o)!r:.80}")
        elif any(a != "_" and a != b for a, b in zip(p, o.sequence)):
            bad.append(f"L={len(p)}: unmasked letters changed")
    need(not bad, "; ".join(bad))
    return f"lengths {lengths} all generated in {dt:.1f} s"


class _RetryCounter(io.TextIOBase):
    """stdout proxy counting the client's 'Retrying...' lines (tenacity before_sleep prints)."""

    def __init__(self, inner):
        self.inner, self.count, self.lock = inner, 0, threading.Lock()

    def write(self, s):
        if "Retrying..." in s:
            with self.lock:
                self.count += 1
        return self.inner.write(s)

    def flush(self):
        self.inner.flush()


@check("16 concurrent clients (threads), one generate each")
def check_concurrency(args, seq, n_clients=16):
    prompt = partly_masked(seq[:40], every=2)
    results: list = [None] * n_clients
    lat: list = [0.0] * n_clients
    barrier = threading.Barrier(n_clients)

    def worker(i):
        cl = ESM3ForgeInferenceClient(model=args.esm3_model, url=args.url, token=args.token, request_timeout=args.request_timeout)
        barrier.wait()
        t0 = time.time()
        try:
            results[i] = cl.generate(ESMProtein(sequence=prompt), GenerationConfig(track="sequence", num_steps=4))
        except BaseException as e:  # noqa: BLE001 - tenacity.RetryError after 5 x 429, etc.
            results[i] = e
        lat[i] = time.time() - t0
        cl.close()

    counter = _RetryCounter(sys.stdout)
    old, sys.stdout = sys.stdout, counter
    try:
        t0 = time.time()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.time() - t0
    finally:
        sys.stdout = old
    bad = []
    for i, r in enumerate(results):
        if isinstance(r, ESMProteinError):
            bad.append(f"#{i}: ESMProteinError({r.error_code}) {r.error_msg[:100]}")
        elif isinstance(r, BaseException):
            bad.append(f"#{i}: {type(r).__name__}: {str(r)[:100]}")
        elif not isinstance(r, ESMProtein) or r.sequence is None or "_" in r.sequence:
            bad.append(f"#{i}: bad output")
    need(not bad, f"{len(bad)}/{n_clients} failed (client retries: {counter.count}): " + "; ".join(bad[:4]))
    return (
        f"{n_clients}/{n_clients} ok in {wall:.1f} s wall, latency p50 {np.median(lat):.2f} s max {max(lat):.2f} s, "
        f"client 429/502/504 retries {counter.count}"
    )


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", required=True, help="a valid bearer token (any non-empty string with --no-auth)")
    ap.add_argument("--esm3-model", default="esm3-sm-open-v1")
    ap.add_argument("--esmc-model", default="esmc-300m-2024-12")
    ap.add_argument("--esm3-dir", required=True, help="the ESM3 model dir the server loaded (for `esm3 embed`)")
    ap.add_argument("--esmc-dir", required=True, help="the ESM C model dir the server loaded (for `esm3 embed`)")
    ap.add_argument("--pdb", required=True, help="PDB file (.pdb or .pdb.gz) with a protein chain")
    ap.add_argument("--chain", default="detect", help="chain id (default: first protein chain)")
    ap.add_argument("--esm3", default="target/release/esm3", help="esm3 binary for the embedding parity checks")
    ap.add_argument("--request-timeout", type=float, default=600.0, help="per-request client timeout, s")
    ap.add_argument("--wait", type=float, default=0.0, help="first wait up to this many s for GET /ready == 200")
    ap.add_argument("--allow-unbatched", action="store_true", help="also accept [L+2, …] logits/embeddings")
    ap.add_argument("--skip-auth", action="store_true", help="skip the wrong-token check (server runs --no-auth)")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only checks whose name matches")
    args = ap.parse_args()

    if args.wait > 0:
        wait_ready(args.url, args.wait)

    chain = load_chain(args.pdb, args.chain)
    protein = ESMProtein.from_protein_chain(chain)
    seq = protein.sequence
    d3, dc = model_width(args.esm3_dir), model_width(args.esmc_dir)
    try:
        nlc = int(json.loads((Path(args.esmc_dir) / "config.json").read_text())["n_layers"])
    except Exception:  # noqa: BLE001
        nlc = None
    print(f"# {args.pdb} chain {chain.chain_id}: L={len(seq)} {seq}")
    print(f"# server {args.url}; ESM3 {args.esm3_model} (d={d3}), ESM C {args.esmc_model} (d={dc}, layers={nlc})", flush=True)
    c = ESM3ForgeInferenceClient(model=args.esm3_model, url=args.url, token=args.token, request_timeout=args.request_timeout)

    plan = [
        ("auth", lambda: None if args.skip_auth else check_auth(args)),
        ("round trip", lambda: check_roundtrip(args, c, protein)),
        ("sequence generation", lambda: check_seq_generation(args, c, seq)),
        ("structure generation", lambda: check_struct_generation(args, c, seq)),
        ("inverse folding", lambda: check_inverse_folding(args, c, protein)),
        ("forward_and_sample", lambda: check_forward_and_sample(args, c, seq, d3)),
        ("ESM3 logits", lambda: check_esm3_logits(args, c, seq, d3)),
        ("ESM C logits", lambda: check_esmc_logits(args, seq, dc)),
        ("ESM C via esm.sdk.client", lambda: check_esmc_via_sdk_client(args, seq, dc)),
        ("ESM C hidden_states", lambda: check_esmc_hidden(args, seq, dc, nlc)),
        ("batch_generate", lambda: check_batch_generate(args, c, seq)),
        ("concurrent", lambda: check_concurrency(args, seq)),
    ]
    only = [s.strip().lower() for s in args.only.split(",") if s.strip()]
    for key, fn in plan:
        if only and not any(o in key.lower() for o in only):
            continue
        fn()

    n_fail = sum(1 for _, ok, _ in RESULTS if not ok)
    print(f"# {len(RESULTS) - n_fail}/{len(RESULTS)} checks passed")
    return 1 if n_fail or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
