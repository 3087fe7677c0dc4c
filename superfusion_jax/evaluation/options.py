"""What one evaluation is asked to do (`EvaluationOptions`), and the checks of the options that
both modes share (the fusion metrics asked for)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from superfusion_jax.command_line import REGISTRATIONS, UsageError
from superfusion_jax.evaluation.fusion_presets import PRECISIONS, PRESETS

MODES = ("model", "folders")


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    """The options of `runner.evaluate`: one field per flag of evaluate.py, of the same name
    (its UsageError messages name them as `--NAME`). The fields of the other mode are ignored
    (evaluate.py refuses their flags).

    Attributes:
      mode: 'model' (our model on a data set with registration ground truth) or 'folders'
        (fused images of several methods side by side).
      out: output folder (created).
      checkpoint: model: checkpoint folder or .npz (None: the model shipped with the package).
      allow_untrained: model: without `checkpoint`, random weights (meaningless results).
      data: model: folder with ir_warp/, vi/, ir/, flow/ (and label/ for segmentation).
      registration: model: registration method (`command_line.REGISTRATIONS`); None: 'network'
        with `checkpoint` or `allow_untrained`, else the shipped model's own.
      fused: folders: one folder of fused images per method.
      ir, vi: folders: the aligned infrared and the visible images.
      names: folders: one method name per `fused` folder (None: the folders' names).
      preset: fusion metric conventions (`fusion_presets.PRESETS`).
      metrics: fusion metrics to compute (None: all of `preset`).
      precision: fusion metric precision, 'float64' or 'float32'.
      rank_by: the metric ranking the cases of cases.png (model: a registration metric of the
        model, None: epe_mean_px; folders: a fusion metric of the first method, None: the
        first metric).
      cases: best and worst images shown in cases.png (each).
      segmentation_checkpoint: BiSeNet .pth or a folder of configs/segmentation.py; None: no
        segmentation.
      labels: folders: label images (class per pixel); None: label/ next to `vi`.

    Sequences given as lists are kept as tuples. Raises ValueError for a mode, registration,
    preset or precision that does not exist, or a negative `cases`.
    """

    mode: str
    out: str | Path = "evaluation"
    checkpoint: str | Path | None = None
    allow_untrained: bool = False
    data: str | Path | None = None
    registration: str | None = None
    fused: tuple[str | Path, ...] = ()
    ir: str | Path | None = None
    vi: str | Path | None = None
    names: tuple[str, ...] | None = None
    preset: str = "matlab"
    metrics: tuple[str, ...] | None = None
    precision: str = "float64"
    rank_by: str | None = None
    cases: int = 2
    segmentation_checkpoint: str | Path | None = None
    labels: str | Path | None = None

    def __post_init__(self) -> None:
        for name in ("fused", "names", "metrics"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        choices = {
            "mode": MODES,
            "registration": (None, *REGISTRATIONS),
            "preset": tuple(PRESETS),
            "precision": PRECISIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.cases < 0:
            raise ValueError(f"cases must be at least 0, got {self.cases}")


def fusion_metric_names(options: EvaluationOptions) -> list[str]:
    """The fusion metrics asked for (`options.metrics`, default all of `options.preset`),
    checked: an empty list or name, or one the preset does not have, is a UsageError."""
    known = list(PRESETS[options.preset].metrics)
    given = options.metrics
    if given is not None and (not given or "" in given):
        raise UsageError(
            f"--metrics={','.join(given)} names no metric or an empty one; give "
            f"metric names among {', '.join(known)} (or leave --metrics out for all of them)"
        )
    asked = options.metrics or known
    unknown = [m for m in asked if m not in known]
    if unknown:
        raise UsageError(
            f"--metrics: preset {options.preset} has no {', '.join(unknown)}; it has "
            f"{', '.join(known)}"
        )
    return list(asked)
