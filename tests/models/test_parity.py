"""Faithful variant vs the official release on a real MSRS pair.

Golden file: ../shared/parity/00004N_seed0.npz (official outputs in eval mode for
weights_seed0.pth); tolerances from parity/README.md: 1e-4 on disp (normalised), 1e-3 on images.
"""

from pathlib import Path

import numpy as np
import pytest

from superfusion_jax.convert.official import load_official
from superfusion_jax.inference import Pipeline
from superfusion_jax.models.variants import FAITHFUL
from tests.conftest import MSRS, PARITY, require
from tests.helpers import read_rgb


@pytest.fixture(scope="module")
def pipeline():
    variables, _ = load_official(require(PARITY / "weights_seed0.pth"))
    return Pipeline(variables, FAITHFUL)


@pytest.fixture(scope="module")
def golden():
    data = np.load(require(PARITY / "00004N_seed0.npz"))
    return {k: np.transpose(data[k], (0, 2, 3, 1)) for k in data.files}  # NCHW -> NHWC


@pytest.fixture(scope="module")
def images():
    return {d: read_rgb(require(MSRS / d / "00004N.png")) for d in ("ir", "ir_warp", "vi")}


def test_register_and_fuse_matches_release(pipeline, golden, images):
    out = pipeline.register_and_fuse(images["ir_warp"], images["vi"])
    np.testing.assert_allclose(out["disp"], golden["disp"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out["ir_reg"], golden["ir_reg"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(out["fused"], golden["reg_fused_rgb"], rtol=0, atol=1e-3)


def test_fuse_matches_release(pipeline, golden, images):
    out = pipeline.fuse(images["ir"], images["vi"])
    np.testing.assert_allclose(out["fused"], golden["fused_rgb"], rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def odd_size_golden():
    """The release's DenseMatcher on a 75 x 101 crop (goldens/make_release_odd_size.py)."""
    data = np.load(Path(__file__).parent / "goldens" / "release_odd_size.npz")
    rows, cols = slice(*data["rows"]), slice(*data["cols"])
    crops = {
        d: read_rgb(require(MSRS / d / "00004N.png"))[:, rows, cols] for d in ("ir_warp", "vi")
    }
    return crops, {k: np.transpose(data[k], (0, 2, 3, 1)) for k in ("disp", "ir_reg")}


def test_odd_size_matches_the_release(pipeline, odd_size_golden):
    """At a size that is not a multiple of 8 the faithful pipeline runs the DenseMatcher
    unpadded, as the release does, and so computes the release's field."""
    crops, golden = odd_size_golden
    out = pipeline.register(crops["ir_warp"], crops["vi"])
    np.testing.assert_allclose(out["disp"], golden["disp"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out["ir_reg"], golden["ir_reg"], rtol=0, atol=1e-3)


def test_padding_is_an_option_that_changes_the_field(odd_size_golden):
    """pad_multiple=8 (corrected's default) is a different function at this size."""
    crops, golden = odd_size_golden
    variables, _ = load_official(require(PARITY / "weights_seed0.pth"))
    out = Pipeline(variables, FAITHFUL, pad_multiple=8).register(crops["ir_warp"], crops["vi"])
    assert np.abs(out["disp"] - golden["disp"]).max() > 1e-2
