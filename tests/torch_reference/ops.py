"""Tensor operations of the release restated in plain PyTorch (NCHW); the conventions are those
of superfusion_jax/ops (grid, align_corners, blur borders)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_PAD_MODES = {"constant": "constant", "replicate": "replicate", "reflect": "reflect"}


def gaussian_blur(x: torch.Tensor, size: int, sigma: float, border: str) -> torch.Tensor:
    """kornia's `gaussian_blur2d(x, (size, size), (sigma, sigma), border)`: a separable,
    normalised Gaussian, 'same' output size. x: (N, C, H, W)."""
    taps = torch.arange(size, dtype=x.dtype) - size // 2
    kernel = torch.exp(-(taps**2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum()
    c, r = x.shape[1], size // 2
    x = F.pad(x, (r, r, r, r), mode=_PAD_MODES[border])
    x = F.conv2d(x, kernel.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(x, kernel.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


def base_grid(height: int, width: int) -> torch.Tensor:
    """kornia's `create_meshgrid` (align_corners=True): (1, H, W, 2), x then y in [-1, 1]."""
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
    )
    return torch.stack([xs, ys], dim=-1)[None]


def warp(image: torch.Tensor, disp: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
    """Sample image (N, C, H, W) at base grid + disp (N, 2, H, W): bilinear, zero padding,
    align_corners=False (quirk 3: the grid is the align_corners=True one)."""
    if grid is None:
        grid = base_grid(disp.shape[2], disp.shape[3])
    flow = grid + disp.permute(0, 2, 3, 1)
    return F.grid_sample(image, flow, mode="bilinear", padding_mode="zeros", align_corners=False)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize with half-pixel centres (align_corners=False), values unchanged."""
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def level_scale(x: torch.Tensor) -> torch.Tensor:
    """(W - 1, H - 1) of a map (N, C, H, W) as a (1, 2, 1, 1) tensor: the displacement unit."""
    return torch.tensor([x.shape[3] - 1.0, x.shape[2] - 1.0]).view(1, 2, 1, 1)


def local_correlation(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) x 2 -> (N, 49, h, w): mean over C of (target - window)^2 for the 7 x 7
    windows (dilation 4, zero padding 12) of the blurred source (13 x 13, sigma 3, zero border)."""
    n, c, h, w = source.shape
    blurred = gaussian_blur(source, 13, 3.0, "constant")
    windows = F.unfold(blurred, kernel_size=7, dilation=4, padding=12).view(n, c, 49, h, w)
    return (target[:, :, None] - windows).pow(2).mean(dim=1)


def _recurrence(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dim: int, reverse: bool
) -> torch.Tensor:
    """h_edge = relu(x_edge), h_i = relu(w * h_prev + b + x_i) along `dim` (2 rows, 3 columns)
    of x (N, C, H, W), one row or column per Python step; weight, bias (C,)."""
    length = x.shape[dim]
    w, b = weight.view(1, -1, 1), bias.view(1, -1, 1)
    out: list[torch.Tensor] = [x.new_empty(0)] * length
    h = None
    for i in reversed(range(length)) if reverse else range(length):
        xi = x.select(dim, i)
        h = torch.relu(xi) if h is None else torch.relu(h * w + b + xi)
        out[i] = h
    return torch.stack(out, dim=dim)


def spatial_rnn(x: torch.Tensor, weights: dict, biases: dict) -> tuple[torch.Tensor, ...]:
    """The four-direction IRNN: (up, right, down, left) maps of x (N, C, H, W).

    'up' sweeps from the bottom row upward, 'down' from the top row, 'left' from the right edge,
    'right' from the left edge. weights, biases: {direction: (C,) tensor}.
    """
    sweeps = {"up": (2, True), "right": (3, False), "down": (2, False), "left": (3, True)}
    return tuple(
        _recurrence(x, weights[d], biases[d], dim, reverse) for d, (dim, reverse) in sweeps.items()
    )


def rgb_to_ycbcr(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB -> (Y, Cb, Cr), each (N, 1, H, W) clamped to [0, 1]."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 0.5
    cb = (b - y) * 0.564 + 0.5
    return y.clamp(0, 1), cb.clamp(0, 1), cr.clamp(0, 1)


def ycbcr_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    """(Y, Cb, Cr), each (N, 1, H, W) -> (N, 3, H, W) RGB clamped to [0, 1]."""
    cb, cr = cb - 0.5, cr - 0.5
    rgb = torch.cat([y + 1.403 * cr, y - 0.714 * cr - 0.344 * cb, y + 1.773 * cb], dim=1)
    return rgb.clamp(0, 1)
