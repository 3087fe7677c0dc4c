"""Segmentation metrics: a hand-computed confusion matrix, absent classes, ignored pixels, and
accumulation over batches against a numpy count."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from superfusion_jax.evaluation import segmentation_metrics as sm

# (label, prediction) per pixel: (0, 0) (1, 1) (1, 2) / (2, 2) (255: ignored) (1, 1)
LABELS = np.array([[[0, 1, 1], [2, 255, 1]]])
PREDICTIONS = np.array([[[0, 1, 2], [2, 0, 1]]])
# rows = label, columns = prediction
HAND = np.array([[1, 0, 0], [0, 2, 1], [0, 0, 1]])
# IoU = TP / (row + column - TP): 1/1, 2/(3 + 2 - 2), 1/(1 + 2 - 1)
HAND_IOU = [1.0, 2 / 3, 1 / 2]


def test_confusion_matrix_iou_and_miou_by_hand():
    confusion = sm.confusion_matrix(jnp.asarray(LABELS), jnp.asarray(PREDICTIONS), num_classes=3)
    np.testing.assert_array_equal(confusion, HAND)
    np.testing.assert_allclose(sm.iou_per_class(confusion), HAND_IOU)
    assert sm.mean_iou(confusion) == pytest.approx(13 / 18)


def test_class_absent_from_labels_and_predictions_is_left_out():
    confusion = np.array(sm.confusion_matrix(LABELS, PREDICTIONS, num_classes=4))
    iou = sm.iou_per_class(confusion)
    assert math.isnan(iou[3])
    np.testing.assert_allclose(iou[:3], HAND_IOU)
    assert sm.mean_iou(confusion) == pytest.approx(13 / 18)
    # predicted but never labelled: IoU 0, counted in the mean
    confusion[0, 3] = 1
    assert sm.iou_per_class(confusion)[3] == 0.0
    assert math.isnan(sm.mean_iou(np.zeros((2, 2), np.int64)))


def test_ignored_and_out_of_range_pixels_are_not_counted():
    labels = np.array([[0, 255, 9, 1, 3]])
    predictions = np.array([[0, 1, 1, 12, 3]])
    confusion = np.asarray(sm.confusion_matrix(labels, predictions))  # 9 MSRS classes
    expected = np.zeros((9, 9), int)
    expected[0, 0] = expected[3, 3] = 1
    np.testing.assert_array_equal(confusion, expected)
    other = np.asarray(sm.confusion_matrix(labels, predictions, ignore_index=0))
    assert other[0, 0] == 0 and other[3, 3] == 1


def test_accumulation_over_batches_matches_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 9, size=(4, 6, 7))
    labels[rng.uniform(size=labels.shape) < 0.1] = 255
    predictions = np.where(
        rng.uniform(size=labels.shape) < 0.6, labels, rng.integers(0, 9, labels.shape)
    )
    predictions[predictions == 255] = 0
    expected = np.zeros((9, 9), np.int64)
    keep = labels != 255
    np.add.at(expected, (labels[keep], predictions[keep]), 1)
    acc = sm.ConfusionAccumulator()
    acc.update(labels[:3], predictions[:3])
    acc.update(labels[3:], predictions[3:])
    np.testing.assert_array_equal(acc.confusion, expected)
    tp = np.diag(expected)
    iou = tp / (expected.sum(0) + expected.sum(1) - tp)
    assert list(acc.iou()) == list(sm.MSRS_CLASSES)
    np.testing.assert_allclose(list(acc.iou().values()), iou)
    assert acc.mean_iou() == pytest.approx(np.mean(iou))
    with pytest.raises(ValueError, match="differ"):
        acc.update(labels[:1], predictions[:2])
