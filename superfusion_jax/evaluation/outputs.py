"""What an evaluation writes in its output folder: SECTION_per_image.csv, summary.json,
summary.md, plots/SECTION_METRIC.png, cases.png and, with a segmentation network,
segmentation_per_image.csv (see docs/evaluation.md)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from superfusion_jax.evaluation import plots, report
from superfusion_jax.evaluation.job import Job
from superfusion_jax.evaluation.options import EvaluationOptions
from superfusion_jax.evaluation.segmentation_metrics import iou_per_class
from superfusion_jax.io.images import write_image


def write_outputs(
    job: Job,
    names: list[str],
    results: dict[str, dict[str, dict[str, np.ndarray]]],
    confusions: dict[str, np.ndarray],
    out: Path,
    options: EvaluationOptions,
) -> None:
    """Write every output of `job` in `out` (an existing folder).

    names: the pairs evaluated; results: {section: {method: {metric: (N,) values}}} in the
    order of `names`; confusions: {image kind: (N, C, C) confusion matrices} (empty without a
    segmentation network). `options` gives the mode, preset and precision recorded and the
    number of cases shown.
    """
    (out / "plots").mkdir(exist_ok=True)
    summaries = {section: report.summarise(r) for section, r in results.items()}
    markdown = [f"# Evaluation ({options.mode}), {len(names)} images\n"]
    for section, section_results in results.items():
        report.write_per_image_csv(out / f"{section}_per_image.csv", names, section_results)
        title = section if section == "registration" else f"{section} (preset {options.preset})"
        table = report.markdown_table(summaries[section], images=len(names))
        markdown += [f"\n## {title}\n\n", table]
        for metric in report.metric_names(section_results):
            per_method = {m: v[metric] for m, v in section_results.items() if metric in v}
            plots.plot_distribution(
                per_method,
                metric,
                out / "plots" / f"{section}_{metric}.png",
                lower_is_better=metric in report.LOWER_IS_BETTER,
            )
    if confusions:
        segmentation, table = _segmentation_outputs(job, names, confusions, out)
        summaries["segmentation"] = {"classes": list(job.segmenter.class_names), **segmentation}
        markdown.append(table)
    if job.skipped:
        markdown.append(f"\nSkipped {len(job.skipped)}: see summary.json.\n")
    (out / "summary.md").write_text("".join(markdown))
    report.write_json(
        out / "summary.json",
        {
            "mode": options.mode,
            "preset": options.preset,
            "precision": options.precision,
            **job.meta,
            "images": names,
            "skipped": [{"name": n, "reason": r} for n, r in job.skipped],
            **summaries,
        },
    )
    _write_cases(job, names, results, out, options.cases)


def _segmentation_outputs(
    job: Job, names: list[str], confusions: dict[str, np.ndarray], out: Path
) -> tuple[dict, str]:
    """segmentation_per_image.csv (each image's mIoU and IoU per class, per image kind), and
    the data-set summary: ({method: {miou, iou: {class: IoU}, confusion}}, Markdown table),
    IoU = TP / (TP + FP + FN) of the confusion matrix summed over all images."""
    classes = job.segmenter.class_names
    per_image, summary = {}, {}
    for method, stack in confusions.items():
        ious = np.stack([iou_per_class(c) for c in stack])  # (N, C), NaN: class absent
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an image without classes: NaN
            per_image[method] = {"miou": np.nanmean(ious, axis=1)}
        per_image[method].update({f"iou_{c}": ious[:, i] for i, c in enumerate(classes)})
        total = stack.sum(axis=0)
        iou = iou_per_class(total)
        summary[method] = {
            "miou": float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else math.nan,
            "iou": dict(zip(classes, iou.tolist(), strict=True)),
            "confusion": total,
        }
    report.write_per_image_csv(out / "segmentation_per_image.csv", names, per_image)
    header = ["method", "mIoU", *classes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, values in summary.items():
        cells = [values["miou"], *values["iou"].values()]
        text = ["–" if math.isnan(v) else f"{100 * v:.2f}" for v in cells]
        lines.append("| " + " | ".join([method, *text]) + " |")
    title = (
        "\n## segmentation (IoU %, confusion matrix over all images; "
        f"network {job.segmenter.checkpoint})\n\n"
    )
    return summary, title + "\n".join(lines) + "\n"


def _write_cases(job: Job, names: list[str], results: dict, out: Path, cases: int) -> None:
    """cases.png: the `cases` best and worst pairs by job.rank, scored again for their
    pictures (nothing written when `cases` is 0)."""
    section, method, metric = job.rank
    lower = metric in report.LOWER_IS_BETTER
    values = results[section][method][metric]
    best, worst = plots.best_and_worst(values, cases, lower_is_better=lower)
    rows = []
    for kind, indices in (("best", best), ("worst", worst)):
        for rank, i in enumerate(indices, start=1):
            result = job.score(names[i], job.pairs[names[i]])
            caption = f"{kind} {rank} {names[i]} {metric}={values[i]:.4g}"
            rows.append((caption, result.images, result.labels))
    if rows:
        write_image(out / "cases.png", plots.case_grid(rows) / 255.0)
