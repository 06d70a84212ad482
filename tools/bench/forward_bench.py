#!/usr/bin/env python
"""Side-by-side forward benchmark: `esm3 forward` (esm3-rs) vs the reference ESM3 in PyTorch.

Run with the reference venv (tools/reference/setup.sh creates it), from anywhere:

    tools/reference/.venv/bin/python tools/bench/forward_bench.py            # L = 64 256 512, 3 repeats
    tools/reference/.venv/bin/python tools/bench/forward_bench.py --lengths 64 --repeats 1

What it does (see tools/bench/README.md for the why):

1. Once, cached under <repo>/bench-out/esm3_sm_size/ (git-ignored): a random ESM3 at the size of
   esm3-sm-open-v1 (d_model 1536, 24 heads, 256 geometric heads, 48 layers; 1.4 B parameters,
   5.6 GB in f32), every parameter seeded and moved off its default init, written as
   config.json + model.safetensors with the reference state-dict names. Built in a child process,
   so its memory is gone before any timing starts.
2. Per L (L = total tokens, BOS and EOS included, so L - 2 residues), B = 1: random sequence /
   structure / ss8 / sasa / function / residue-annotation tokens and plDDT, plus the backbone
   (N, CA, C) of the first L - 2 residues of a real 597-residue chain (7DDO chain A from
   /work/shared/data/structures), +inf rows at BOS/EOS. Written once to
   bench-out/forward_bench/L<L>/input.safetensors; both implementations read that same file.
3. Per L, the reference first, then esm3-rs, each in its own child process (one child per
   (implementation, L)); peak RSS is that child's ru_maxrss from os.wait4. Reference child:
   torch.set_num_threads(T), ESM3 built on the meta device and the safetensors state dict
   assigned to it (no random init, no second copy of the weights), eval(), no_grad(), one warm-up
   forward, then N timed forwards. esm3-rs child: `esm3 forward --repeat N+1 --timings`,
   RAYON_NUM_THREADS=T, the first forward (warm-up) dropped. Median of the N timed forwards.
4. Prints (and writes to bench-out/forward_bench.md) a markdown table of median forward time,
   ratio, peak RSS and load time of each, every single timing, the outputs' agreement, and the
   machine. No timing is asserted anywhere.

On a shared machine: before each child the script waits (--quiet-wait, default up to 900 s) for
other processes to go below 10 % of the CPUs, measures how much CPU other processes used while
the child ran (flagged with * in the table above 10 %), and --nice -15 (root) runs the timed
children in their own scheduler autogroup at high priority. Two threads that synchronise after
every matmul lose 2-3x when a compiler takes one core away, so an unflagged table needs either an
idle machine or --nice.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "bench-out"
BENCH_DIR = OUT_DIR / "forward_bench"
TABLE_MD = OUT_DIR / "forward_bench.md"

# The published sizes (spec: esm3-reference.md, model table): esm3-sm-open-v1, ESM C 300M / 600M.
# `dir`: cached random-weight model under bench-out/; `run`: per-L inputs, logs and timings.
MODELS = {
    "esm3": {
        "label": "ESM3 esm3-sm-open-v1 size (d_model 1536, 24 heads, 256 geometric heads, 48 layers)",
        "config": {"model_type": "esm3", "d_model": 1536, "n_heads": 24, "v_heads": 256, "n_layers": 48},
        "seed": 3141,
        "dir": OUT_DIR / "esm3_sm_size",
        "run": BENCH_DIR,
    },
    "esmc-300m": {
        "label": "ESM C 300M size (d_model 960, 15 heads, 30 layers)",
        "config": {"model_type": "esmc", "d_model": 960, "n_heads": 15, "n_layers": 30},
        "seed": 3142,
        "dir": OUT_DIR / "esmc_300m_size",
        "run": BENCH_DIR / "esmc-300m",
    },
    "esmc-600m": {
        "label": "ESM C 600M size (d_model 1152, 18 heads, 36 layers)",
        "config": {"model_type": "esmc", "d_model": 1152, "n_heads": 18, "n_layers": 36},
        "seed": 3143,
        "dir": OUT_DIR / "esmc_600m_size",
        "run": BENCH_DIR / "esmc-600m",
    },
}
# Bump when the generated weights would change, so a stale cache is rebuilt.
GEN_VERSION = 1
PERTURBATION = (
    "LayerNorm weight 1+0.1*randn, LayerNorm/Linear bias 0.1*randn, Linear weight "
    "randn/sqrt(fan_in), Embedding/EmbeddingBag weight 0.5*randn (padding rows included), "
    "geometric distance/rotation scales 0.5*randn (ESM3)"
)
STRUCTURES = Path(os.environ.get("ESM3RS_STRUCTURES", "/work/shared/data/structures"))
CHAIN = ("biopython/7DDO.pdb.gz", "A")  # 597 residues, numbered 19..615 without gaps
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
SEQ_BOS, SEQ_EOS = 0, 2
STRUCT_BOS, STRUCT_EOS = 4098, 4097
DISTURBED = 0.10  # foreign CPU share above which a timing is flagged in the table


def log(*a) -> None:
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# Children (run as `forward_bench.py --child KIND ...`)


def output_names(model: str) -> list[str]:
    return ESM3_OUTPUTS if MODELS[model]["config"]["model_type"] == "esm3" else ESMC_OUTPUTS


def reference_module(model: str, meta: bool):
    """The reference's ESM3 (no VQ-VAE/function decoders) or ESMC, on the meta device or CPU.
    ESMC without flash attention: on a CPU the reference's own path is torch SDPA."""
    import torch
    from types import SimpleNamespace

    cfg = MODELS[model]["config"]
    if cfg["model_type"] == "esm3":
        from esm.models.esm3 import ESM3

        build = lambda: ESM3(
            d_model=cfg["d_model"],
            n_heads=cfg["n_heads"],
            v_heads=cfg["v_heads"],
            n_layers=cfg["n_layers"],
            structure_encoder_fn=None,
            structure_decoder_fn=None,
            function_decoder_fn=None,
            tokenizers=SimpleNamespace(sequence=SimpleNamespace(mask_token_id=32)),
        )
    else:
        from esm.models.esmc import ESMC
        from esm.tokenization import EsmSequenceTokenizer

        tokenizer = EsmSequenceTokenizer()
        build = lambda: ESMC(d_model=cfg["d_model"], n_heads=cfg["n_heads"], n_layers=cfg["n_layers"],
                             tokenizer=tokenizer, use_flash_attn=False)
    if meta:
        with torch.device("meta"):
            return build()
    return build()


def materialize_rotary(model) -> None:
    """Rotary inv_freq is a non-persistent buffer: recompute it on the CPU after a meta build."""
    from esm.layers.rotary import RotaryEmbedding

    for m in model.modules():
        if isinstance(m, RotaryEmbedding):
            m.device = None
            m.reset_parameters()
    bad = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    assert not bad, f"tensors left on the meta device: {bad[:5]}"


def write_safetensors(path: Path, tensors: dict) -> None:
    """Streaming safetensors writer (safetensors.torch.save_file would first copy all 5.6 GB)."""
    header, offset = {}, 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors.values():
            f.write(memoryview(t.contiguous().numpy()).cast("B"))


def child_generate(args) -> None:
    import torch
    import torch.nn as nn

    from esm.layers.geom_attention import GeometricReasoningOriginalImpl

    torch.set_num_threads(args.threads)
    spec = MODELS[args.model]
    t0 = time.perf_counter()
    model = reference_module(args.model, meta=True)
    model.to_empty(device="cpu")
    materialize_rotary(model)
    g = torch.Generator().manual_seed(spec["seed"])

    def randn(p):
        return torch.randn(p.shape, generator=g, dtype=torch.float32)

    done: set[int] = set()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.LayerNorm):
                if mod.weight is not None:
                    mod.weight.copy_(1.0 + 0.1 * randn(mod.weight))
                    done.add(id(mod.weight))
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * randn(mod.bias))
                    done.add(id(mod.bias))
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(randn(mod.weight).div_(math.sqrt(mod.in_features)))
                done.add(id(mod.weight))
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * randn(mod.bias))
                    done.add(id(mod.bias))
            elif isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
                mod.weight.copy_(0.5 * randn(mod.weight))
                done.add(id(mod.weight))
            elif isinstance(mod, GeometricReasoningOriginalImpl):
                mod.distance_scale_per_head.copy_(0.5 * randn(mod.distance_scale_per_head))
                mod.rotation_scale_per_head.copy_(0.5 * randn(mod.rotation_scale_per_head))
                done.add(id(mod.distance_scale_per_head))
                done.add(id(mod.rotation_scale_per_head))
    missed = [n for n, p in model.named_parameters() if id(p) not in done]
    assert not missed, f"parameters not perturbed: {missed}"
    sd = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    n_params = sum(v.numel() for v in sd.values())
    gen_s = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.partial"
    t1 = time.perf_counter()
    write_safetensors(tmp, sd)
    os.replace(tmp, out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(spec["config"]) + "\n")
    meta = {
        "gen_version": GEN_VERSION,
        "seed": spec["seed"],
        "config": spec["config"],
        "perturbation": PERTURBATION,
        "n_tensors": len(sd),
        "n_parameters": n_params,
        "bytes": (out / "model.safetensors").stat().st_size,
        "torch": torch.__version__,
        "generate_s": round(gen_s, 1),
        "write_s": round(time.perf_counter() - t1, 1),
    }
    (out / "GENERATED.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


def child_torch(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import safetensors.torch

    t0 = time.perf_counter()
    if args.torch_load == "meta":
        model = reference_module(args.model, meta=True)
        sd = safetensors.torch.load_file(str(Path(args.model_dir) / "model.safetensors"))
        model.load_state_dict(sd, strict=True, assign=True)
        del sd
        materialize_rotary(model)
    else:  # "esm": what esm.pretrained.ESM3_sm_open_v0 does (random init, then copy the state dict)
        model = reference_module(args.model, meta=False)
        sd = safetensors.torch.load_file(str(Path(args.model_dir) / "model.safetensors"))
        model.load_state_dict(sd, strict=True)
        del sd
    model = model.float().eval()
    load_s = time.perf_counter() - t0

    inputs = safetensors.torch.load_file(args.input)
    times = []
    # --autocast: torch's own bf16 CPU path (products in bf16 through oneDNN, which uses AMX
    # where the CPU has it; norms and softmax stay f32), the counterpart of our --dtype bf16.
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        t = time.perf_counter()
        out = model(**inputs)
        warm = time.perf_counter() - t
        timed_from = time.time()
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = model(**inputs)
            times.append(time.perf_counter() - t)
        timed_to = time.time()
    outputs = {k: getattr(out, k).detach().float().contiguous() for k in output_names(args.model)}
    safetensors.torch.save_file(outputs, args.output)
    res = {
        "load_s": load_s,
        "warmup_s": warm,
        "forward_s": times,
        "timed_window": [timed_from, timed_to],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_parallel_info": torch.__config__.parallel_info(),
    }
    Path(args.result).write_text(json.dumps(res, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------
# Orchestrator helpers


def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all CPUs, /proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float, threshold: float) -> dict:
    """Waits (up to max_wait s) until other processes use < threshold of the machine over 5 s."""
    ncpu = os.cpu_count() or 1
    t0 = time.perf_counter()
    frac, said = 1.0, False
    while True:
        b0 = cpu_busy_s()
        time.sleep(5)
        frac = (cpu_busy_s() - b0) / (5 * ncpu)
        waited = time.perf_counter() - t0
        if frac < threshold or waited >= max_wait:
            break
        if not said:
            log(f"  (machine busy: {frac:.0%} of {ncpu} CPUs used by other processes; waiting up to {max_wait:.0f} s)")
            said = True
    return {"quiet_wait_s": round(waited, 1), "busy_frac_before": round(frac, 3)}


def prioritize(nice: int) -> None:
    """In the child before exec: its own session, hence its own scheduler autogroup (Linux
    groups CPU time per session when kernel.sched_autogroup_enabled=1, so a plain nice value
    would only rank it against this script's own processes), with that group's niceness and
    the process's set to `nice`. Touches no other process."""
    os.setsid()
    try:
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError:
        pass
    os.nice(nice)


def run_child(cmd: list[str], env: dict | None = None, log_path: Path | None = None,
              quiet: tuple[float, float] | None = None, nice: int = 0) -> dict:
    """Runs one child; returns rc, wall seconds, the child's own peak RSS (os.wait4) and how much
    CPU time other processes used meanwhile (foreign_cpu_s: machine busy time minus the child's)."""
    q = wait_for_quiet(*quiet) if quiet else {}
    out = open(log_path, "w") if log_path else None
    load_before = Path("/proc/loadavg").read_text().split()[0]
    busy0 = cpu_busy_s()
    started_at = time.time()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                         preexec_fn=(lambda: prioritize(nice)) if nice else None)
    peaks = {"RssAnon": 0, "RssFile": 0}
    timeline: list[tuple[float, int]] = []  # (time.time(), VmRSS KiB)
    done = threading.Event()

    def sample() -> None:  # anonymous vs file-backed (mmap) resident memory, every 50 ms
        while not done.wait(0.05):
            try:
                now = {}
                for line in open(f"/proc/{p.pid}/status"):
                    k = line.split(":")[0]
                    if k in peaks or k == "VmRSS":
                        now[k] = int(line.split()[1])
                for k in peaks:
                    peaks[k] = max(peaks[k], now[k])
                timeline.append((time.time(), now["VmRSS"]))
            except (OSError, ValueError, IndexError, KeyError):
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    foreign = cpu_busy_s() - busy0 - (ru.ru_utime + ru.ru_stime)
    p.returncode = os.waitstatus_to_exitcode(status)
    if out:
        out.close()
    return {
        "rc": p.returncode,
        "wall_s": wall,
        "peak_rss_gib": ru.ru_maxrss * 1024 / 2**30,  # Linux ru_maxrss is KiB
        "peak_rss_anon_gib": peaks["RssAnon"] / 2**20,  # sampled, KiB
        "peak_rss_file_gib": peaks["RssFile"] / 2**20,
        "started_at": started_at,
        "rss_timeline": timeline,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "loadavg_1m_before": float(load_before),
        # CPU seconds used by everything else on the machine while the child ran (the sampler
        # thread of this script included, ~0.1 s/min); compare with wall_s * CPUs.
        "foreign_cpu_s": max(0.0, foreign),
        "foreign_frac": max(0.0, foreign) / (wall * (os.cpu_count() or 1)),
        **q,
    }


def window_rss(child: dict, t0: float, t1: float) -> None:
    """Max sampled RSS inside [t0, t1] (the timed forwards): the steady state after loading.
    Moves the timeline out of the result (it is long)."""
    tl = child.pop("rss_timeline", [])
    inside = [kib for (t, kib) in tl if t0 + 0.1 <= t <= t1 - 0.1]
    child["forward_rss_gib"] = max(inside) / 2**20 if inside else float("nan")


def model_is_cached(model: str) -> bool:
    spec = MODELS[model]
    gen = spec["dir"] / "GENERATED.json"
    st = spec["dir"] / "model.safetensors"
    if not (gen.is_file() and st.is_file() and (spec["dir"] / "config.json").is_file()):
        return False
    meta = json.loads(gen.read_text())
    return (
        meta.get("gen_version") == GEN_VERSION
        and meta.get("seed") == spec["seed"]
        and meta.get("config") == spec["config"]
        and meta.get("bytes") == st.stat().st_size
    )


def ensure_model(py: str, model: str, threads: int) -> dict:
    model_dir = MODELS[model]["dir"]
    if model_is_cached(model):
        meta = json.loads((model_dir / "GENERATED.json").read_text())
        log(f"model: reusing {model_dir} ({meta['n_parameters']:,} parameters, {meta['bytes'] / 1e9:.2f} GB)")
        return meta
    need = 6.0e9
    free = shutil.disk_usage(OUT_DIR).free
    log(f"model: generating {model_dir} ({free / 1e9:.1f} GB free on disk)")
    if free < need * 1.2:
        sys.exit(f"not enough disk space under {OUT_DIR}: {free / 1e9:.1f} GB free, need ~{need / 1e9:.1f} GB")
    r = run_child([py, __file__, "--child", "generate", "--model", model, "--out", str(model_dir),
                   "--threads", str(threads)])
    if r["rc"] != 0:
        sys.exit(f"model generation failed (rc {r['rc']})")
    meta = json.loads((model_dir / "GENERATED.json").read_text())
    log(f"model: generated in {r['wall_s']:.0f} s (peak RSS {r['peak_rss_gib']:.1f} GiB), {meta['n_parameters']:,} parameters")
    return meta


def ideal_helix_backbone(n: int):
    """Fallback backbone (N, CA, C) of an ideal alpha helix, Angstrom."""
    import numpy as np

    i = np.arange(n, dtype=np.float64)
    def atom(r, dphi, dz):
        phi = np.deg2rad(100.0 * i + dphi)
        return np.stack([r * np.cos(phi), r * np.sin(phi), 1.5 * i + dz], -1)
    return np.stack([atom(1.55, -28.0, -0.85), atom(2.30, 0.0, 0.0), atom(1.61, 28.0, 0.85)], 1).astype(np.float32)


def chain_backbone(n: int) -> tuple:
    """Backbone of the first n residues of CHAIN (or an ideal helix if it is missing/short)."""
    import gzip
    import io
    import warnings

    import numpy as np

    path = STRUCTURES / CHAIN[0]
    if path.is_file():
        from esm.utils.structure.protein_chain import ProteinChain

        warnings.filterwarnings("ignore")
        with gzip.open(path, "rt") as fh:
            pc = ProteinChain.from_pdb(io.StringIO(fh.read()), chain_id=CHAIN[1])
        if len(pc.sequence) >= n:
            xyz = np.asarray(pc.atom37_positions[:n, :3], dtype=np.float32)
            return xyz, f"{CHAIN[0]} chain {CHAIN[1]} residues 1..{n} of {len(pc.sequence)}"
    return ideal_helix_backbone(n), "ideal alpha helix (fallback)"


def make_inputs(model: str, L: int, path: Path) -> dict:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1000 + L)
    n = L - 2
    seq = np.concatenate([[SEQ_BOS], rng.integers(4, 24, size=n), [SEQ_EOS]]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if MODELS[model]["config"]["model_type"] == "esmc":
        # Sequence only; without sequence_id both build the all-real mask from tokens != <pad>.
        save_file({"sequence_tokens": np.ascontiguousarray(seq[None])}, str(path))
        return {"coords": "none (sequence only)", "residues_missing_backbone": 0}
    structure = rng.integers(0, 4096, size=L).astype(np.int64)
    structure[0], structure[-1] = STRUCT_BOS, STRUCT_EOS
    ss8 = rng.integers(3, 11, size=L).astype(np.int64)
    sasa = rng.integers(3, 19, size=L).astype(np.int64)
    function = rng.integers(4, 260, size=(L, 8)).astype(np.int64)
    residue = np.zeros((L, 16), dtype=np.int64)
    for i in range(L):
        k = int(rng.integers(0, 5))
        residue[i, rng.choice(16, size=k, replace=False)] = rng.integers(1, 1478, size=k)
    for a in (ss8, sasa, function, residue):
        a[0] = 0
        a[-1] = 0
    bb, source = chain_backbone(n)
    ends = np.full((1, 3, 3), np.inf, dtype=np.float32)
    coords = np.concatenate([ends, bb, ends], 0)
    frameless = int((~np.isfinite(bb).all(axis=(1, 2))).sum())
    inputs = {
        "sequence_tokens": seq,
        "structure_tokens": structure,
        "ss8_tokens": ss8,
        "sasa_tokens": sasa,
        "function_tokens": function,
        "residue_annotation_tokens": residue,
        "average_plddt": rng.random(L).astype(np.float32),
        "per_res_plddt": rng.random(L).astype(np.float32),
        "structure_coords": coords,
    }
    save_file({k: np.ascontiguousarray(v[None]) for k, v in inputs.items()}, str(path))
    return {"coords": source, "residues_missing_backbone": frameless}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def compare(ref_path: Path, ours_path: Path, names) -> dict:
    import numpy as np
    from safetensors.numpy import load_file

    ref, ours = load_file(str(ref_path)), load_file(str(ours_path))
    res = {}
    for k in names:
        if k not in ours:
            res[k] = None
            continue
        a, b = ref[k].astype(np.float64), ours[k].astype(np.float64)
        if a.shape != b.shape:
            res[k] = {"shape_ref": list(a.shape), "shape_ours": list(b.shape)}
            continue
        res[k] = {"max_abs_diff": float(np.abs(a - b).max()), "max_abs_ref": float(np.abs(a).max())}
    return res


def machine_info(bin_path: Path, bin_sha: str) -> dict:
    cpu = "?"
    flags = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "?":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line
    mem = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    git = lambda *a: subprocess.run(
        ["git", *a], cwd=REPO, capture_output=True, text=True, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    ).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "avx512f": " avx512f" in flags,
        "mem_total_gib": int(mem.split()[1]) / 2**20,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_head": git("rev-parse", "HEAD"),
        "git_tracked_changes": dirty.splitlines(),
        "esm3_binary": str(bin_path),
        "esm3_binary_sha256": bin_sha,
        "esm3_binary_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(bin_path.stat().st_mtime)),
    }


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------


def orchestrate(args) -> None:
    t_start = time.perf_counter()
    py = sys.executable
    OUT_DIR.mkdir(exist_ok=True)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)

    src_bin = Path(args.esm3).resolve()
    if args.build:
        log("building: cargo build --release")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    if not src_bin.is_file():
        sys.exit(f"{src_bin} not found: run `cargo build --release` first (or pass --build / --esm3 PATH)")
    # Snapshot the binary so a concurrent `cargo build` cannot swap it in the middle of the run.
    bin_path = BENCH_DIR / "esm3"
    shutil.copy2(src_bin, bin_path)
    bin_sha = sha256_file(bin_path)

    info = machine_info(src_bin, bin_sha)
    log(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, avx512f={info['avx512f']}, "
        f"{info['mem_total_gib']:.1f} GiB RAM; git HEAD {info['git_head']}"
        + (f" (+{len(info['git_tracked_changes'])} modified tracked files)" if info["git_tracked_changes"] else ""))
    log(f"esm3 binary: {src_bin} (sha256 {bin_sha[:16]}…, built {time.ctime(src_bin.stat().st_mtime)})")

    env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    quiet = (args.quiet_wait, args.quiet_threshold) if args.quiet_wait > 0 else None
    results, gens = [], {}
    for model in args.models:
        gens[model] = ensure_model(py, model, args.threads)
    for model in args.models:
        st = MODELS[model]["dir"] / "model.safetensors"
        # Warm the page cache so neither implementation pays for the disk read of the weights.
        t = time.perf_counter()
        with open(st, "rb") as f:
            while f.read(1 << 26):
                pass
        log(f"\n{model}: page cache: read {st.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.1f} s")
        for L in args.lengths:
            results.append(bench_one(args, py, env, quiet, bin_path, model, L))

    total = time.perf_counter() - t_start
    md = render(args, info, gens, results, total)
    TABLE_MD.write_text(md)
    everything = json.dumps({"args": vars(args), "machine": info, "models": gens, "results": results,
                             "total_wall_s": total}, indent=1) + "\n"
    (OUT_DIR / "forward_bench.json").write_text(everything)
    if args.json:
        Path(args.json).write_text(everything)
    log("\n" + md)
    log(f"written: {TABLE_MD}, {OUT_DIR / 'forward_bench.json'}")


def bench_one(args, py, env, quiet, bin_path: Path, model: str, L: int) -> dict:
    """The reference, then esm3-rs (f32, and bf16 with --bf16), at one (model, L)."""
    model_dir = MODELS[model]["dir"]
    d = MODELS[model]["run"] / f"L{L}"
    d.mkdir(parents=True, exist_ok=True)
    inp = d / "input.safetensors"
    inp_info = make_inputs(model, L, inp)
    row = {"model": model, "L": L, "inputs": inp_info}
    log(f"\n{model}, L = {L} (incl. BOS/EOS; {L - 2} residues; coords: {inp_info['coords']})")

    # reference first (f32, and torch's bf16 autocast with --ref-bf16) ...
    def run_ref(tag, autocast):
        r = run_child(
            [py, __file__, "--child", "torch", "--model", model, "--model-dir", str(model_dir), "--input", str(inp),
             "--output", str(d / f"{tag}_out.safetensors"), "--result", str(d / f"{tag}.json"),
             "--repeats", str(args.repeats), "--threads", str(args.threads), "--torch-load", args.torch_load]
            + (["--autocast"] if autocast else []),
            env=env, log_path=d / f"{tag}.log", quiet=quiet, nice=args.nice,
        )
        if r["rc"] == 0:
            rj = json.loads((d / f"{tag}.json").read_text())
            r.update(load_s=rj["load_s"], warmup_s=rj["warmup_s"], forward_s=rj["forward_s"],
                     torch=rj["torch"], torch_threads=rj["torch_threads"])
            window_rss(r, *rj["timed_window"])
        else:
            r["error"] = (d / f"{tag}.log").read_text()[-2000:]
            r.pop("rss_timeline", None)
        log(f"  reference{' bf16 autocast' if autocast else ''}: rc {r['rc']}, " + (
            f"load {r['load_s']:.2f} s, warm-up {r['warmup_s']:.2f} s, forwards {[round(x, 3) for x in r['forward_s']]} s, "
            if r["rc"] == 0 else f"FAILED: {r['error'][-500:]} ")
            + f"peak RSS {r['peak_rss_gib']:.2f} GiB (sampled peaks: anon {r['peak_rss_anon_gib']:.2f}, file-backed {r['peak_rss_file_gib']:.2f}, max during the timed forwards {r.get('forward_rss_gib', float('nan')):.2f}), user {r['user_s']:.0f} s, sys {r['sys_s']:.0f} s, wall {r['wall_s']:.1f} s, other processes used {r['foreign_frac']:.0%} of the CPUs meanwhile")
        return r

    r = row["ref"] = run_ref("ref", False)
    if args.ref_bf16:
        row["ref_bf16"] = run_ref("ref_bf16", True)

    # ... then esm3-rs (f32, and bf16 with --bf16)
    def run_ours(dtype, tag):
        cmd = [str(bin_path), "forward", "--model-dir", str(model_dir), "--input", str(inp),
               "--output", str(d / f"{tag}_out.safetensors"), "--repeat", str(args.repeats + 1),
               "--timings", str(d / f"{tag}.json"), "--dtype", dtype]
        o = run_child(cmd, env=env, log_path=d / f"{tag}.log", quiet=quiet, nice=args.nice)
        o["command"] = "RAYON_NUM_THREADS=%d " % args.threads + " ".join(cmd)
        if o["rc"] == 0:
            oj = json.loads((d / f"{tag}.json").read_text())
            o.update(load_s=oj["load_s"], warmup_s=oj["forward_s"][0], forward_s=oj["forward_s"][1:])
            # The binary loads right after exec and then runs the forwards back to back.
            t0 = o["started_at"] + o["load_s"] + o["warmup_s"]
            window_rss(o, t0, t0 + sum(o["forward_s"]))
        else:
            o["error"] = (d / f"{tag}.log").read_text()[-2000:]
            o.pop("rss_timeline", None)
        log(f"  esm3-rs {dtype}: rc {o['rc']}, " + (
            f"load {o['load_s']:.2f} s, warm-up {o['warmup_s']:.2f} s, forwards {[round(x, 3) for x in o['forward_s']]} s, "
            if o["rc"] == 0 else f"FAILED: {o['error'][-500:]} ")
            + f"peak RSS {o['peak_rss_gib']:.2f} GiB (sampled peaks: anon {o['peak_rss_anon_gib']:.2f}, file-backed {o['peak_rss_file_gib']:.2f}, max during the timed forwards {o.get('forward_rss_gib', float('nan')):.2f}), user {o['user_s']:.0f} s, sys {o['sys_s']:.0f} s, wall {o['wall_s']:.1f} s, other processes used {o['foreign_frac']:.0%} of the CPUs meanwhile")
        return o

    o = row["ours"] = run_ours("f32", "ours")
    if args.bf16:
        row["ours_bf16"] = run_ours("bf16", "ours_bf16")
        if r["rc"] == 0 and row["ours_bf16"]["rc"] == 0:
            row["agreement_bf16"] = compare(d / "ref_out.safetensors", d / "ours_bf16_out.safetensors",
                                            ["sequence_logits"])
    rb = row.get("ref_bf16")
    if rb and r["rc"] == 0 and rb["rc"] == 0:
        row["agreement_ref_bf16"] = compare(d / "ref_out.safetensors", d / "ref_bf16_out.safetensors",
                                            ["sequence_logits"])

    if r["rc"] == 0 and o["rc"] == 0:
        names = output_names(model) if L == min(args.lengths) else ["sequence_logits"]
        row["agreement"] = compare(d / "ref_out.safetensors", d / "ours_out.safetensors", names)
        for k, v in row["agreement"].items():
            if v and "max_abs_diff" in v:
                log(f"  agreement {k}: max |ours - ref| = {v['max_abs_diff']:.3g} (max |ref| {v['max_abs_ref']:.3g})")
            else:
                log(f"  agreement {k}: {v}")
    if not args.keep_outputs:
        for f in ("ref_out.safetensors", "ref_bf16_out.safetensors", "ours_out.safetensors", "ours_bf16_out.safetensors"):
            (d / f).unlink(missing_ok=True)
    return row


def fmt(x, spec=".2f"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def bf16_cells(row, f32_median, star) -> str:
    b = row.get("ours_bf16")
    if not b or b["rc"] != 0:
        return " failed |  |  |"
    bm = median(b["forward_s"])
    speedup = f32_median / bm if f32_median and bm else None
    cells = f" {fmt(bm)}{star(b)} | {fmt(speedup)} | {fmt(b.get('load_s'), '.1f')} |"
    rb = row.get("ref_bf16")
    if rb is not None:
        rbm = median(rb["forward_s"]) if rb["rc"] == 0 else None
        ratio = rbm / bm if rbm and bm else None
        cells += f" {fmt(rbm) if rb['rc'] == 0 else 'failed'}{star(rb)} | {fmt(ratio)} |"
    return cells


def render(args, info, gens, results, total) -> str:
    torch_v = next((r["ref"].get("torch") for r in results if r["ref"].get("torch")), "?")
    lines = [
        "One forward, random weights at the published sizes, f32, B = 1, CPU, "
        f"{args.threads} threads each: "
        + "; ".join(f"`{m}` = {MODELS[m]['label']}, {g['n_parameters'] / 1e9:.2f} B parameters"
                    for m, g in gens.items()) + ".",
        "",
        "| model | L | reference median s | esm3-rs median s | ratio ref/ours | reference peak RSS GiB | esm3-rs peak RSS GiB | load s ref / ours |"
        + (" esm3-rs bf16 median s | bf16 speed-up over our f32 | bf16 load s |" if args.bf16 else "")
        + (" reference bf16 autocast median s | ratio ref bf16 / ours bf16 |" if args.bf16 and args.ref_bf16 else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if args.bf16 else "")
        + ("---:|---:|" if args.bf16 and args.ref_bf16 else ""),
    ]
    for row in results:
        r, o = row["ref"], row["ours"]
        rm = median(r.get("forward_s", [])) if r["rc"] == 0 else None
        om = median(o.get("forward_s", [])) if o["rc"] == 0 else None
        ratio = rm / om if rm and om else None
        star = lambda c: " *" if c.get("foreign_frac", 0) > DISTURBED else ""
        lines.append(
            f"| {row['model']} | {row['L']} | {fmt(rm)}{star(r)} | {(fmt(om) if o['rc'] == 0 else 'failed (rc %d)' % o['rc'])}{star(o)} | {fmt(ratio)} | "
            f"{fmt(r['peak_rss_gib'])} | {fmt(o['peak_rss_gib'])} | {fmt(r.get('load_s'), '.1f')} / {fmt(o.get('load_s'), '.1f')} |"
            + (bf16_cells(row, om, star) if args.bf16 else "")
        )
    lines += [
        "",
        f"L counts BOS and EOS (L - 2 residues). Median of {args.repeats} timed forwards after one warm-up "
        "forward, each implementation in its own process (model loaded once per process); per L the "
        "reference runs first, then esm3-rs, so background load hits both alike. ratio > 1: esm3-rs faster. "
        "Peak RSS = ru_maxrss of that process (weights, activations, runtime)."
        + (f" * = other processes used more than {DISTURBED:.0%} of the CPUs while that child ran: disturbed."
           if any(row[k].get("foreign_frac", 0) > DISTURBED for row in results for k in ("ref", "ours")) else ""),
        "",
        "Every forward (s): " + "; ".join(
            f"{row['model']} L={row['L']}: ref warm-up {fmt(row['ref'].get('warmup_s'))} + {[round(x, 2) for x in row['ref'].get('forward_s', [])]}, "
            f"ours warm-up {fmt(row['ours'].get('warmup_s'))} + {[round(x, 2) for x in row['ours'].get('forward_s', [])]}"
            for row in results),
        "",
    ]
    lines.append(
        "Resident memory sampled every 50 ms (GiB): peak anonymous + peak file-backed (mmap'd weights), "
        "and the largest RSS sampled during the timed forwards (steady state, after loading): "
        + "; ".join(
            f"{row['model']} L={row['L']}: ref {row['ref']['peak_rss_anon_gib']:.2f} + {row['ref']['peak_rss_file_gib']:.2f}, "
            f"forwards {fmt(row['ref'].get('forward_rss_gib'))}; ours {row['ours']['peak_rss_anon_gib']:.2f} + "
            f"{row['ours']['peak_rss_file_gib']:.2f}, forwards {fmt(row['ours'].get('forward_rss_gib'))}"
            for row in results) + "."
    )
    lines.append("")
    for row in results:
        ag = row.get("agreement")
        if ag:
            parts = [f"{k} {v['max_abs_diff']:.2g} (max |ref| {v['max_abs_ref']:.3g})" for k, v in ag.items()
                     if v and "max_abs_diff" in v]
            lines.append(f"Outputs, max |ours - ref| at {row['model']} L={row['L']}: " + ", ".join(parts) + ".")
        ag = row.get("agreement_bf16")
        if ag:
            parts = [f"{k} {v['max_abs_diff']:.2g}" for k, v in ag.items() if v and "max_abs_diff" in v]
            lines.append(f"bf16 (not a parity mode), max |ours bf16 - ref f32| at {row['model']} L={row['L']}: " + ", ".join(parts) + ".")
        ag = row.get("agreement_ref_bf16")
        if ag:
            parts = [f"{k} {v['max_abs_diff']:.2g}" for k, v in ag.items() if v and "max_abs_diff" in v]
            lines.append(f"torch bf16 autocast, max |ref bf16 - ref f32| at {row['model']} L={row['L']}: " + ", ".join(parts) + ".")
    lines += [
        "",
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, avx512f {info['avx512f']}, "
        f"{info['mem_total_gib']:.1f} GiB RAM; torch {torch_v} (torch.set_num_threads({args.threads})), "
        f"esm3-rs RAYON_NUM_THREADS={args.threads}; torch load mode `{args.torch_load}`; "
        f"children niceness {args.nice:+d}; esm3-rs "
        + (args.esm3_label if args.esm3_label else
           f"at git {info['git_head'][:12]}" + (" + uncommitted changes" if info["git_tracked_changes"] else "")
           + " when run")
        + f" (binary built {info['esm3_binary_mtime']}, sha256 {info['esm3_binary_sha256'][:12]}); total wall {total / 60:.1f} min; "
        "share of the CPUs used by other processes while each child ran (ref/ours): "
        + ", ".join(f"{row['model']} L={row['L']} {row['ref']['foreign_frac']:.0%}/{row['ours']['foreign_frac']:.0%}" for row in results)
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=["esm3"],
                    help="which models to time, one after the other (default esm3; the ESM C sizes: "
                    "esmc-300m esmc-600m)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512],
                    help="total token counts L, BOS/EOS included (default 64 256 512)")
    ap.add_argument("--repeats", type=int, default=3, help="timed forwards per implementation and L (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads = RAYON_NUM_THREADS (default 2)")
    ap.add_argument("--esm3", default=str(REPO / "target" / "release" / "esm3"), help="esm3 binary")
    ap.add_argument("--esm3-label", default="",
                    help="where the binary comes from, for the table (default: this checkout's git HEAD)")
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` first")
    ap.add_argument("--torch-load", choices=["meta", "esm"], default="meta",
                    help="meta: build on the meta device, assign the loaded weights (one copy, default); "
                    "esm: like esm.pretrained (random init, then copy the state dict: two copies at peak)")
    ap.add_argument("--quiet-wait", type=float, default=900,
                    help="before each child wait up to this many seconds for the machine to be idle (0: don't)")
    ap.add_argument("--quiet-threshold", type=float, default=0.10,
                    help="idle = other processes use less than this share of all CPUs over 5 s (default 0.10)")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness for the timed children (and their scheduler autogroup); negative "
                    "(needs root) gives them priority over other work on a shared machine (default 0)")
    ap.add_argument("--json", help="also write every number (the JSON of bench-out/forward_bench.json) to this file")
    ap.add_argument("--bf16", action="store_true",
                    help="also time esm3-rs with --dtype bf16 (bf16 products, f32 elsewhere) and add its columns")
    ap.add_argument("--ref-bf16", action="store_true",
                    help="with --bf16, also time the reference under torch.autocast('cpu', bfloat16) and add its columns")
    ap.add_argument("--autocast", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--keep-outputs", action="store_true", help="keep every output file under bench-out/forward_bench/")
    # internal
    ap.add_argument("--child", choices=["generate", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "generate":
        child_generate(args)
    elif args.child == "torch":
        child_torch(args)
    else:
        if min(args.lengths) < 3:
            sys.exit("every L must be >= 3 (BOS + residues + EOS)")
        orchestrate(args)


if __name__ == "__main__":
    main()
