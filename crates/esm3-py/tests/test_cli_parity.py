"""Every call gives what the `esm3` binary gives on the same inputs (same engine, same seeds)."""

import json

import numpy as np
import pytest

import esm3rs
from conftest import BUNDLED, ESMC, UBIQUITIN, write_fasta

SEQUENCES = [
    ("ubq", "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"),
    ("short", "GSHMSEQ"),
    ("mid", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"),
]


def read_pdb_atoms(path):
    """(residue number, atom name) -> xyz, and per-residue B-factors, from ATOM records."""
    atoms, b = {}, {}
    for line in open(path):
        if line.startswith("ATOM"):
            key = (int(line[22:26]), line[12:16].strip())
            atoms[key] = [float(line[30:38]), float(line[38:46]), float(line[46:54])]
            b[key[0]] = float(line[60:66])
    return atoms, b


ATOM37_BACKBONE = {"N": 0, "CA": 1, "C": 2, "O": 4}


@pytest.mark.parametrize("which", ["esm3", "esmc"])
def test_embeddings_equal_esm3_embed(tmp_path, cli, model, esmc, which):
    m, model_dir = (model, BUNDLED) if which == "esm3" else (esmc, ESMC)
    fasta = write_fasta(tmp_path / "in.fasta", SEQUENCES)
    cli("embed", fasta, "-o", tmp_path / "npy", "--format", "npy", "--model-dir", model_dir)
    ours = m.embed([s for _, s in SEQUENCES])
    for (name, seq), e in zip(SEQUENCES, ours):
        per_residue = np.load(tmp_path / "npy" / f"{name}.per_residue.npy")
        mean = np.load(tmp_path / "npy" / f"{name}.mean.npy")
        assert e.per_residue.shape == (len(seq), per_residue.shape[1])
        assert e.per_residue.dtype == np.float32
        np.testing.assert_array_equal(e.per_residue, per_residue)
        np.testing.assert_array_equal(e.mean, mean)
    one = m.embed(SEQUENCES[1][1])
    np.testing.assert_array_equal(one.per_residue, ours[1].per_residue)


def test_scores_equal_esm3_score(tmp_path, cli, model):
    fasta = write_fasta(tmp_path / "in.fasta", SEQUENCES[:2])
    table = cli("score", fasta, "--model-dir", BUNDLED)
    rows = [line.split("\t") for line in table.strip().splitlines()[1:]]
    for (name, seq), row in zip(SEQUENCES[:2], rows):
        s = model.score(seq)
        assert row[0] == name and int(row[1]) == len(seq) == len(s.per_residue)
        assert float(row[2]) == pytest.approx(s.pll, abs=5e-5)
        assert float(row[3]) == pytest.approx(s.mean_log_prob, abs=5e-5)
        assert float(row[4]) == pytest.approx(s.pseudo_perplexity, abs=5e-5)
    variants = ["M1A", "Q2E:I3V", "G76W"]
    table = cli("score", write_fasta(tmp_path / "ubq.fasta", SEQUENCES[:1]), "--mutations", ",".join(variants), "--model-dir", BUNDLED)
    expected = [float(line.split("\t")[2]) for line in table.strip().splitlines()[1:]]
    np.testing.assert_allclose(model.masked_marginals(SEQUENCES[0][1], variants), expected, atol=5e-5)


@pytest.mark.parametrize("relax", [True, False])
def test_fold_equals_esm3_fold(tmp_path, cli, model, relax):
    name, seq = SEQUENCES[2]
    fasta = write_fasta(tmp_path / "in.fasta", [(name, seq)])
    args = ["fold", fasta, "-o", tmp_path / "out", "--no-report", "--seed", 3, "--model-dir", BUNDLED]
    cli(*(args + ([] if relax else ["--no-relax"])))
    summary = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    atoms, b = read_pdb_atoms(tmp_path / "out" / f"{name}.pdb")
    p = model.fold(seq, seed=3, relax=relax)
    assert p.sequence == summary["sequence"] == seq
    assert p.ptm == pytest.approx(summary["ptm"], abs=1e-6)
    assert float(np.mean(p.plddt)) == pytest.approx(summary["mean_plddt"], abs=1e-6)
    assert p.predicted_aligned_error.shape == (len(seq), len(seq))
    for i in range(len(seq)):
        assert b[i + 1] == pytest.approx(100 * p.plddt[i], abs=0.006)
        for atom, k in ATOM37_BACKBONE.items():
            if (i + 1, atom) in atoms:
                # The PDB has 3 decimals.
                np.testing.assert_allclose(p.coordinates[i, k], atoms[(i + 1, atom)], atol=6e-4)
            else:  # an atom the decoder did not place (the last O) is not written
                assert not np.isfinite(p.coordinates[i, k]).all()
    # And our own writer writes the CLI's file.
    p.to_pdb(tmp_path / "ours.pdb")
    ours, ours_b = read_pdb_atoms(tmp_path / "ours.pdb")
    assert ours == atoms and ours_b == b


def test_generate_equals_esm3_generate(tmp_path, cli, model):
    length = 24
    cli("generate", "--length", length, "-n", 1, "--seed", 5, "--max-attempts", 1, "--no-report", "-o", tmp_path, "--model-dir", BUNDLED)
    summary = json.loads((tmp_path / "design.json").read_text())
    plan = esm3rs.unconditional_plan(length)
    assert [c.track for c in plan] == ["sequence", "structure"]
    p = model.generate(esm3rs.ESMProtein(sequence="_" * length), plan, seed=5)
    assert p.sequence == summary["sequence"]
    assert p.ptm == pytest.approx(summary["ptm"], abs=1e-6)
    # A batch gives each protein what it gets alone.
    batch = model.generate_batch([esm3rs.ESMProtein(sequence="_" * length)] * 2, plan, seeds=[5, 6])
    assert batch[0].sequence == p.sequence
    assert batch[1].sequence == model.generate(esm3rs.ESMProtein(sequence="_" * length), plan, seed=6).sequence


def test_inverse_fold_equals_esm3_inverse_fold(tmp_path, cli, model):
    fasta = cli("inverse-fold", UBIQUITIN, "--seed", 2, "--model-dir", BUNDLED)
    expected = fasta.strip().splitlines()[1]
    p = model.inverse_fold(UBIQUITIN, seed=2)
    assert p.sequence == expected
    native = esm3rs.ESMProtein.from_pdb(UBIQUITIN)
    assert model.inverse_fold(native, seed=2).sequence == expected
    np.testing.assert_array_equal(p.coordinates, native.coordinates)


def test_encode_equals_structure_encode_and_decode_gives_coordinates(cli, model):
    expected = json.loads(cli("structure", "encode", UBIQUITIN, "--model-dir", BUNDLED))
    protein = esm3rs.ESMProtein.from_pdb(UBIQUITIN)
    assert protein.sequence == expected["sequence"]
    tokens = model.encode(protein)
    assert len(tokens) == len(protein) + 2
    assert tokens.structure.dtype == np.int64
    assert tokens.structure[1:-1].tolist() == expected["structure_tokens"]
    decoded = model.decode(tokens)
    assert decoded.sequence == protein.sequence
    assert decoded.coordinates.shape == (len(protein), 37, 3)
    assert decoded.plddt.shape == (len(protein),) and 0 <= decoded.ptm <= 1


def test_logits_have_every_head(model, esmc):
    seq = SEQUENCES[1][1]
    out = model.logits(seq)
    assert out["sequence"].shape[0] == len(seq) + 2
    assert {"sequence", "structure", "secondary_structure", "sasa", "function", "residue_annotations", "embeddings"} <= set(out)
    # The embeddings row of a residue is what embed() returns for it.
    np.testing.assert_array_equal(out["embeddings"][1:-1], model.embed(seq).per_residue)
    c = esmc.logits(seq)
    assert set(c) == {"sequence", "embeddings"}
    np.testing.assert_array_equal(c["embeddings"][1:-1], esmc.embed(seq).per_residue)
