"""The single-file checkpoint form (`save_flat` / `load_flat`) used for the shipped weights, and
`load_checkpoint`, which reads either form."""

import jax
import numpy as np
import pytest

from superfusion_jax.io.model_files import load_checkpoint, load_flat, save_flat, save_model
from tests.conftest import PARITY, require


def _assert_same_tree(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_flat_round_trip_of_the_official_weights(tmp_path):
    require(PARITY / "after_train_forward_seed0.pth")
    from superfusion_jax.convert.official import load_official

    variables, _ = load_official(PARITY / "after_train_forward_seed0.pth")
    path = save_flat(tmp_path / "m.npz", variables, {"variant": "faithful", "step": 3})
    loaded, meta = load_flat(path)
    _assert_same_tree(jax.tree_util.tree_map(np.asarray, dict(variables)), loaded)
    assert meta["variant"] == "faithful" and meta["step"] == 3
    assert meta["format"] == "superfusion-jax"
    # either form through one call: the .npz file, and a folder holding the same variables
    folder = save_model(tmp_path / "folder", loaded, meta)
    for source in (path, folder):
        again, again_meta = load_checkpoint(source)
        _assert_same_tree(loaded, again)
        assert again_meta["step"] == 3
    with pytest.raises(ValueError, match="not a 'bisenet' one"):
        load_checkpoint(path, model="bisenet")


def test_flat_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        save_flat(tmp_path / "a.npz", {"params": {"w": np.zeros(2)}}, {})
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_flat(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_flat(bad)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(2))
    with pytest.raises(ValueError, match="plain.npz"):
        load_flat(plain)


def test_a_pth_file_is_not_a_checkpoint_and_says_how_to_convert_it(tmp_path):
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"torch")
    with pytest.raises(ValueError, match=r"superfusion convert --from .*model\.pth --to DIR"):
        load_checkpoint(pth)
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="notes.txt is a file, not a checkpoint folder"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "absent")
