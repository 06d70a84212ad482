#!/usr/bin/env python
"""Parity fixtures for the function track (tokenizer + FunctionTokenDecoder) from `esm` 3.2.1.post1.

Run with the reference venv:

    tools/reference/.venv/bin/python tools/reference/make_function_fixtures.py

Writes (the two directories are replaced, nothing else is touched):

  fixtures/reference/function_tokenizer/
    cases.json                 per case: length, annotations [label, start, end] (1-based
                               inclusive), the reference tokens [L+2, 8] (BOS/EOS rows included)
                               stored as distinct rows + a per-position row index
    hyperplanes_subset.safetensors
                               the generated LSH hyperplanes (8 tables x 8 bits x 58641, rows
                               normalised as the reference's LSHTable makes them) restricted to
                               the keyword columns any case can reach: `columns` int64 [K],
                               `hyperplanes` float64 [8, 8, K]. Other columns only ever multiply
                               zero TF-IDF entries, so any value (e.g. 0) gives the same tokens.
    unknown_interpro_ids.json  InterPro ids of the Swiss-Prot entries that the 29,026-entry list
                               lacks (the reference raises on them; so must we)
  fixtures/reference/esm3_function_decoder_d32/
    model/config.json, model/model.safetensors, esm3_function_decoder_d32.pth
    hyperplanes_40.npz, hyperplanes_40.safetensors
                               hyperplanes over the 40 keywords: official npz layout, and the
                               same values as one float64 tensor [8, 8, 40]
    vocab/keywords.txt, vocab/entries.tsv
                               the small decoder's keyword vocabulary / InterPro entry list (real
                               entries: a subset of the wheel's files)
    cases/<case>/input.safetensors     token_ids int64 [N, 8]
    cases/<case>/expected.safetensors  keyword_logits, keyword_tfidf, interpro_logits (float32)
    cases/<case>/decoded.json          (decode cases) the reference `decode_function_tokens`
                               annotations plus `FunctionTokenDecoder.decode`'s raw lists

  fixtures/reference/residue_annotations/
    residue_annotations.csv    a synthetic vocabulary CSV in the weights repository's format
    expected.json              the reference's vocabulary order, the ids its tokenizer gives a
                               complete record, and what the SDK's encode path gives (all <pad>)

Real annotation sets: the 100 Swiss-Prot entries of shared/data/sequences/swissprot_flatfile.
Their InterPro cross-references and keywords carry no residue ranges, so two derivations are used:
  whole     every known InterPro id and every KW keyword (lower-cased, kept when it is in the
            keyword vocabulary) spans the whole protein 1..L;
  staggered InterPro id k of n spans [1 + k*L//(2n), L - k*L//(4n)] and keyword j of m spans
            [1 + j*L//(3m), L//2 + j*L//(3m)] (clipped to L), so label sets differ along the
            chain, some residues have none, and the positional logic is exercised.
IPR006563 has an empty keyword list; pandas reads it as NaN and the reference crashes on it. To
get its reference tokens the fixture replaces that NaN by [] (what the spec says it means).
"""
from __future__ import annotations

import gzip
import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import safetensors.numpy
import safetensors.torch
import torch

from esm.models.function_decoder import FunctionTokenDecoder, FunctionTokenDecoderConfig
from esm.tokenization.function_tokenizer import InterProQuantizedTokenizer
from esm.utils.constants import esm3 as C
from esm.utils.function.encode_decode import decode_function_tokens
from esm.utils.types import FunctionAnnotation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import perturb_parameters  # noqa: E402  (one perturbation recipe for all)

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "fixtures" / "reference"
TOK_OUT = OUT / "function_tokenizer"
DEC_NAME = "esm3_function_decoder_d32"
DEC_OUT = OUT / DEC_NAME
SWISSPROT = Path("/work/shared/data/sequences/swissprot_flatfile/emboss_test_swissprot_100.dat.gz")
if not SWISSPROT.exists():
    SWISSPROT = REPO.parent / "shared/data/sequences/swissprot_flatfile/emboss_test_swissprot_100.dat.gz"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

DEPTH, BITS, DIM = 8, 8, 58641


def parse_swissprot(path: Path) -> list[dict]:
    entries, cur = [], None
    with gzip.open(path, "rt") as f:
        for line in f:
            tag = line[:5].strip()
            if tag == "ID":
                cur = {"id": line.split()[1], "interpro": [], "kw": [], "length": None}
            elif tag == "DR" and line.startswith("DR   InterPro;"):
                cur["interpro"].append(line.split(";")[1].strip())
            elif tag == "KW":
                cur["kw"].extend(k.strip().rstrip(".") for k in line[5:].split(";") if k.strip())
            elif tag == "SQ":
                cur["length"] = int(re.search(r"(\d+) AA", line).group(1))
            elif tag == "//":
                entries.append(cur)
    return entries


def make_hyperplanes(seed: int) -> dict[str, np.ndarray]:
    return make_hyperplanes_dim(seed, DIM)


def make_hyperplanes_dim(seed: int, dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    planes = {}
    for t in range(DEPTH):
        h = rng.standard_normal((BITS, dim))
        planes[str(t)] = h / np.linalg.norm(h, axis=-1, keepdims=True)
    return planes


def compact(tokens: np.ndarray) -> dict:
    rows, index = [], []
    seen = {}
    for r in tokens.tolist():
        key = tuple(r)
        if key not in seen:
            seen[key] = len(rows)
            rows.append(r)
        index.append(seen[key])
    return {"rows": rows, "index": index}


def tokenizer_fixtures(tmp: Path) -> None:
    planes = make_hyperplanes(20251121)
    np.savez(tmp / "hyperplanes.npz", **planes)
    tok = InterProQuantizedTokenizer(lsh_path=str(tmp / "hyperplanes.npz"))
    i2k = tok.interpro2keywords
    assert isinstance(i2k["IPR006563"], float) and math.isnan(i2k["IPR006563"])
    i2k["IPR006563"] = []  # see module doc
    vocab = tok._tfidf.vocab_to_index
    # Record how close any dot product comes to the sign boundary (robustness of the parity).
    margin = [math.inf]

    class Recording:
        """Wraps an LSHTable, recording the smallest |similarity| it sees."""

        def __init__(self, table):
            self.table = table

        def __call__(self, array):
            sim = np.asarray(self.table.hyperplanes @ array.T)
            margin[0] = min(margin[0], float(np.abs(sim).min()))
            return self.table(array)

    tok._lsh.tables = [Recording(t) for t in tok._lsh.tables]

    cases, unknown, columns = [], set(), set()

    def add(name, length, annotations):
        fas = [FunctionAnnotation(label=l, start=s, end=e) for l, s, e in annotations]
        tokens = tok.encode(tok.tokenize(fas, length), add_special_tokens=True).numpy()
        assert tokens.shape == (length + 2, DEPTH)
        for l, _, _ in annotations:
            m = re.search(r"IPR\d+", l)
            if m and m.group() in tok.interpro_to_index:
                columns.update(vocab[k] for k in i2k[m.group()])
            else:
                columns.add(vocab[l])
        cases.append({"name": name, "length": length, "annotations": annotations, **compact(tokens)})

    for e in parse_swissprot(SWISSPROT):
        L = e["length"]
        ipr = [i for i in dict.fromkeys(e["interpro"]) if i in tok.interpro_to_index]
        unknown.update(i for i in e["interpro"] if i not in tok.interpro_to_index)
        kws = [k.lower() for k in e["kw"] if k.lower() in vocab]
        kws = list(dict.fromkeys(kws))
        if not ipr and not kws:
            continue
        add(f"{e['id']}/whole", L, [[l, 1, L] for l in ipr + kws])
        stag = []
        n, m = len(ipr), len(kws)
        for k, l in enumerate(ipr):
            stag.append([l, 1 + k * L // (2 * n), L - k * L // (4 * n)])
        for j, l in enumerate(kws):
            stag.append([l, 1 + j * L // (3 * m), min(L, L // 2 + j * L // (3 * m))])
        add(f"{e['id']}/staggered", L, stag)

    # Hand-made cases for the rules the real sets do not reach.
    add("empty", 7, [])
    add("keywords_only", 9, [["kringle", 2, 5], ["zinc", 4, 9]])
    add("name_with_id", 6, [["Kringle (IPR000001)", 1, 6], ["IPR000001", 3, 4]])
    add("no_keywords_entry_IPR006563", 8, [["IPR006563", 2, 6]])
    add("IPR006563_with_keyword", 8, [["IPR006563", 1, 8], ["zinc", 5, 8]])
    add("single_residue", 1, [["IPR000001", 1, 1]])

    cols = np.array(sorted(columns), dtype=np.int64)
    sub = np.stack([planes[str(t)][:, cols] for t in range(DEPTH)])
    TOK_OUT.mkdir(parents=True)
    safetensors.numpy.save_file(
        {"columns": cols, "hyperplanes": np.ascontiguousarray(sub)},
        str(TOK_OUT / "hyperplanes_subset.safetensors"),
    )
    (TOK_OUT / "cases.json").write_text(json.dumps(cases, separators=(",", ":")) + "\n")
    (TOK_OUT / "unknown_interpro_ids.json").write_text(json.dumps(sorted(unknown)) + "\n")

    print(f"tokenizer: {len(cases)} cases, {len(cols)} hyperplane columns, "
          f"{len(unknown)} unknown InterPro ids, smallest |<hyperplane, tfidf>| {margin[0]:.3g}")


def decoder_fixtures(tmp: Path) -> None:
    data = Path(C.INTERPRO_ENTRY).parent
    all_kw = (data / "keyword_vocabulary_safety_filtered_58641.txt").read_text().strip().split("\n")
    idf = np.load(data / "keyword_idf_safety_filtered_58641.npy")
    entries = pd.read_csv(data / "entry_list_safety_29026.list", sep="\t")
    rng = np.random.default_rng(7)
    kw_idx = np.sort(rng.choice(len(all_kw), 40, replace=False))
    keywords = [all_kw[i] for i in kw_idx]
    ent = entries.iloc[np.sort(rng.choice(len(entries), 24, replace=False))]

    vdir = DEC_OUT / "vocab"
    vdir.mkdir(parents=True)
    (vdir / "keywords.txt").write_text("\n".join(keywords) + "\n")
    ent.to_csv(vdir / "entries.tsv", sep="\t", index=False)
    # A tokenizer over the same small vocabulary, for `format_annotation` in decode.
    np.save(tmp / "idf.npy", idf[kw_idx])
    pd.DataFrame({"interpro_id": ent.ENTRY_AC, "keywords": [keywords[0]] * len(ent)}).to_csv(
        tmp / "i2k.csv", index=False
    )

    cfg = FunctionTokenDecoderConfig(
        d_model=32,
        n_heads=2,
        n_layers=3,
        num_interpro_classes=len(ent),
        keyword_vocabulary_size=len(keywords),
        interpro_entry_list=str(vdir / "entries.tsv"),
        keyword_vocabulary_path=str(vdir / "keywords.txt"),
    )
    model = FunctionTokenDecoder(cfg)
    perturb_parameters(model, 5150)
    model = model.float().eval()

    mdir = DEC_OUT / "model"
    mdir.mkdir(parents=True)
    config = {
        "model_type": "esm3_function_decoder",
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "keyword_vocabulary_size": cfg.keyword_vocabulary_size,
        "num_interpro_classes": cfg.num_interpro_classes,
    }
    (mdir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(sd, str(mdir / "model.safetensors"))
    torch.save(model.state_dict(), DEC_OUT / f"{DEC_NAME}.pth")

    tok = InterProQuantizedTokenizer(
        keyword_vocabulary_path=str(vdir / "keywords.txt"),
        keyword_idf_path=str(tmp / "idf.npy"),
        interpro_entry_path=str(vdir / "entries.tsv"),
        interpro2keywords_path=str(tmp / "i2k.csv"),
    )

    def save_case(name, token_ids, decode=False):
        cdir = DEC_OUT / "cases" / name
        cdir.mkdir(parents=True)
        token_ids = torch.as_tensor(token_ids, dtype=torch.int64)
        safetensors.torch.save_file({"token_ids": token_ids}, str(cdir / "input.safetensors"))
        with torch.no_grad():
            out = model(token_ids)
        safetensors.torch.save_file(
            {k: v.float().contiguous() for k, v in out.items()}, str(cdir / "expected.safetensors")
        )
        if decode:
            with torch.no_grad():
                raw = model.decode(token_ids, tokenizer=tok)
                final = decode_function_tokens(token_ids, model, tok)
            js = lambda xs: [[a.label, a.start, a.end] for a in xs]
            (cdir / "decoded.json").write_text(json.dumps({
                "function_keywords": js(raw["function_keywords"]),
                "interpro_annotations": js(raw["interpro_annotations"]),
                "annotations": js(final),
            }, indent=1) + "\n")

    # Hyperplanes over this small vocabulary, in the official npz layout (np.savez of arrays
    # "0".."7", each [8, 40]) and, for comparison, as one float64 tensor [8, 8, 40].
    small = make_hyperplanes_dim(99, len(keywords))
    np.savez(DEC_OUT / "hyperplanes_40.npz", **small)
    safetensors.numpy.save_file(
        {"hyperplanes": np.stack([small[str(t)] for t in range(DEPTH)])},
        str(DEC_OUT / "hyperplanes_40.safetensors"),
    )

    g = np.random.default_rng(11)
    lsh = g.integers(4, 260, size=(12, 8))
    special = np.array([
        [0] * 8, [1] * 8, [2] * 8, [3] * 8,
        [4, 5, 6, 7, 259, 258, 0, 9],    # one special slot zeroes the whole row
        [4] * 8, [259] * 8,
    ])
    save_case("random_lsh", lsh)
    save_case("specials", special)
    # A protein of 40 residues: runs of equal tokens with short gaps, so spans merge and some
    # are dropped for length.
    a, b, c = g.integers(4, 260, size=(3, 8))
    rows = [[0] * 8]
    plan = [(a, 9), ([3] * 8, 2), (a, 4), (b, 3), ([2] * 8, 4), (c, 12), ([1] * 8, 2), (b, 4)]
    for tokrow, n in plan:
        rows += [list(tokrow)] * n
    rows.append([0] * 8)
    save_case("decode_runs", np.array(rows), decode=True)
    save_case("decode_random", np.concatenate([[[0] * 8], g.integers(4, 260, size=(20, 8)), [[0] * 8]]),
              decode=True)
    print(f"decoder: {sum(v.numel() for v in sd.values())} parameters")


def residue_fixtures(tmp: Path) -> None:
    """The residue-annotation vocabulary order and tokens, on a synthetic CSV in the weights
    repository's format (the real one is not in the wheel)."""
    from esm.tokenization.residue_tokenizer import ResidueAnnotationsTokenizer
    from esm.utils.function.encode_decode import encode_function_annotations

    rng = np.random.default_rng(3)
    names = [f"site {c}" for c in "abcdefghijklmnopqrstuvwxyz"] + ["zinc", "heme", "atp"]
    rows = []
    for n in names:  # several rows per label, equal sums for some, to test the stable tie order
        for _ in range(int(rng.integers(1, 4))):
            rows.append({"label": n, "label_clean": n, "count": int(rng.integers(1, 4)) * 1000})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=1)
    rdir = OUT / "residue_annotations"
    rdir.mkdir(parents=True)
    df.to_csv(rdir / "residue_annotations.csv", index=False)
    tok = ResidueAnnotationsTokenizer(csv_path=str(rdir / "residue_annotations.csv"))

    # What the tokenizer does with a complete record (ids per residue, as sets: the reference
    # orders a residue's ids by Python set iteration).
    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
    ann = [("zinc", 2, 6), ("heme", 4, 9), ("site q", 20, 20), ("zinc", 25, 30)]
    sample = {
        "interpro_site_descriptions": [a[0] for a in ann],
        "interpro_site_starts": [a[1] for a in ann],
        "interpro_site_ends": [a[2] for a in ann],
        "interpro_site_residues": [seq[a[1] - 1 : a[2]] for a in ann],
    }
    ids = tok.encode(tok.tokenize(sample, seq)).numpy()
    # What the SDK path does with the same annotations: always <pad> (spec 5.8).
    ftok = InterProQuantizedTokenizer(lsh_path=str(tmp / "hyperplanes.npz"))
    _, sdk = encode_function_annotations(
        seq, [FunctionAnnotation(l, s, e) for l, s, e in ann], ftok, tok
    )
    (rdir / "expected.json").write_text(json.dumps({
        "vocabulary": tok.vocabulary,
        "length": len(seq),
        "annotations": ann,
        "encoded_sets": [sorted(int(x) for x in r if x != 0) for r in ids],
        "sdk_encoded": sdk.numpy().tolist(),
    }) + "\n")


def main() -> None:
    import tempfile

    for d in (TOK_OUT, DEC_OUT, OUT / "residue_annotations"):
        if d.exists():
            shutil.rmtree(d)
    with tempfile.TemporaryDirectory() as t:
        tokenizer_fixtures(Path(t))
        decoder_fixtures(Path(t))
        residue_fixtures(Path(t))
    total = sum(p.stat().st_size for d in (TOK_OUT, DEC_OUT) for p in d.rglob("*") if p.is_file())
    print(f"wrote {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
