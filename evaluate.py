"""Evaluate registration and fusion; see docs/evaluation.md.

Our model on a data set in the MSRS test layout (DIR/ir_warp, DIR/vi, DIR/ir, DIR/flow):
  python evaluate.py --mode=model --checkpoint=CKPT --data=DIR --out=OUT
registration of ir_warp onto vi against the flow/ ground truth (end-point error, photometric
error against ir/, folding, roughness; the identity field as baseline), and fusion metrics of
register_and_fuse(ir_warp, vi) and of fuse(ir, vi) against ir and vi.

Fused images of any methods side by side (method name = folder name unless --names):
  python evaluate.py --mode=folders --fused=A --fused=B --ir=DIR --vi=DIR --out=OUT
fused images are matched to the pairs by file name without extension (NAME or NAME_fused).

--preset (matlab, matlab2023, cddfuse) and --metrics=EN,MI,... choose the fusion metrics.
OUT receives *_per_image.csv, summary.json, summary.md (mean ± std per method), plots/ (one
curve per metric and method) and cases.png (best and worst images).

With --segmentation_checkpoint (a BiSeNet .pth or a folder of configs/segmentation.py) and
labels (DIR/label in model mode; --labels, default the label/ folder next to --vi, in folders
mode), the segmentation network is also run on vi, ir and every fused image: IoU per class and
mIoU over the data set (segmentation_per_image.csv, summary.json, summary.md).

Exit status: 0 all images evaluated; 1 some were skipped (each named with its reason on stderr
and in summary.json); 2 usage error (bad flags or paths), nothing evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from absl import logging as absl_logging
from tqdm import tqdm

from superfusion_jax import weights
from superfusion_jax.evaluation import plots, report
from superfusion_jax.evaluation import registration_metrics as rm
from superfusion_jax.evaluation.fusion_presets import PRESETS, compute_fusion_metrics
from superfusion_jax.evaluation.segmentation_metrics import confusion_matrix, iou_per_class
from superfusion_jax.io.ground_truth import GroundTruthReadError, read_flow_mat
from superfusion_jax.io.images import IMAGE_EXTENSIONS, ImageReadError, read_image, write_image
from superfusion_jax.io.pairs import find_pairs, natural_key
from superfusion_jax.models.bisenet import apply_segmenter
from superfusion_jax.models.variants import quirks_for
from superfusion_jax.ops.displacement import base_grid_pixels
from superfusion_jax.visualization import flow_to_color

PROG = "evaluate.py"

_MODE = flags.DEFINE_enum("mode", None, ["model", "folders"], "What to evaluate.")
_OUT = flags.DEFINE_string("out", "evaluation", "Output folder (created).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "model: checkpoint folder (default: the model shipped with the package)."
)
_ALLOW_UNTRAINED = flags.DEFINE_bool(
    "allow_untrained", False, "model: without --checkpoint, use random weights (meaningless)."
)
_DATA = flags.DEFINE_string("data", None, "model: folder with ir_warp/, vi/, ir/, flow/.")
_REGISTRATION = flags.DEFINE_enum(
    "registration",
    None,
    ["network", "global", "optimize", "global+network"],
    "model: registration method (default: network with --checkpoint or --allow_untrained, "
    "else the shipped model's own); global and optimize need no registration weights.",
)
_FUSED = flags.DEFINE_multi_string("fused", [], "folders: a method's fused images (repeat).")
_IR = flags.DEFINE_string("ir", None, "folders: aligned infrared images.")
_VI = flags.DEFINE_string("vi", None, "folders: visible images.")
_NAMES = flags.DEFINE_list("names", None, "folders: method names, one per --fused.")
_PRESET = flags.DEFINE_enum("preset", "matlab", list(PRESETS), "Fusion metric conventions.")
_METRICS = flags.DEFINE_list("metrics", None, "Fusion metrics to compute (default: all).")
_PRECISION = flags.DEFINE_enum(
    "precision", "float64", ["float64", "float32"], "Fusion metric precision."
)
_RANK_BY = flags.DEFINE_string(
    "rank_by",
    None,
    "Metric ranking the cases of cases.png (model: a registration metric of the model, default "
    "epe_mean_px; folders: a fusion metric of the first method, default the first metric).",
)
_CASES = flags.DEFINE_integer(
    "cases", 2, "Best and worst images shown in cases.png.", lower_bound=0
)
_SEGMENTATION = flags.DEFINE_string(
    "segmentation_checkpoint",
    None,
    "Segmentation network (BiSeNet .pth, or a folder of configs/segmentation.py): mIoU of vi, "
    "ir and the fused images against the labels.",
)
_LABELS = flags.DEFINE_string(
    "labels", None, "folders: label images (class per pixel); default: label/ next to --vi."
)

MODEL, IDENTITY = "model", "identity"
REGISTERED_FUSED, ALIGNED_FUSED = "register_and_fuse", "fuse_aligned"
SOURCES = ("vi", "ir")  # the source images' rows of the segmentation results


class UsageError(Exception):
    """A problem with the flags or paths, found before any image is evaluated."""


class SkipPair(Exception):
    """An image pair that cannot be evaluated; the message names the file and the reason."""


@dataclasses.dataclass
class PairResult:
    """Metrics of one pair, {section: {method: {metric: value}}}, and its case-grid row;
    with a segmentation network, the confusion matrix (C, C) of each image it segmented."""

    metrics: dict[str, dict[str, dict[str, float]]]
    images: list[np.ndarray]
    labels: list[str]
    confusions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Segmenter:
    """The segmentation network (`io.model_files.load_segmenter` variables, eval mode)
    and the label images by name."""

    variables: dict
    folder: Path
    labels: dict[str, list[Path]]
    class_names: tuple[str, ...]

    def label(self, name: str) -> np.ndarray:
        """The (H, W) int32 label map of pair `name` (SkipPair if missing or unreadable)."""
        from superfusion_jax.data.folders import read_label

        try:
            return read_label(_one(self.labels, name, self.folder))
        except ImageReadError as error:
            raise SkipPair(str(error)) from error

    def confusions(self, label: np.ndarray, images: dict[str, np.ndarray]) -> dict:
        """{image name: (C, C) confusion matrix [label, prediction]} of each (H, W, 3) image."""
        for key, image in images.items():
            if image.shape[:2] != label.shape:
                raise SkipPair(f"the label is {label.shape} but {key} is {image.shape[:2]}")
        stacked = jnp.asarray(np.stack(list(images.values())))
        predicted = np.asarray(_segment(self.variables, stacked))
        count = len(self.class_names)
        return {
            key: np.asarray(confusion_matrix(label, predicted[i], count), np.int64)
            for i, key in enumerate(images)
        }


@jax.jit
def _segment(variables: dict, images: jax.Array) -> jax.Array:
    """Predicted classes (N, H, W) int32 of (N, H, W, 3) RGB images (argmax of the main head)."""
    main, _ = apply_segmenter(variables, images)
    return jnp.argmax(main, axis=-1).astype(jnp.int32)


def _load_segmenter(labels: Path | None, default_flag: str) -> Segmenter | None:
    """The Segmenter of --segmentation_checkpoint (None without it); `labels`: the label folder
    (`default_flag` names where it came from, for the error)."""
    if _SEGMENTATION.value is None:
        return None
    if labels is None or not labels.is_dir():
        raise UsageError(
            f"--segmentation_checkpoint needs label images: {labels} is not a folder "
            f"({default_flag})"
        )
    from superfusion_jax.evaluation.segmentation_metrics import class_names
    from superfusion_jax.io.model_files import load_segmenter
    from superfusion_jax.models.bisenet import num_classes_of

    try:
        variables = load_segmenter(_SEGMENTATION.value)
    except (FileNotFoundError, ValueError, ImportError) as error:
        raise UsageError(f"--segmentation_checkpoint: {error}") from error
    names = class_names(num_classes_of(variables))
    return Segmenter(jax.device_put(variables), labels, _images_by_name(labels), names)


@dataclasses.dataclass
class Job:
    """One evaluation: the pairs (name -> paths), how to score one, and what to rank by."""

    pairs: dict[str, dict[str, Path]]
    score: Callable[[str, dict[str, Path]], PairResult]
    rank: tuple[str, str, str]  # (section, method, metric)
    meta: dict
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    segmenter: Segmenter | None = None


# --------------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------------


def _folder(path: str | None, flag: str) -> Path:
    if not path:
        raise UsageError(f"--{flag} is required in --mode={_MODE.value}")
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"--{flag}: {folder} is not a folder")
    return folder


def _images_by_name(folder: Path, suffix: str = "") -> dict[str, list[Path]]:
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


def _one(found: dict[str, list[Path]], name: str, folder: Path) -> Path:
    paths = found.get(name, [])
    if not paths:
        raise SkipPair(f"no image named {name} in {folder}")
    if len(paths) > 1:
        raise SkipPair(f"ambiguous: several images for {name} ({', '.join(map(str, paths))})")
    return paths[0]


def _list_pairs(ir: Path, vi: Path, skipped: list[tuple[str, str]]) -> dict[str, dict[str, Path]]:
    """Pairs of `ir` and `vi` by name; unpaired images are skipped (`_skip`)."""
    listing = find_pairs(ir, vi)
    for path, reason in listing.skipped:
        tqdm.write(f"{PROG}: ignored {path}: {reason}", file=sys.stderr)
    for path in listing.ir_without_vi:
        _skip(skipped, path.stem, f"{path} has no partner in {vi}")
    for path in listing.vi_without_ir:
        _skip(skipped, path.stem, f"{path} has no partner in {ir}")
    return {p.name: {"ir": p.ir, "vi": p.vi} for p in listing.pairs}


def _skip(skipped: list[tuple[str, str]], name: str, reason: str) -> None:
    """Append (name, reason) to `skipped` and say so on stderr, once, when it is found."""
    skipped.append((name, reason))
    tqdm.write(f"{PROG}: skipped {name}: {reason}", file=sys.stderr)


def _read_same_size(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """Read every image of `paths` ((H, W, 3) float32 in [0, 1]); they must share one size."""
    try:
        images = {key: read_image(path) for key, path in paths.items()}
    except ImageReadError as error:
        raise SkipPair(str(error)) from error
    sizes = {key: image.shape[:2] for key, image in images.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{paths[k]} is {h}x{w}" for k, (h, w) in sizes.items())
        raise SkipPair(f"sizes differ (HxW): {listing}")
    return images


def _fusion_metric_names() -> list[str]:
    """The fusion metrics asked for (--metrics, default all of --preset), checked: an empty
    list or name, or one the preset does not have, is a UsageError."""
    known = list(PRESETS[_PRESET.value].metrics)
    given = _METRICS.value
    if given is not None and (not given or "" in given):
        raise UsageError(
            f"--metrics={','.join(given)} names no metric or an empty one; give "
            f"metric names among {', '.join(known)} (or leave --metrics out for all of them)"
        )
    asked = _METRICS.value or known
    unknown = [m for m in asked if m not in known]
    if unknown:
        raise UsageError(
            f"--metrics: preset {_PRESET.value} has no {', '.join(unknown)}; it has "
            f"{', '.join(known)}"
        )
    return list(asked)


def _check_mode_flags() -> None:
    """Refuse flags that belong to the other mode (they would be silently ignored)."""
    own = {
        "model": ("checkpoint", "allow_untrained", "data"),
        "folders": ("fused", "ir", "vi", "names", "labels"),
    }
    other = own["folders" if _MODE.value == "model" else "model"]
    given = [f"--{name}" for name in other if flags.FLAGS[name].present]
    if given:
        verb = "does" if len(given) == 1 else "do"
        raise UsageError(f"{', '.join(given)} {verb} not apply to --mode={_MODE.value}")


def _fusion_metrics(ir: np.ndarray, vi: np.ndarray, fused: Sequence[np.ndarray]) -> list[dict]:
    """Fusion metrics of each fused image (H, W, 3) against one pair -> one {metric: value} each."""
    batch = len(fused)
    scores = compute_fusion_metrics(
        np.broadcast_to(ir, (batch, *ir.shape)),
        np.broadcast_to(vi, (batch, *vi.shape)),
        np.stack(fused),
        _PRESET.value,
        _METRICS.value,
        precision=_PRECISION.value,
    )
    return [{k: float(v[i]) for k, v in scores.items()} for i in range(batch)]


# --------------------------------------------------------------------------------------------
# --mode=model
# --------------------------------------------------------------------------------------------


def _model_job() -> Job:
    data = _folder(_DATA.value, "data")
    for sub in ("ir_warp", "vi", "ir", "flow"):
        if not (data / sub).is_dir():
            raise UsageError(f"--data={data} has no {sub}/ folder (MSRS test layout expected)")
    if _CHECKPOINT.value is None and not _ALLOW_UNTRAINED.value and not weights.available():
        raise UsageError(
            "--mode=model needs --checkpoint=FOLDER: this installation ships no model (or "
            "--allow_untrained for random weights, whose results are meaningless)"
        )
    if _RANK_BY.value is not None and _RANK_BY.value not in rm.METRIC_NAMES:
        raise UsageError(f"--rank_by in --mode=model is one of {', '.join(rm.METRIC_NAMES)}")
    _fusion_metric_names()
    skipped: list[tuple[str, str]] = []
    pairs = {
        name: {"ir_warp": paths["ir"], "vi": paths["vi"]}
        for name, paths in _list_pairs(data / "ir_warp", data / "vi", skipped).items()
    }
    aligned = _images_by_name(data / "ir")
    segmenter = _load_segmenter(data / "label", "model mode reads DIR/label")
    pipeline = _load_pipeline()
    grid_quirk = quirks_for(pipeline.variant).align_corners_base_grid

    def score(name: str, paths: dict[str, Path]) -> PairResult:
        # flow/NAME.png.mat as in the release (NAME.png the ir_warp file), or flow/NAME.mat
        flow = data / "flow" / f"{paths['ir_warp'].name}.mat"
        if not flow.exists() and (data / "flow" / f"{name}.mat").exists():
            flow = data / "flow" / f"{name}.mat"
        ir_path = _one(aligned, name, data / "ir")
        images = _read_same_size({"ir_warp": paths["ir_warp"], "vi": paths["vi"], "ir": ir_path})
        try:
            source_px = read_flow_mat(flow)
        except GroundTruthReadError as error:
            raise SkipPair(str(error)) from error
        if source_px.shape[:2] != images["ir"].shape[:2]:
            raise SkipPair(
                f"{flow} is {source_px.shape[0]}x{source_px.shape[1]} but the images are "
                f"{images['ir'].shape[0]}x{images['ir'].shape[1]}"
            )
        label = None if segmenter is None else segmenter.label(name)
        batch = {k: v[None] for k, v in images.items()}
        try:
            out = pipeline.register_and_fuse(batch["ir_warp"], batch["vi"])
            fused_aligned = pipeline.fuse(batch["ir"], batch["vi"])["fused"]
        except (ValueError, RuntimeError, MemoryError) as error:
            raise SkipPair(f"model failed: {str(error).strip().splitlines()[0]}") from error
        if "registration_ok" in out and not bool(out["registration_ok"][0]):
            tqdm.write(
                f"{PROG}: WARNING: {name}: registration '{pipeline.registration}' found no "
                "alignment; scored as returned (the identity)",
                file=sys.stderr,
            )
        h, w = source_px.shape[:2]
        positions = rm.sampling_positions(jnp.asarray(out["disp"]), grid_quirk)
        identity = base_grid_pixels(h, w)[None]
        src = jnp.asarray(source_px)[None]
        registration = {
            MODEL: rm.score_registration(positions, src, out["ir_reg"], batch["ir"]),
            IDENTITY: rm.score_registration(identity, src, batch["ir_warp"], batch["ir"]),
        }
        fusion = _fusion_metrics(images["ir"], images["vi"], [out["fused"][0], fused_aligned[0]])
        epe = np.asarray(rm.composition_error(positions, src)[0])
        disp_px = np.asarray(positions[0] - identity[0])
        truth_px = np.linalg.norm(source_px - np.asarray(identity[0]), axis=-1).max()
        grid = [
            images["ir_warp"],
            out["ir_reg"][0],
            images["ir"],
            images["vi"],
            out["fused"][0],
            flow_to_color(disp_px, float(truth_px)) / 255.0,
            plots.error_map(epe, max_value=10.0),
        ]
        labels = ["ir_warp", "ir registered", "ir (aligned)", "vi", "fused", "field", "EPE 0-10px"]
        confusions = {}
        if segmenter is not None:
            segmented = {
                "vi": images["vi"],
                "ir": images["ir"],
                REGISTERED_FUSED: out["fused"][0],
                ALIGNED_FUSED: fused_aligned[0],
            }
            confusions = segmenter.confusions(label, segmented)
        return PairResult(
            metrics={
                "registration": {
                    m: {k: float(v[0]) for k, v in s.items()} for m, s in registration.items()
                },
                "fusion": {REGISTERED_FUSED: fusion[0], ALIGNED_FUSED: fusion[1]},
            },
            images=grid,
            labels=labels,
            confusions=confusions,
        )

    meta = {
        "data": str(data),
        "checkpoint": _CHECKPOINT.value or f"shipped model '{weights.DEFAULT}'",
        "variant": pipeline.variant,
        "registration": pipeline.registration,
        "methods": {
            "registration": {
                MODEL: f"the ir2vis field of registration '{pipeline.registration}'",
                IDENTITY: "no registration (ir_warp as it is)",
            },
            "fusion": {
                REGISTERED_FUSED: "register_and_fuse(ir_warp, vi), scored against ir and vi",
                ALIGNED_FUSED: "fuse(ir, vi) of the aligned pair",
            },
        },
    }
    if segmenter is not None:
        meta["segmentation_checkpoint"] = _SEGMENTATION.value
        meta["labels"] = str(segmenter.folder)
    rank = ("registration", MODEL, _RANK_BY.value or "epe_mean_px")
    return Job(pairs, score, rank, meta, skipped, segmenter)


def _load_pipeline():
    from superfusion_jax.inference import Pipeline

    registration = _REGISTRATION.value
    if _CHECKPOINT.value is None and _ALLOW_UNTRAINED.value:
        tqdm.write(f"{PROG}: WARNING: untrained model (random weights)", file=sys.stderr)
        return Pipeline.untrained(registration=registration or "network")
    try:
        if _CHECKPOINT.value is None:
            tqdm.write(f"{PROG}: using the shipped model '{weights.DEFAULT}'", file=sys.stderr)
            return Pipeline.pretrained(registration=registration)
        return Pipeline.from_checkpoint(_CHECKPOINT.value, registration=registration)
    except (FileNotFoundError, ValueError) as error:
        flag = "--checkpoint" if _CHECKPOINT.value is not None else "the shipped model"
        raise UsageError(f"{flag}: {error}") from error


# --------------------------------------------------------------------------------------------
# --mode=folders
# --------------------------------------------------------------------------------------------


def _folders_job() -> Job:
    if not _FUSED.value:
        raise UsageError("--mode=folders needs at least one --fused=FOLDER")
    fused = [_folder(path, "fused") for path in _FUSED.value]
    ir, vi = _folder(_IR.value, "ir"), _folder(_VI.value, "vi")
    names = _NAMES.value or [folder.name for folder in fused]
    if len(names) != len(fused):
        raise UsageError(f"--names gives {len(names)} names for {len(fused)} --fused folders")
    if len(set(names)) != len(names):
        raise UsageError(f"method names must differ, got {names}; name them with --names")
    metric_list = _fusion_metric_names()
    labels = Path(_LABELS.value) if _LABELS.value else vi.parent / "label"
    segmenter = _load_segmenter(labels, "--labels" if _LABELS.value else "--labels not given")
    if segmenter is not None and set(names) & set(SOURCES):
        raise UsageError(f"with --segmentation_checkpoint, methods cannot be named {SOURCES}")
    rank_by = _RANK_BY.value or metric_list[0]
    if rank_by not in metric_list:
        raise UsageError(f"--rank_by={rank_by} is not among the fusion metrics {metric_list}")
    skipped: list[tuple[str, str]] = []
    pairs = _list_pairs(ir, vi, skipped)
    folder_of = dict(zip(names, fused, strict=True))
    found = {method: _images_by_name(folder, "_fused") for method, folder in folder_of.items()}

    def score(name: str, paths: dict[str, Path]) -> PairResult:
        files = {method: _one(found[method], name, folder_of[method]) for method in names}
        images = _read_same_size({"ir": paths["ir"], "vi": paths["vi"], **files})
        confusions = {}
        if segmenter is not None:
            segmented = {key: images[key] for key in (*SOURCES, *names)}
            confusions = segmenter.confusions(segmenter.label(name), segmented)
        per_method = _fusion_metrics(images["ir"], images["vi"], [images[m] for m in names])
        return PairResult(
            metrics={"fusion": dict(zip(names, per_method, strict=True))},
            images=[images["ir"], images["vi"], *(images[m] for m in names)],
            labels=["ir", "vi", *names],
            confusions=confusions,
        )

    meta = {
        "ir": str(ir),
        "vi": str(vi),
        "methods": {"fusion": {m: str(f) for m, f in folder_of.items()}},
    }
    if segmenter is not None:
        meta["segmentation_checkpoint"] = _SEGMENTATION.value
        meta["labels"] = str(segmenter.folder)
    return Job(pairs, score, ("fusion", names[0], rank_by), meta, skipped, segmenter)


# --------------------------------------------------------------------------------------------
# Running and writing
# --------------------------------------------------------------------------------------------


def _run(job: Job) -> tuple[list[str], dict[str, dict[str, dict[str, np.ndarray]]], dict]:
    """Score every pair; skipped pairs go to job.skipped. Returns (names, {section: Results},
    {image kind: (N, C, C) confusion matrices} (empty without a segmentation network))."""
    names: list[str] = []
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    confusions: dict[str, list[np.ndarray]] = {}
    with tqdm(total=len(job.pairs), unit="pair", desc=_MODE.value, disable=None) as bar:
        for name in sorted(job.pairs, key=natural_key):
            try:
                result = job.score(name, job.pairs[name])
            except SkipPair as error:
                _skip(job.skipped, name, str(error))
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
        f"network {_SEGMENTATION.value})\n\n"
    )
    return summary, title + "\n".join(lines) + "\n"


def _write_outputs(job: Job, names: list[str], results: dict, confusions: dict, out: Path) -> None:
    (out / "plots").mkdir(exist_ok=True)
    summaries = {section: report.summarise(r) for section, r in results.items()}
    markdown = [f"# Evaluation ({_MODE.value}), {len(names)} images\n"]
    for section, section_results in results.items():
        report.write_per_image_csv(out / f"{section}_per_image.csv", names, section_results)
        title = section if section == "registration" else f"{section} (preset {_PRESET.value})"
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
            "mode": _MODE.value,
            "preset": _PRESET.value,
            "precision": _PRECISION.value,
            **job.meta,
            "images": names,
            "skipped": [{"name": n, "reason": r} for n, r in job.skipped],
            **summaries,
        },
    )
    _write_cases(job, names, results, out)


def _write_cases(job: Job, names: list[str], results: dict, out: Path) -> None:
    """cases.png: the best and worst pairs by job.rank, scored again for their pictures."""
    section, method, metric = job.rank
    lower = metric in report.LOWER_IS_BETTER
    values = results[section][method][metric]
    best, worst = plots.best_and_worst(values, _CASES.value, lower_is_better=lower)
    rows = []
    for kind, indices in (("best", best), ("worst", worst)):
        for rank, i in enumerate(indices, start=1):
            result = job.score(names[i], job.pairs[names[i]])
            caption = f"{kind} {rank} {names[i]} {metric}={values[i]:.4g}"
            rows.append((caption, result.images, result.labels))
    if rows:
        write_image(out / "cases.png", plots.case_grid(rows) / 255.0)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        return _usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
    absl_logging.set_verbosity(absl_logging.WARNING)
    out = Path(_OUT.value)
    try:
        _check_mode_flags()
        job = _model_job() if _MODE.value == "model" else _folders_job()
        if not job.pairs:
            raise UsageError("no image pairs found")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create --out={out}: {error}") from error
    except UsageError as error:
        return _usage_error(str(error))
    names, results, confusions = _run(job)
    if not names:
        print(f"{PROG}: no pair could be evaluated; nothing written", file=sys.stderr)
        return 1
    _write_outputs(job, names, results, confusions, out)
    print(f"{PROG}: evaluated {len(names)} pairs, skipped {len(job.skipped)}; results in {out}")
    return 1 if job.skipped else 0


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {message}\nRun `python {PROG} --help` for the flags.", file=sys.stderr)
    return 2


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a one-line message and exit status 2 instead of absl's."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        sys.exit(_usage_error(str(error)))


if __name__ == "__main__":
    flags.mark_flag_as_required("mode")
    app.run(main, flags_parser=_parse_flags)
