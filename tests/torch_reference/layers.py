"""Convolution blocks named as the release's (`model.0` conv, `model.1` norm): NCHW, 3 x 3."""

from __future__ import annotations

import torch
from torch import nn


class MatcherConv(nn.Module):
    """DenseMatcher block: conv (no bias, padding = dilation) -> optional norm (affine=False:
    'instance' or 'batch' with running statistics) -> LeakyReLU(0.1) if act."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        dilation: int = 1,
        norm: str | None = None,
        act: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False)
        ]
        if norm == "instance":
            layers.append(nn.InstanceNorm2d(c_out, affine=False))
        elif norm == "batch":
            layers.append(nn.BatchNorm2d(c_out, affine=False))
        if act:
            layers.append(nn.LeakyReLU(0.1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MatcherResConv(nn.Module):
    """x + relu(instance_norm(conv(x))), conv without bias, C -> C."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.InstanceNorm2d(channels, affine=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + x


class FusionConv(nn.Module):
    """FusionNet block: conv with bias (padding 1) -> activation: 'lrelu' (slope 0.01), 'tanh'
    or None (the release's 'Sigmod' typo, quirk 1)."""

    def __init__(self, c_in: int, c_out: int, activation: str | None = "lrelu") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1)]
        if activation == "lrelu":
            layers.append(nn.LeakyReLU(0.01))
        elif activation == "tanh":
            layers.append(nn.Tanh())
        elif activation is not None:
            raise ValueError(f"unknown activation {activation!r}")
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
