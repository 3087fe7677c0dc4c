"""Time the spatial IRNN (forward, and forward + backward w.r.t. x, weight, bias) after compiling.

Usage: python benchmarks/spatial_rnn.py [--repeats 5]
Prints the best wall time of ``--repeats`` runs per shape, in milliseconds, float32.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax import huge_pages
from superfusion_jax.ops.spatial_rnn import spatial_rnn

SHAPES = ((1, 480, 640, 32), (4, 256, 256, 32))


def best_ms(fn, *args, repeats: int) -> float:
    """Best wall time of ``fn(*args)`` in ms over ``repeats`` runs, after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    forward = jax.jit(spatial_rnn)
    loss = lambda x, w, b: jnp.sum(spatial_rnn(x, w, b))
    backward = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))

    rng = np.random.default_rng(0)
    print(f"device: {jax.devices()[0].device_kind}")
    for shape in SHAPES:
        channels = shape[-1]
        x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        weight = jnp.asarray(rng.uniform(0.1, 0.6, (4, channels)).astype(np.float32))
        bias = jnp.asarray(rng.uniform(-0.1, 0.1, (4, channels)).astype(np.float32))
        fwd_ms = best_ms(forward, x, weight, bias, repeats=args.repeats)
        bwd_ms = best_ms(backward, x, weight, bias, repeats=args.repeats)
        print(f"{'x'.join(map(str, shape))}: fwd {fwd_ms:.0f} ms, fwd+bwd {bwd_ms:.0f} ms")


if __name__ == "__main__":
    huge_pages.restart_with_huge_pages()  # as the command-line programs run
    main()
