"""train.py's XLA flags for a CPU: added for the measured jaxlib, never over the user's."""

import os

import pytest

from superfusion_jax.training import xla_flags


@pytest.fixture
def measured_jaxlib(monkeypatch):
    monkeypatch.setattr(xla_flags.jaxlib, "__version__", "0.10.2")


def test_added_to_the_users_other_flags(monkeypatch, measured_jaxlib):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert xla_flags.use_training_xla_flags() == [xla_flags.NO_YNN_FUSION]
    assert xla_flags.NO_YNN_FUSION in os.environ["XLA_FLAGS"].split()
    assert "--xla_force_host_platform_device_count=2" in os.environ["XLA_FLAGS"]


def test_a_value_the_user_set_is_kept(monkeypatch, measured_jaxlib):
    mine = "--xla_cpu_experimental_ynn_fusion_type=dot"
    monkeypatch.setenv("XLA_FLAGS", mine)
    assert xla_flags.use_training_xla_flags() == []
    assert os.environ["XLA_FLAGS"] == mine


@pytest.mark.parametrize("version", ["0.9.0", "0.11.0"])
def test_other_jaxlib_versions_get_no_flag(monkeypatch, version):
    monkeypatch.setattr(xla_flags.jaxlib, "__version__", version)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert xla_flags.use_training_xla_flags() == []
    assert "XLA_FLAGS" not in os.environ
