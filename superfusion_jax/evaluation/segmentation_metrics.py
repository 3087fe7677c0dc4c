"""Semantic segmentation metrics: confusion matrix, per-class IoU and mIoU (MSRS's 9 classes).

IoU of class c = TP_c / (TP_c + FP_c + FN_c) from the confusion matrix accumulated over the
whole data set (not averaged per image), as in PASCAL VOC (Everingham et al., IJCV 2010) and
the MSRS / SeAFusion evaluation (Tang et al., Information Fusion 2022). A class absent from
both the labels and the predictions has an undefined IoU (NaN) and is left out of the mean.
Pixels labelled `ignore_index` (255) are not counted.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.data.synthetic import MSRS_CLASSES  # the one list of the 9 MSRS classes

Array = jax.Array

IGNORE_INDEX = 255


def class_names(num_classes: int) -> tuple[str, ...]:
    """MSRS's class names for 9 classes, else class_0, class_1, ..."""
    if num_classes == len(MSRS_CLASSES):
        return MSRS_CLASSES
    return tuple(f"class_{i}" for i in range(num_classes))


@functools.partial(jax.jit, static_argnames=("num_classes", "ignore_index"))
def confusion_matrix(
    labels: Array,
    predictions: Array,
    num_classes: int = len(MSRS_CLASSES),
    ignore_index: int = IGNORE_INDEX,
) -> Array:
    """Confusion matrix of one batch.

    Args:
      labels, predictions: integer class maps of one shape, e.g. (N, H, W). Pixels whose label
        is `ignore_index`, or whose label or prediction is outside [0, num_classes), are not
        counted.
      num_classes: C.
      ignore_index: the label value of unlabelled-and-ignored pixels.

    Returns:
      (C, C) int32 pixel counts, [label, prediction] (rows: true class).
    """
    labels = labels.astype(jnp.int32).ravel()
    predictions = predictions.astype(jnp.int32).ravel()
    valid = (
        (labels != ignore_index)
        & (labels >= 0)
        & (labels < num_classes)
        & (predictions >= 0)
        & (predictions < num_classes)
    )
    index = jnp.where(valid, labels * num_classes + predictions, 0)
    counts = jnp.bincount(index, weights=valid.astype(jnp.int32), length=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class from a (C, C) [label, prediction] confusion matrix -> (C,) float64,
    TP / (TP + FP + FN); NaN for a class absent from both labels and predictions."""
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """mIoU: mean of :func:`iou_per_class` over the classes present (NaN if none is)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


class ConfusionAccumulator:
    """Sums batch confusion matrices on the host (int64, so data sets of any size fit).

    acc = ConfusionAccumulator()
    for labels, predictions in batches:   # (N, H, W) integer maps
        acc.update(labels, predictions)
    acc.iou(), acc.mean_iou(), acc.confusion
    """

    def __init__(
        self, class_names: tuple[str, ...] = MSRS_CLASSES, ignore_index: int = IGNORE_INDEX
    ) -> None:
        self.class_names = tuple(class_names)
        self.ignore_index = ignore_index
        self.confusion = np.zeros((len(self.class_names),) * 2, np.int64)

    def update(self, labels: Array | np.ndarray, predictions: Array | np.ndarray) -> None:
        """Add one batch of (…, H, W) label and prediction maps of one shape."""
        if np.shape(labels) != np.shape(predictions):
            raise ValueError(
                f"labels {np.shape(labels)} and predictions {np.shape(predictions)} differ"
            )
        batch = confusion_matrix(
            jnp.asarray(labels), jnp.asarray(predictions), len(self.class_names), self.ignore_index
        )
        self.confusion += np.asarray(batch, np.int64)

    def iou(self) -> dict[str, float]:
        """{class name: IoU} (NaN for classes seen in neither labels nor predictions)."""
        return dict(zip(self.class_names, iou_per_class(self.confusion).tolist(), strict=True))

    def mean_iou(self) -> float:
        """mIoU over the classes present so far."""
        return mean_iou(self.confusion)
