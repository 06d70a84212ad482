"""The Ray example on a local Ray instance (skipped where ray is not installed)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import BUNDLED, REPO, write_fasta

pytest.importorskip("ray", reason="ray is not installed in this venv (pip install 'ray[data]' pyarrow)")
pq = pytest.importorskip("pyarrow.parquet")


def test_ray_embed_writes_what_embed_gives(tmp_path, model):
    records = [(f"p{i}", "MKTAYIAKQRQISFVKSHFSRQ"[: 8 + i] + "GSHM" * (i % 3)) for i in range(12)]
    records.insert(5, ("bad", "MKJZ"))
    fasta = write_fasta(tmp_path / "in.fasta", records)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ray_embed.py"), str(fasta), str(out), "--model-dir", str(BUNDLED),
         "--workers", "2", "--batch-size", "4", "--summary", str(tmp_path / "summary.json")],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records"] == 13 and summary["errors"] == 1 and summary["workers"] == 2
    table = pq.read_table(out).to_pylist()
    by_id = {row["id"]: row for row in table}
    assert sorted(by_id) == sorted(name for name, _ in records)
    assert "J" in by_id["bad"]["error"] and by_id["bad"]["mean"] is None
    for name, seq in records:
        if name == "bad":
            continue
        row = by_id[name]
        assert row["error"] is None and row["length"] == len(seq)
        # Ray batches differently from a lone call: other matrix shapes, other rounding.
        np.testing.assert_allclose(np.asarray(row["mean"], dtype=np.float32), model.embed(seq).mean, atol=1e-4, rtol=0)
