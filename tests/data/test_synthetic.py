"""Procedural infrared–visible scenes: determinism, format, and the sensor differences drawn."""

import time

import numpy as np
import pytest

from superfusion_jax.data.synthetic import (
    CAR,
    MSRS_CLASSES,
    PERSON,
    SyntheticPairs,
    synthetic_pair,
)

H, W = 48, 64
SEEDS = range(12)


@pytest.fixture(scope="module")
def scenes():
    return [synthetic_pair(seed, H, W) for seed in SEEDS]


def test_format(scenes):
    for scene in scenes:
        assert set(scene) == {"ir", "vi", "label"}
        assert scene["ir"].shape == scene["vi"].shape == (H, W, 3)
        assert scene["ir"].dtype == scene["vi"].dtype == np.float32
        assert scene["label"].shape == (H, W) and scene["label"].dtype == np.int32
        for key in ("ir", "vi"):
            assert 0.0 <= scene[key].min() and scene[key].max() <= 1.0
        # infrared is grey repeated to RGB, as the release reads it
        assert np.array_equal(scene["ir"][..., 0], scene["ir"][..., 1])
        assert np.array_equal(scene["ir"][..., 0], scene["ir"][..., 2])
        assert set(np.unique(scene["label"])) <= set(range(len(MSRS_CLASSES)))


def test_deterministic_given_seed():
    a, b = synthetic_pair(7, H, W), synthetic_pair(7, H, W)
    for key in a:
        assert np.array_equal(a[key], b[key])
    c = synthetic_pair(8, H, W)
    assert not np.array_equal(a["vi"], c["vi"]) and not np.array_equal(a["ir"], c["ir"])


def test_objects_are_labelled(scenes):
    present = set().union(*(np.unique(s["label"]).tolist() for s in scenes))
    assert {0, CAR, PERSON} <= present
    assert all(len(np.unique(s["label"])) >= 2 for s in scenes)


def test_people_are_hot_in_infrared(scenes):
    # a person is brighter in the infrared image than the unlabelled scene around it
    checked = 0
    for scene in scenes:
        person = scene["label"] == PERSON
        if person.sum() < 10:
            continue
        ir = scene["ir"][..., 0]
        assert ir[person].mean() > ir[scene["label"] == 0].mean() + 0.2
        checked += 1
    assert checked >= 3


def test_visible_has_finer_texture_than_infrared(scenes):
    # fine texture (road grain, stripes, windows) is visible-only; infrared is smooth
    def roughness(grey):
        return np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean()

    for scene in scenes:
        assert roughness(scene["vi"].mean(-1)) > roughness(scene["ir"][..., 0])


def test_modalities_differ(scenes):
    # neither image is a function of the other: correlation of the grey levels well below 1
    corr = [np.corrcoef(s["vi"].mean(-1).ravel(), s["ir"][..., 0].ravel())[0, 1] for s in scenes]
    assert np.median(corr) < 0.8


def test_speed_256():
    synthetic_pair(0, 256, 256)
    start = time.process_time()
    for seed in range(5):
        synthetic_pair(seed, 256, 256)
    per_scene = (time.process_time() - start) / 5
    assert per_scene < 0.05  # about 10 ms here; generous for a shared CPU


def test_too_small():
    with pytest.raises(ValueError, match="16"):
        synthetic_pair(0, 8, 64)


def test_source():
    source = SyntheticPairs(5, H, W, seed=3)
    assert len(source) == 5
    first = source[2]
    assert first["name"] == "synthetic_000002"
    assert first["ir"].shape == (H, W, 3) and first["label"].shape == (H, W)
    again = SyntheticPairs(5, H, W, seed=3)[2]
    assert all(np.array_equal(first[k], again[k]) for k in ("ir", "vi", "label"))
    assert not np.array_equal(first["vi"], source[3]["vi"])
    assert not np.array_equal(first["vi"], SyntheticPairs(5, H, W, seed=4)[2]["vi"])
    # grain checks the source by its repr when an iterator state is restored
    assert repr(source) == repr(SyntheticPairs(5, H, W, seed=3))
    with pytest.raises(IndexError):
        source[5]
    with pytest.raises(ValueError):
        SyntheticPairs(0, H, W)
