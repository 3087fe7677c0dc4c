"""The weights a training run starts from (`config.init_checkpoint`, and the frozen networks a
task reads), whatever file holds them: a superfusion-jax checkpoint folder or `.npz`, or an
official PyTorch `.pth` (imported on the fly; needs torch).
"""

from __future__ import annotations

import logging
from pathlib import Path

from superfusion_jax.io.model_files import load_checkpoint, load_segmenter
from superfusion_jax.models.bisenet import fresh_variables, num_classes_of
from superfusion_jax.models.variants import FAITHFUL, Variant, variant_named
from superfusion_jax.training.optimizer import NETWORKS
from superfusion_jax.training.state import fresh_variables as fresh_superfusion_variables

logger = logging.getLogger(__name__)


def superfusion_init_variables(path: str, variant: Variant, seed: int = 0) -> dict | None:
    """Variables to start from: '' -> None; a .pth file -> the official import; a folder or a
    single-file `.npz` -> `superfusion_jax.io.model_files.load_checkpoint`. Warns when its variant
    (metadata 'variant'; FAITHFUL for a .pth) is not `variant`. A network the file does not hold
    (the shipped default model holds FusionNet only) starts fresh, drawn from `seed`."""
    if not path:
        return None
    path = Path(path).expanduser()
    if path.is_file() and path.suffix != ".npz":
        from superfusion_jax.convert.official import load_official  # needs torch

        variables, _ = load_official(path)
        source_variant = FAITHFUL
    else:
        variables, meta = load_checkpoint(path)
        source_variant = variant_named(meta["variant"])
    if source_variant != variant:
        logger.warning(
            "init_checkpoint %s holds '%s' weights; training them as '%s'",
            path,
            source_variant.name,
            variant.name,
        )
    loaded = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    missing = sorted(set(NETWORKS) - set(loaded["params"]))
    if not missing:
        return loaded
    logger.warning("init_checkpoint %s holds no %s: they start fresh", path, missing)
    fresh = fresh_superfusion_variables(variant, seed)
    return {
        collection: {
            **{name: fresh[collection][name] for name in missing if name in fresh[collection]},
            **loaded[collection],
        }
        for collection in ("params", "batch_stats")
    }


def segmentation_init_variables(path: str, *, num_classes: int, seed: int) -> dict | None:
    """Variables to start from (config.init_checkpoint): '' -> None; a torchvision resnet18 .pth
    -> fresh variables with that backbone; a BiSeNet .pth or a folder -> `load_segmenter`."""
    if not path:
        return None
    path = Path(path).expanduser()
    variables = None
    if path.is_file():
        from superfusion_jax.convert import segmentation  # needs torch
        from superfusion_jax.convert.torch_checkpoints import read_pth

        state = read_pth(path)
        keys = {k.removeprefix("module.") for k in state} if isinstance(state, dict) else set()
        if "layer1.0.conv1.weight" in keys and not any(k.startswith("cp.") for k in keys):
            variables = segmentation.import_backbone(
                fresh_variables(num_classes, seed), state, str(path)
            )
    if variables is None:
        variables = load_segmenter(path)
    if num_classes_of(variables) != num_classes:
        raise ValueError(
            f"{path} has {num_classes_of(variables)} classes; config.num_classes is {num_classes}"
        )
    return variables
