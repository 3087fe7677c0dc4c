"""What Pipeline checks before it runs: the memory a size needs, the smallest registrable size."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfusion_jax import memory
from superfusion_jax.inference import Pipeline


def test_needed_bytes_counts_arguments_outputs_and_temporaries():
    x = jnp.zeros((256, 256), jnp.float32)
    compiled = jax.jit(lambda a: (a @ a + 1.0) @ a).lower(x).compile()
    needed = memory.needed_bytes(compiled)
    assert needed is not None and needed >= 2 * x.nbytes  # the argument and the output
    assert memory.available_bytes() > 0


def test_check_fits_names_the_job_and_both_sizes(monkeypatch):
    compiled = jax.jit(lambda a: a * 2.0).lower(jnp.zeros((1000,), jnp.float32)).compile()
    memory.check_fits(compiled, "a job")  # 8 kB fits
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1000)
    with pytest.raises(MemoryError, match=r"a job needs about 0\.0 GB .* 0\.0 GB is free"):
        memory.check_fits(compiled, "a job")


def test_pipeline_refuses_a_size_that_does_not_fit_before_running_it(monkeypatch):
    pipeline = Pipeline.untrained()
    x = np.random.default_rng(0).random((1, 12, 16, 3), np.float32)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10_000)
    with pytest.raises(MemoryError, match="fuse of 1 pair"):
        pipeline.fuse(x, x)
    monkeypatch.undo()
    assert np.isfinite(pipeline.fuse(x, x)["fused"]).all()


def test_registration_network_refuses_sides_under_its_minimum():
    """At 8 pixels or less the network's coarsest level has one pixel and its field is NaN."""
    pipeline = Pipeline.untrained()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 9 pixels on each side"):
        pipeline.register(*rng.random((2, 1, 8, 40, 3), np.float32))
    out = pipeline.register(*rng.random((2, 1, 9, 40, 3), np.float32))
    assert all(np.isfinite(value).all() for value in out.values())


def _memory_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_pipeline_frees_the_programs_of_sizes_it_no_longer_keeps(monkeypatch):
    """Each compiled program holds memory mappings (a process may have 65,530 on Linux): a
    folder of many image sizes must not keep one program per size alive."""
    import superfusion_jax.inference as inference

    monkeypatch.setattr(inference, "MAX_COMPILED", 1)
    pipeline = Pipeline.untrained()
    rng = np.random.default_rng(0)
    fuse = lambda side: pipeline.fuse(*rng.random((2, 1, side, side, 3), np.float32))
    before = _memory_mappings()
    fuse(12)
    one_program = _memory_mappings() - before
    for side in (13, 14, 15):
        fuse(side)
    assert len(pipeline._compiled) == 1
    # Kept: the program of side 15 only. Without freeing: about 4 programs' mappings.
    assert _memory_mappings() - before < 2 * one_program
    assert np.isfinite(fuse(15)["fused"]).all()
