"""FusionNet with GSAM in plain PyTorch (faithful variant: quirks 1 and 2), NCHW."""

from __future__ import annotations

import torch
from torch import nn

from tests.torch_reference.layers import FusionConv
from tests.torch_reference.ops import spatial_rnn

DIRECTIONS = ("left", "right", "up", "down")  # declaration order (parameters() order)


class SpatialIRNN(nn.Module):
    """Four depthwise 1x1 convs holding one recurrent weight and bias per channel and direction.
    (N, C, H, W) -> (up, right, down, left) maps, each (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for direction in DIRECTIONS:
            conv = nn.Conv2d(channels, channels, 1, groups=channels)
            setattr(self, f"{direction}_weight", conv)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        convs = {d: getattr(self, f"{d}_weight") for d in DIRECTIONS}
        weights = {d: conv.weight.view(-1) for d, conv in convs.items()}
        return spatial_rnn(x, weights, {d: conv.bias for d, conv in convs.items()})


class Attention(nn.Module):
    """2C -> C/2 -> C/2 -> 4 direction weights (last conv without activation, quirk 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            FusionConv(2 * channels, channels // 2),
            FusionConv(channels // 2, channels // 2),
            FusionConv(channels // 2, 4, activation=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SAM(nn.Module):
    """GSAM: (N, 2C, H, W) -> unbounded mask (N, C, H, W) (no sigmoid, quirk 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.irnn1 = SpatialIRNN(channels)
        self.irnn2 = SpatialIRNN(channels)
        self.conv_in = FusionConv(2 * channels, channels, activation=None)
        self.conv2 = FusionConv(4 * channels, channels, activation=None)
        self.conv3 = FusionConv(4 * channels, channels)
        self.attention_layer = Attention(channels)
        self.conv_out = FusionConv(channels, channels, activation=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Quirk 2: the release computes attention_layer(x) but never applies it; its weights
        # exist (and load) but do not change the mask.
        out = self.conv_in(x)
        out = self.conv2(torch.cat(self.irnn1(out), dim=1))
        out = self.conv3(torch.cat(self.irnn2(out), dim=1))
        return self.conv_out(out)


def _coder(channels: tuple[int, ...], last: str) -> nn.Sequential:
    """FusionConv chain through `channels`; the last layer's activation is `last`."""
    pairs = list(zip(channels[:-1], channels[1:], strict=True))
    return nn.Sequential(
        *(
            FusionConv(a, b, activation=last if i == len(pairs) - 1 else "lrelu")
            for i, (a, b) in enumerate(pairs)
        )
    )


class FusionNet(nn.Module):
    """(N, 1, H, W) infrared and visible luminance in [0, 1] -> fused luminance (N, 1, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder_ir = _coder((1, 8, 16, 16, 32), "lrelu")
        self.encoder_vi = _coder((1, 8, 16, 16, 32), "lrelu")
        self.decoder = _coder((32, 16, 16, 8, 1), "tanh")
        self.SAM = SAM(32)

    def forward(self, ir_y: torch.Tensor, vi_y: torch.Tensor) -> torch.Tensor:
        f_ir, f_vi = self.encoder_ir(ir_y), self.encoder_vi(vi_y)
        mask = self.SAM(torch.cat([f_ir, f_vi], dim=1))
        return (self.decoder(f_ir * mask + f_vi * (1 - mask)) + 1) / 2
