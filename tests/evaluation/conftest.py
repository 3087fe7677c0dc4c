"""Inputs of the evaluation tests (evaluate.py and superfusion_jax.evaluation.runner): real MSRS
test pairs from shared/data/msrs_test (fused images of SeAFusion from its fused_seafusion/),
labelled synthetic scenes, MSRS pairs cropped small with their ground truth, and a random
segmentation network."""

import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.evaluation.segmentation_metrics import MSRS_CLASSES
from superfusion_jax.io.ground_truth import read_flow_mat
from superfusion_jax.io.model_files import save_model
from superfusion_jax.models.bisenet import fresh_variables
from tests.conftest import MSRS, require

NAMES = ["00004N", "00055D", "00091D"]
CHEAP = ("EN", "CC")  # two cheap fusion metrics keep the compilation short


@pytest.fixture
def folders(tmp_path):
    """ir/, vi/, seafusion/ (NAME.png) and ir_fused/ (the infrared image as NAME_fused.png) of
    the full-size MSRS pairs NAMES; vi/ also holds a Thumbs.db."""
    for sub in ("ir", "vi", "seafusion", "ir_fused"):
        (tmp_path / sub).mkdir()
    for name in NAMES:
        shutil.copy(require(MSRS / "ir" / f"{name}.png"), tmp_path / "ir")
        shutil.copy(MSRS / "vi" / f"{name}.png", tmp_path / "vi")
        shutil.copy(MSRS / "fused_seafusion" / f"{name}.png", tmp_path / "seafusion")
        shutil.copy(MSRS / "ir" / f"{name}.png", tmp_path / "ir_fused" / f"{name}_fused.png")
    (tmp_path / "vi" / "Thumbs.db").write_bytes(b"junk")  # not an image: ignored, not skipped
    return tmp_path


def damage(folders):
    """Spoil the `folders` inputs: SeAFusion's 00055D truncated, infrared's 00091D missing, an
    infrared image 'lonely' without a visible partner. Returns the truncated file."""
    corrupt = folders / "seafusion" / "00055D.png"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    (folders / "ir_fused" / "00091D_fused.png").unlink()
    shutil.copy(folders / "ir" / "00004N.png", folders / "ir" / "lonely.png")
    return corrupt


def write_segmenter(path):
    """A random segmentation network as a configs/segmentation.py folder; returns its variables."""
    variables = fresh_variables(len(MSRS_CLASSES), seed=0)
    save_model(path, variables, {"model": "bisenet"})
    return variables


def _png(array, path):
    Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


@pytest.fixture
def labelled(tmp_path):
    """MSRS layout of 3 synthetic 64 x 64 scenes: ir/, vi/, label/ and two 'methods' whose
    fused images are copies of vi and of ir."""
    source = SyntheticPairs(3, 64, 64, seed=5)
    for sub in ("ir", "vi", "label", "vi_copy", "ir_copy"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        record, name = source[i], f"scene{i}"
        _png(record["ir"][..., 0], tmp_path / "ir" / f"{name}.png")
        _png(record["ir"][..., 0], tmp_path / "ir_copy" / f"{name}.png")
        _png(record["vi"], tmp_path / "vi" / f"{name}.png")
        _png(record["vi"], tmp_path / "vi_copy" / f"{name}_fused.png")
        Image.fromarray(record["label"].astype(np.uint8)).save(tmp_path / "label" / f"{name}.png")
    return tmp_path


def cropped_msrs(root, names, top, left, h, w):
    """An MSRS-layout data set of (h, w) crops; flow/ holds the crop's own ground truth.

    Returns {name: identity EPE}, the mean |src(p) - p| of each crop, pixels (numpy).
    """
    for sub in ("ir", "vi", "ir_warp", "flow"):
        (root / sub).mkdir(parents=True)
    window = (slice(top, top + h), slice(left, left + w))
    identity = {}
    for name in names:
        for sub in ("ir", "vi", "ir_warp"):
            pixels = np.asarray(Image.open(require(MSRS / sub / f"{name}.png")))
            Image.fromarray(pixels[window]).save(root / sub / f"{name}.png")
        source = read_flow_mat(MSRS / "flow" / f"{name}.png.mat")[window] - [left, top]
        grid = (2 * source + 1) / [w, h] - 1  # crop pixels -> normalised, align_corners=False
        scipy.io.savemat(root / "flow" / f"{name}.png.mat", {"flow": grid[None].astype("f4")})
        ys, xs = np.mgrid[:h, :w]
        identity[name] = np.hypot(source[..., 0] - xs, source[..., 1] - ys).mean()
    return identity
