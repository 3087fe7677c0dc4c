"""Training speed: steps/s of the jitted stage-RF and stage-FS steps, after compilation.

    python benchmarks/train_step.py                       # batch 4, 256x256, both stages
    python benchmarks/train_step.py --batch 16 --stages rf --repeats 10

Each step is jitted with the state donated, as the training loop does; compile time is the
`lower().compile()` time of that program. The RF step includes the synthetic misalignment of the
batch (`rf_step`). Random weights (fresh init): the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import numpy as np

from superfusion_jax.training import steps
from superfusion_jax.training.optimizer import make_optimizer
from superfusion_jax.training.state import create_train_state

STAGES = {"rf": steps.rf_step, "fs": steps.fs_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="side of the square crops")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per stage")
    parser.add_argument("--stages", nargs="+", choices=tuple(STAGES), default=list(STAGES))
    parser.add_argument("--variant", default="faithful", choices=("faithful", "corrected"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size)
    batch = {
        "ir": np.repeat(rng.random((*shape, 1), np.float32), 3, axis=-1),
        "vi": rng.random((*shape, 3), np.float32),
    }
    batch = jax.device_put(batch)
    tx = make_optimizer(1e-3)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), batch {shape}")
    for stage in args.stages:
        state = create_train_state(variant=args.variant, optimizer=tx, seed=0)
        fn = functools.partial(STAGES[stage], variant=args.variant, optimizer=tx)
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
            f"{args.batch / median:.2f} pairs/s, loss_total {float(metrics['loss_total']):.4g}"
        )


if __name__ == "__main__":
    main()
