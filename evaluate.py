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

import sys

from absl import app, flags
from absl import logging as absl_logging

from superfusion_jax import huge_pages
from superfusion_jax.command_line import REGISTRATIONS
from superfusion_jax.evaluation.fusion_presets import PRECISIONS, PRESETS
from superfusion_jax.evaluation.options import MODES
from superfusion_jax.evaluation.runner import PROG, EvaluationOptions, UsageError, evaluate

# The work is done by superfusion_jax.evaluation.runner; this file reads the flags into its
# options (whose defaults are the flags' defaults) and turns its outcome into the exit status.

_MODE = flags.DEFINE_enum("mode", None, list(MODES), "What to evaluate.")
_OUT = flags.DEFINE_string("out", EvaluationOptions.out, "Output folder (created).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "model: checkpoint folder (default: the model shipped with the package)."
)
_ALLOW_UNTRAINED = flags.DEFINE_bool(
    "allow_untrained",
    EvaluationOptions.allow_untrained,
    "model: without --checkpoint, use random weights (meaningless).",
)
_DATA = flags.DEFINE_string("data", None, "model: folder with ir_warp/, vi/, ir/, flow/.")
_REGISTRATION = flags.DEFINE_enum(
    "registration",
    None,
    list(REGISTRATIONS),
    "model: registration method (default: network with --checkpoint or --allow_untrained, "
    "else the shipped model's own); global and optimize need no registration weights.",
)
_FUSED = flags.DEFINE_multi_string("fused", [], "folders: a method's fused images (repeat).")
_IR = flags.DEFINE_string("ir", None, "folders: aligned infrared images.")
_VI = flags.DEFINE_string("vi", None, "folders: visible images.")
_NAMES = flags.DEFINE_list("names", None, "folders: method names, one per --fused.")
_PRESET = flags.DEFINE_enum(
    "preset", EvaluationOptions.preset, list(PRESETS), "Fusion metric conventions."
)
_METRICS = flags.DEFINE_list("metrics", None, "Fusion metrics to compute (default: all).")
_PRECISION = flags.DEFINE_enum(
    "precision", EvaluationOptions.precision, list(PRECISIONS), "Fusion metric precision."
)
_RANK_BY = flags.DEFINE_string(
    "rank_by",
    None,
    "Metric ranking the cases of cases.png (model: a registration metric of the model, default "
    "epe_mean_px; folders: a fusion metric of the first method, default the first metric).",
)
_CASES = flags.DEFINE_integer(
    "cases", EvaluationOptions.cases, "Best and worst images shown in cases.png.", lower_bound=0
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

# The flags of one mode only; given in the other, they are refused (they would be ignored).
_MODE_FLAGS = {
    "model": ("checkpoint", "allow_untrained", "data"),
    "folders": ("fused", "ir", "vi", "names", "labels"),
}


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        return _usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        _check_mode_flags()
        result = evaluate(_options())
    except UsageError as error:
        return _usage_error(str(error))
    if not result.images:
        print(f"{PROG}: no pair could be evaluated; nothing written", file=sys.stderr)
        return 1
    print(
        f"{PROG}: evaluated {len(result.images)} pairs, skipped {len(result.skipped)}; "
        f"results in {result.out}"
    )
    return 1 if result.skipped else 0


def _options() -> EvaluationOptions:
    """The flags' values as the runner's options."""
    return EvaluationOptions(
        mode=_MODE.value,
        out=_OUT.value,
        checkpoint=_CHECKPOINT.value,
        allow_untrained=_ALLOW_UNTRAINED.value,
        data=_DATA.value,
        registration=_REGISTRATION.value,
        fused=_FUSED.value,
        ir=_IR.value,
        vi=_VI.value,
        names=_NAMES.value,
        preset=_PRESET.value,
        metrics=_METRICS.value,
        precision=_PRECISION.value,
        rank_by=_RANK_BY.value,
        cases=_CASES.value,
        segmentation_checkpoint=_SEGMENTATION.value,
        labels=_LABELS.value,
    )


def _check_mode_flags() -> None:
    """Refuse flags that belong to the other mode (they would be silently ignored)."""
    other = _MODE_FLAGS["folders" if _MODE.value == "model" else "model"]
    given = [f"--{name}" for name in other if flags.FLAGS[name].present]
    if given:
        verb = "does" if len(given) == 1 else "do"
        raise UsageError(f"{', '.join(given)} {verb} not apply to --mode={_MODE.value}")


def _usage_error(message: str) -> int:
    """Print `message` as evaluate.py's one-line error; returns the exit status 2."""
    print(f"{PROG}: error: {message}\nRun `python {PROG} --help` for the flags.", file=sys.stderr)
    return 2


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a one-line message and exit status 2 instead of absl's."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        sys.exit(_usage_error(str(error)))


if __name__ == "__main__":
    huge_pages.restart_with_huge_pages()  # XLA's buffers on huge pages (before any work)
    flags.mark_flag_as_required("mode")
    app.run(main, flags_parser=_parse_flags)
