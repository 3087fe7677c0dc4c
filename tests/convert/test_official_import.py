"""Import of official .pth checkpoints: every key consumed, clear errors, all accepted layouts.

Golden file: ../shared/parity/weights_seed0.pth and official_state_dict_shapes.json.
"""

import json

import numpy as np
import pytest
import torch
from flax import traverse_util

from superfusion_jax.convert.commands import import_pth
from superfusion_jax.convert.official import import_official, load_official
from superfusion_jax.convert.official_keys import locate
from superfusion_jax.convert.torch_checkpoints import split_networks
from superfusion_jax.io.model_files import load_model
from tests.conftest import PARITY, require


@pytest.fixture(scope="module")
def official():
    return torch.load(require(PARITY / "weights_seed0.pth"), map_location="cpu")


@pytest.fixture(scope="module")
def imported(official):
    networks, _ = split_networks(official, "weights_seed0.pth")
    return import_official(networks, "weights_seed0.pth")


def test_every_official_key_has_a_location():
    shapes = json.loads(require(PARITY / "official_state_dict_shapes.json").read_text())
    for network in ("DM", "FN"):
        for key in shapes[network]:
            assert locate(network, key) is not None, f"{network}.{key} has no Flax location"
    assert len(shapes["DM"]) == 62 and len(shapes["FN"]) == 54


def test_values_land_where_expected(official, imported):
    params = imported["params"]
    w = official["DM"]["feature_extractor_share2.1.model.0.weight"].numpy()
    got = params["dense_matcher"]["share2"]["layer_1"]["conv"]["kernel"]
    np.testing.assert_array_equal(got, w.transpose(2, 3, 1, 0))
    stats = imported["batch_stats"]["dense_matcher"]["refiner"]["head"]["layer_2"]["norm"]
    np.testing.assert_array_equal(
        stats["var"], official["DM"]["refiner.estimator.2.model.1.running_var"].numpy()
    )
    rnn = params["fusion_net"]["gsam"]["irnn2"]
    for row, direction in enumerate(("up", "right", "down", "left")):
        weight = official["FN"][f"SAM.irnn2.{direction}_weight.weight"].numpy().reshape(-1)
        bias = official["FN"][f"SAM.irnn2.{direction}_weight.bias"].numpy()
        np.testing.assert_array_equal(rnn["weight"][row], weight)
        np.testing.assert_array_equal(rnn["bias"][row], bias)
    n_official = sum(v.numel() for sd in (official["DM"], official["FN"]) for v in sd.values())
    n_flax = sum(
        np.size(v) for col in imported.values() for v in traverse_util.flatten_dict(col).values()
    )
    assert n_official == n_flax


def test_bare_prefixed_state_dict_matches(official, imported):
    bare = {f"module.DM.{k}": v for k, v in official["DM"].items()}
    bare.update({f"FN.{k}": v for k, v in official["FN"].items()})
    bare["ST.grid"] = torch.zeros(1, 256, 256, 2)
    networks, _ = split_networks(bare, "bare")
    again = import_official(networks, "bare")
    flat_a = traverse_util.flatten_dict(imported)
    flat_b = traverse_util.flatten_dict(again)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(flat_a[key], flat_b[key])


def test_errors_list_unknown_missing_and_misshaped(official):
    networks, _ = split_networks(official, "x")
    networks = {k: dict(v) for k, v in networks.items()}
    networks["DM"]["matcher9.extra.weight"] = np.zeros(3)
    del networks["FN"]["decoder.3.model.0.bias"]
    networks["DM"]["matcher1.layers.0.model.0.weight"] = np.zeros((32, 112, 3, 3), np.float32)
    with pytest.raises(ValueError) as err:
        import_official(networks, "broken.pth")
    text = str(err.value)
    assert "broken.pth" in text
    assert "DM.matcher9.extra.weight" in text
    assert "fusion_net/decoder_3/conv/bias" in text
    assert "DM.matcher1.layers.0.model.0.weight: (32, 112, 3, 3)" in text


def test_not_a_superfusion_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a SuperFusion checkpoint"):
        load_official(path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_official(garbage)


def test_file_saved_on_gpu_loads_on_cpu(official, tmp_path, monkeypatch):
    """Storages tagged 'cuda:0' (as torch.save writes them on a GPU) are mapped to the CPU."""
    path = tmp_path / "gpu.pth"
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    torch.save({"DM": official["DM"], "FN": official["FN"], "ep": 3, "total_it": 7}, path)
    monkeypatch.undo()
    with pytest.raises(RuntimeError):
        torch.load(path, weights_only=True)  # what a CPU-only user would hit without mapping
    variables, extra = load_official(path)
    assert extra == {"ep": 3, "total_it": 7}
    assert "dense_matcher" in variables["params"]


def test_convert_writes_a_checkpoint_folder(imported, tmp_path):
    content = import_pth(require(PARITY / "weights_seed0.pth"), tmp_path / "ckpt")
    assert content == "SuperFusion (variant faithful)"
    variables, meta = load_model(tmp_path / "ckpt")
    assert meta["variant"] == "faithful" and meta["ep"] == 0 and meta["total_it"] == 0
    assert meta["model"] == "superfusion"
    flat_a = traverse_util.flatten_dict(imported)
    flat_b = traverse_util.flatten_dict(variables)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(flat_a[key], flat_b[key])
    with pytest.raises(FileExistsError):
        import_pth(PARITY / "weights_seed0.pth", tmp_path / "ckpt")
