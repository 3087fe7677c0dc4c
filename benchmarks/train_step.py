"""Training speed: steps/s of the jitted stage-RF and stage-FS steps, after compilation.

    python benchmarks/train_step.py                       # batch 4, 256x256, both stages
    python benchmarks/train_step.py --batch 16 --stages rf --repeats 10
    python benchmarks/train_step.py --stages rf --breakdown   # + where the RF step's time goes
    python benchmarks/train_step.py --xla-defaults        # without train.py's XLA flags

XLA's CPU flags are train.py's (`training.xla_flags`) unless --xla-defaults.
Each step is jitted with the state donated, as the training loop does; compile time is the
`lower().compile()` time of that program. The RF step includes the synthetic misalignment of the
batch (`rf_step`). Random weights (fresh init): the cost does not depend on them. Every line
gives XLA's FLOP count of its program (`cost_analysis()`) beside the time.

`--breakdown` times the parts of the RF step's loss and gradient, each jitted alone on the same
batch: the forward of both networks, the gradient of their outputs with respect to each
network's parameters (the other one frozen), and the forward + backward of each loss term with
respect to the networks' outputs.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax import huge_pages
from superfusion_jax.data.misalign import misalign_batch
from superfusion_jax.losses.registration import RFOutputs, rf_losses, valid_masks
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import VARIANTS, Variant, variant_named
from superfusion_jax.training import steps
from superfusion_jax.training.optimizer import make_optimizer
from superfusion_jax.training.state import create_train_state, fresh_variables
from superfusion_jax.training.xla_flags import use_training_xla_flags

STAGES = {"rf": steps.rf_step, "fs": steps.fs_step}
RF_TERMS = (
    "loss_reg_img",
    "loss_reg_field",
    "loss_smooth",
    "loss_fus",
    "loss_ncc",
    "loss_border",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="side of the square crops")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per stage")
    parser.add_argument("--stages", nargs="+", choices=tuple(STAGES), default=list(STAGES))
    parser.add_argument("--variant", default="faithful", choices=VARIANTS)
    parser.add_argument("--breakdown", action="store_true", help="time the RF step's parts")
    parser.add_argument(
        "--xla-defaults", action="store_true", help="without train.py's XLA flags for a CPU"
    )
    args = parser.parse_args()
    if not args.xla_defaults:
        use_training_xla_flags()
    variant = variant_named(args.variant)

    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size)
    batch = {
        "ir": np.repeat(rng.random((*shape, 1), np.float32), 3, axis=-1),
        "vi": rng.random((*shape, 3), np.float32),
    }
    batch = jax.device_put(batch)
    tx = make_optimizer(1e-3)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), batch {shape}")
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}")
    for stage in args.stages:
        state = create_train_state(variant=variant, optimizer=tx, seed=0)
        fn = functools.partial(STAGES[stage], variant=variant, optimizer=tx)
        start = time.perf_counter()
        step = jax.jit(fn, donate_argnums=0).lower(state, batch).compile()
        compile_s = time.perf_counter() - start
        state, metrics = step(state, batch)  # warm-up
        jax.block_until_ready(metrics)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            state, metrics = step(state, batch)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(
            f"{stage}_step: compile {compile_s:.1f} s, {median:.3f} s/step median of "
            f"{args.repeats} (min {min(times):.3f}), {1 / median:.3f} steps/s, "
            f"{args.batch / median:.2f} pairs/s, {_gflop(step):.0f} GFLOP, "
            f"loss_total {float(metrics['loss_total']):.4g}"
        )
    if args.breakdown:
        rf_breakdown(batch, variant, args.repeats)


def _gflop(compiled: jax.stages.Compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost.get("flops", float("nan")) / 1e9


def _time(name: str, fn, *args, repeats: int) -> None:
    """Compile `fn` for `args`, run it once, then print the best of `repeats` runs."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    print(f"  {name:34s} {min(times):7.3f} s  {_gflop(compiled):7.1f} GFLOP")


def rf_breakdown(batch: dict, variant: Variant, repeats: int) -> None:
    """Where the RF step's time goes (see the module docstring)."""
    batch = misalign_batch(jax.random.key(0), batch)
    variables = fresh_variables(variant, seed=0)
    params, batch_stats = variables["params"], variables["batch_stats"]
    model = SuperFusion(variant)
    total = lambda tree: sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(tree))

    def forward(p: dict) -> RFOutputs:
        apply = functools.partial(model.apply, method=steps.rf_forward, mutable=["batch_stats"])
        inputs = (batch["ir"], batch["vi"], batch["ir_warp"], batch["vi_warp"])
        return apply({"params": p, "batch_stats": batch_stats}, *inputs)[0]

    def network(name: str):
        def loss(p: dict) -> jax.Array:
            frozen = jax.lax.stop_gradient({k: v for k, v in p.items() if k != name})
            return total(forward({**frozen, name: p[name]}))

        return jax.grad(loss)

    print("rf_step breakdown:")
    loss = lambda p: steps.rf_loss_fn(p, batch_stats, batch, variant=variant)[0]
    _time("loss + gradient (the step)", jax.value_and_grad(loss), params, repeats=repeats)
    _time("both networks, forward", forward, params, repeats=repeats)
    for name in ("dense_matcher", "fusion_net"):
        _time(f"gradient w.r.t. {name}", network(name), params, repeats=repeats)
    outputs = jax.jit(forward)(params)
    disp_gt = steps.release_disp_to_variant(batch["disp"], variant)
    masks = valid_masks(disp_gt, align_corners_grid=variant.align_corners_base_grid)
    images = {k: batch[k] for k in ("ir", "vi", "ir_warp", "vi_warp")}

    def term(name: str):
        def value(out: RFOutputs) -> jax.Array:
            terms = rf_losses(
                out, **images, disp_gt=disp_gt, goodmask=masks[0], goodmask_inverse=masks[1]
            )
            return terms[name]

        return jax.grad(value)

    for name in ("loss_total", *RF_TERMS):
        _time(f"{name}, forward + backward", term(name), outputs, repeats=repeats)


if __name__ == "__main__":
    huge_pages.restart_with_huge_pages()  # as the command-line programs run
    main()
