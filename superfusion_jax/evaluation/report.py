"""Tables of evaluation results: per-image CSV, summary JSON and Markdown (mean ± std).

Results of several methods side by side are held as `Results`: {method: {metric: (N,) values}},
every array in the order of one list of N image names.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from superfusion_jax.evaluation import registration_metrics

Results = Mapping[str, Mapping[str, np.ndarray]]

# Metrics for which a smaller value is better; every other metric is better when larger.
# Fusion: MSE (distance to the sources) and Nabf (artefacts); registration: its own list.
LOWER_IS_BETTER = frozenset({"MSE", "Nabf"}) | registration_metrics.LOWER_IS_BETTER


def metric_names(results: Results) -> list[str]:
    """Metric names of all methods, in order of first appearance."""
    return list(dict.fromkeys(name for metrics in results.values() for name in metrics))


def summarise(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {metric: {count, mean, std, median, min, max}}} over the finite values.

    std is the population standard deviation over images (ddof 0); `count` is the number of
    finite values (NaN values, e.g. NCC of a constant image, are left out). Statistics of a
    metric without a finite value are NaN.
    """
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for method, metrics in results.items():
        summary[method] = {}
        for name, values in metrics.items():
            finite = np.asarray(values, np.float64)
            finite = finite[np.isfinite(finite)]
            stats: dict[str, float] = {"count": finite.size}
            for stat, fn in (
                ("mean", np.mean),
                ("std", np.std),
                ("median", np.median),
                ("min", np.min),
                ("max", np.max),
            ):
                stats[stat] = float(fn(finite)) if finite.size else math.nan
            summary[method][name] = stats
    return summary


def write_per_image_csv(path: str | Path, names: Sequence[str], results: Results) -> None:
    """One row per (image, method): columns image, method, then every metric (empty if absent).

    names: the N image names; results: {method: {metric: (N,)}}.
    """
    columns = metric_names(results)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "method", *columns])
        for i, image in enumerate(names):
            for method, metrics in results.items():
                row = [_number(metrics[c][i]) if c in metrics else "" for c in columns]
                writer.writerow([image, method, *row])


def read_per_image_csv(path: str | Path) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """Inverse of :func:`write_per_image_csv`: (image names, results); empty cells are NaN."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    names = list(dict.fromkeys(row["image"] for row in rows))
    results: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        metrics = results.setdefault(row["method"], {})
        for key, value in row.items():
            if key not in ("image", "method"):
                metrics.setdefault(key, []).append(float(value) if value else math.nan)
    arrays = {m: {k: np.asarray(v) for k, v in ms.items()} for m, ms in results.items()}
    return names, arrays


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write `payload` as indented JSON; NaN and infinities become null, numpy scalars and
    arrays plain numbers and lists."""
    with open(path, "w") as file:
        json.dump(_jsonable(payload), file, indent=2, allow_nan=False)
        file.write("\n")


def markdown_table(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    metrics: Sequence[str] | None = None,
    *,
    lower_is_better: frozenset[str] = LOWER_IS_BETTER,
    images: int | None = None,
) -> str:
    """Markdown table, one row per method and one column per metric, cells "mean ± std" (4
    significant digits of the mean, the std to the same decimals).

    The best mean of each column is bold (for every method that reaches it) when there are
    several methods; smaller is better for the names in `lower_is_better`, larger otherwise.
    `metrics` picks and orders the columns (default: all, in order of first appearance).
    Arrows in the header give the direction. With `images` (the number of images evaluated), a
    mean over fewer finite values says so: "(n=K)".
    """
    methods = list(summary)
    if metrics is None:
        metrics = list(dict.fromkeys(m for per in summary.values() for m in per))
    header = ["method"] + [f"{m} {'↓' if m in lower_is_better else '↑'}" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {m: _best(summary, methods, m, m in lower_is_better) for m in metrics}
    for method in methods:
        cells = [method]
        for m in metrics:
            stats = summary[method].get(m)
            if stats is None or not math.isfinite(stats["mean"]):
                cells.append("–")
                continue
            text = _mean_std(stats["mean"], stats["std"])
            bold = len(methods) > 1 and stats["mean"] == best[m]
            text = f"**{text}**" if bold else text
            if images is not None and stats["count"] < images:
                text += f" (n={stats['count']})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _best(summary: Mapping, methods: list[str], metric: str, lower: bool) -> float | None:
    """The best finite mean of `metric` over `methods`, or None."""
    means = [summary[m][metric]["mean"] for m in methods if metric in summary[m]]
    means = [v for v in means if math.isfinite(v)]
    if not means:
        return None
    return min(means) if lower else max(means)


def _mean_std(mean: float, std: float) -> str:
    """ "mean ± std" with 4 significant digits of the mean and the same decimals for the std
    (scientific notation for magnitudes of 1e5 and above)."""
    if abs(mean) >= 1e5:
        return f"{mean:.3e} ± {std:.1e}"
    magnitude = math.floor(math.log10(abs(mean))) if mean else -1
    decimals = max(0, 3 - magnitude)
    std_text = f"{std:.{decimals}f}" if math.isfinite(std) else "nan"
    return f"{mean:.{decimals}f} ± {std_text}"


def _number(value: Any) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.10g}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.generic, float)) and not isinstance(value, np.bool_):
        number = value.item() if isinstance(value, np.generic) else value
        if isinstance(number, float) and not math.isfinite(number):
            return None
        return number
    if isinstance(value, Path):
        return str(value)
    return value
