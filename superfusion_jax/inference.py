"""Inference API: a SuperFusion model with its variables, jit-compiled once per input shape.

pipe = Pipeline.pretrained()                  # or .from_checkpoint("ckpt/"), .untrained()
out = pipe.register_and_fuse(ir, vi)          # ir, vi: (N, H, W, 3) float32 RGB in [0, 1]
out["fused"], out["ir_reg"], out["disp"]      # numpy; disp (N, H, W, 2) normalised units
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from superfusion_jax.checkpoint import load_checkpoint
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import quirks_for
from superfusion_jax.ops.displacement import disp_to_pixels


class Pipeline:
    """Registration/fusion of batches of pairs with fixed variables (eval mode)."""

    def __init__(self, variables: dict, variant: str = "faithful"):
        quirks_for(variant)
        self.variant = variant
        self.model = SuperFusion(variant)
        self.variables = jax.device_put(
            {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        )
        self._run = {
            method: jax.jit(functools.partial(self.model.apply, method=method))
            for method in ("register", "fuse", "register_and_fuse")
        }

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Pipeline:
        """Load a checkpoint folder written by `superfusion convert` or training, or a
        single-file checkpoint (`.npz`, `checkpoint.save_flat`)."""
        variables, meta = load_checkpoint(path)
        return cls(variables, meta["variant"])

    @classmethod
    def pretrained(cls, name: str | None = None) -> Pipeline:
        """A model shipped with the package (`superfusion_jax.weights`; default: its DEFAULT)."""
        from superfusion_jax import weights

        variables, meta = weights.load(name or weights.DEFAULT)
        return cls(variables, meta["variant"])

    @classmethod
    def untrained(cls, seed: int = 0, variant: str = "faithful") -> Pipeline:
        """Randomly initialised weights (the release's init): outputs are meaningless."""
        x = jnp.zeros((1, 16, 16, 3), jnp.float32)
        variables = SuperFusion(variant).init(jax.random.key(seed), x, x)
        return cls(variables, variant)

    def _call(self, method: str, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        ir, vi = np.asarray(ir, np.float32), np.asarray(vi, np.float32)
        if ir.shape != vi.shape or ir.ndim != 4 or ir.shape[-1] != 3:
            raise ValueError(
                f"expected ir and vi of one shape (N, H, W, 3); got {ir.shape} and {vi.shape}"
            )
        out = self._run[method](self.variables, ir, vi)
        return {key: np.asarray(value) for key, value in out.items()}

    def register(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """{'ir_reg': (N, H, W, 3), 'disp': (N, H, W, 2) normalised} for ir onto vi."""
        return self._call("register", ir, vi)

    def fuse(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """{'fused': (N, H, W, 3) RGB} of an aligned pair."""
        return self._call("fuse", ir, vi)

    def register_and_fuse(self, ir: np.ndarray, vi: np.ndarray) -> dict[str, np.ndarray]:
        """{'ir_reg', 'disp', 'fused'}: registration of ir onto vi, then fusion."""
        return self._call("register_and_fuse", ir, vi)

    def disp_to_pixels(self, disp: np.ndarray) -> np.ndarray:
        """(N, H, W, 2) normalised displacement -> pixel displacement (dx, dy)."""
        grid_quirk = quirks_for(self.variant).align_corners_base_grid
        return np.asarray(disp_to_pixels(jnp.asarray(disp), grid_quirk))
