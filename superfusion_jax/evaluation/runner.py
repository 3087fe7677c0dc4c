"""Run one evaluation (evaluate.py's work): `evaluate(EvaluationOptions(...))`.

    from superfusion_jax.evaluation.runner import EvaluationOptions, evaluate

    result = evaluate(EvaluationOptions(mode="folders", fused=("results/ours",), ir="ir",
                                        vi="vi", out="compare", metrics=("EN", "CC")))
    result.images, result.skipped  # the pairs evaluated; (name, reason) of those skipped

Every problem with the options or paths raises command_line.UsageError before any pair is
evaluated (and before the output folder is created); a pair that cannot be evaluated is
skipped, named with its reason on stderr and in summary.json. The outputs are described in
docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from superfusion_jax.command_line import UsageError
from superfusion_jax.evaluation.folders_mode import folders_job
from superfusion_jax.evaluation.job import PROG, Job, SkipPair, skip
from superfusion_jax.evaluation.model_mode import model_job
from superfusion_jax.evaluation.options import EvaluationOptions
from superfusion_jax.evaluation.outputs import write_outputs
from superfusion_jax.io.pairs import natural_key

__all__ = ["PROG", "EvaluationOptions", "EvaluationResult", "UsageError", "evaluate", "prepare"]


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """What `evaluate` did: the pairs evaluated (natural order of their names), the (name,
    reason) of each pair skipped, in the order found, and the output folder (written to only
    when `images` is not empty)."""

    images: list[str]
    skipped: list[tuple[str, str]]
    out: Path


def evaluate(options: EvaluationOptions) -> EvaluationResult:
    """Evaluate every pair `options` names and write the outputs in `options.out`.

    Raises UsageError (nothing evaluated) for options or paths that cannot work; see `prepare`.
    """
    job = prepare(options)
    names, results, confusions = _score_pairs(job, options.mode)
    out = Path(options.out)
    if names:
        write_outputs(job, names, results, confusions, out, options)
    return EvaluationResult(names, job.skipped, out)


def prepare(options: EvaluationOptions) -> Job:
    """The Job of `options` (model or folders mode), with its networks loaded and its output
    folder created. UsageError for options or paths that cannot work, for no pairs at all,
    or an output folder that cannot be created."""
    job = model_job(options) if options.mode == "model" else folders_job(options)
    if not job.pairs:
        raise UsageError("no image pairs found")
    out = Path(options.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create --out={out}: {error}") from error
    return job


def _score_pairs(
    job: Job, mode: str
) -> tuple[list[str], dict[str, dict[str, dict[str, np.ndarray]]], dict[str, np.ndarray]]:
    """Score every pair (progress bar `mode`); skipped pairs go to job.skipped. Returns (names,
    {section: {method: {metric: (N,) values}}}, {image kind: (N, C, C) confusion matrices}
    (empty without a segmentation network))."""
    names: list[str] = []
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    confusions: dict[str, list[np.ndarray]] = {}
    with tqdm(total=len(job.pairs), unit="pair", desc=mode, disable=None) as bar:
        for name in sorted(job.pairs, key=natural_key):
            try:
                result = job.score(name, job.pairs[name])
            except SkipPair as error:
                skip(job.skipped, name, str(error))
            else:
                names.append(name)
                for method, confusion in result.confusions.items():
                    confusions.setdefault(method, []).append(confusion)
                for section, methods in result.metrics.items():
                    for method, metrics in methods.items():
                        for metric, value in metrics.items():
                            per = values.setdefault(section, {}).setdefault(method, {})
                            per.setdefault(metric, []).append(value)
            bar.update(1)
            bar.set_postfix(skipped=len(job.skipped))
    arrays = {
        section: {m: {k: np.asarray(v) for k, v in ms.items()} for m, ms in methods.items()}
        for section, methods in values.items()
    }
    return names, arrays, {method: np.stack(c) for method, c in confusions.items()}
