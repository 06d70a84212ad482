"""Every call gives what the `esm3` binary gives on the same inputs (same engine, same seeds)."""

import json

import numpy as np
import pytest

import esm3rs
from conftest import BUNDLED, ESMC, SHARED, UBIQUITIN, write_fasta

DIMER = SHARED / "structures" / "pymol-data" / "1hpv.pdb.gz"  # HIV protease, chains A and B

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


def fasta_sequences(text):
    """The sequences of FASTA text, lines of a record joined (the CLI wraps long ones)."""
    return ["".join(r.splitlines()[1:]) for r in text.split(">")[1:]]


def read_pdb_chains(path):
    """(chain, residue number, atom name) -> [x, y, z, B-factor], from ATOM records."""
    return {
        (line[21], int(line[22:26]), line[12:16].strip()): [float(line[30:38]), float(line[38:46]), float(line[46:54]), float(line[60:66])]
        for line in open(path)
        if line.startswith("ATOM")
    }


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


def test_a_complex_folds_and_writes_as_esm3_fold(tmp_path, cli, model):
    seq = "MKTAYIAKQRQISFVK|GSHMSEQLEERLG"
    cli("fold", write_fasta(tmp_path / "in.fasta", [("cx", seq)]), "-o", tmp_path / "out", "--no-report", "--model-dir", BUNDLED)
    expected = read_pdb_chains(tmp_path / "out" / "cx.pdb")
    p = model.fold(seq)
    assert p.sequence == seq
    p.to_pdb(tmp_path / "ours.pdb")
    ours = read_pdb_chains(tmp_path / "ours.pdb")
    assert {k[0] for k in ours} == {"A", "B"}
    assert ours.keys() == expected.keys()
    for k, xyz in ours.items():
        np.testing.assert_allclose(xyz, expected[k], atol=1.1e-3)


def test_design_equals_esm3_generate_with_retries(tmp_path, cli, model):
    # A threshold no sequence meets (no run of one residue allowed at all): every design takes
    # all 3 attempts, and the least repetitive is kept, as the CLI keeps it.
    cli("generate", "--length", 20, "-n", 2, "--seed", 7, "--max-attempts", 3, "--max-homopolymer", 0, "--no-report", "-o", tmp_path, "--model-dir", BUNDLED)
    designs = model.design(20, n=2, seed=7, max_attempts=3, max_homopolymer=0)
    assert len(designs) == 2
    for i, d in enumerate(designs):
        summary = json.loads((tmp_path / f"design_{i}.json").read_text())
        assert d.protein.sequence == summary["sequence"]
        assert d.seed == summary["seed"] and d.attempts == summary["attempts"] == 3
        assert d.complexity == summary["complexity"] and d.passed is summary["complexity"]["passes"] is False
        assert d.rejected_attempts == summary["rejected_attempts"] and len(d.rejected_attempts) == 2
        # Design i, attempt k: seed 7 + i + 2k (the CLI's --seed documentation).
        assert sorted([d.seed] + [r["seed"] for r in d.rejected_attempts]) == [7 + i, 9 + i, 11 + i]
        assert d.protein.ptm == pytest.approx(summary["ptm"], abs=1e-6)
        # The relaxed backbone the CLI wrote.
        d.protein.to_pdb(tmp_path / "ours.pdb")
        ours, expected = read_pdb_chains(tmp_path / "ours.pdb"), read_pdb_chains(tmp_path / summary["structure_file"])
        assert ours.keys() == expected.keys()
        for k, xyz in ours.items():
            np.testing.assert_allclose(xyz, expected[k], atol=1.1e-3)
    # Default thresholds: the designs the CLI makes by default.
    cli("generate", "--length", 20, "-n", 2, "--seed", 7, "--no-report", "-o", tmp_path / "default", "--model-dir", BUNDLED)
    for i, d in enumerate(model.design(20, n=2, seed=7)):
        summary = json.loads((tmp_path / "default" / f"design_{i}.json").read_text())
        assert (d.protein.sequence, d.seed, d.attempts) == (summary["sequence"], summary["seed"], summary["attempts"])


def test_design_from_a_prompt_file_keeps_its_motif_as_the_cli(tmp_path, cli, model):
    prompt = tmp_path / "p.toml"
    prompt.write_text(
        f"""name = "scaffold"
sequence = "M_____________________________K_"

[[motif]]
file = "{UBIQUITIN}"
residues = "11-15"
at = 6

[[generate]]
track = "sequence"
num_steps = 5

[[generate]]
track = "structure"
num_steps = 5
"""
    )
    cli("generate", "--prompt", prompt, "--seed", 3, "--no-report", "-o", tmp_path / "out", "--model-dir", BUNDLED)
    summary = json.loads((tmp_path / "out" / "scaffold.json").read_text())
    (d,) = model.design(prompt=prompt, seed=3)
    assert d.protein.sequence == summary["sequence"]
    # The CLI's sampling flags and design's arguments of the same names.
    cli("generate", "--prompt", prompt, "--seed", 3, "--temperature", 0.3, "--num-steps", 3, "--strategy", "entropy", "--no-report", "-o", tmp_path / "flags", "--model-dir", BUNDLED)
    flagged = json.loads((tmp_path / "flags" / "scaffold.json").read_text())
    (e,) = model.design(prompt=prompt, seed=3, temperature=0.3, num_steps=3, strategy="entropy")
    assert e.protein.sequence == flagged["sequence"]
    assert [c["num_steps"] for c in flagged["plan"]] == [3, 3]
    assert d.protein.sequence[5:10] == "KTITL"
    assert d.motif_rmsd == pytest.approx(summary["motif_backbone_rmsd"], abs=1e-9)
    d.protein.to_pdb(tmp_path / "ours.pdb")
    ours, expected = read_pdb_chains(tmp_path / "ours.pdb"), read_pdb_chains(tmp_path / "out" / "scaffold.pdb")
    assert ours.keys() == expected.keys()
    for k, xyz in ours.items():
        np.testing.assert_allclose(xyz, expected[k], atol=1.1e-3)


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
    (expected,) = fasta_sequences(fasta)
    p = model.inverse_fold(UBIQUITIN, seed=2)
    assert p.sequence == expected
    native = esm3rs.ESMProtein.from_pdb(UBIQUITIN)
    assert model.inverse_fold(native, seed=2).sequence == expected
    np.testing.assert_array_equal(p.coordinates, native.coordinates)


def test_inverse_fold_of_a_complex_equals_the_cli(cli, model):
    fasta = cli("inverse-fold", DIMER, "--chain", "A,B", "--fix", "B", "--seed", 4, "--model-dir", BUNDLED)
    (expected,) = fasta_sequences(fasta)
    p = model.inverse_fold(DIMER, seed=4, chain_id=["A", "B"], fix="B")
    assert p.sequence == expected
    a, b = p.sequence.split("|")
    native_a, native_b = (esm3rs.ESMProtein.from_pdb(DIMER, c) for c in "AB")
    assert b == native_b.sequence and len(a) == len(native_a)
    # The file's coordinates come back, chain A, a break without atoms, then chain B.
    np.testing.assert_array_equal(p.coordinates[: len(a)], native_a.coordinates)
    assert np.isnan(p.coordinates[len(a)]).all()
    np.testing.assert_array_equal(p.coordinates[len(a) + 1 :], native_b.coordinates)
    # Both chains designed: the same as the CLI, from the path or from the joined protein.
    (both,) = fasta_sequences(cli("inverse-fold", DIMER, "--chain", "A,B", "--seed", 4, "--model-dir", BUNDLED))
    assert model.inverse_fold(DIMER, seed=4, chain_id=["A", "B"]).sequence == both
    joined = esm3rs.ESMProtein(sequence="_" * len(a) + "|" + "_" * len(b), coordinates=p.coordinates)
    assert model.inverse_fold(joined, seed=4).sequence == both


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
