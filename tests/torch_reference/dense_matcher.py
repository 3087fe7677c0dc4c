"""The DenseMatcher (registration network) in plain PyTorch, evaluation path, NCHW."""

from __future__ import annotations

import torch
from torch import nn

from tests.torch_reference.layers import MatcherConv, MatcherResConv
from tests.torch_reference.ops import gaussian_blur, level_scale, local_correlation, resize, warp

CORRELATION_CHANNELS = 49  # 7 x 7 windows


class FeatureExtractor(nn.Module):
    """One modality: 3->8 (dil 1), 8->8 residual (dil 2), 8->16 (dil 2), 16->16 residual (dil 4),
    InstanceNorm. (N, 3, H, W) -> (N, 16, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                MatcherConv(3, 8, dilation=1, norm="instance"),
                MatcherResConv(8, dilation=2),
                MatcherConv(8, 16, dilation=2, norm="instance"),
                MatcherResConv(16, dilation=4),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _shared_level(c_in: int, c_out: int, dilation: int) -> nn.Sequential:
    """conv (dil d) then stride-2 conv (dil d), InstanceNorm + LeakyReLU(0.1)."""
    return nn.Sequential(
        MatcherConv(c_in, c_out, dilation=dilation, norm="instance"),
        MatcherConv(c_out, c_out, stride=2, dilation=dilation, norm="instance"),
    )


def _flow_head(c_in: int, channels: int) -> list[nn.Module]:
    """C_in -> C/2, C/4, C/8 (dil 1, 2, 4; BatchNorm + LeakyReLU 0.1) -> 2 (plain conv)."""
    layers: list[nn.Module] = []
    for dilation in (1, 2, 4):
        channels //= 2
        layers.append(MatcherConv(c_in, channels, dilation=dilation, norm="batch"))
        c_in = channels
    return layers + [MatcherConv(c_in, 2, act=False)]


def _compressor(channels: int) -> nn.Sequential:
    """concat(src, tgt) 2C -> 2C (LeakyReLU 0.1) -> C (plain)."""
    return nn.Sequential(
        MatcherConv(2 * channels, 2 * channels), MatcherConv(2 * channels, channels, act=False)
    )


class DispEstimator(nn.Module):
    """Displacement at one level: (N, C, h, w) x 2 -> (N, 2, h, w) normalised units."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.preprocessor = MatcherConv(channels, channels, dilation=dilation, act=False)
        self.featcompressor = _compressor(channels)
        self.layers = nn.ModuleList(_flow_head(channels + CORRELATION_CHANNELS, channels))

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = source.shape[0]
        feat = self.preprocessor(torch.cat([source, target]))
        source, target = feat[:n], feat[n:]
        x = torch.cat(
            [
                self.featcompressor(torch.cat([source, target], dim=1)),
                local_correlation(source, target),
            ],
            dim=1,
        )
        for layer in self.layers:
            x = layer(x)
        x = gaussian_blur(x, 13, 3.0, "replicate").clamp(-300, 300)
        return x / level_scale(x)


class DispRefiner(nn.Module):
    """(N, C, h, w) x 2 and disp (N, 2, h, w) in level pixels -> disp + delta (level pixels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.preprocessor = nn.Sequential(MatcherConv(channels, channels, act=False))
        self.featcompressor = _compressor(channels)
        self.estimator = nn.Sequential(*_flow_head(channels + 2, channels))

    def forward(
        self, source: torch.Tensor, target: torch.Tensor, disp: torch.Tensor
    ) -> torch.Tensor:
        n = source.shape[0]
        feat = self.preprocessor(torch.cat([source, target]))
        compressed = self.featcompressor(torch.cat([feat[:n], feat[n:]], dim=1))
        return disp + self.estimator(torch.cat([compressed, disp], dim=1))


class DenseMatcher(nn.Module):
    """forward(ir, vi, direction) -> {direction: (N, 2, H, W)} normalised units; ir and vi are
    (N, 3, H, W) RGB, each through its own extractor. direction 'ir2vis' or 'vis2ir'."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_extractor_unshare1 = FeatureExtractor()
        self.feature_extractor_unshare2 = FeatureExtractor()
        self.feature_extractor_share1 = _shared_level(16, 32, 1)
        self.feature_extractor_share2 = _shared_level(32, 64, 2)
        self.feature_extractor_share3 = _shared_level(64, 128, 4)
        self.matcher1 = DispEstimator(64, dilation=4)
        self.matcher2 = DispEstimator(128, dilation=2)
        self.refiner = DispRefiner(32)

    def match(self, src: tuple, tgt: tuple) -> torch.Tensor:
        """Coarse to fine, pyramids (1/2, 1/4, 1/8) -> refined disp at 1/2, normalised units."""
        (f1s, f2s, f3s), (f1t, f2t, f3t) = src, tgt
        scale = level_scale(f1s)
        d2 = resize(self.matcher2(f3s, f3t), f2s.shape[2], f2s.shape[3])
        d1 = self.matcher1(warp(f2s, d2), f2t)
        coarse = resize(d1, f1s.shape[2], f1s.shape[3]) + resize(d2, f1s.shape[2], f1s.shape[3])
        disp = self.refiner(warp(f1s, coarse), f1t, coarse * scale)
        return gaussian_blur(disp, 17, 5.0, "replicate") / scale

    def forward(self, ir: torch.Tensor, vi: torch.Tensor, direction: str = "ir2vis") -> dict:
        n, _, h, w = vi.shape
        feat1 = self.feature_extractor_share1(
            torch.cat([self.feature_extractor_unshare1(ir), self.feature_extractor_unshare2(vi)])
        )
        feat2 = self.feature_extractor_share2(feat1)
        feat3 = self.feature_extractor_share3(feat2)
        ir_pyramid = (feat1[:n], feat2[:n], feat3[:n])
        vi_pyramid = (feat1[n:], feat2[n:], feat3[n:])
        if direction == "ir2vis":
            disp = self.match(ir_pyramid, vi_pyramid)
        elif direction == "vis2ir":
            disp = self.match(vi_pyramid, ir_pyramid)
        else:
            raise ValueError(f"direction must be 'ir2vis' or 'vis2ir', got {direction!r}")
        return {direction: resize(disp, h, w)}
