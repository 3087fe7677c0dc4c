"""`superfusion convert`: import a .pth file into a checkpoint folder, or export a folder as .pth,
for either network: SuperFusion (the official {'DM', 'FN'} layout, `convert.official` and
`convert.export`) or the segmentation network BiSeNet (SeAFusion's plain state_dict,
`convert.segmentation`). The network is recognised from the file's keys, or from the folder's
metadata (model folders) or config (training checkpoints, WORKDIR/checkpoints/STEP).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from superfusion_jax.convert import export, official, segmentation
from superfusion_jax.convert.torch_checkpoints import read_pth, split_networks
from superfusion_jax.evaluation.segmentation_metrics import class_names
from superfusion_jax.io.model_files import (
    BISENET,
    is_training_checkpoint,
    load_checkpoint,
    model_name,
    read_metadata,
    read_training_config,
    save_model,
    training_model_name,
)
from superfusion_jax.models.bisenet import num_classes_of
from superfusion_jax.models.variants import FAITHFUL


def import_pth(src: str | Path, dst: str | Path) -> str:
    """Import the .pth file `src` into the new checkpoint folder `dst`.

    Returns what was written, in words. Raises FileNotFoundError, FileExistsError or ValueError
    (a folder, an unreadable file, keys that fit neither network: listed).
    """
    source = Path(src)
    if source.is_dir():
        raise ValueError(
            f"{src} is a folder; importing reads a .pth file (from a folder, convert exports)"
        )
    obj = read_pth(source)
    provenance = {"source": str(source.absolute())}
    if segmentation.is_bisenet_state(obj):
        num_classes = segmentation.num_classes_in(obj)
        variables = segmentation.import_state_dict(obj, str(source), num_classes)
        classes = list(class_names(num_classes))
        metadata = {"model": BISENET, "num_classes": num_classes, "classes": classes}
        save_model(dst, variables, {**metadata, **provenance})
        return f"segmentation network (BiSeNet, {num_classes} classes)"
    networks, extra = split_networks(obj, str(source))
    variables = official.import_official(networks, str(source))
    info = {key: int(value) for key, value in extra.items()}
    save_model(dst, variables, {"variant": FAITHFUL.name, **provenance, **info})
    return f"SuperFusion (variant {FAITHFUL.name})"


# `superfusion convert` flags of the SuperFusion export options (`convert.export.export`)
EXPORT_FLAGS = {
    "include_optimizer": "--include-optimizer",
    "bare": "--bare",
    "allow_variant_mismatch": "--allow-variant-mismatch",
    "epoch": "--epoch",
}


def convert(src: str | Path, dst: str | Path, **options) -> tuple[str, tuple[str, ...]]:
    """The whole command: export when `src` is a folder (`export_folder`, with `options`), else
    import the file (`import_pth`; export options are refused). Returns (what was written, in
    words; warnings). ValueError when `dst` cannot be written (checked before any work)."""
    if Path(src).is_dir():
        check_destination(dst)
        return export_folder(src, dst, **options)
    _refuse_options(
        options, f"export options, for --from a checkpoint folder; {src} is not a folder"
    )
    if Path(dst).is_file():
        raise ValueError(f"{dst} is a file; importing writes a new checkpoint folder")
    check_destination(dst)
    return "checkpoint folder of " + import_pth(src, dst), ()


def check_destination(dst: str | Path) -> None:
    """ValueError naming `dst` when it cannot be created: the nearest existing folder above it
    is a file, or no file can be written in it (read-only, permissions)."""
    folder = Path(dst).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {dst}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"cannot write {dst}: {folder} is not writable ({reason})") from error


def _refuse_options(options: dict, why: str) -> None:
    """ValueError naming the command-line flags of the `options` that were given, if any."""
    given = [EXPORT_FLAGS[name] for name, value in options.items() if value not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)}: {why}")


def export_folder(src: str | Path, dst: str | Path, **options) -> tuple[str, tuple[str, ...]]:
    """Write the checkpoint folder `src` as the .pth file `dst`; returns (what was written, in
    words; warnings). SuperFusion: `options` are those of `convert.export.export`. BiSeNet: a
    plain state_dict, weights and running statistics (options given are refused).
    Relative paths are made absolute (orbax reads absolute paths only)."""
    src, dst = Path(src).absolute(), Path(dst).absolute()
    if not _holds_segmenter(src):
        summary = export.export(src, dst, **options)
        if options.get("bare"):
            content = (
                f"bare state_dict of the official SuperFusion module, {len(summary.keys)} tensors"
            )
        else:
            networks = [k for k in summary.keys if k not in ("ep", "total_it")]
            content = (
                f"official checkpoint with {', '.join(networks)}, ep {summary.ep}, "
                f"total_it {summary.total_it}"
            )
        return f"{content} ({summary.variant.name})", summary.notes
    _refuse_options(
        options,
        f"options of SuperFusion exports; {src} holds the segmentation network, exported as a "
        "plain state_dict (weights only)",
    )
    if dst.exists():
        raise FileExistsError(f"{dst} already exists; choose a new file name")
    variables = _segmenter_variables(src)
    segmentation.export_bisenet(variables, dst)
    num_classes = num_classes_of(variables)
    return f"BiSeNet state_dict ({num_classes} classes), SeAFusion's layout", ()


def _holds_segmenter(src: Path) -> bool:
    """Whether model folder or training checkpoint `src` holds the segmentation network."""
    if (src / "metadata.json").is_file():
        return model_name(read_metadata(src)) == BISENET
    if is_training_checkpoint(src):
        return training_model_name(read_training_config(src)) == BISENET
    return False


def _segmenter_variables(src: Path) -> dict:
    variables, _ = load_checkpoint(src, model=BISENET)
    return variables
