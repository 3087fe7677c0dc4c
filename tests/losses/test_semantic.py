"""superfusion_jax.losses.semantic against torch: OHEM cross-entropy (SeAFusion's OhemCELoss,
written here from its definition with torch's cross_entropy), both of its branches, ignored
pixels and gradients; the two head combinations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superfusion_jax.losses.lovasz import lovasz_softmax
from superfusion_jax.losses.semantic import (
    ohem_cross_entropy,
    pixel_cross_entropy,
    segmentation_loss,
    semantic_loss,
)


def torch_ohem(logits_nhwc: np.ndarray, labels: np.ndarray, thresh: float, n_min: int, ignore):
    """Per-pixel CE (ignored = 0), sorted descending; if the (n_min+1)-th largest exceeds
    -log(thresh) the mean of all above it, else the mean of the n_min largest. Returns
    (loss, d loss / d logits (NHWC))."""
    logits = torch.tensor(np.transpose(logits_nhwc, (0, 3, 1, 2)), dtype=torch.float64)
    logits.requires_grad_(True)
    target = torch.tensor(labels, dtype=torch.int64)
    loss = F.cross_entropy(logits, target, ignore_index=ignore, reduction="none").view(-1)
    loss, _ = torch.sort(loss, descending=True)
    limit = -math.log(thresh)
    loss = loss[loss > limit] if loss[n_min] > limit else loss[:n_min]
    value = loss.mean()
    value.backward()
    return value.item(), np.transpose(logits.grad.numpy(), (0, 2, 3, 1))


def _case(seed: int, scale: float, ignore_fraction: float = 0.0, right: float = 0.0):
    """Logits (2, 6, 7, 5) of random scores (scale) plus `right` on the labelled class of
    about 80% of the pixels, labels (2, 6, 7) with ignore_fraction of them 255."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=(2, 6, 7))
    logits = scale * rng.normal(size=(2, 6, 7, 5))
    logits += right * np.eye(5)[labels] * (rng.random(labels.shape) < 0.8)[..., None]
    labels[rng.random(labels.shape) < ignore_fraction] = 255
    return logits.astype(np.float32), labels


@pytest.mark.parametrize(
    ("scale", "right", "n_min", "branch"),
    [(0.1, 0.0, 20, "hard"), (1.0, 6.0, 40, "top"), (1.0, 6.0, 3, "hard")],
)
def test_ohem_matches_torch_in_both_branches(scale, right, n_min, branch):
    logits, labels = _case(0, scale, ignore_fraction=0.2, right=right)
    ce = np.asarray(pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 255))
    num_hard = int(np.sum(ce > -math.log(0.7)))
    assert (num_hard > n_min) == (branch == "hard")  # the case exercises the branch it names
    want, want_grad = torch_ohem(logits, labels, 0.7, n_min, 255)

    def loss(x):
        return ohem_cross_entropy(x, jnp.asarray(labels), min_kept=n_min, threshold=0.7)

    got, grad = jax.value_and_grad(loss)(jnp.asarray(logits))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), want_grad, atol=1e-6)


def test_pixel_cross_entropy_is_zero_on_ignored_pixels_and_matches_torch():
    logits, labels = _case(1, 2.0, ignore_fraction=0.3)
    got = np.asarray(pixel_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 255))
    want = F.cross_entropy(
        torch.tensor(np.transpose(logits, (0, 3, 1, 2))),
        torch.tensor(labels, dtype=torch.int64),
        ignore_index=255,
        reduction="none",
    ).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(got[labels == 255] == 0)


def test_ohem_refuses_min_kept_outside_the_pixels():
    logits, labels = _case(2, 1.0)
    with pytest.raises(ValueError, match="min_kept"):
        ohem_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), min_kept=labels.size)


def test_segmentation_loss_is_main_plus_weighted_aux():
    main, labels = _case(3, 3.0, ignore_fraction=0.1)
    aux, _ = _case(4, 3.0)
    n_min = labels.size // 16  # SeAFusion: batch * H * W // 16
    total, terms = segmentation_loss(jnp.asarray(main), jnp.asarray(aux), jnp.asarray(labels))
    want_main, _ = torch_ohem(main, labels, 0.7, n_min, 255)
    want_aux, _ = torch_ohem(aux, labels, 0.7, n_min, 255)
    np.testing.assert_allclose(float(terms["loss_main"]), want_main, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss_aux"]), want_aux, rtol=1e-5)
    np.testing.assert_allclose(float(total), want_main + 0.75 * want_aux, rtol=1e-5)
    assert float(terms["loss_total"]) == float(total)


def test_semantic_loss_is_lovasz_main_plus_quarter_aux():
    main, labels = _case(5, 2.0)
    aux, _ = _case(6, 2.0)
    main, aux, labels = jnp.asarray(main), jnp.asarray(aux), jnp.asarray(labels)
    want = lovasz_softmax(main, labels) + 0.25 * lovasz_softmax(aux, labels)
    np.testing.assert_allclose(float(semantic_loss(main, aux, labels)), float(want), rtol=1e-6)
    # a confident, correct main head scores ~0 on its own term
    perfect = 50.0 * jax.nn.one_hot(labels, 5)
    assert float(semantic_loss(perfect, perfect, labels)) < 1e-6
