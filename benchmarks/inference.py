"""Inference speed of SuperFusion on one pair: ms per pair, compile time, peak memory, GFLOP/s.

    python benchmarks/inference.py                      # 480x640, all three modes
    python benchmarks/inference.py --size 1080 1920 --modes register_and_fuse --repeats 1

Uses the parity weights when ../shared is present (else random weights: same cost). FLOPs are
XLA's own count of the compiled program; peak memory is the process's maximum resident set
(CPU) or the device's peak bytes in use (GPU/TPU), both including everything before the call;
XLA buffers is what the compiled program itself allocates (arguments, outputs and temporaries,
from its memory analysis), the figure that decides whether a size fits on an accelerator.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax import huge_pages
from superfusion_jax.inference import Pipeline
from superfusion_jax.models.variants import VARIANTS, Variant, variant_named

WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "weights_seed0.pth"
MODES = ("register", "fuse", "register_and_fuse")


def load_pipeline(variant: Variant) -> Pipeline:
    if WEIGHTS.exists():
        from superfusion_jax.convert.official import load_official

        return Pipeline(load_official(WEIGHTS)[0], variant)
    return Pipeline.untrained(variant=variant)


def peak_memory_mb() -> float:
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--variant", default="faithful", choices=VARIANTS)
    args = parser.parse_args()

    pipe = load_pipeline(variant_named(args.variant))
    rng = np.random.default_rng(0)
    shape = (args.batch, *args.size, 3)
    ir = jnp.asarray(rng.random(shape, np.float32))
    vi = jnp.asarray(rng.random(shape, np.float32))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), input {shape}")
    programs = {
        "register": pipe._register,
        "fuse": pipe._fuse,
        # what Pipeline.register_and_fuse runs, as one program
        "register_and_fuse": jax.jit(
            lambda v, ir, vi: pipe._fuse(v, pipe._register(v, ir, vi)["ir_reg"], vi)
        ),
    }
    for mode in args.modes:
        fn = programs[mode]
        start = time.perf_counter()
        compiled = fn.lower(pipe.variables, ir, vi).compile()
        compile_s = time.perf_counter() - start
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", float("nan")))
        memory = compiled.memory_analysis()
        buffers = sum(
            getattr(memory, f"{kind}_size_in_bytes", 0) for kind in ("argument", "output", "temp")
        )
        jax.block_until_ready(compiled(pipe.variables, ir, vi))  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(pipe.variables, ir, vi))
            times.append(time.perf_counter() - start)
        per_pair = statistics.median(times) / args.batch
        print(
            f"{mode:>18}: {per_pair * 1e3:8.1f} ms/pair (median of {args.repeats}, min "
            f"{min(times) / args.batch * 1e3:.1f})  compile {compile_s:5.1f} s  "
            f"{flops / 1e9 / args.batch:6.1f} GFLOP/pair  "
            f"{flops / 1e9 / statistics.median(times):6.1f} GFLOP/s  "
            f"peak mem {peak_memory_mb():7.0f} MB  XLA buffers {buffers / 2**20:7.0f} MB"
        )


if __name__ == "__main__":
    huge_pages.restart_with_huge_pages()  # as the command-line programs run
    main()
