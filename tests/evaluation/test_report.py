"""Result tables (CSV, JSON, Markdown) and figures (distribution curves, case grids)."""

import json
import math

import matplotlib
import numpy as np
import pytest
from PIL import Image

from superfusion_jax.evaluation import plots, report

NAMES = ["a", "b", "c"]
RESULTS = {
    "ours": {"MI": np.array([2.0, 4.0, np.nan]), "MSE": np.array([0.1, 0.3, 0.2])},
    "other": {"MI": np.array([1.0, 1.5, 2.0]), "MSE": np.array([0.05, 0.05, 0.05])},
}


def test_summarise_over_finite_values():
    summary = report.summarise(RESULTS)
    mi = summary["ours"]["MI"]
    assert mi["count"] == 2
    assert (mi["mean"], mi["std"], mi["median"], mi["min"], mi["max"]) == (3, 1, 3, 2, 4)
    assert summary["other"]["MSE"]["std"] == pytest.approx(0.0)
    empty = report.summarise({"m": {"x": np.array([np.nan])}})["m"]["x"]
    assert empty["count"] == 0 and math.isnan(empty["mean"])


def test_per_image_csv_round_trip(tmp_path):
    path = tmp_path / "per_image.csv"
    report.write_per_image_csv(path, NAMES, RESULTS)
    lines = path.read_text().splitlines()
    assert lines[0] == "image,method,MI,MSE"
    assert lines[1] == "a,ours,2,0.1"
    assert lines[5] == "c,ours,nan,0.2"
    names, results = report.read_per_image_csv(path)
    assert names == NAMES
    for method in RESULTS:
        for metric in RESULTS[method]:
            np.testing.assert_array_equal(results[method][metric], RESULTS[method][metric])


def test_json_writes_nan_as_null(tmp_path):
    path = tmp_path / "summary.json"
    report.write_json(path, {"summary": report.summarise(RESULTS), "x": np.float32(1.5)})
    loaded = json.loads(path.read_text())
    assert loaded["summary"]["ours"]["MI"]["mean"] == 3.0
    assert loaded["x"] == 1.5
    report.write_json(path, {"nan": float("nan"), "values": np.array([1.0, np.inf])})
    assert json.loads(path.read_text()) == {"nan": None, "values": [1.0, None]}


def test_markdown_table_marks_the_best_mean_per_direction():
    summary = report.summarise(RESULTS)
    summary["other"].pop("MI")
    table = report.markdown_table(summary).splitlines()
    assert table[0] == "| method | MI ↑ | MSE ↓ |"
    assert (
        table[2] == "| ours | **3.000 ± 1.000** | 0.2000 ± 0.0816 |"
    )  # MI higher, MSE lower better
    assert table[3] == "| other | – | **0.05000 ± 0.00000** |"
    tie = report.markdown_table({"p": summary["other"], "q": summary["other"]}).splitlines()
    assert tie[2:] == ["| p | **0.05000 ± 0.00000** |", "| q | **0.05000 ± 0.00000** |"]
    big = report.summarise({"m": {"x": np.array([12345.4, 12345.8]), "y": np.array([2e6])}})
    assert report.markdown_table(big).splitlines()[2] == "| m | 12346 ± 0 | 2.000e+06 ± 0.0e+00 |"
    single = report.markdown_table({"ours": summary["ours"]}, ["MSE"]).splitlines()
    assert single[2] == "| ours | 0.2000 ± 0.0816 |"  # nothing to compare: no bold


def test_markdown_table_says_when_a_mean_is_over_fewer_images():
    summary = report.summarise({"m": {"EPE": np.array([1.0, np.inf, 3.0]), "x": np.ones(3)}})
    table = report.markdown_table(summary, images=3).splitlines()
    assert table[2] == "| m | 2.000 ± 1.000 (n=2) | 1.000 ± 0.000 |"


def test_best_and_worst():
    values = np.array([3.0, np.nan, 1.0, 5.0, 2.0])
    assert plots.best_and_worst(values, 2, lower_is_better=True) == ([2, 4], [3, 0])
    assert plots.best_and_worst(values, 2, lower_is_better=False) == ([3, 0], [2, 4])
    assert plots.best_and_worst(values[:3], 2, lower_is_better=True) == ([2, 0], [])


def test_plot_distribution_writes_a_png(tmp_path):
    backend = matplotlib.get_backend()
    path = tmp_path / "MI.png"
    plots.plot_distribution(
        {m: r["MI"] for m, r in RESULTS.items()}, "MI", path, lower_is_better=False
    )
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (600, 432)  # 5 x 3.6 in at 120 dpi
    assert matplotlib.get_backend() == backend


def test_error_map_and_case_grid():
    colours = plots.error_map(np.array([[0.0, 5.0, 20.0, np.nan]]), max_value=10.0)
    cmap = matplotlib.colormaps["magma"]
    np.testing.assert_allclose(colours[0, 0], cmap(0.0)[:3], atol=1e-6)
    np.testing.assert_allclose(colours[0, 2], cmap(1.0)[:3], atol=1e-6)
    np.testing.assert_array_equal(colours[0, 3], 0.0)
    wide = np.full((40, 100, 3), 0.5, np.float32)
    small = plots.resize_to_width(wide, 50)
    assert small.shape == (20, 50, 3)
    np.testing.assert_allclose(small, 128 / 255, atol=1e-6)
    tiny = np.arange(4, dtype=np.float32).reshape(1, 2, 2) / 255
    np.testing.assert_array_equal(plots.resize_to_width(tiny, 4)[0, :, 0], tiny[0, [0, 0, 1, 1], 0])
    rows = [("best", [wide, wide], ["x", "y"]), ("worst", [wide, wide], ["x", "y"])]
    grid = plots.case_grid(rows, width=50)
    assert grid.dtype == np.uint8 and grid.shape[1] == 4 + 2 * (50 + 4)
    with pytest.raises(ValueError, match="same number"):
        plots.case_grid([("a", [wide], ["x"]), ("b", [wide, wide], ["x", "y"])])
