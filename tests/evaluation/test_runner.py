"""The evaluation runner called in-process (`runner.evaluate(EvaluationOptions(...))`): folders
mode on real MSRS test pairs, damaged and missing files, usage errors, segmentation mIoU on
labelled synthetic pairs (a random BiSeNet: the numbers are checked against a direct
computation, not for quality), model mode with a stand-in pipeline (a known shift),
and with an untrained model on pairs cropped small (slow). evaluate.py itself, the command line
around the runner, is tested in test_evaluate.py."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from superfusion_jax.evaluation import report
from superfusion_jax.evaluation.runner import EvaluationOptions, UsageError, evaluate
from superfusion_jax.evaluation.segmentation_metrics import MSRS_CLASSES, ConfusionAccumulator
from superfusion_jax.io.images import read_image
from superfusion_jax.models.bisenet import BiSeNet
from superfusion_jax.models.variants import CORRECTED
from tests.conftest import MSRS
from tests.evaluation.conftest import CHEAP, NAMES, cropped_msrs, damage, write_segmenter


def _folders_options(root, out, **overrides):
    options = dict(
        mode="folders",
        fused=(root / "seafusion", root / "ir_fused"),
        names=("SeAFusion", "infrared"),
        ir=root / "ir",
        vi=root / "vi",
        out=out,
        metrics=CHEAP,
    )
    return EvaluationOptions(**{**options, **overrides})


def _entropy_bits(path):
    levels = np.asarray(Image.open(path).convert("L")).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    return -np.sum(p[p > 0] * np.log2(p[p > 0]))


def test_options_are_checked_and_hold_tuples():
    options = EvaluationOptions(mode="folders", fused=["a", "b"], names=["x", "y"], metrics=["EN"])
    assert (options.fused, options.names, options.metrics) == (("a", "b"), ("x", "y"), ("EN",))
    for wrong in ({"mode": "both"}, {"precision": "float16"}, {"preset": "x"}, {"cases": -1}):
        with pytest.raises(ValueError, match=next(iter(wrong))):
            EvaluationOptions(**{"mode": "model", **wrong})


def test_folders_mode_side_by_side(folders, capsys):
    out = folders / "out"
    result = evaluate(_folders_options(folders, out))
    assert result.images == NAMES and result.skipped == [] and result.out == out
    err = capsys.readouterr().err
    assert "ignored" in err and "Thumbs.db" in err and "skipped" not in err
    names, results = report.read_per_image_csv(out / "fusion_per_image.csv")
    assert names == NAMES and list(results) == ["SeAFusion", "infrared"]
    # the infrared image as "fused": EN is its own grey-level entropy
    expected = [_entropy_bits(MSRS / "ir" / f"{n}.png") for n in NAMES]
    np.testing.assert_allclose(results["infrared"]["EN"], expected, rtol=1e-9)
    assert np.all(results["SeAFusion"]["EN"] > 5)
    assert np.all(np.abs(results["SeAFusion"]["CC"]) <= 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "folders" and summary["preset"] == "matlab"
    assert summary["images"] == NAMES and summary["skipped"] == []
    assert summary["methods"]["fusion"]["infrared"] == str(folders / "ir_fused")
    assert summary["fusion"]["infrared"]["EN"]["mean"] == pytest.approx(np.mean(expected))
    table = (out / "summary.md").read_text()
    assert "| method | EN ↑ | CC ↑ |" in table and "| SeAFusion |" in table
    for figure in ("plots/fusion_EN.png", "plots/fusion_CC.png", "cases.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG"
    with Image.open(out / "cases.png") as image:  # cases=1: one best and one worst row
        rows_of_two = image.height
    evaluate(_folders_options(folders, folders / "one", cases=1, rank_by="CC"))
    with Image.open(folders / "one" / "cases.png") as image:
        assert image.height < rows_of_two


def test_folders_mode_reports_and_skips_bad_files(folders, capsys):
    corrupt = damage(folders)
    out = folders / "out"
    result = evaluate(_folders_options(folders, out))
    assert result.images == ["00004N"]
    assert [name for name, _ in result.skipped] == ["lonely", "00055D", "00091D"]
    err = capsys.readouterr().err
    assert f"skipped 00055D: {corrupt}" in err
    assert "skipped 00091D: no image named 00091D in" in err
    assert "skipped lonely: " in err and "has no partner in" in err
    for name in ("00055D", "00091D", "lonely"):  # each skip said once
        assert err.count(f"skipped {name}:") == 1, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == ["00004N"]
    assert [s["name"] for s in summary["skipped"]] == ["lonely", "00055D", "00091D"]
    assert "Skipped 3: see summary.json." in (out / "summary.md").read_text()
    names, _ = report.read_per_image_csv(out / "fusion_per_image.csv")
    assert names == ["00004N"]


def test_nothing_is_written_when_no_pair_can_be_evaluated(folders):
    for method in ("seafusion", "ir_fused"):
        shutil.rmtree(folders / method)
        (folders / method).mkdir()
    result = evaluate(_folders_options(folders, folders / "out"))
    assert result.images == [] and len(result.skipped) == len(NAMES)
    assert list((folders / "out").iterdir()) == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fused": ()}, "needs at least one --fused"),
        ({"fused": ("nowhere",)}, "--fused: nowhere is not a folder"),
        ({"vi": None}, "--vi is required in --mode=folders"),
        ({"metrics": ("EN", "Bogus")}, "preset matlab has no Bogus"),
        ({"metrics": ()}, "names no metric or an empty one"),
        ({"metrics": ("EN", "")}, "names no metric or an empty one"),
        ({"names": ("one",)}, "--names gives 1 names for 2 --fused folders"),
        ({"names": ("same", "same")}, "method names must differ"),
        ({"rank_by": "SD"}, "--rank_by=SD is not among the fusion metrics ['EN', 'CC']"),
        ({"segmentation_checkpoint": "seg"}, "needs label images"),
        ({"mode": "model", "data": "/nonexistent"}, "--data: /nonexistent is not a folder"),
        ({"mode": "model", "data": "."}, "has no ir_warp/ folder"),
    ],
)
def test_usage_errors_come_before_any_work(folders, overrides, message):
    out = folders / "out"
    with pytest.raises(UsageError) as error:
        evaluate(_folders_options(folders, out, **overrides))
    assert message in str(error.value)
    assert not out.exists()


def test_no_pairs_and_an_unusable_output_folder_are_usage_errors(folders):
    empty = folders / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="^no image pairs found$"):
        evaluate(_folders_options(folders, folders / "out", ir=empty))
    (folders / "file").write_bytes(b"")
    with pytest.raises(UsageError, match="cannot create --out="):
        evaluate(_folders_options(folders, folders / "file" / "out"))


# --- segmentation -----------------------------------------------------------------------------


def test_folders_mode_segmentation_of_sources_and_fused_images(labelled, capsys):
    variables = write_segmenter(labelled / "seg")
    (labelled / "label" / "scene2.png").unlink()  # no label: the pair is skipped
    out = labelled / "out"
    options = EvaluationOptions(
        mode="folders",
        fused=(labelled / "vi_copy", labelled / "ir_copy"),
        ir=labelled / "ir",
        vi=labelled / "vi",
        out=out,
        segmentation_checkpoint=labelled / "seg",
        metrics=CHEAP,
    )
    with pytest.raises(UsageError, match="needs label images"):
        evaluate(EvaluationOptions(**{**vars(options), "labels": labelled / "nowhere"}))
    with pytest.raises(UsageError, match="methods cannot be named"):
        evaluate(EvaluationOptions(**{**vars(options), "names": ("vi", "fused")}))
    result = evaluate(options)  # labels: label/ next to --vi
    assert result.images == ["scene0", "scene1"]
    assert result.skipped[0][0] == "scene2" and "no image named scene2 in" in result.skipped[0][1]
    assert "skipped scene2: no image named scene2 in" in capsys.readouterr().err

    names, per_image = report.read_per_image_csv(out / "segmentation_per_image.csv")
    assert names == ["scene0", "scene1"]
    assert list(per_image) == ["vi", "ir", "vi_copy", "ir_copy"]
    for source, copy in (("vi", "vi_copy"), ("ir", "ir_copy")):
        np.testing.assert_array_equal(per_image[source]["miou"], per_image[copy]["miou"])
    everything = json.loads((out / "summary.json").read_text())
    assert everything["segmentation_checkpoint"] == str(labelled / "seg")
    assert everything["labels"] == str(labelled / "label")
    summary = everything["segmentation"]
    assert summary["classes"] == list(MSRS_CLASSES)
    # the data-set IoU recomputed here, from the images as the runner reads them
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
    assert f"network {labelled / 'seg'})" in table
    assert f"| vi_copy | {100 * summary['vi']['miou']:.2f} |" in table


# --- model mode -------------------------------------------------------------------------------


class ShiftPipeline:
    """Stands in for inference.Pipeline: its field is a shift of 3 pixels to the right
    (variant 'corrected': a zero displacement is the identity), its registered image ir_warp as
    it is; fuses by averaging; fails on a blank visible image; reports that the registration
    found no alignment on its first pair and is uncertain on the others."""

    variant, registration = CORRECTED, "stand-in"
    calls = 0

    def register_and_fuse(self, ir, vi):
        if not vi.any():
            raise ValueError("the visible image is blank\n(a second line, not reported)")
        n, h, w, _ = ir.shape
        disp = np.broadcast_to(np.float32([3 * 2 / w, 0.0]), (n, h, w, 2))  # normalised
        fused = (ir + vi) / 2
        self.calls += 1
        flags = {
            "registration_ok": np.full(n, self.calls > 1),
            "registration_confident": np.zeros(n, bool),
        }
        return {"ir_reg": ir, "disp": disp, "fused": fused, **flags}

    def fuse(self, ir, vi):
        return {"fused": (ir + vi) / 2}


def _model_data(root):
    """Two MSRS pairs cropped to 64 x 80, a pair 'nogt' without ground truth and a pair 'blank'
    whose visible image is black. Returns {name: identity EPE} of the first two."""
    identity = cropped_msrs(root, NAMES[:2], top=200, left=280, h=64, w=80)
    for sub in ("ir", "vi", "ir_warp"):
        shutil.copy(root / sub / f"{NAMES[0]}.png", root / sub / "nogt.png")
        shutil.copy(root / sub / f"{NAMES[0]}.png", root / sub / "blank.png")
    shutil.copy(root / "flow" / f"{NAMES[0]}.png.mat", root / "flow" / "blank.mat")
    Image.new("RGB", (80, 64)).save(root / "vi" / "blank.png")
    return identity


def test_model_mode_scores_the_pipeline_against_the_ground_truth(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    identity = _model_data(data)
    monkeypatch.setattr(
        "superfusion_jax.evaluation.model_mode.load_pipeline", lambda *a, **k: ShiftPipeline()
    )
    out = tmp_path / "out"
    options = EvaluationOptions(mode="model", data=data, out=out, metrics=CHEAP, checkpoint="c")
    result = evaluate(options)
    assert result.images == NAMES[:2]
    reasons = dict(result.skipped)
    assert list(reasons) == ["blank", "nogt"]
    assert reasons["blank"] == "model failed: the visible image is blank"
    assert "nogt.png.mat: no such file" in reasons["nogt"]
    err = capsys.readouterr().err
    assert f"WARNING: {NAMES[0]}: registration 'stand-in' found no alignment" in err
    assert f"WARNING: {NAMES[1]}: registration 'stand-in' is uncertain" in err

    names, registration = report.read_per_image_csv(out / "registration_per_image.csv")
    assert names == NAMES[:2] and list(registration) == ["model", "identity"]
    np.testing.assert_allclose(
        registration["identity"]["epe_mean_px"], [identity[n] for n in names], rtol=1e-5
    )
    model, unregistered = registration["model"], registration["identity"]
    for metric in ("mse", "ncc", "mi_bits"):  # both score ir_warp as it is against ir
        np.testing.assert_allclose(model[metric], unregistered[metric], rtol=1e-6, err_msg=metric)
    assert np.all(np.abs(model["epe_mean_px"] - unregistered["epe_mean_px"]) > 0.1)
    np.testing.assert_array_equal(model["folding_pct"], 0.0)
    np.testing.assert_allclose(model["roughness"], 0.0, atol=1e-5)  # a shift is smooth
    _, fusion = report.read_per_image_csv(out / "fusion_per_image.csv")
    assert list(fusion) == ["register_and_fuse", "fuse_aligned"]
    assert list(fusion["fuse_aligned"]) == ["EN", "CC"]
    assert np.all(fusion["register_and_fuse"]["CC"] != fusion["fuse_aligned"]["CC"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"] == "c" and summary["variant"] == "corrected"
    assert summary["registration"]["model"]["epe_mean_px"]["count"] == 2
    assert summary["methods"]["registration"]["model"] == (
        "the ir2vis field of registration 'stand-in'"
    )
    assert [s["name"] for s in summary["skipped"]] == ["blank", "nogt"]
    assert "segmentation" not in summary and not (out / "segmentation_per_image.csv").exists()
    with Image.open(out / "cases.png") as image:
        assert image.width > 7 * 80  # seven pictures per case


def test_model_mode_usage_errors(tmp_path, monkeypatch):
    data = tmp_path / "data"
    for sub in ("ir_warp", "vi", "ir", "flow"):
        (data / sub).mkdir(parents=True)
    options = dict(mode="model", data=data, out=tmp_path / "out", metrics=CHEAP)
    with pytest.raises(UsageError, match="--rank_by in --mode=model is one of epe_mean_px"):
        evaluate(EvaluationOptions(**options, rank_by="EN"))
    with pytest.raises(UsageError, match=r"^--checkpoint: .*missing.* does not exist"):
        evaluate(EvaluationOptions(**options, checkpoint=tmp_path / "missing"))
    monkeypatch.setattr("superfusion_jax.weights.available", lambda: [])
    with pytest.raises(UsageError, match="needs --checkpoint=FOLDER: this installation ships"):
        evaluate(EvaluationOptions(**options))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_model_mode_with_an_untrained_model(tmp_path, capsys):
    data = tmp_path / "data"
    identity = cropped_msrs(data, NAMES[:2], top=200, left=280, h=64, w=80)
    for sub in ("ir", "vi", "ir_warp"):  # a third pair without ground truth
        shutil.copy(data / sub / f"{NAMES[0]}.png", data / sub / "nogt.png")
    (data / "label").mkdir()
    for name in NAMES[:2]:  # labels: warm infrared pixels are 'person'
        ir = np.asarray(Image.open(data / "ir" / f"{name}.png").convert("L"))
        Image.fromarray((2 * (ir > 128)).astype(np.uint8)).save(data / "label" / f"{name}.png")
    write_segmenter(tmp_path / "seg")
    out = tmp_path / "out"
    options = EvaluationOptions(
        mode="model",
        data=data,
        out=out,
        metrics=CHEAP,
        segmentation_checkpoint=tmp_path / "seg",
        allow_untrained=True,
    )
    result = evaluate(options)
    assert "WARNING: untrained model (random weights)" in capsys.readouterr().err
    assert result.images == NAMES[:2] and result.skipped[0][0] == "nogt"
    assert "nogt.png.mat: no such file" in result.skipped[0][1]
    names, registration = report.read_per_image_csv(out / "registration_per_image.csv")
    assert names == NAMES[:2] and list(registration) == ["model", "identity"]
    np.testing.assert_allclose(
        registration["identity"]["epe_mean_px"], [identity[n] for n in names], rtol=1e-5
    )
    np.testing.assert_array_equal(registration["identity"]["folding_pct"], 0.0)
    for values in registration["model"].values():
        assert np.all(np.isfinite(values))
    _, fusion = report.read_per_image_csv(out / "fusion_per_image.csv")
    assert list(fusion) == ["register_and_fuse", "fuse_aligned"]
    assert list(fusion["fuse_aligned"]) == ["EN", "CC"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == "faithful" and summary["checkpoint"] == "shipped model 'default'"
    assert summary["skipped"][0]["name"] == "nogt"
    segmentation = summary["segmentation"]
    assert list(segmentation) == ["classes", "vi", "ir", "register_and_fuse", "fuse_aligned"]
    for row in list(segmentation)[1:]:  # every labelled pixel counted once per image kind
        assert np.sum(segmentation[row]["confusion"]) == 2 * 64 * 80
    seg_names, _ = report.read_per_image_csv(out / "segmentation_per_image.csv")
    assert seg_names == NAMES[:2]
    assert (out / "plots" / "registration_epe_mean_px.png").is_file()
    with Image.open(out / "cases.png") as image:
        assert image.width > 7 * 80  # seven pictures per case
