"""Figures of evaluation results: per-metric distribution curves and best/worst image grids.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend), so it works without
a display and does not change the backend of a caller's session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from superfusion_jax.visualization import image_grid


def plot_distribution(
    values: Mapping[str, np.ndarray], metric: str, path: str | Path, *, lower_is_better: bool
) -> None:
    """Cumulative-distribution curves of one metric, one line per method, saved as PNG.

    The style of the fusion papers' per-metric curves (e.g. SeAFusion, SuperFusion): each
    method's per-image values sorted ascending, plotted against the fraction of images with a
    value at most that high (x in (0, 1]); the legend gives each method's mean. NaN values are
    left out.

    Args:
      values: {method: (N,) per-image values of `metric`}.
      metric: the metric's name (y label and title).
      path: PNG file to write.
      lower_is_better: shown in the title as the direction of the metric.
    """
    figure = Figure(figsize=(5.0, 3.6), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for method, v in values.items():
        v = np.sort(np.asarray(v, np.float64)[np.isfinite(v)])
        if v.size == 0:
            continue
        fraction = np.arange(1, v.size + 1) / v.size
        axes.plot(
            fraction, v, marker="." if v.size <= 50 else None, label=f"{method}: {v.mean():.4g}"
        )
    axes.set_xlabel("cumulative distribution (fraction of images)")
    axes.set_ylabel(metric)
    axes.set_xlim(0.0, 1.0)
    axes.set_title(f"{metric} ({'lower' if lower_is_better else 'higher'} is better)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", title="method: mean", title_fontsize="small")
    figure.tight_layout()
    figure.savefig(path)


def error_map(errors: np.ndarray, max_value: float, colormap: str = "magma") -> np.ndarray:
    """A per-pixel error map (H, W) as colours (H, W, 3) float in [0, 1]: 0 is the colormap's
    first colour, `max_value` (same unit as `errors`) and above its last; NaN black."""
    scaled = np.clip(np.nan_to_num(np.asarray(errors, np.float64), nan=0.0) / max_value, 0, 1)
    colours = matplotlib.colormaps[colormap](scaled)[..., :3]
    return np.where(np.isnan(errors)[..., None], 0.0, colours).astype(np.float32)


def best_and_worst(values: np.ndarray, count: int, *, lower_is_better: bool) -> tuple[list, list]:
    """Indices of the `count` best (best first) and `count` worst (worst first) finite entries
    of (N,) `values`; ties keep input order. The lists never share an index: with fewer than
    2 * count finite values the worst list is shorter."""
    values = np.asarray(values, np.float64)
    finite = np.flatnonzero(np.isfinite(values))
    key = values[finite] if lower_is_better else -values[finite]
    ranked = finite[np.argsort(key, kind="stable")].tolist()
    return ranked[:count], ranked[count:][::-1][:count]


def resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """(H, W, C) float image in [0, 1] resized to `width` columns, aspect kept: shrunk with an
    area (box) filter, enlarged by pixel repetition (nearest), unchanged at that width."""
    h, w = image.shape[:2]
    if w == width:
        return image
    size = (width, max(1, round(h * width / w)))
    levels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if levels.shape[2] == 1:
        levels = levels[..., 0]
    method = Image.Resampling.BOX if width < w else Image.Resampling.NEAREST
    resized = np.asarray(Image.fromarray(levels).resize(size, method), np.float32)
    return resized.reshape(size[1], size[0], -1) / 255.0


def case_grid(
    rows: Sequence[tuple[str, Sequence[np.ndarray], Sequence[str]]], width: int = 320
) -> np.ndarray:
    """Image grid of evaluation cases, one row per case.

    Args:
      rows: (case caption, images (H, W, 3) float [0, 1], column labels) per case; every row
        has the same number of images. The caption is put before the first column's label.
      width: every image is resized to this many columns first (`resize_to_width`), so that
        large images stay small and the captions of small ones fit.

    Returns:
      (H', W', 3) uint8 RGB (`visualization.image_grid`).
    """
    if not rows:
        raise ValueError("case_grid needs at least one row")
    ncols = len(rows[0][1])
    images, labels = [], []
    for caption, row_images, row_labels in rows:
        if len(row_images) != ncols or len(row_labels) != ncols:
            raise ValueError("every row of case_grid needs the same number of images and labels")
        images.extend(resize_to_width(np.asarray(im), width) for im in row_images)
        labels.extend([f"{caption}: {row_labels[0]}", *row_labels[1:]])
    return image_grid(images, ncols, labels)
