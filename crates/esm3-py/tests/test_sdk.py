"""Conversion to and from the official `esm` SDK's classes (skipped where `esm` is not installed)."""

import numpy as np
import pytest

import esm3rs
from conftest import UBIQUITIN

esm_api = pytest.importorskip("esm.sdk.api", reason="the esm SDK is not installed in this venv")


def test_protein_round_trips_through_the_sdk(model):
    folded = model.fold("MKTAYIAKQRQISFVKSHFSRQ", relax=False)
    folded.function_annotations = [esm3rs.FunctionAnnotation("IPR000001", 2, 9)]
    sdk = folded.to_sdk()
    assert isinstance(sdk, esm_api.ESMProtein)
    assert sdk.sequence == folded.sequence
    assert tuple(sdk.coordinates.shape) == (22, 37, 3)
    assert float(sdk.ptm) == pytest.approx(folded.ptm)
    back = esm3rs.ESMProtein.from_sdk(sdk)
    np.testing.assert_array_equal(back.coordinates, folded.coordinates)
    np.testing.assert_array_equal(back.plddt, folded.plddt)
    assert back.function_annotations == folded.function_annotations


def test_sdk_objects_are_accepted_directly(model):
    """An SDK ESMProtein and GenerationConfig go straight into generate(), as in SDK code."""
    sdk = esm3rs.ESMProtein.from_pdb(UBIQUITIN).to_sdk()
    prompt = esm_api.ESMProtein(coordinates=sdk.coordinates)
    config = esm_api.GenerationConfig(track="sequence", temperature=0.1, temperature_annealing=False)
    direct = model.generate(prompt, config, seed=1)
    assert direct.sequence == model.inverse_fold(esm3rs.ESMProtein.from_sdk(sdk), seed=1).sequence
