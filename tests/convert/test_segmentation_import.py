"""convert.segmentation: BiSeNet state_dicts (SeAFusion's model_final.pth layout) <-> Flax.

Golden files: ../shared/parity/segmentation/bisenet_seed0.pth (a state_dict of the release's
BiSeNet) and bisenet_state_dict_shapes.json (its keys and shapes, in state_dict order).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict

from superfusion_jax.convert.segmentation import (
    export_bisenet,
    export_state_dict,
    import_bisenet,
    import_state_dict,
    key_table,
    variable_shapes,
)
from superfusion_jax.models.bisenet import BiSeNet
from tests.conftest import PARITY, require

SEG = PARITY / "segmentation"


def test_every_release_key_is_mapped_in_order():
    shapes = json.loads(require(SEG / "bisenet_state_dict_shapes.json").read_text())
    assert list(key_table()) == list(shapes)


def test_import_consumes_every_key_and_round_trips_bit_identically(tmp_path):
    path = require(SEG / "bisenet_seed0.pth")
    original = torch.load(path, map_location="cpu", weights_only=True)
    variables = import_bisenet(path)
    flax_shapes = jax.eval_shape(
        lambda: BiSeNet().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(flax_shapes)
    for got, want in zip(
        jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(flax_shapes), strict=True
    ):
        assert got.shape == want.shape and got.dtype == want.dtype
    # a conv kernel lands transposed (OIHW -> HWIO), a BatchNorm scale as it is
    kernel = variables["params"]["cp"]["arm16"]["conv"]["conv"]["kernel"]
    np.testing.assert_array_equal(
        kernel, original["cp.arm16.conv.conv.weight"].numpy().transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        variables["batch_stats"]["cp"]["resnet"]["layer2_0"]["downsample_1"]["var"],
        original["cp.resnet.layer2.0.downsample.1.running_var"].numpy(),
    )

    export_bisenet(variables, tmp_path / "exported.pth")
    exported = torch.load(tmp_path / "exported.pth", map_location="cpu", weights_only=True)
    assert list(exported) == list(original)
    for key, value in original.items():
        assert exported[key].dtype == value.dtype, key
        assert exported[key].shape == value.shape, key
        assert torch.equal(exported[key], value), key


def random_state_dict(num_classes: int = 9) -> dict:
    """Random tensors in the release's layout (shapes from the Flax model, no init run)."""
    rng = np.random.default_rng(0)
    template = {col: flatten_dict(tree) for col, tree in variable_shapes(num_classes).items()}
    state = {}
    for key, loc in key_table(num_classes).items():
        shape = template[loc.collection][loc.path].shape
        if loc.layout == "count":
            state[key] = np.asarray(rng.integers(0, 100), np.int64)
        elif loc.layout == "conv":
            state[key] = rng.standard_normal(shape[::-1][:2] + shape[:2]).astype(np.float32)
        else:
            state[key] = rng.standard_normal(shape).astype(np.float32)
    return state


def test_dataparallel_prefix_and_number_of_classes(tmp_path):
    state = random_state_dict(num_classes=4)
    prefixed = {f"module.{k}": torch.from_numpy(np.array(v)) for k, v in state.items()}
    torch.save(prefixed, tmp_path / "dp.pth")
    variables = import_bisenet(tmp_path / "dp.pth")
    assert variables["params"]["conv_out16"]["conv_out"]["kernel"].shape == (1, 1, 64, 4)
    for key, value in export_state_dict(variables).items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_mismatches_are_listed_in_one_error():
    state = random_state_dict()
    del state["cp.arm8.bn_atten.running_var"]
    state["cp.ffm.convblk.conv.weight"] = np.zeros((256, 256, 1, 1), np.float32)
    state["conv_out.conv_out.weight"] = np.zeros((19, 128, 1, 1), np.float32)
    with pytest.raises(ValueError) as err:
        import_state_dict(state, "seg.pth")
    message = str(err.value)
    assert "seg.pth" in message
    assert "unknown keys (1): cp.ffm.convblk.conv.weight" in message
    assert "misshaped (1): conv_out.conv_out.weight: (19, 128, 1, 1)" in message
    assert "missing (1): cp.arm8.bn_atten.running_var" in message


def test_superfusion_checkpoint_is_refused(tmp_path):
    require(PARITY / "weights_seed0.pth")
    with pytest.raises(ValueError, match=r"unknown keys \(4\): DM; FN; ep; total_it"):
        import_bisenet(PARITY / "weights_seed0.pth")
