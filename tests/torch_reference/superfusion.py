"""The release's test-time composites: register, fuse, register then fuse (NCHW, eval)."""

from __future__ import annotations

import torch
from torch import nn

from tests.torch_reference.dense_matcher import DenseMatcher
from tests.torch_reference.fusion_net import FusionNet
from tests.torch_reference.ops import base_grid, rgb_to_ycbcr, warp, ycbcr_to_rgb

GRID_SIZE = 256  # the release builds its SpatialTransformer for 256 x 256 crops


class SpatialTransformer(nn.Module):
    """Warp with a stored (1, 256, 256, 2) base grid, rebuilt for other sizes (buffer 'grid')."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("grid", base_grid(GRID_SIZE, GRID_SIZE))

    def forward(self, image: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
        same = tuple(self.grid.shape[1:3]) == tuple(disp.shape[2:])
        return warp(image, disp, self.grid if same else None)


class SuperFusionReference(nn.Module):
    """DM (registration), ST (warp) and FN (fusion); state_dict keys 'DM.*', 'ST.grid', 'FN.*'.

    ir, vi: (N, 3, H, W) RGB in [0, 1] (infrared grey repeated), H and W multiples of 8 to
    compare with the JAX model (which pads other sizes; the release does not).
    """

    def __init__(self) -> None:
        super().__init__()
        self.DM = DenseMatcher()
        self.ST = SpatialTransformer()
        self.FN = FusionNet()

    def register(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'ir_reg': (N, 3, H, W), 'disp': (N, 2, H, W) normalised}."""
        disp = self.DM(ir, vi, "ir2vis")["ir2vis"]
        return {"ir_reg": self.ST(ir, disp), "disp": disp}

    def fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'fused': (N, 3, H, W)}: the infrared first channel with the visible luminance,
        chroma from the visible image."""
        vi_y, vi_cb, vi_cr = rgb_to_ycbcr(vi)
        return {"fused": ycbcr_to_rgb(self.FN(ir[:, 0:1], vi_y), vi_cb, vi_cr)}

    def register_and_fuse(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'ir_reg', 'disp', 'fused'}: register, then fuse the registered pair."""
        registered = self.register(ir, vi)
        return {**registered, **self.fuse(registered["ir_reg"], vi)}
