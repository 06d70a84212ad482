"""Errors, threads and packaging of the esm3rs package itself."""

import os
import threading
import time

import numpy as np
import pytest

import esm3rs
from conftest import BUNDLED, REPO, UBIQUITIN


def test_the_installed_wheel_is_what_runs():
    # tools/py/test.sh installs the wheel into a fresh venv and runs from outside the sources.
    assert "site-packages" in esm3rs.__file__, esm3rs.__file__
    assert esm3rs._native.__file__.endswith(".abi3.so")


def test_bad_residue_letter_is_a_value_error_naming_it(model):
    with pytest.raises(ValueError, match="sequence 1:.*'J'|sequence 1:.*J"):
        model.embed(["MKT", "MKJT"])
    with pytest.raises(ValueError, match="J"):
        model.score("MKJT")


def test_bad_inputs_raise_value_error_with_our_message(model, esmc):
    with pytest.raises(ValueError, match=r"coordinates has shape \(3, 14, 3\)"):
        model.generate(esm3rs.ESMProtein(sequence="MKT", coordinates=np.zeros((3, 14, 3))), esm3rs.folding_config())
    with pytest.raises(ValueError, match="residues, expected"):
        model.generate(esm3rs.ESMProtein(sequence="MKT", secondary_structure="HH"), esm3rs.folding_config())
    with pytest.raises(ValueError, match="track"):
        model.generate("MKT", esm3rs.GenerationConfig())
    with pytest.raises(ValueError, match="temperature"):
        model.generate("MK__", esm3rs.GenerationConfig(track="sequence", temperature=-1.0))
    with pytest.raises(ValueError, match="schedule"):
        model.generate("MK__", esm3rs.GenerationConfig(track="sequence", schedule="square"))
    with pytest.raises(ValueError, match="ESM C"):
        esmc.fold("MKT")
    with pytest.raises(ValueError, match="variant|mutation|position"):
        model.masked_marginals("MKT", ["K9A"])
    with pytest.raises(ValueError, match="unknown track"):
        esm3rs.unconditional_plan(10, ["sequence", "shape"])


def test_bad_device_or_dtype_is_a_value_error():
    with pytest.raises(ValueError, match="unknown dtype `f64`"):
        esm3rs.load(BUNDLED, dtype="f64")
    with pytest.raises(ValueError, match="unknown device `tpu`"):
        esm3rs.load(BUNDLED, device="tpu")


def test_missing_files_are_named():
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        esm3rs.load(REPO / "no-such-model")
    with pytest.raises(FileNotFoundError, match="nothere.pdb"):
        esm3rs.ESMProtein.from_pdb("/nothere.pdb")
    with pytest.raises(ValueError, match="chain 'Q'"):
        esm3rs.ESMProtein.from_pdb(UBIQUITIN, chain_id="Q")


def test_truncated_pdb_is_a_value_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.pdb"
    bad.write_text("ATOM      1  N   MET A   1      27.3\n")
    with pytest.raises(ValueError, match="bad.pdb"):
        esm3rs.ESMProtein.from_pdb(bad)


def test_compute_releases_the_gil(model):
    """While one thread scores, another keeps running Python: the GIL is not held."""
    sequence = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"
    t0 = time.perf_counter()
    model.score(sequence)
    alone = time.perf_counter() - t0
    done = threading.Event()

    def work():
        model.score(sequence)
        done.set()

    worker = threading.Thread(target=work)
    ticks = 0
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    # A tick takes a little over 1 ms, so a free main thread gets near 1000 per second of the
    # call; holding the GIL for the whole call would leave it a handful.
    assert ticks > 100 * alone, (ticks, alone)


def test_threads_share_one_model(model):
    seqs = ["MKTAYIAKQR", "GSHMSEQ", "MQIFVKTLTG", "PEPTIDEK"]
    # Each alone, in turn: the same matrix shapes the threads compute (a batch pads, and
    # differently shaped products round differently).
    expected = [model.embed(s).mean for s in seqs]
    results = [None] * len(seqs)

    def work(i):
        results[i] = model.embed(seqs[i]).mean

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(seqs))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_default_model_is_found_from_the_repository(monkeypatch):
    monkeypatch.delenv("ESM3_MODEL_DIR", raising=False)
    monkeypatch.chdir(REPO / "crates")
    assert os.path.samefile(esm3rs.load().path, BUNDLED)


def test_pdb_round_trip_keeps_coordinates(tmp_path):
    native = esm3rs.ESMProtein.from_pdb(UBIQUITIN)
    native.to_pdb(tmp_path / "ubq.pdb")
    again = esm3rs.ESMProtein.from_pdb(tmp_path / "ubq.pdb")
    assert again.sequence == native.sequence
    np.testing.assert_allclose(again.coordinates, native.coordinates, atol=5e-4, equal_nan=True)


def test_presets_are_the_cli_presets():
    f = esm3rs.folding_config()
    assert (f.track, f.temperature, f.strategy) == ("structure", 0.0, "entropy")
    i = esm3rs.inverse_folding_config()
    assert (i.track, i.temperature, i.temperature_annealing) == ("sequence", 0.1, False)
    plan = esm3rs.unconditional_plan(50)
    assert plan[0].num_steps == 50 and plan[0].temperature == 0.7


def test_fold_checks_its_input_as_the_cli(model):
    with pytest.raises(ValueError, match="position 1"):
        model.fold("|MKT")
    with pytest.raises(ValueError, match="empty chain"):
        model.fold("MKT||GS")
    with pytest.raises(ValueError, match="limit of 2048"):
        model.fold("A" * 2049)


def test_fold_without_a_structure_decoder_says_so():
    no_decoder = esm3rs.load(REPO / "fixtures" / "reference" / "esm3_d64" / "model")
    with pytest.raises(ValueError, match="structure decoder"):
        no_decoder.fold("MKT")


def test_error_kinds(tmp_path, model):
    # A model directory without weights is a missing file, not a model failure.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text((BUNDLED / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        esm3rs.load(tmp_path / "m")
    # Writing where no folder is: OSError.
    p = esm3rs.ESMProtein.from_pdb(UBIQUITIN)
    with pytest.raises(OSError, match="no-such-dir"):
        p.to_pdb(tmp_path / "no-such-dir" / "x.pdb")
    # Negative or non-integer counts: ValueError with the argument's name.
    with pytest.raises(ValueError, match="seed must be at least 0"):
        model.generate("MK__", esm3rs.GenerationConfig(track="sequence"), seed=-1)
    with pytest.raises(ValueError, match="seed must be an integer"):
        model.generate("MK__", esm3rs.GenerationConfig(track="sequence"), seed="3")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        model.embed("MKT", batch_size=0)
    with pytest.raises(ValueError, match="not both"):
        model.design(10, prompt="p.toml")
    with pytest.raises(ValueError, match="plan is empty"):
        model.design(10, plan=[])
    with pytest.raises(ValueError, match="tracks applies"):
        model.design(10, tracks=["sequence"], plan=esm3rs.unconditional_plan(10))
    with pytest.raises(ValueError, match="seed must be at most"):
        model.design(10, seed=2**64)
    with pytest.raises(ValueError, match="too large"):
        model.design(10, n=2, seed=2**64 - 1)
    with pytest.raises(ValueError, match="limit of 2048"):
        model.design(prompt=esm3rs.ESMProtein(sequence="_" * 2049), plan=esm3rs.unconditional_plan(10))
    with pytest.raises(ValueError, match="still masked"):
        esm3rs.ESMProtein(sequence="M_K", coordinates=np.zeros((3, 37, 3), np.float32)).to_pdb(tmp_path / "m.pdb")
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        model.design(prompt=tmp_path / "nope.toml")


def test_numpy_numbers_are_accepted_where_python_ones_are(model):
    config = esm3rs.GenerationConfig(track="sequence", num_steps=np.int64(2), temperature=np.float32(0.5), top_p=np.float64(0.9))
    a = model.generate("MK____", config, seed=np.int64(1))
    b = model.generate("MK____", esm3rs.GenerationConfig(track="sequence", num_steps=2, temperature=0.5, top_p=0.9), seed=1)
    assert a.sequence == b.sequence


def test_annotations_survive_the_sdk_split():
    # Without the SDK: from_sdk only needs an object with the SDK's fields.
    class Sdk:
        sequence = "MKTAYIAKQR"
        secondary_structure = sasa = coordinates = plddt = ptm = None
        function_annotations = [esm3rs.FunctionAnnotation("IPR000001", 1, 5), esm3rs.FunctionAnnotation("Zinc", 2, 2)]

    p = esm3rs.ESMProtein.from_sdk(Sdk(), residue_labels={"Zinc"})
    assert p.function_annotations == [esm3rs.FunctionAnnotation("IPR000001", 1, 5)]
    assert p.residue_annotations == [esm3rs.FunctionAnnotation("Zinc", 2, 2)]
    assert esm3rs.ESMProtein.from_sdk(Sdk()).residue_annotations is None
