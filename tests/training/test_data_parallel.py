"""Data parallelism: stage-RF steps on a 4-device mesh compute what one device computes.

The devices are 4 virtual CPU devices (`--xla_force_host_platform_device_count`), which must be
set before JAX starts, hence the subprocess.

What data parallelism must preserve, and the bounds, derived from float32 itself:
- the losses of a step: sums in another order, agreement to float32 rounding (rtol 1e-5);
- every gradient leaf before the optimiser: the 4-device and the 1-device float32 gradients
  are both compared with a float64 gradient of the same batch, and the 4-device one must be as
  close to it as float32 allows: within 4 times the 1-device leaf's own float32 error (at a
  fresh init a leaf's float32 error reaches about 1 % of its norm; two summation orders differ
  by up to about that much, so a fixed tolerance on their difference holds on one CPU and not on
  another). A sharding error (one shard's statistics or gradients) is off by tens of percent;
- the BatchNorm running statistics over the global batch (rtol 1e-4).
Parameters after the optimiser are not compared: the update of each step follows from its
gradient, and an optimiser turns float32 differences of tiny gradients into differences of up
to its learning rate (Adam's first steps move every parameter by about lr).
"""

import textwrap

import numpy as np
import pytest

from tests.helpers import run_python

SCRIPT = textwrap.dedent(
    """
    import functools, sys
    import jax
    import numpy as np
    import optax
    from flax import traverse_util
    from jax.sharding import PartitionSpec
    from superfusion_jax.data.misalign import misalign_batch
    from superfusion_jax.models.variants import FAITHFUL
    from superfusion_jax.training import mesh as meshes, steps
    from superfusion_jax.training.state import create_train_state, fresh_variables

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)

    def images(channels):
        # smooth random content: 8x8 noise blown up to 64x64, plus fine noise
        coarse = np.kron(rng.random((4, 8, 8, channels)), np.ones((1, 8, 8, 1)))
        return (0.8 * coarse + 0.2 * rng.random((4, 64, 64, channels))).astype(np.float32)

    batches = [{"ir": np.repeat(images(1), 3, axis=-1), "vi": images(3)} for _ in range(2)]
    tx = optax.chain(optax.clip_by_global_norm(5.0), optax.sgd(0.05))
    variables = fresh_variables(FAITHFUL, seed=0)
    out = {}
    for n in (4, 1):
        mesh = meshes.make_mesh(jax.devices()[:n])
        state = create_train_state(
            variant=FAITHFUL, optimizer=tx, seed=0, init_variables=variables
        )
        state = meshes.replicate(state, mesh)
        step = meshes.jit_step(
            functools.partial(steps.rf_step, variant=FAITHFUL, optimizer=tx), mesh
        )
        for i, batch in enumerate(batches):
            placed = meshes.shard_batch(batch, mesh)
            out[f"{n}/batch_sharded"] = all(
                x.sharding.spec == PartitionSpec("data")
                and sorted(s.data.shape[0] for s in x.addressable_shards) == [4 // n] * n
                for x in placed.values()
            )
            state, metrics = step(state, placed)
            for key, value in metrics.items():
                out[f"{n}/step{i}/{key}"] = np.asarray(value)
        leaves = jax.tree_util.tree_leaves(state)
        out[f"{n}/replicated"] = all(
            x.sharding.is_fully_replicated and len(x.sharding.device_set) == n for x in leaves
        )
        out[f"{n}/step"] = np.asarray(state.step)
        for path, value in traverse_util.flatten_dict(state.batch_stats, sep="/").items():
            out[f"{n}/batch_stats/{path}"] = np.asarray(value)
    # Gradients before the optimiser of one misaligned batch: 4 devices, 1 device, float64.
    warped = jax.device_get(misalign_batch(jax.random.key(1), batches[0]))

    def grads_of(params, batch_stats, batch):
        loss = lambda p: steps.rf_loss_fn(p, batch_stats, batch, variant=FAITHFUL)[0]
        return jax.grad(loss)(params)

    def save_grads(prefix, grads):
        for path, value in traverse_util.flatten_dict(grads, sep="/").items():
            out[f"{prefix}/{path}"] = np.asarray(value, np.float64)

    for n in (4, 1):
        mesh = meshes.make_mesh(jax.devices()[:n])
        placed = [meshes.replicate(variables[k], mesh) for k in ("params", "batch_stats")]
        save_grads(f"{n}/grads", jax.jit(grads_of)(*placed, meshes.shard_batch(warped, mesh)))
    jax.config.update("jax_enable_x64", True)
    to64 = lambda tree: jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), tree)
    save_grads(
        "64/grads",
        jax.jit(grads_of)(to64(variables["params"]), to64(variables["batch_stats"]), to64(warped)),
    )
    np.savez(sys.argv[1], **out)
    """
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("data_parallel") / "out.npz"
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    run_python("-c", SCRIPT, str(path), env=env)
    return dict(np.load(path))


def _keys(results, prefix):
    return sorted(k[len(prefix) :] for k in results if k.startswith(prefix))


@pytest.mark.slow
def test_state_is_replicated_and_batches_sharded(results):
    for n in (4, 1):
        assert results[f"{n}/batch_sharded"], n
        assert results[f"{n}/replicated"], n
        assert int(results[f"{n}/step"]) == 2


@pytest.mark.slow
def test_four_devices_give_the_one_device_losses_and_statistics(results):
    metric_names = _keys(results, "1/step0/")
    assert "loss_total" in metric_names and "grad_norm_dense_matcher" in metric_names
    for name in metric_names:
        one, four = results[f"1/step0/{name}"], results[f"4/step0/{name}"]
        if name == "nonfinite":
            assert not one and not four
        elif name.startswith("loss"):
            np.testing.assert_allclose(four, one, rtol=1e-5, err_msg=name)
    names = _keys(results, "1/batch_stats/")
    assert names == _keys(results, "4/batch_stats/")
    for name in names:
        np.testing.assert_allclose(
            results[f"4/batch_stats/{name}"],
            results[f"1/batch_stats/{name}"],
            rtol=1e-4,
            atol=1e-5,
            err_msg=name,
        )


@pytest.mark.slow
def test_four_device_gradients_are_as_accurate_as_one_device_float32(results):
    names = _keys(results, "64/grads/")
    assert names == _keys(results, "4/grads/") == _keys(results, "1/grads/")
    assert any(n.startswith("dense_matcher/") for n in names)
    assert any(n.startswith("fusion_net/") for n in names)
    total = {"exact": 0.0, "four": 0.0}
    for name in names:
        exact = results[f"64/grads/{name}"]
        error_one = np.linalg.norm(results[f"1/grads/{name}"] - exact)
        error_four = np.linalg.norm(results[f"4/grads/{name}"] - exact)
        # float32's own resolution of this leaf: relative 1e-6 of its norm
        resolution = 1e-6 * np.linalg.norm(exact) + 1e-12
        assert error_four <= 4 * error_one + 4 * resolution, (name, error_four, error_one)
        total["exact"] += np.linalg.norm(exact) ** 2
        total["four"] += error_four**2
    # over the whole gradient the float32 error is small (measured 0.18 % of its norm, both)
    assert total["four"] ** 0.5 <= 0.02 * total["exact"] ** 0.5
