"""The `superfusion` command: register, fuse, run (register then fuse) and convert.

`main(argv)` parses the arguments and returns the exit status: 0 when every pair was written,
1 when some pairs failed (each named with its reason in the closing summary), 2 for usage errors
(found before any image is processed). JAX is imported only once the arguments are checked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from superfusion_jax import huge_pages, weights
from superfusion_jax.command_line import (
    REGISTRATIONS,
    TRAINING_FREE,
    UsageError,
    list_pairs,
    load_pipeline,
    require_weights,
)
from superfusion_jax.io.images import IMAGE_EXTENSIONS, ImageReadError, image_size, read_image
from superfusion_jax.io.images import write_image as _write_png
from superfusion_jax.io.pairs import ImagePair, PairListing
from superfusion_jax.models.variants import FAITHFUL, VARIANTS, variant_named
from superfusion_jax.visualization import flow_to_color

if TYPE_CHECKING:
    from superfusion_jax.inference import Pipeline

PROG = "superfusion"

_DESCRIPTION = """\
Register a misaligned infrared image onto a visible image, and fuse the two
(SuperFusion, Tang et al. 2022, reimplemented in JAX/Flax).
Run `superfusion COMMAND --help` for the inputs, outputs and options of a command."""

_EXAMPLE = """\
example (import the official weights once, then process two folders):
  superfusion convert --from MSRS.pth --to checkpoints/msrs
  superfusion run --ir data/ir --vi data/vi --out results --checkpoint checkpoints/msrs \\
      --save-disp --save-flow-png"""

_INPUTS = f"""\
inputs:
  --ir and --vi are either two image files (one pair, outputs named after the
  visible file) or two folders, whose images are paired by file name without
  extension (ir/00004N.png pairs with vi/00004N.jpg). Image types:
  {", ".join(ext[1:] for ext in IMAGE_EXTENSIONS)}. Other files (e.g. Thumbs.db), hidden files and
  sub-folders are skipped and listed; images without a partner are listed.
  Pixel values: grey images are repeated to RGB and alpha is dropped; 8-bit
  images are divided by 255; 16-bit (thermal camera) and floating-point images
  are stretched per image by min-max to [0, 1] (the coldest pixel becomes 0,
  the hottest 1), so absolute temperatures are not kept. The infrared and
  visible image of a pair must have the same size."""

_OUTPUTS = {
    "ir_reg": "NAME_ir_reg.png  the infrared image warped onto the visible image (RGB)",
    "fused": "NAME_fused.png   the fused image (RGB; colour from the visible image)",
    "disp": """\
NAME_disp.npy    with --save-disp: the displacement, float32 array (H, W, 2) in
                   PIXELS, dx then dy: the registered infrared pixel at column x,
                   row y was sampled from the input infrared at (x + dx, y + dy)""",
    "flow": """\
NAME_flow.png    with --save-flow-png: the displacement as colours (hue =
                   direction, saturation = length scaled to the longest in that
                   image, white = no displacement)""",
}

_CHECKS = """\
model:
  Without --checkpoint the model shipped with the package is used
  (superfusion_jax/weights); --checkpoint is a folder written by `superfusion convert` (or
  training: WORKDIR/model, or WORKDIR/checkpoints/STEP while it runs) or a single-file .npz
  checkpoint. --untrained runs random weights instead: every output is then meaningless
  (for trying the command).

registration (register, run):
  --registration network         the checkpoint's registration network (the release's way)
  --registration global          training-free: global search + affine refinement
  --registration optimize        training-free: global + a smooth diffeomorphic residual
  --registration global+network  the global stage, then the network on the residual
  Default: the checkpoint's own (network unless its metadata names another), network with
  --untrained, else optimize (and the shipped model's own for run). The training-free
  methods need no weights (`register` then runs without any model). Where one finds no
  alignment (too little overlap), the identity is used and the summary says so.

exit status:
  0 every pair written; 1 some pairs failed (unreadable or truncated files,
  sizes that differ) and the others were written, see the closing summary;
  2 usage error (bad arguments, no model, --out not writable), nothing done.

speed:
  Pairs of one image size are batched (--batch-size) and the model is compiled
  once per image size: the first pair of each size takes longer."""

# command: (one-line summary, outputs it writes, Pipeline method it calls)
_MODES = {
    "register": (
        "warp each infrared image onto its visible image",
        ("ir_reg", "disp", "flow"),
        "register",
    ),
    "fuse": ("fuse pairs that are already aligned", ("fused",), "fuse"),
    "run": (
        "register, then fuse the registered pair",
        ("ir_reg", "fused", "disp", "flow"),
        "register_and_fuse",
    ),
}

_CONVERT_HELP = """\
Convert between the official SuperFusion checkpoint format (the PyTorch .pth of the
release, with its 'DM' registration and 'FN' fusion networks) and our checkpoint
folders. The direction follows --from:

  a .pth file  -> imported into a new checkpoint folder --to, for --checkpoint; the
                  result is of variant 'faithful' (the release's behaviour).
  a folder     -> exported to a new .pth file --to that the official code loads
                  ({'DM', 'FN', 'ep', 'total_it'}, official names, shapes and dtypes).
                  The folder is a model folder (from `convert` or a training run's
                  WORKDIR/model) or a training checkpoint WORKDIR/checkpoints/STEP, the
                  only kind holding optimiser state (--include-optimizer). Checkpoints of
                  variant 'corrected' are refused: the official code cannot run them.

The segmentation network (BiSeNet, SeAFusion's plain state_dict such as its
model_final.pth) converts the same way both directions; it is recognised from the
file's keys or the folder, and exported as weights only.

Reading or writing .pth files needs PyTorch (pip install 'superfusion-jax[torch]').

examples:
  superfusion convert --from MSRS.pth --to checkpoints/msrs
  superfusion convert --from runs/demo/model --to demo.pth
  superfusion convert --from runs/demo/checkpoints/150 --to demo.pth --include-optimizer
  superfusion convert --from model_final.pth --to checkpoints/bisenet
  superfusion convert --from runs/segmentation/best --to bisenet.pth"""

_UNTRAINED_WARNING = (
    f"{PROG}: WARNING: --untrained: the network weights are random, so every output is meaningless."
)


# Per-pair flags of a training-free registration among the outputs (not images to write).
_FLAGS = ("registration_ok", "registration_confident")


@dataclass
class _Report:
    """What happened to the pairs: names written, and (name, reason) for those that failed."""

    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)


def run() -> None:
    """The `superfusion` console script: restart on huge pages where that helps (`huge_pages`),
    then `main()` on the command's arguments, exiting with its status."""
    huge_pages.restart_with_huge_pages()
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    """Run the `superfusion` command with `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, or argparse's usage error (code 2)
        return 0 if exit_request.code is None else int(exit_request.code)
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `superfusion` and its subcommands."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, description=_DESCRIPTION, epilog=_EXAMPLE, formatter_class=formatter
    )
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for mode, (summary, outputs, _) in _MODES.items():
        listing = "\n".join(f"  {_OUTPUTS[key]}" for key in outputs)
        sub = commands.add_parser(
            mode,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}.\n\n{_INPUTS}",
            epilog=f"outputs in --out (NAME = pair name):\n{listing}\n\n{_CHECKS}\n\n"
            f"example:\n  superfusion {mode} --ir data/ir --vi data/vi --out results "
            "--checkpoint checkpoints/msrs",
            formatter_class=formatter,
        )
        _add_processing_arguments(sub, registers="disp" in outputs)
        sub.set_defaults(handler=_process)
    convert = commands.add_parser(
        "convert",
        help="import an official .pth checkpoint, or export a checkpoint folder to one",
        description=_CONVERT_HELP,
        formatter_class=formatter,
    )
    convert.add_argument(
        "--from", dest="src", required=True, metavar="SRC", help="official .pth, or a folder"
    )
    convert.add_argument(
        "--to", dest="dst", required=True, metavar="DST", help="new folder, or new .pth file"
    )
    export = convert.add_argument_group("export options (--from a folder)")
    export.add_argument(
        "--include-optimizer",
        action="store_true",
        help="also write the Adam states as 'DM_opt' / 'FN_opt' (torch.optim.Adam state_dicts); "
        "needs a training checkpoint WORKDIR/checkpoints/STEP",
    )
    export.add_argument(
        "--bare",
        action="store_true",
        help="write the state_dict of the release's whole SuperFusion module instead "
        "('DM.*', 'ST.grid', 'FN.*'; weights only)",
    )
    export.add_argument(
        "--epoch",
        type=int,
        metavar="EP",
        help="the 'ep' to write (default: the checkpoint's; -1 when unknown)",
    )
    export.add_argument(
        "--allow-variant-mismatch",
        action="store_true",
        help="export 'corrected' weights although the official code runs them as 'faithful'",
    )
    convert.set_defaults(handler=_convert)
    return parser


def _add_processing_arguments(sub: argparse.ArgumentParser, registers: bool) -> None:
    sub.add_argument("--ir", required=True, type=Path, help="infrared image file or folder")
    sub.add_argument("--vi", required=True, type=Path, help="visible image file or folder")
    sub.add_argument("--out", required=True, type=Path, help="output folder (created)")
    weights = sub.add_mutually_exclusive_group()
    weights.add_argument(
        "--checkpoint",
        type=Path,
        help="checkpoint folder (see `convert`; a run's WORKDIR/model or WORKDIR/checkpoints/STEP) "
        "or single-file .npz checkpoint; default: the model shipped with the package",
    )
    weights.add_argument(
        "--untrained", action="store_true", help="random weights (outputs are meaningless)"
    )
    sub.add_argument(
        "--variant",
        choices=VARIANTS,
        help="faithful: behave like the official release, quirks included; corrected: with its "
        "quirks fixed. Default: the checkpoint's variant ('faithful' without a checkpoint)",
    )
    sub.add_argument(
        "--allow-variant-mismatch",
        action="store_true",
        help="run a checkpoint with a --variant other than the one it was trained as",
    )
    sub.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1,
        metavar="N",
        help="pairs of one image size processed together (default 1; larger helps on a GPU)",
    )
    if registers:
        sub.add_argument(
            "--registration",
            choices=REGISTRATIONS,
            help="how to register (see below); default: the checkpoint's own (usually network), "
            "else optimize",
        )
        sub.add_argument(
            "--pad-multiple",
            type=_positive_int,
            metavar="N",
            help="pad the registration network's input to a multiple of N (8 gives its levels "
            "exact halves; it changes the field near the borders of sizes that are not "
            "multiples of N). Default: 1 (unpadded, the release's function) for faithful, 8 "
            "for corrected",
        )
        sub.add_argument("--save-disp", action="store_true", help="also write NAME_disp.npy")
        sub.add_argument("--save-flow-png", action="store_true", help="also write NAME_flow.png")
    else:
        sub.set_defaults(save_disp=False, save_flow_png=False, registration=None, pad_multiple=None)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _convert(args: argparse.Namespace) -> int:
    """Import (--from a file) or export (--from a folder). Paths that cannot be read or written
    (missing, existing, read-only: OSError) are usage errors, like refused contents."""
    from superfusion_jax.convert.commands import EXPORT_FLAGS, convert

    options = {name: getattr(args, name) for name in EXPORT_FLAGS}
    try:
        content, notes = convert(args.src, args.dst, **options)
    except (OSError, ValueError, ImportError) as error:
        raise UsageError(str(error)) from error
    for note in notes:
        print(f"{PROG} convert: WARNING: {note}", file=sys.stderr)
    print(f"{PROG} convert: wrote {args.dst}: {content}; from {args.src}")
    return 0


def _process(args: argparse.Namespace) -> int:
    """register / fuse / run over the pairs named by --ir and --vi."""
    if args.registration is None and args.checkpoint is None and args.command != "fuse":
        args.registration = "network" if args.untrained else "optimize"
    weights_free = args.command == "register" and args.registration in TRAINING_FREE
    if (
        args.checkpoint is None
        and not args.untrained
        and args.registration
        in (
            "network",
            "global+network",
        )
    ):
        raise UsageError(
            f"--registration {args.registration} needs the network's weights: pass "
            "--checkpoint DIR (or --untrained), or use --registration optimize"
        )
    if not weights_free:
        require_weights(
            args.checkpoint,
            args.untrained,
            "no --checkpoint given and this installation ships no model. Import official "
            "weights with `superfusion convert --from FILE.pth --to DIR` and pass --checkpoint "
            "DIR, or pass --untrained to try the command on random weights (meaningless outputs).",
        )
    listing = _list_pairs(args.ir, args.vi)
    _refuse_overwriting_inputs(args, listing)
    _prepare_output(args.out)
    pipeline = _load_pipeline(args)
    args.registration = pipeline.registration
    report = _Report()
    try:
        with tqdm(total=len(listing.pairs), unit="pair", desc=args.command, disable=None) as bar:
            for batch, padded_size in _batches(listing.pairs, args.batch_size, report, bar):
                _process_batch(pipeline, args, batch, padded_size, report)
                bar.update(len(batch))
                bar.set_postfix(failed=len(report.failed))
    except KeyboardInterrupt:
        _print_summary(args, listing, report, interrupted=True)
        return 130
    _print_summary(args, listing, report)
    return 1 if report.failed or report.unregistered else 0


def _list_pairs(ir: Path, vi: Path) -> PairListing:
    """The pairs of --ir and --vi; what was skipped or has no partner is listed on stderr."""
    listing = list_pairs(ir, vi)
    for path, reason in listing.skipped:
        print(f"{PROG}: skipped {path}: {reason}", file=sys.stderr)
    for path in listing.ir_without_vi:
        print(f"{PROG}: no visible partner in {vi} for {path}", file=sys.stderr)
    for path in listing.vi_without_ir:
        print(f"{PROG}: no infrared partner in {ir} for {path}", file=sys.stderr)
    if not listing.pairs:
        raise UsageError(f"no infrared-visible pairs found in {ir} and {vi}")
    return listing


# The file each output is written to (NAME = pair name): `_write_outputs` writes them,
# `_refuse_overwriting_inputs` checks them.
_OUTPUT_FILES = {
    "fused": "{}_fused.png",
    "ir_reg": "{}_ir_reg.png",
    "disp": "{}_disp.npy",
    "flow": "{}_flow.png",
}


def _refuse_overwriting_inputs(args: argparse.Namespace, listing: PairListing) -> None:
    """UsageError when an output file of the command (in --out) is one of the input images:
    writing it would destroy that input, and another pair could then read the output."""
    kinds = [
        kind
        for kind in _MODES[args.command][1]
        if (kind != "disp" or args.save_disp) and (kind != "flow" or args.save_flow_png)
    ]
    inputs = {path.resolve() for pair in listing.pairs for path in (pair.ir, pair.vi)}
    clashes = [
        args.out / _OUTPUT_FILES[kind].format(pair.name)
        for pair in listing.pairs
        for kind in kinds
        if (args.out / _OUTPUT_FILES[kind].format(pair.name)).resolve() in inputs
    ]
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise UsageError(
            f"--out {args.out}: writing the output {clashes[0]}{more} would overwrite an input "
            "image; choose an output folder apart from --ir and --vi"
        )


def _prepare_output(out: Path) -> None:
    """Create --out and check that a file can be written in it."""
    probe = out / f".{PROG}-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to the output folder {out}: {error}") from error


def _load_pipeline(args: argparse.Namespace) -> Pipeline:
    from superfusion_jax.inference import Pipeline

    registration = args.registration
    # --variant (a name, checked by argparse) as a Variant; None: the weights' own.
    requested = None if args.variant is None else variant_named(args.variant)
    if args.checkpoint is None and args.command == "register" and registration in TRAINING_FREE:
        print(f"{PROG}: training-free registration '{registration}' (no weights)", file=sys.stderr)
        return Pipeline.training_free(registration, variant=requested or FAITHFUL)
    source = args.checkpoint or f"the shipped model '{weights.DEFAULT}'"
    if args.untrained:
        print(_UNTRAINED_WARNING, file=sys.stderr)
    pipeline = load_pipeline(
        args.checkpoint,
        untrained=args.untrained,
        registration=registration,
        variant=requested or FAITHFUL,
    )
    if args.checkpoint is None and not args.untrained:
        print(f"{PROG}: using {source} (superfusion_jax/weights)", file=sys.stderr)
    variant = pipeline.variant
    if requested is not None and requested != pipeline.variant:
        if not args.allow_variant_mismatch:
            raise UsageError(
                f"{source} holds '{pipeline.variant.name}' weights; running them as "
                f"--variant {requested.name} changes what they compute. Leave --variant out, or "
                "add --allow-variant-mismatch to do it anyway."
            )
        print(
            f"{PROG}: WARNING: running '{pipeline.variant.name}' weights as variant "
            f"'{requested.name}'",
            file=sys.stderr,
        )
        variant = requested
    if variant == pipeline.variant and args.pad_multiple is None:
        return pipeline
    return Pipeline(
        pipeline.variables, variant, pipeline.registration, pad_multiple=args.pad_multiple
    )


def _batches(
    pairs: list[ImagePair], batch_size: int, report: _Report, bar: tqdm
) -> Iterator[tuple[list[ImagePair], int]]:
    """Pairs grouped by image size (read from headers), in batches of at most `batch_size`.

    Yields (batch, padded size): every batch of one image size is to be filled up to the same
    padded size, min(batch_size, pairs of that size), so each size is compiled once.
    Pairs whose files cannot be read or whose two images differ in size are recorded as failed
    in `report` (and counted on `bar`) instead.
    """
    by_size: dict[tuple[int, int], list[ImagePair]] = {}
    for pair in pairs:
        try:
            ir_size, vi_size = image_size(pair.ir), image_size(pair.vi)
        except ImageReadError as error:
            _fail(report, bar, [pair], str(error))
            continue
        if ir_size != vi_size:
            _fail(
                report,
                bar,
                [pair],
                f"size mismatch: {pair.ir} is {ir_size[0]}x{ir_size[1]} (HxW) but {pair.vi} is "
                f"{vi_size[0]}x{vi_size[1]}",
            )
            continue
        by_size.setdefault(ir_size, []).append(pair)
    for group in by_size.values():
        padded_size = min(batch_size, len(group))
        for start in range(0, len(group), padded_size):
            yield group[start : start + padded_size], padded_size


def _fail(report: _Report, bar: tqdm, pairs: list[ImagePair], reason: str) -> None:
    report.failed.extend((pair.name, reason) for pair in pairs)
    bar.update(len(pairs))
    bar.set_postfix(failed=len(report.failed))


def _process_batch(
    pipeline: Pipeline,
    args: argparse.Namespace,
    batch: list[ImagePair],
    padded_size: int,
    report: _Report,
) -> None:
    """Read, run the model on and write one batch of same-size pairs; failures go to `report`.

    The images are filled up to `padded_size` by repeating the last readable pair (a short last
    batch, or unreadable files), so that every call for one image size has the same shape.
    """
    readable, irs, vis = [], [], []
    for pair in batch:
        try:
            ir, vi = read_image(pair.ir), read_image(pair.vi)
        except ImageReadError as error:
            report.failed.append((pair.name, str(error)))
            continue
        readable.append(pair)
        irs.append(ir)
        vis.append(vi)
    if not readable:
        return
    filler = padded_size - len(readable)
    ir_batch = np.stack(irs + irs[-1:] * filler)
    vi_batch = np.stack(vis + vis[-1:] * filler)
    method = getattr(pipeline, _MODES[args.command][2])
    try:
        outputs = method(ir_batch, vi_batch)
        if "disp" in outputs:
            outputs["disp_px"] = pipeline.disp_to_pixels(outputs["disp"])
    except (ValueError, RuntimeError, MemoryError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        report.failed.extend((pair.name, f"model failed: {first_line}") for pair in readable)
        return
    for index, pair in enumerate(readable):
        images = {key: value[index] for key, value in outputs.items() if key not in _FLAGS}
        if not all(np.isfinite(value).all() for value in images.values()):
            report.failed.append((pair.name, "the model's output is not finite; nothing written"))
            continue
        if "registration_ok" in outputs and not outputs["registration_ok"][index]:
            report.unregistered.append(pair.name)
        elif "registration_confident" in outputs and not outputs["registration_confident"][index]:
            report.uncertain.append(pair.name)
        try:
            _write_outputs(args, pair.name, {key: value[index] for key, value in outputs.items()})
        except OSError as error:
            report.failed.append((pair.name, f"cannot write outputs: {error}"))
        else:
            report.written.append(pair.name)


def _write_outputs(args: argparse.Namespace, name: str, outputs: dict[str, np.ndarray]) -> None:
    """Write one pair's outputs: ir_reg/fused (H, W, 3) in [0, 1], disp_px (H, W, 2) pixels."""
    path = lambda kind: args.out / _OUTPUT_FILES[kind].format(name)
    if "fused" in outputs:
        _write_png(path("fused"), outputs["fused"])
    if "ir_reg" in outputs:
        _write_png(path("ir_reg"), outputs["ir_reg"])
    if args.save_disp:
        np.save(path("disp"), outputs["disp_px"].astype(np.float32))
    if args.save_flow_png:
        _write_png(path("flow"), flow_to_color(outputs["disp_px"]) / 255.0)


def _print_summary(
    args: argparse.Namespace, listing: PairListing, report: _Report, interrupted: bool = False
) -> None:
    unpaired = len(listing.ir_without_vi) + len(listing.vi_without_ir)
    lines = [
        f"{PROG} {args.command}: "
        + ("INTERRUPTED; " if interrupted else "")
        + f"{len(report.written)} of {len(listing.pairs)} pairs written to "
        f"{args.out}, {len(report.failed)} failed"
        + (f", {unpaired} unpaired image(s) listed above" if unpaired else "")
        + "."
    ]
    if interrupted:
        done = {*report.written, *(name for name, _ in report.failed)}
        lines.append(f"  not processed: {len(listing.pairs) - len(done)} pairs")
    lines += [f"  failed {name}: {reason}" for name, reason in report.failed]
    lines += [
        f"  not registered {name}: '{args.registration}' found no alignment (too little "
        "overlap); the identity was used"
        for name in report.unregistered
    ]
    lines += [
        f"  uncertain {name}: the '{args.registration}' search's best match hardly stood out "
        "from other alignments (the scene may be uniform, repetitive or hidden); written, but "
        "check it"
        for name in report.uncertain
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    run()
