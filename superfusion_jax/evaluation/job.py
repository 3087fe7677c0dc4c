"""One evaluation as a `Job` (its pairs, how one pair is scored, what ranks the cases), and what
both modes use to find, read and score a pair's files.

Messages go to stderr prefixed with `PROG` (through tqdm, so they do not break the progress
bar); a pair that cannot be evaluated raises `SkipPair` and is recorded with its reason.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from superfusion_jax.command_line import UsageError, list_pairs
from superfusion_jax.evaluation.fusion_presets import compute_fusion_metrics
from superfusion_jax.evaluation.options import EvaluationOptions
from superfusion_jax.io.images import IMAGE_EXTENSIONS, ImageReadError, read_image

if TYPE_CHECKING:
    from superfusion_jax.evaluation.segmenter import Segmenter

PROG = "evaluate.py"  # the name the messages on stderr start with


class SkipPair(Exception):
    """An image pair that cannot be evaluated; the message names the file and the reason."""


@dataclasses.dataclass
class PairResult:
    """Metrics of one pair, {section: {method: {metric: value}}}, and its case-grid row
    (`images`: (H, W, 3) pictures in [0, 1], `labels`: one caption each); with a segmentation
    network, the confusion matrix (C, C) int64 [label, prediction] of each image it segmented."""

    metrics: dict[str, dict[str, dict[str, float]]]
    images: list[np.ndarray]
    labels: list[str]
    confusions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Job:
    """One evaluation: the pairs (name -> {image kind: path}), how to score one, what to rank
    the cases by, the metadata for summary.json, and the (name, reason) of skipped pairs."""

    pairs: dict[str, dict[str, Path]]
    score: Callable[[str, dict[str, Path]], PairResult]
    rank: tuple[str, str, str]  # (section, method, metric)
    meta: dict
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    segmenter: Segmenter | None = None


def say(message: str) -> None:
    """Write `message` to stderr as a line of evaluate.py, above the progress bar."""
    tqdm.write(f"{PROG}: {message}", file=sys.stderr)


def skip(skipped: list[tuple[str, str]], name: str, reason: str) -> None:
    """Append (name, reason) to `skipped` and say so on stderr, once, when it is found."""
    skipped.append((name, reason))
    say(f"skipped {name}: {reason}")


def folder(path: str | Path | None, flag: str, mode: str) -> Path:
    """`path` as a Path; UsageError when it is not given (option `flag` of `mode`) or is not a
    folder."""
    if not path:
        raise UsageError(f"--{flag} is required in --mode={mode}")
    found = Path(path)
    if not found.is_dir():
        raise UsageError(f"--{flag}: {found} is not a folder")
    return found


def images_by_name(folder: Path, suffix: str = "") -> dict[str, list[Path]]:
    """Image files of `folder` by file-name stem, `suffix` (e.g. '_fused') removed from stems
    that end with it; several files per name mean the name is ambiguous."""
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        stem = entry.stem
        if suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
        found.setdefault(stem, []).append(entry)
    return found


def one_image(found: dict[str, list[Path]], name: str, folder: Path) -> Path:
    """The one file named `name` in `found` (`images_by_name(folder)`); SkipPair when there is
    none or there are several."""
    paths = found.get(name, [])
    if not paths:
        raise SkipPair(f"no image named {name} in {folder}")
    if len(paths) > 1:
        raise SkipPair(f"ambiguous: several images for {name} ({', '.join(map(str, paths))})")
    return paths[0]


def pairs_of(ir: Path, vi: Path, skipped: list[tuple[str, str]]) -> dict[str, dict[str, Path]]:
    """Pairs of the folders `ir` and `vi` by name, {name: {'ir': path, 'vi': path}}; files that
    are not images are named on stderr, images without a partner are skipped (`skip`)."""
    listing = list_pairs(ir, vi)
    for path, reason in listing.skipped:
        say(f"ignored {path}: {reason}")
    for path in listing.ir_without_vi:
        skip(skipped, path.stem, f"{path} has no partner in {vi}")
    for path in listing.vi_without_ir:
        skip(skipped, path.stem, f"{path} has no partner in {ir}")
    return {p.name: {"ir": p.ir, "vi": p.vi} for p in listing.pairs}


def read_same_size(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """Read every image of `paths` ((H, W, 3) float32 in [0, 1]); they must share one size
    (else SkipPair, as for an unreadable file)."""
    try:
        images = {key: read_image(path) for key, path in paths.items()}
    except ImageReadError as error:
        raise SkipPair(str(error)) from error
    sizes = {key: image.shape[:2] for key, image in images.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{paths[k]} is {h}x{w}" for k, (h, w) in sizes.items())
        raise SkipPair(f"sizes differ (HxW): {listing}")
    return images


def fusion_scores(
    ir: np.ndarray, vi: np.ndarray, fused: Sequence[np.ndarray], options: EvaluationOptions
) -> list[dict[str, float]]:
    """Fusion metrics (`options.preset`, `.metrics`, `.precision`) of each fused image
    (H, W, 3) in [0, 1] against one pair ir, vi (H, W, 3) -> one {metric: value} each."""
    batch = len(fused)
    scores = compute_fusion_metrics(
        np.broadcast_to(ir, (batch, *ir.shape)),
        np.broadcast_to(vi, (batch, *vi.shape)),
        np.stack(fused),
        options.preset,
        options.metrics,
        precision=options.precision,
    )
    return [{k: float(v[i]) for k, v in scores.items()} for i in range(batch)]
