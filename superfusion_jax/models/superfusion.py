"""SuperFusion: DenseMatcher (registration) + FusionNet (fusion), as the release's test paths.

All images are RGB (N, H, W, 3) float32 in [0, 1] (the infrared image is grey repeated three
times); displacements are (N, H, W, 2), normalised units, x then y (see `ops.warp`).
Call through `model.apply(variables, ir, vi, method=...)` with one of `register`, `fuse`,
`register_and_fuse`; training uses `dense_matcher` / `fusion_net` submodules directly.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from superfusion_jax.models.dense_matcher import DenseMatcher
from superfusion_jax.models.fusion_net import FusionNet
from superfusion_jax.models.variants import FAITHFUL, Variant
from superfusion_jax.ops.color import rgb_to_ycbcr, ycbcr_to_rgb
from superfusion_jax.ops.warp import warp

Array = jax.Array


class SuperFusion(nn.Module):
    """Registration and fusion of infrared/visible pairs (variables: params, batch_stats)."""

    variant: Variant = FAITHFUL
    # DenseMatcher input padding multiple; None: the variant's (`Variant.pad_multiple`).
    pad_multiple: int | None = None

    def setup(self) -> None:
        if not isinstance(self.variant, Variant):
            raise TypeError(
                f"variant must be a models.variants.Variant, got {self.variant!r} "
                "(variant_named(name) turns a name into one)"
            )
        self.dense_matcher = DenseMatcher(self.variant, self.pad_multiple)
        self.fusion_net = FusionNet(self.variant)

    def warp(self, image: Array, disp: Array) -> Array:
        """Sample image (N, H, W, C) at the variant's base grid + disp (N, H, W, 2)."""
        return warp(image, disp, self.variant.align_corners_base_grid)

    def register(self, ir: Array, vi: Array) -> dict[str, Array]:
        """Register the infrared image onto the visible one (release: registration_forward).

        Returns {'ir_reg': (N, H, W, 3), 'disp': (N, H, W, 2) normalised}.
        """
        disp = self.dense_matcher(ir, vi, "ir2vis")["ir2vis"]
        return {"ir_reg": self.warp(ir, disp), "disp": disp}

    def fuse(self, ir: Array, vi: Array) -> dict[str, Array]:
        """Fuse an aligned pair (release: fusion_forward): the first channel of ir with the
        luminance of vi, chroma from vi. Returns {'fused': (N, H, W, 3) RGB in [0, 1]}."""
        vi_y, vi_cb, vi_cr = rgb_to_ycbcr(vi)
        fused_y = self.fusion_net(ir[..., :1], vi_y)
        return {"fused": ycbcr_to_rgb(fused_y, vi_cb, vi_cr)}

    def register_and_fuse(self, ir: Array, vi: Array) -> dict[str, Array]:
        """Register then fuse (release: forward). Returns {'ir_reg', 'disp', 'fused'}."""
        reg = self.register(ir, vi)
        return {**reg, **self.fuse(reg["ir_reg"], vi)}

    def __call__(self, ir: Array, vi: Array) -> dict[str, Array]:
        """Same as `register_and_fuse` (also creates every variable at init)."""
        return self.register_and_fuse(ir, vi)
