"""evaluate.py end to end, as a subprocess: folders mode on real MSRS test pairs (SeAFusion's
fused images from shared/data/msrs_test/fused_seafusion), damaged and missing files, usage
errors, segmentation mIoU on labelled synthetic pairs (a random BiSeNet: the numbers are checked
against a direct computation, not for quality), and model mode with an untrained model on pairs
cropped small (slow)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.evaluation import report
from superfusion_jax.evaluation.segmentation_metrics import MSRS_CLASSES, ConfusionAccumulator
from superfusion_jax.io.ground_truth import read_flow_mat
from superfusion_jax.io.images import read_image
from superfusion_jax.io.model_files import save_model
from superfusion_jax.models.bisenet import BiSeNet, fresh_variables
from tests.conftest import MSRS, REPO, require

NAMES = ["00004N", "00055D", "00091D"]
CHEAP = "--metrics=EN,CC"  # two cheap fusion metrics keep the compilation short


def _evaluate(*args, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def folders(tmp_path):
    """ir/, vi/, seafusion/ (NAME.png) and ir_fused/ (the infrared image as NAME_fused.png)."""
    for sub in ("ir", "vi", "seafusion", "ir_fused"):
        (tmp_path / sub).mkdir()
    for name in NAMES:
        shutil.copy(require(MSRS / "ir" / f"{name}.png"), tmp_path / "ir")
        shutil.copy(MSRS / "vi" / f"{name}.png", tmp_path / "vi")
        shutil.copy(MSRS / "fused_seafusion" / f"{name}.png", tmp_path / "seafusion")
        shutil.copy(MSRS / "ir" / f"{name}.png", tmp_path / "ir_fused" / f"{name}_fused.png")
    (tmp_path / "vi" / "Thumbs.db").write_bytes(b"junk")  # not an image: ignored, not skipped
    return tmp_path


def _folders_args(root, out):
    return [
        "--mode=folders",
        f"--fused={root / 'seafusion'}",
        f"--fused={root / 'ir_fused'}",
        "--names=SeAFusion,infrared",
        f"--ir={root / 'ir'}",
        f"--vi={root / 'vi'}",
        f"--out={out}",
        CHEAP,
    ]


def _entropy_bits(path):
    levels = np.asarray(Image.open(path).convert("L")).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    return -np.sum(p[p > 0] * np.log2(p[p > 0]))


def test_folders_mode_side_by_side(folders):
    out = folders / "out"
    run = _evaluate(*_folders_args(folders, out))
    assert run.returncode == 0, run.stderr
    assert "Thumbs.db" in run.stderr and "skipped" not in run.stderr
    names, results = report.read_per_image_csv(out / "fusion_per_image.csv")
    assert names == NAMES and list(results) == ["SeAFusion", "infrared"]
    # the infrared image as "fused": EN is its own grey-level entropy
    expected = [_entropy_bits(MSRS / "ir" / f"{n}.png") for n in NAMES]
    np.testing.assert_allclose(results["infrared"]["EN"], expected, rtol=1e-9)
    assert np.all(results["SeAFusion"]["EN"] > 5) and np.all(
        np.abs(results["SeAFusion"]["CC"]) <= 1
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == NAMES and summary["skipped"] == []
    assert summary["fusion"]["infrared"]["EN"]["mean"] == pytest.approx(np.mean(expected))
    table = (out / "summary.md").read_text()
    assert "| method | EN ↑ | CC ↑ |" in table and "| SeAFusion |" in table
    for figure in ("plots/fusion_EN.png", "plots/fusion_CC.png", "cases.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG"


def test_folders_mode_reports_and_skips_bad_files(folders):
    corrupt = folders / "seafusion" / "00055D.png"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated PNG
    (folders / "ir_fused" / "00091D_fused.png").unlink()
    shutil.copy(folders / "ir" / "00004N.png", folders / "ir" / "lonely.png")  # no partner
    out = folders / "out"
    run = _evaluate(*_folders_args(folders, out))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert f"skipped 00055D: {corrupt}" in run.stderr
    assert "skipped 00091D: no image named 00091D in" in run.stderr
    assert "skipped lonely: " in run.stderr and "has no partner in" in run.stderr
    for name in ("00055D", "00091D", "lonely"):  # each skip said once
        assert run.stderr.count(f"skipped {name}:") == 1, run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == ["00004N"]
    assert [s["name"] for s in summary["skipped"]] == ["lonely", "00055D", "00091D"]
    names, _ = report.read_per_image_csv(out / "fusion_per_image.csv")
    assert names == ["00004N"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode=folders", "--ir=.", "--vi=."], "needs at least one --fused"),
        (["--fused=."], "mode"),  # --mode is required
        (["--mode=folders", "--fused=.", "--ir=.", "--vi=.", "--metrics=EN,Bogus"], "no Bogus"),
        (["--mode=folders", "--fused=.", "--ir=.", "--vi=.", "--data=."], "--data"),
        (["--mode=model", "--data=/nonexistent"], "not a folder"),
    ],
)
def test_usage_errors_are_one_clear_message(args, message):
    run = _evaluate(*args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("metrics", ["--metrics=", "--metrics=EN,", "--metrics= "])
def test_an_empty_metric_list_is_refused_before_any_work(folders, metrics):
    out = folders / "out"
    run = _evaluate(*_folders_args(folders, out), metrics)
    assert run.returncode == 2
    assert "names no metric or an empty one" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()


# --- segmentation -----------------------------------------------------------------------------


def _segmenter(path):
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


def test_folders_mode_segmentation_of_sources_and_fused_images(labelled):
    variables = _segmenter(labelled / "seg")
    (labelled / "label" / "scene2.png").unlink()  # no label: the pair is skipped
    out = labelled / "out"
    args = [
        "--mode=folders",
        f"--fused={labelled / 'vi_copy'}",
        f"--fused={labelled / 'ir_copy'}",
        f"--ir={labelled / 'ir'}",
        f"--vi={labelled / 'vi'}",
        f"--out={out}",
        f"--segmentation_checkpoint={labelled / 'seg'}",
        CHEAP,
    ]
    refused = _evaluate(*args, f"--labels={labelled / 'nowhere'}")
    assert refused.returncode == 2 and "needs label images" in refused.stderr
    run = _evaluate(*args)  # labels: label/ next to --vi
    assert run.returncode == 1, run.stderr
    assert "skipped scene2: no image named scene2 in" in run.stderr

    names, per_image = report.read_per_image_csv(out / "segmentation_per_image.csv")
    assert names == ["scene0", "scene1"]
    assert list(per_image) == ["vi", "ir", "vi_copy", "ir_copy"]
    for source, copy in (("vi", "vi_copy"), ("ir", "ir_copy")):
        np.testing.assert_array_equal(per_image[source]["miou"], per_image[copy]["miou"])
    summary = json.loads((out / "summary.json").read_text())["segmentation"]
    assert summary["classes"] == list(MSRS_CLASSES)
    # the data-set IoU recomputed here, from the images as evaluate.py reads them
    for kind in ("vi", "ir"):
        accumulator = ConfusionAccumulator()
        for name in names:
            image = read_image(labelled / kind / f"{name}.png")[None]
            main, _ = BiSeNet(len(MSRS_CLASSES)).apply(variables, image)
            label = np.asarray(Image.open(labelled / "label" / f"{name}.png"), np.int32)
            accumulator.update(label[None], np.argmax(main, axis=-1))
        assert summary[kind]["miou"] == pytest.approx(accumulator.mean_iou(), abs=1e-12)
        np.testing.assert_array_equal(summary[kind]["confusion"], accumulator.confusion)
    assert summary["vi"]["confusion"] != summary["ir"]["confusion"]
    table = (out / "summary.md").read_text()
    assert "## segmentation (IoU %" in table and "| method | mIoU | unlabelled | car |" in table
    assert f"| vi_copy | {100 * summary['vi']['miou']:.2f} |" in table


# --- model mode -------------------------------------------------------------------------------


def _cropped_msrs(root, names, top, left, h, w):
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


@pytest.mark.slow
def test_model_mode_with_an_untrained_model(tmp_path):
    data = tmp_path / "data"
    identity = _cropped_msrs(data, NAMES[:2], top=200, left=280, h=64, w=80)
    for sub in ("ir", "vi", "ir_warp"):  # a third pair without ground truth
        shutil.copy(data / sub / f"{NAMES[0]}.png", data / sub / "nogt.png")
    (data / "label").mkdir()
    for name in NAMES[:2]:  # labels: warm infrared pixels are 'person'
        ir = np.asarray(Image.open(data / "ir" / f"{name}.png").convert("L"))
        Image.fromarray((2 * (ir > 128)).astype(np.uint8)).save(data / "label" / f"{name}.png")
    _segmenter(tmp_path / "seg")
    out = tmp_path / "out"
    args = [
        "--mode=model",
        f"--data={data}",
        f"--out={out}",
        CHEAP,
        f"--segmentation_checkpoint={tmp_path / 'seg'}",
    ]
    refused = _evaluate(*args, f"--checkpoint={tmp_path / 'missing'}")
    assert (
        refused.returncode == 2
        and "--checkpoint:" in refused.stderr
        and "missing" in refused.stderr
    )
    run = _evaluate(*args, "--allow_untrained")
    assert run.returncode == 1, run.stderr
    assert "skipped nogt:" in run.stderr and "nogt.png.mat: no such file" in run.stderr
    names, registration = report.read_per_image_csv(out / "registration_per_image.csv")
    assert names == NAMES[:2] and list(registration) == ["model", "identity"]
    np.testing.assert_allclose(
        registration["identity"]["epe_mean_px"], [identity[n] for n in names], rtol=1e-5
    )
    np.testing.assert_array_equal(registration["identity"]["folding_pct"], 0.0)
    for values in registration["model"].values():
        assert np.all(np.isfinite(values))
    _, fusion = report.read_per_image_csv(out / "fusion_per_image.csv")
    assert list(fusion) == ["register_and_fuse", "fuse_aligned"] and list(
        fusion["fuse_aligned"]
    ) == [
        "EN",
        "CC",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == "faithful" and summary["skipped"][0]["name"] == "nogt"
    segmentation = summary["segmentation"]
    assert list(segmentation) == ["classes", "vi", "ir", "register_and_fuse", "fuse_aligned"]
    for row in list(segmentation)[1:]:  # every labelled pixel counted once per image kind
        assert np.sum(segmentation[row]["confusion"]) == 2 * 64 * 80
    seg_names, _ = report.read_per_image_csv(out / "segmentation_per_image.csv")
    assert seg_names == NAMES[:2]
    assert (out / "plots" / "registration_epe_mean_px.png").is_file()
    with Image.open(out / "cases.png") as image:
        assert image.width > 7 * 80  # seven pictures per case
