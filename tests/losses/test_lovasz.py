"""superfusion_jax.losses.lovasz against hand-computed values and a direct numpy implementation.

The numpy reference below follows the definition (Berman et al. 2018, eq. 9 and Alg. 1): sort
the errors |fg - p| of a class in decreasing order and weight the k-th one by J(S_k) - J(S_{k-1}),
with J(S) = |S| / |F u S| evaluated on Python sets.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfusion_jax.losses.lovasz import lovasz_softmax, lovasz_softmax_probas


def jaccard_loss_of_set(mistakes: set, foreground: set) -> float:
    """Delta_J(S) = |S| / |F u S| (0 for the empty set)."""
    return len(mistakes) / len(foreground | mistakes) if mistakes else 0.0


def reference(probas, labels, classes="present", ignore=None) -> float:
    """Lovasz-Softmax of (P, C) probabilities and (P,) labels, float64, from the definition."""
    probas, labels = np.asarray(probas, np.float64), np.asarray(labels)
    if ignore is not None:
        keep = labels != ignore
        probas, labels = probas[keep], labels[keep]
    num_classes = probas.shape[1]
    selected = range(num_classes) if classes in ("present", "all") else classes
    losses = []
    for c in selected:
        foreground = {i for i in range(len(labels)) if labels[i] == c}
        if classes == "present" and not foreground:
            continue
        errors = np.abs((labels == c).astype(np.float64) - probas[:, c])
        order = np.argsort(-errors, kind="stable")
        loss, previous, taken = 0.0, 0.0, set()
        for i in order:
            taken.add(int(i))
            current = jaccard_loss_of_set(taken, foreground)
            loss += errors[i] * (current - previous)
            previous = current
        losses.append(loss)
    return float(np.mean(losses)) if losses else 0.0


def random_probas(rng, shape):
    logits = rng.standard_normal(shape) * 2
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def test_perfect_prediction_is_zero():
    labels = np.array([[[0, 1, 2], [2, 1, 0]]])
    one_hot = np.eye(3, dtype=np.float32)[labels]
    assert float(lovasz_softmax_probas(jnp.asarray(one_hot), jnp.asarray(labels))) == 0.0
    logits = jnp.asarray(30.0 * one_hot)
    assert 0.0 <= float(lovasz_softmax(logits, jnp.asarray(labels))) < 1e-6


def test_hand_computed_two_class_case():
    # p(class 1) = 0.1, 0.8, 0.4, 0.3; labels 0, 1, 1, 0 -> errors 0.1, 0.2, 0.6, 0.3 for both.
    # class 1 (F = {1, 2}): sorted 0.6 (fg), 0.3, 0.2 (fg), 0.1; J = 1/2, 2/3, 3/3, 4/4
    #   -> 0.6/2 + 0.3/6 + 0.2/3 + 0 = 5/12.
    # class 0 (F = {0, 3}): sorted 0.6, 0.3 (fg), 0.2, 0.1 (fg); J = 1/3, 2/3, 3/4, 4/4
    #   -> 0.6/3 + 0.3/3 + 0.2/12 + 0.1/4 = 41/120.  Mean: 91/240.
    p1 = np.array([0.1, 0.8, 0.4, 0.3], np.float32)
    probas = np.stack([1 - p1, p1], -1).reshape(1, 2, 2, 2)
    labels = np.array([0, 1, 1, 0]).reshape(1, 2, 2)
    loss = lovasz_softmax_probas(jnp.asarray(probas), jnp.asarray(labels))
    np.testing.assert_allclose(float(loss), 91 / 240, rtol=1e-6)
    np.testing.assert_allclose(reference(probas.reshape(4, 2), labels.ravel()), 91 / 240, 1e-7)


@pytest.mark.parametrize("classes", ["present", "all", [1, 3, 3]])
def test_matches_reference(classes):
    rng = np.random.default_rng(0)
    probas = random_probas(rng, (3, 5, 6, 4))
    labels = rng.integers(0, 3, (3, 5, 6))  # class 3 absent
    loss = jax.jit(lambda p, y: lovasz_softmax_probas(p, y, classes))(probas, labels)
    expected = reference(probas.reshape(-1, 4), labels.ravel(), classes)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_logits_are_softmaxed_over_the_last_axis():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 4, 5))
    probas = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    loss = lovasz_softmax(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(float(loss), reference(probas.reshape(-1, 3), labels.ravel()), 1e-5)


def test_per_image_is_the_mean_of_image_losses():
    rng = np.random.default_rng(2)
    probas = random_probas(rng, (3, 4, 4, 3))
    labels = rng.integers(0, 3, (3, 4, 4))
    labels[1] = 0  # one image with a single class
    loss = lovasz_softmax_probas(jnp.asarray(probas), jnp.asarray(labels), per_image=True)
    expected = np.mean(
        [reference(p.reshape(-1, 3), y.ravel()) for p, y in zip(probas, labels, strict=True)]
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    pooled = reference(probas.reshape(-1, 3), labels.ravel())
    assert abs(expected - pooled) > 1e-3  # the two modes differ on this batch


def test_absent_classes():
    rng = np.random.default_rng(3)
    probas = random_probas(rng, (1, 4, 5, 4))
    labels = rng.choice([0, 2], (1, 4, 5))
    p, y = jnp.asarray(probas), jnp.asarray(labels)
    present = float(lovasz_softmax_probas(p, y, "present"))
    only_02 = float(lovasz_softmax_probas(p, y, [0, 2]))
    np.testing.assert_allclose(present, only_02, rtol=1e-6)
    # An absent class has F empty, so J(S_k) = 1 for every k >= 1: its loss is its largest error,
    # i.e. the largest probability given to it.
    all_classes = float(lovasz_softmax_probas(p, y, "all"))
    absent = probas[..., 1].max() + probas[..., 3].max()
    np.testing.assert_allclose(all_classes, (2 * present + absent) / 4, rtol=1e-5)
    np.testing.assert_allclose(
        all_classes, reference(probas.reshape(-1, 4), labels.ravel(), "all"), 1e-5
    )


def test_ignore_index():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 5, 4))
    labels[rng.random(labels.shape) < 0.3] = 255
    probas = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    loss_fn = lambda x: lovasz_softmax(x, jnp.asarray(labels), ignore_index=255)
    loss, grad = jax.value_and_grad(loss_fn)(jnp.asarray(logits))
    expected = reference(probas.reshape(-1, 3), labels.ravel(), ignore=255)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    ignored = labels == 255
    assert np.all(np.asarray(grad)[ignored] == 0)
    assert np.all(np.any(np.asarray(grad)[~ignored] != 0, axis=-1))
    # Only ignored pixels: nothing to score.
    everything = jnp.full(labels.shape, 255)
    assert float(lovasz_softmax(jnp.asarray(logits), everything, ignore_index=255)) == 0.0


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        logits = jnp.asarray(rng.standard_normal((1, 2, 3, 3)))
        labels = jnp.asarray(rng.integers(0, 3, (1, 2, 3)))
        loss_fn = lambda x: lovasz_softmax(x, labels)
        grad = np.asarray(jax.grad(loss_fn)(logits))
        eps = 1e-6
        numeric = np.zeros(logits.shape)
        for index in np.ndindex(*logits.shape):
            step = np.zeros(logits.shape)
            step[index] = eps
            numeric[index] = (loss_fn(logits + step) - loss_fn(logits - step)) / (2 * eps)
    assert grad.dtype == np.float64
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    assert np.abs(grad).max() > 1e-3
