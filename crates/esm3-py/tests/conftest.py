"""Shared fixtures: the repository, the `esm3` binary the answers are checked against, models."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(os.environ.get("ESM3_REPO", Path(__file__).resolve().parents[3]))
SHARED = REPO.parent / "shared" / "data"
UBIQUITIN = SHARED / "structures" / "freesasa" / "1ubq.pdb.gz"
BUNDLED = REPO / "models" / "esm3-rs-small"
ESMC = REPO / "fixtures" / "reference" / "esmc_d64" / "model"


def _binary() -> Path:
    if "ESM3_BIN" in os.environ:
        return (REPO / os.environ["ESM3_BIN"]).resolve()
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "esm3"
        if candidate.is_file():
            return candidate
    pytest.exit("no esm3 binary: run `cargo build -p esm3-cli` or set ESM3_BIN", returncode=2)


@pytest.fixture(scope="session")
def cli():
    """Runs the real `esm3` binary; returns its standard output."""
    binary = _binary()

    def run(*args, cwd=None):
        done = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            raise AssertionError(f"esm3 {' '.join(map(str, args))} failed:\n{done.stderr}")
        return done.stdout

    return run


@pytest.fixture(scope="session")
def model():
    import esm3rs

    return esm3rs.load(BUNDLED)


@pytest.fixture(scope="session")
def esmc():
    import esm3rs

    return esm3rs.load(ESMC)


def write_fasta(path: Path, records) -> Path:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records))
    return path
