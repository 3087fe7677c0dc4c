"""The segmentation network of an evaluation (`--segmentation_checkpoint`): its label images by
name, and the confusion matrices of the images it segments against them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.command_line import UsageError
from superfusion_jax.evaluation.job import SkipPair, images_by_name, one_image
from superfusion_jax.evaluation.segmentation_metrics import confusion_matrix
from superfusion_jax.io.images import ImageReadError
from superfusion_jax.models.bisenet import apply_segmenter


@dataclasses.dataclass
class Segmenter:
    """The segmentation network (`io.model_files.load_segmenter` variables, eval mode),
    where it came from (`checkpoint`, as given) and the label images of `folder` by name."""

    variables: dict
    checkpoint: str | Path
    folder: Path
    labels: dict[str, list[Path]]
    class_names: tuple[str, ...]

    def label(self, name: str) -> np.ndarray:
        """The (H, W) int32 label map of pair `name` (SkipPair if missing or unreadable)."""
        from superfusion_jax.data.folders import read_label

        try:
            return read_label(one_image(self.labels, name, self.folder))
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

    def meta(self) -> dict[str, str]:
        """What summary.json records of the segmentation: the network and the label folder."""
        return {"segmentation_checkpoint": str(self.checkpoint), "labels": str(self.folder)}


@jax.jit
def _segment(variables: dict, images: jax.Array) -> jax.Array:
    """Predicted classes (N, H, W) int32 of (N, H, W, 3) RGB images (argmax of the main head)."""
    main, _ = apply_segmenter(variables, images)
    return jnp.argmax(main, axis=-1).astype(jnp.int32)


def make_segmenter(
    checkpoint: str | Path | None, labels: Path | None, labels_from: str
) -> Segmenter | None:
    """The Segmenter of `checkpoint` (None without one); `labels`: the label folder
    (`labels_from` says where it came from, for the error). UsageError when the label folder
    is missing or the checkpoint cannot be loaded."""
    if checkpoint is None:
        return None
    if labels is None or not labels.is_dir():
        raise UsageError(
            f"--segmentation_checkpoint needs label images: {labels} is not a folder "
            f"({labels_from})"
        )
    from superfusion_jax.evaluation.segmentation_metrics import class_names
    from superfusion_jax.io.model_files import load_segmenter
    from superfusion_jax.models.bisenet import num_classes_of

    try:
        variables = load_segmenter(checkpoint)
    except (FileNotFoundError, ValueError, ImportError) as error:
        raise UsageError(f"--segmentation_checkpoint: {error}") from error
    names = class_names(num_classes_of(variables))
    return Segmenter(jax.device_put(variables), checkpoint, labels, images_by_name(labels), names)
