"""convert.segmentation: BiSeNet state_dicts (SeAFusion's model_final.pth layout) <-> Flax, and
`superfusion convert` on them both ways (model folders and segmentation training checkpoints).

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

from superfusion_jax.cli import main
from superfusion_jax.convert.segmentation import (
    export_bisenet,
    export_state_dict,
    import_bisenet,
    import_state_dict,
    key_table,
    variable_shapes,
)
from superfusion_jax.data.pipeline import make_train_iterator
from superfusion_jax.data.synthetic import SyntheticPairs
from superfusion_jax.inference import Pipeline
from superfusion_jax.io.model_files import load_model, save_model
from superfusion_jax.models.bisenet import BiSeNet
from superfusion_jax.training.checkpoints import RunCheckpoints
from superfusion_jax.training.state import TrainState
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


def _convert(src, dst, *flags) -> int:
    return main(["convert", "--from", str(src), "--to", str(dst), *flags])


def _assert_same_state_dict(path_a, path_b) -> None:
    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (path_a, path_b))
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_convert_command_both_ways(tmp_path, capsys):
    """.pth -> folder (model 'bisenet', no variant) -> .pth, bit-identical; the folder is a
    segmenter for training and evaluation, and is refused where a SuperFusion model is needed."""
    path = require(SEG / "bisenet_seed0.pth")
    assert _convert(path, tmp_path / "seg") == 0
    assert "of segmentation network (BiSeNet, 9 classes)" in capsys.readouterr().out
    variables, meta = load_model(tmp_path / "seg", model="bisenet")
    assert meta["model"] == "bisenet" and "variant" not in meta and meta["num_classes"] == 9
    assert meta["classes"][:2] == ["unlabelled", "car"]
    assert _convert(tmp_path / "seg", tmp_path / "back.pth") == 0
    assert "BiSeNet state_dict (9 classes)" in capsys.readouterr().out
    _assert_same_state_dict(path, tmp_path / "back.pth")

    with pytest.raises(ValueError, match="holds a 'bisenet' network, not a 'superfusion' one"):
        Pipeline.from_checkpoint(tmp_path / "seg")
    assert _convert(tmp_path / "seg", tmp_path / "x.pth", "--include-optimizer") == 2
    assert "options of SuperFusion exports" in capsys.readouterr().err
    assert _convert(tmp_path / "seg", tmp_path / "back.pth") == 2
    assert "already exists" in capsys.readouterr().err


def _segmentation_training_checkpoint(workdir) -> None:
    """A RunCheckpoints step folder WORKDIR/checkpoints/3 of configs/segmentation.py (stage
    'segmentation') holding the weights of bisenet_seed0.pth."""
    variables = import_bisenet(require(SEG / "bisenet_seed0.pth"))
    state = TrainState(
        step=np.asarray(3, np.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state={"momentum": jax.tree_util.tree_map(np.zeros_like, variables["params"])},
        rng=np.zeros(2, np.uint32),
    )
    run = RunCheckpoints(workdir, keep=1, async_save=False)
    iterator = make_train_iterator(SyntheticPairs(4, 16, 16), batch_size=2, crop_size=16, seed=0)
    run.save(state, iterator, {"stage": "segmentation", "variant": "faithful"})
    run.close()


def test_segmentation_training_checkpoint_exports_its_weights(tmp_path, capsys):
    _segmentation_training_checkpoint(tmp_path / "run")
    assert _convert(tmp_path / "run" / "checkpoints" / "3", tmp_path / "seg.pth") == 0
    capsys.readouterr()
    _assert_same_state_dict(SEG / "bisenet_seed0.pth", tmp_path / "seg.pth")


def test_relative_paths_to_a_training_checkpoint(tmp_path, monkeypatch, capsys):
    """--from run/checkpoints/STEP relative to the working directory (orbax reads absolute
    paths only), and a relative --to."""
    _segmentation_training_checkpoint(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert _convert("run/checkpoints/3", "seg.pth") == 0
    assert "wrote seg.pth" in capsys.readouterr().out
    _assert_same_state_dict(SEG / "bisenet_seed0.pth", tmp_path / "seg.pth")


def test_unwritable_destination_is_one_line_with_exit_2(tmp_path, monkeypatch, capsys):
    """--to inside a file, onto an existing file, or in a folder that cannot be written: one
    line naming the path, exit 2, nothing written."""
    from superfusion_jax.convert import commands

    path = require(SEG / "bisenet_seed0.pth")
    assert _convert(path, tmp_path / "seg") == 0
    (tmp_path / "a_file").write_text("not a folder")
    cases = [
        ((path, tmp_path / "a_file" / "seg"), "a_file is a file, not a folder"),
        ((path, tmp_path / "a_file"), "a_file is a file; importing writes a new checkpoint"),
        ((tmp_path / "seg", tmp_path / "a_file" / "seg.pth"), "a_file is a file, not a folder"),
    ]
    for args, message in cases:
        assert _convert(*args) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(commands.tempfile, "TemporaryFile", read_only)
    for dst in (tmp_path / "ro" / "seg", tmp_path / "ro" / "seg.pth"):
        src = path if dst.suffix == "" else tmp_path / "seg"
        assert _convert(src, dst) == 2
        err = capsys.readouterr().err
        assert f"cannot write {dst}: {tmp_path} is not writable (Permission denied)" in err
    assert (tmp_path / "a_file").read_text() == "not a folder"
    assert not (tmp_path / "ro").exists()


def test_superfusion_folder_without_variant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must name its 'variant'"):
        save_model(tmp_path / "m", {"params": {}}, {"model": "superfusion"})
