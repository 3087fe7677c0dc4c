"""--mode=folders: the fused images of several methods side by side.

Pairs of `ir` and `vi` by file name without extension; each method's fused image of pair NAME
is NAME.* or NAME_fused.* in its folder. Per pair: fusion metrics of every method against ir
and vi; with a segmentation network, the confusion matrices of vi, ir and every fused image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from superfusion_jax.command_line import UsageError
from superfusion_jax.evaluation.job import (
    Job,
    PairResult,
    folder,
    fusion_scores,
    images_by_name,
    one_image,
    pairs_of,
    read_same_size,
)
from superfusion_jax.evaluation.options import EvaluationOptions, fusion_metric_names
from superfusion_jax.evaluation.segmenter import Segmenter, make_segmenter

SOURCES = ("vi", "ir")  # the source images' rows of the segmentation results


def folders_job(options: EvaluationOptions) -> Job:
    """The Job of `options.fused`, `.ir` and `.vi`: checks the options (UsageError), loads the
    segmentation network, lists the pairs and each method's fused images."""
    if not options.fused:
        raise UsageError("--mode=folders needs at least one --fused=FOLDER")
    fused = [folder(path, "fused", options.mode) for path in options.fused]
    ir, vi = folder(options.ir, "ir", options.mode), folder(options.vi, "vi", options.mode)
    names = list(options.names or [path.name for path in fused])
    if len(names) != len(fused):
        raise UsageError(f"--names gives {len(names)} names for {len(fused)} --fused folders")
    if len(set(names)) != len(names):
        raise UsageError(f"method names must differ, got {names}; name them with --names")
    metric_list = fusion_metric_names(options)
    labels = Path(options.labels) if options.labels else vi.parent / "label"
    segmenter = make_segmenter(
        options.segmentation_checkpoint,
        labels,
        "--labels" if options.labels else "--labels not given",
    )
    if segmenter is not None and set(names) & set(SOURCES):
        raise UsageError(f"with --segmentation_checkpoint, methods cannot be named {SOURCES}")
    rank_by = options.rank_by or metric_list[0]
    if rank_by not in metric_list:
        raise UsageError(f"--rank_by={rank_by} is not among the fusion metrics {metric_list}")
    skipped: list[tuple[str, str]] = []
    pairs = pairs_of(ir, vi, skipped)
    folder_of = dict(zip(names, fused, strict=True))
    found = {method: images_by_name(path, "_fused") for method, path in folder_of.items()}
    meta = {
        "ir": str(ir),
        "vi": str(vi),
        "methods": {"fusion": {m: str(f) for m, f in folder_of.items()}},
        **(segmenter.meta() if segmenter is not None else {}),
    }
    score = FoldersPairScorer(folder_of, found, segmenter, options)
    return Job(pairs, score, ("fusion", names[0], rank_by), meta, skipped, segmenter)


@dataclasses.dataclass(frozen=True, eq=False)
class FoldersPairScorer:
    """Scores one pair (a callable of `Job.score`): `folder_of` maps each method to its folder,
    `found` to its fused images by pair name (`images_by_name(folder, '_fused')`)."""

    folder_of: dict[str, Path]
    found: dict[str, dict[str, list[Path]]]
    segmenter: Segmenter | None
    options: EvaluationOptions

    def __call__(self, name: str, paths: dict[str, Path]) -> PairResult:
        names = list(self.folder_of)
        files = {m: one_image(self.found[m], name, self.folder_of[m]) for m in names}
        images = read_same_size({"ir": paths["ir"], "vi": paths["vi"], **files})
        confusions: dict[str, np.ndarray] = {}
        if self.segmenter is not None:
            segmented = {key: images[key] for key in (*SOURCES, *names)}
            confusions = self.segmenter.confusions(self.segmenter.label(name), segmented)
        per_method = fusion_scores(
            images["ir"], images["vi"], [images[m] for m in names], self.options
        )
        return PairResult(
            metrics={"fusion": dict(zip(names, per_method, strict=True))},
            images=[images["ir"], images["vi"], *(images[m] for m in names)],
            labels=["ir", "vi", *names],
            confusions=confusions,
        )
