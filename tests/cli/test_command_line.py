"""The helpers shared by the two command lines (superfusion_jax.command_line): usage errors for
unusable paths, the check that weights are at hand, and which Pipeline constructor is used.

`superfusion_jax.inference` is replaced by a stand-in that records the constructor called, so
that no model is built."""

import sys
import types

import pytest

from superfusion_jax import command_line
from superfusion_jax.command_line import UsageError, list_pairs, load_pipeline, require_weights
from superfusion_jax.models.variants import CORRECTED, FAITHFUL


def test_the_registrations_are_those_of_the_pipeline():
    from superfusion_jax import inference

    assert command_line.REGISTRATIONS == inference.REGISTRATIONS
    assert set(command_line.TRAINING_FREE) == set(inference.REGISTRATIONS) - set(
        inference.NETWORK_REGISTRATIONS
    )


def test_list_pairs_turns_unusable_paths_into_usage_errors(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="does not exist"):
        list_pairs(tmp_path / "ir", tmp_path / "missing")
    with pytest.raises(UsageError, match="both be files or both be folders"):
        list_pairs(tmp_path / "ir", tmp_path / "vi.png")
    (tmp_path / "vi").mkdir()
    for folder in ("ir", "vi"):
        (tmp_path / folder / "a.png").write_bytes(b"x")
    assert [pair.name for pair in list_pairs(tmp_path / "ir", tmp_path / "vi").pairs] == ["a"]


def test_weights_are_required_only_when_none_are_at_hand(monkeypatch):
    monkeypatch.setattr("superfusion_jax.weights.available", lambda: [])
    with pytest.raises(UsageError, match="^give a checkpoint$"):
        require_weights(None, False, "give a checkpoint")
    require_weights("ckpt", False, "unused")  # a checkpoint
    require_weights(None, True, "unused")  # random weights asked for
    monkeypatch.setattr("superfusion_jax.weights.available", lambda: ["default"])
    require_weights(None, False, "unused")  # the shipped model


@pytest.fixture
def constructors(monkeypatch):
    """Replace superfusion_jax.inference by a stand-in; returns the list of calls it records
    as (constructor, argument, registration); a checkpoint named 'missing' is not found."""
    calls = []

    class Recorder:
        @classmethod
        def untrained(cls, variant, registration):
            calls.append(("untrained", variant, registration))

        @classmethod
        def pretrained(cls, registration):
            calls.append(("pretrained", None, registration))

        @classmethod
        def from_checkpoint(cls, path, registration):
            if path == "missing":
                raise FileNotFoundError("checkpoint folder missing does not exist")
            calls.append(("from_checkpoint", path, registration))

    module = types.ModuleType("superfusion_jax.inference")
    module.Pipeline = Recorder
    monkeypatch.setitem(sys.modules, "superfusion_jax.inference", module)
    return calls


def test_load_pipeline_chooses_the_constructor(constructors):
    load_pipeline(None, untrained=True, variant=CORRECTED)
    load_pipeline(None, untrained=True, registration="global+network")
    load_pipeline(None, registration="optimize")
    load_pipeline("ckpt")
    assert constructors == [
        ("untrained", CORRECTED, "network"),
        ("untrained", FAITHFUL, "global+network"),
        ("pretrained", None, "optimize"),
        ("from_checkpoint", "ckpt", None),
    ]
    with pytest.raises(UsageError, match="^checkpoint folder missing does not exist$"):
        load_pipeline("missing")
