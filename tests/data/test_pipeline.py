"""Training and evaluation batches: augmentation as the release's, determinism, sharding,
checkpointed iterator state, unreadable records skipped, real RoadScene."""

import logging
from collections import Counter

import numpy as np
import pytest

from superfusion_jax.data.folders import PairedFolderSource
from superfusion_jax.data.pipeline import (
    Darken,
    augment,
    flip,
    make_eval_batches,
    make_train_iterator,
    rotate,
)
from superfusion_jax.data.synthetic import SyntheticPairs
from tests.conftest import require
from tests.data.test_folders import ROADSCENE, corrupt_jpeg, write_pairs

CROP = 16


class IndexSource:
    """Records whose pixels all hold their index: ir = i / 100, vi = i / 50, label = i."""

    def __init__(self, num: int, height: int = 20, width: int = 24) -> None:
        self.num, self.height, self.width = num, height, width

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict:
        shape = (self.height, self.width)
        return {
            "ir": np.full(shape + (3,), index / 100, np.float32),
            "vi": np.full(shape + (3,), index / 50, np.float32),
            "label": np.full(shape, index, np.int32),
        }

    def __repr__(self) -> str:
        return f"IndexSource({self.num}, {self.height}, {self.width})"


def coordinate_record(height: int, width: int) -> dict:
    """ir holds (row, column, 0) per pixel; vi = 2·ir + 1; label = row·width + column."""
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    ir = np.stack([rows, cols, np.zeros_like(rows)], axis=-1)
    return {"ir": ir, "vi": 2 * ir + 1, "label": (rows * width + cols).astype(np.int32)}


# The release's randfilp / randrot (utils/utils.py), written on NCHW arrays as there.
def release_flip(x, mode):
    return np.flip(x, -2) if mode == 0 else np.flip(x, -1) if mode == 1 else x


def release_rot(x, mode):
    if mode == 0:
        return np.flip(np.swapaxes(x, -2, -1), -2)
    if mode == 1:
        return np.flip(np.flip(x, -2), -1)
    if mode == 2:
        return np.swapaxes(np.flip(x, -2), -2, -1)
    return x


@pytest.mark.parametrize("mode", range(3))
def test_flip_is_the_releases(mode):
    image = np.random.default_rng(0).random((5, 7, 3))
    nchw = image.transpose(2, 0, 1)[None]
    expected = release_flip(nchw, mode)[0].transpose(1, 2, 0)
    np.testing.assert_array_equal(flip(image, mode), expected)
    np.testing.assert_array_equal(flip(image[..., 0], mode), expected[..., 0])


@pytest.mark.parametrize("mode", range(4))
def test_rotate_is_the_releases(mode):
    image = np.random.default_rng(0).random((5, 7, 3))
    nchw = image.transpose(2, 0, 1)[None]
    expected = release_rot(nchw, mode)[0].transpose(1, 2, 0)
    np.testing.assert_array_equal(rotate(image, mode), expected)
    np.testing.assert_array_equal(rotate(image[..., 0], mode), expected[..., 0])
    # mode 0 anticlockwise, 2 clockwise, as documented
    turns = {0: 1, 1: 2, 2: -1, 3: 0}[mode]
    np.testing.assert_array_equal(rotate(image, mode), np.rot90(image, turns))


def test_augment_moves_ir_vi_label_together():
    record = coordinate_record(30, 40)
    seen, corners = Counter(), set()
    for seed in range(150):
        out = augment(record, np.random.default_rng(seed), CROP)
        ir, vi, label = out["ir"], out["vi"], out["label"]
        assert ir.shape == vi.shape == (CROP, CROP, 3) and label.shape == (CROP, CROP)
        assert ir.dtype == vi.dtype == np.float32 and label.dtype == np.int32
        np.testing.assert_array_equal(vi, 2 * ir + 1)
        np.testing.assert_array_equal(label, ir[..., 0] * 40 + ir[..., 1])
        # a rigid crop: one step along an output axis is one source pixel along one axis
        d_down = (ir[1, 0, :2] - ir[0, 0, :2]).astype(int)
        d_right = (ir[0, 1, :2] - ir[0, 0, :2]).astype(int)
        assert abs(d_down).sum() == abs(d_right).sum() == 1 and d_down @ d_right == 0
        steps = np.arange(CROP)
        expected = ir[0, 0, :2] + steps[:, None, None] * d_down + steps[None, :, None] * d_right
        np.testing.assert_array_equal(ir[..., :2], expected)
        seen[(tuple(d_down), tuple(d_right))] += 1
        corners.add(tuple(ir[0, 0, :2]))
    # all 8 flips/rotations of the square occur (12 release modes, 8 distinct results)
    assert len(seen) == 8
    assert len(corners) > 50  # crops at many places


def test_darken_applies_a_gamma_to_each_image_and_is_off_by_default():
    rng = np.random.default_rng(0)
    record = {"ir": rng.uniform(size=(40, 40, 3)).astype(np.float32)}
    record["vi"] = rng.uniform(size=(40, 40, 3)).astype(np.float32)
    plain = augment(record, np.random.default_rng(1), CROP)
    for key, value in augment(record, np.random.default_rng(1), CROP, Darken()).items():
        np.testing.assert_array_equal(value, plain[key])  # off: same draws, same crop
    darkened = {"ir": 0, "vi": 0}
    for seed in range(40):
        out = augment(record, np.random.default_rng(seed), CROP, Darken(0.5, 3.0))
        ref = augment(record, np.random.default_rng(seed), CROP)  # same crop: drawn first
        for key in ("ir", "vi"):
            assert out[key].dtype == np.float32
            if np.array_equal(out[key], ref[key]):
                continue
            darkened[key] += 1
            inside = (ref[key] > 0.05) & (ref[key] < 0.9)  # log well conditioned in float32
            gamma = np.log(out[key][inside]) / np.log(ref[key][inside])  # one gamma, in [1, 3]
            assert 1.0 <= gamma.min() and gamma.max() <= 3.0 + 1e-3
            np.testing.assert_allclose(gamma, np.median(gamma), rtol=2e-3)
    assert 10 <= darkened["ir"] <= 30 and 10 <= darkened["vi"] <= 30
    with pytest.raises(ValueError, match="probability"):
        Darken(1.5)
    with pytest.raises(ValueError, match="max_gamma"):
        Darken(0.5, 0.5)


def test_augment_resizes_small_images_up():
    record = coordinate_record(10, 20)  # shorter side below the crop: resized to 16 x 32
    out = augment(record, np.random.default_rng(0), CROP)
    assert out["ir"].shape == (CROP, CROP, 3) and out["label"].shape == (CROP, CROP)
    # labels by nearest neighbour: only values of the input
    assert set(np.unique(out["label"])) <= set(np.unique(record["label"]))
    # images bilinearly: rows of the output span the whole input height, values in range
    assert 0 <= out["ir"][..., 0].min() and out["ir"][..., 0].max() <= 9
    assert out["ir"][..., 0].max() - out["ir"][..., 0].min() > 8


def first_batches(iterator, count):
    return [next(iterator) for _ in range(count)]


def assert_same(batches_a, batches_b):
    for a, b in zip(batches_a, batches_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_batches_shapes_and_determinism():
    source = SyntheticPairs(6, 24, 28, seed=0)
    make = lambda seed: make_train_iterator(source, batch_size=4, crop_size=CROP, seed=seed)
    batches = first_batches(make(5), 2)
    for batch in batches:
        assert set(batch) == {"ir", "vi", "label"}
        assert batch["ir"].shape == batch["vi"].shape == (4, CROP, CROP, 3)
        assert batch["label"].shape == (4, CROP, CROP)
        assert batch["ir"].dtype == batch["vi"].dtype == np.float32
        assert batch["label"].dtype == np.int32
    assert_same(batches, first_batches(make(5), 2))
    other = first_batches(make(6), 2)
    assert not all(np.array_equal(a["vi"], b["vi"]) for a, b in zip(batches, other, strict=True))


def test_no_labels_no_label_key():
    source = [
        {k: v for k, v in r.items() if k != "label"}
        for r in map(IndexSource(4).__getitem__, range(4))
    ]
    batch = next(make_train_iterator(source, batch_size=2, crop_size=CROP, seed=0))
    assert set(batch) == {"ir", "vi"}


def records_seen(iterator) -> list[int]:
    """Record indices of an IndexSource behind every example of a finite iterator."""
    return [int(i) for batch in iterator for i in batch["label"][:, 0, 0]]


def test_epoch_sees_every_record_once():
    seen = records_seen(
        make_train_iterator(IndexSource(8), batch_size=2, crop_size=CROP, seed=1, num_epochs=1)
    )
    assert sorted(seen) == list(range(8))
    assert seen != sorted(seen)  # shuffled


def test_sharding_gives_disjoint_records_and_splits_the_batch():
    source = IndexSource(11)
    per_host = []
    for host in range(2):
        iterator = make_train_iterator(
            source,
            batch_size=2,
            crop_size=CROP,
            seed=3,
            shard_index=host,
            shard_count=2,
            num_epochs=1,
        )
        batches = list(iterator)
        assert all(b["ir"].shape[0] == 1 for b in batches)  # global batch 2 over 2 hosts
        per_host.append(records_seen(iter(batches)))
    assert len(per_host[0]) == len(per_host[1]) == 5  # 11 // 2 each, the remainder dropped
    assert not set(per_host[0]) & set(per_host[1])
    with pytest.raises(ValueError, match="multiple"):
        make_train_iterator(source, batch_size=3, seed=0, shard_count=2)


def test_state_restore_resumes_with_the_same_batches():
    source = SyntheticPairs(5, 20, 20, seed=1)
    make = lambda: make_train_iterator(source, batch_size=2, crop_size=CROP, seed=9)
    iterator = make()
    first_batches(iterator, 3)  # into the second epoch
    state = iterator.get_state()
    expected = first_batches(iterator, 3)
    restored = make()
    restored.set_state(state)
    assert_same(first_batches(restored, 3), expected)
    assert not np.array_equal(next(make())["vi"], expected[0]["vi"])


def test_unreadable_records_are_skipped_with_a_warning(tmp_path, caplog):
    write_pairs(tmp_path, ["p1", "p2", "p3", "p4"], size=(20, 20), ext=".jpg")
    corrupt_jpeg(tmp_path / "ir" / "p3.jpg")
    source = PairedFolderSource(tmp_path / "ir", tmp_path / "vi")
    with caplog.at_level(logging.WARNING, logger="superfusion_jax.data.pipeline"):
        batches = list(
            make_train_iterator(source, batch_size=1, crop_size=CROP, seed=0, num_epochs=1)
        )
        eval_batches = list(make_eval_batches(source, batch_size=4))
    assert len(batches) == 3
    assert "p3.jpg" in caplog.text
    assert [b["name"] for b in eval_batches] == [["p1", "p2", "p4"]]
    np.testing.assert_array_equal(eval_batches[0]["index"], [0, 1, 3])


def test_eval_batches_in_order_grouped_by_size():
    small, large = IndexSource(5, 20, 24), IndexSource(5, 30, 24)
    records = [small[0], small[1], small[2], large[3], large[4]]
    batches = list(make_eval_batches(records, batch_size=2))
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2], [3, 4]]
    assert [b["ir"].shape for b in batches] == [(2, 20, 24, 3), (1, 20, 24, 3), (2, 30, 24, 3)]
    np.testing.assert_array_equal(batches[2]["label"][:, 0, 0], [3, 4])  # unaugmented


def test_real_roadscene_batch():
    root = require(ROADSCENE)
    source = PairedFolderSource(root / "ir", root / "vi")
    batch = next(make_train_iterator(source, batch_size=2, seed=0))
    assert set(batch) == {"ir", "vi"}
    assert batch["ir"].shape == batch["vi"].shape == (2, 256, 256, 3)
    assert batch["ir"].dtype == np.float32
    assert 0.0 <= batch["vi"].min() and batch["vi"].max() <= 1.0
    np.testing.assert_array_equal(batch["ir"][..., 0], batch["ir"][..., 2])  # grey infrared
