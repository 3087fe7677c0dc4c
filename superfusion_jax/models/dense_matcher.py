"""DenseMatcher: the registration network of SuperFusion (the release's
`DenseMatcher`, modules/modules.py of github.com/Linfeng-Tang/SuperFusion).

Inputs are RGB images (N, H, W, 3) in [0, 1] (the infrared image as grey repeated 3 times).
Outputs are displacement fields (N, H, W, 2) in the release's normalised units, x then y: the
infrared image registered onto the visible one is `warp(ir, disp_ir2vis)` (see `ops.warp`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from superfusion_jax.models.layers import ConvNormAct, ResConv
from superfusion_jax.models.variants import FAITHFUL, Variant
from superfusion_jax.ops.correlation import local_correlation
from superfusion_jax.ops.displacement import crop_disp
from superfusion_jax.ops.filters import gaussian_blur
from superfusion_jax.ops.resize import resize_bilinear
from superfusion_jax.ops.warp import warp

Array = jax.Array

DIRECTIONS = ("ir2vis", "vis2ir", "bi")


def _level_scale(x: Array) -> Array:
    """(W - 1, H - 1) of a feature map (N, H, W, C): the release's displacement unit per level."""
    return jnp.asarray([x.shape[2] - 1, x.shape[1] - 1], x.dtype)


def _resize_to(disp: Array, like: Array) -> Array:
    return resize_bilinear(disp, like.shape[1], like.shape[2])


class FeatureExtractor(nn.Module):
    """One modality's unshared extractor: 3->8 (dil 1), 8->8 res (dil 2), 8->16 (dil 2),
    16->16 res (dil 4), InstanceNorm. (N, H, W, 3) -> (N, H, W, 16)."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = ConvNormAct(8, dilation=1, norm="instance", name="layer_0")(x)
        x = ResConv(dilation=2, name="layer_1")(x)
        x = ConvNormAct(16, dilation=2, norm="instance", name="layer_2")(x)
        return ResConv(dilation=4, name="layer_3")(x)


class SharedLevel(nn.Module):
    """A shared pyramid level: conv (dil d) then stride-2 conv (dil d), InstanceNorm + LReLU(0.1).
    (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), features)."""

    features: int
    dilation: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = ConvNormAct(self.features, dilation=self.dilation, norm="instance", name="layer_0")(x)
        return ConvNormAct(
            self.features, stride=2, dilation=self.dilation, norm="instance", name="layer_1"
        )(x)


class FlowHead(nn.Module):
    """Estimator stack: C_in -> C/2, C/4, C/8 (dil 1, 2, 4; BatchNorm + LReLU 0.1) -> 2 (plain).

    `channels` is the C that is halved. (N, H, W, C_in) -> (N, H, W, 2)."""

    channels: int

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        c = self.channels
        for i, dilation in enumerate((1, 2, 4)):
            c //= 2
            x = ConvNormAct(c, dilation=dilation, norm="batch", name=f"layer_{i}")(x, train)
        return ConvNormAct(2, act=False, name="layer_3")(x)


class Compressor(nn.Module):
    """Feature compressor on concat(src, tgt): 2C->2C (LReLU 0.1) -> C (plain)."""

    channels: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = ConvNormAct(2 * self.channels, name="layer_0")(x)
        return ConvNormAct(self.channels, act=False, name="layer_1")(x)


class DispEstimator(nn.Module):
    """Coarse displacement from a feature pair at one pyramid level.

    (N, h, w, C) x 2 -> (N, h, w, 2), normalised units (divided by (w - 1, h - 1) of the level).
    """

    channels: int
    dilation: int

    @nn.compact
    def __call__(self, source: Array, target: Array, train: bool) -> Array:
        n = source.shape[0]
        pre = ConvNormAct(self.channels, dilation=self.dilation, act=False, name="preprocessor")
        feat = pre(jnp.concatenate([source, target], axis=0))
        source, target = feat[:n], feat[n:]
        compressed = Compressor(self.channels, name="compressor")(
            jnp.concatenate([source, target], axis=-1)
        )
        corr = local_correlation(source, target)
        x = FlowHead(self.channels, name="head")(
            jnp.concatenate([compressed, corr], axis=-1), train
        )
        x = gaussian_blur(x, 13, 3.0, border="replicate")
        return jnp.clip(x, -300.0, 300.0) / _level_scale(x)


class DispRefiner(nn.Module):
    """Refines a displacement at 1/2 resolution: returns disp + delta, both in level pixels
    scaled as the release does (normalised * (w - 1, h - 1)). (N, h, w, C) x 2, (N, h, w, 2)."""

    channels: int

    @nn.compact
    def __call__(self, source: Array, target: Array, disp: Array, train: bool) -> Array:
        n = source.shape[0]
        pre = ConvNormAct(self.channels, act=False, name="preprocessor")
        feat = pre(jnp.concatenate([source, target], axis=0))
        compressed = Compressor(self.channels, name="compressor")(
            jnp.concatenate([feat[:n], feat[n:]], axis=-1)
        )
        delta = FlowHead(self.channels, name="head")(
            jnp.concatenate([compressed, disp], axis=-1), train
        )
        return disp + delta


# Smallest image side the network registers: its 1/8 level needs at least 2 pixels a side, as
# its fields are in units of (side - 1) of each level (at 8 pixels or less they are NaN).
MIN_SIDE = 9


class DenseMatcher(nn.Module):
    """Bidirectional dense registration network (~1.82 M parameters).

    `__call__(src, tgt, direction, train)`: src is always the infrared image, tgt the visible one
    (each goes through its own extractor), both (N, H, W, 3) in [0, 1], any H and W: inputs are
    edge-padded at the bottom/right to a multiple of `pad_multiple` and the fields cropped back
    (1: unpadded, the release's function; None: the variant's `pad_multiple`). Returns
    a dict of displacement fields (N, H, W, 2), normalised units of the (H, W) frame:
    - 'ir2vis': samples the infrared image onto the visible frame (direction 'ir2vis' or 'bi'),
    - 'vis2ir': samples the visible image onto the infrared frame (direction 'vis2ir' or 'bi'),
    - with direction 'bi' also 'down2', 'down4', 'down8' (2N, H, W, 2): [ir2vis; vis2ir] of the
      refined, the 1/4 + 1/8 and the 1/8 estimates, upsampled, for the smoothness loss.
    """

    variant: Variant = FAITHFUL
    pad_multiple: int | None = None

    def setup(self) -> None:
        self.extractor_ir = FeatureExtractor()
        self.extractor_vi = FeatureExtractor()
        self.share1 = SharedLevel(32, 1)
        self.share2 = SharedLevel(64, 2)
        self.share3 = SharedLevel(128, 4)
        self.matcher1 = DispEstimator(64, dilation=4)
        self.matcher2 = DispEstimator(128, dilation=2)
        self.refiner = DispRefiner(32)

    def _warp(self, x: Array, disp: Array) -> Array:
        return warp(x, disp, self.variant.align_corners_base_grid)

    def match(self, pyramid_src: tuple, pyramid_tgt: tuple, train: bool) -> tuple:
        """Coarse-to-fine match of source features onto target features.

        pyramids: (feat1, feat2, feat3) at 1/2, 1/4, 1/8 resolution. Returns (refined, d1 + d2,
        d2) at 1/2 resolution, normalised units.
        """
        f1s, f2s, f3s = pyramid_src
        f1t, f2t, f3t = pyramid_tgt
        scale = _level_scale(f1s)
        d2 = _resize_to(self.matcher2(f3s, f3t, train), f2s)
        d1 = _resize_to(self.matcher1(self._warp(f2s, d2), f2t, train), f1s)
        d2 = _resize_to(d2, f1s)
        coarse = d1 + d2
        disp = self.refiner(self._warp(f1s, coarse), f1t, coarse * scale, train)
        disp = gaussian_blur(disp, 17, 5.0, border="replicate") / scale
        return disp, coarse, d2

    def __call__(self, src: Array, tgt: Array, direction: str = "ir2vis", train: bool = False):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        n, h, w, _ = tgt.shape
        multiple = self.pad_multiple or self.variant.pad_multiple
        ph, pw = -h % multiple, -w % multiple
        if ph or pw:
            pad = ((0, 0), (0, ph), (0, pw), (0, 0))
            src, tgt = jnp.pad(src, pad, mode="edge"), jnp.pad(tgt, pad, mode="edge")
        feat0 = jnp.concatenate([self.extractor_ir(src), self.extractor_vi(tgt)], axis=0)
        feat1 = self.share1(feat0)
        feat2 = self.share2(feat1)
        feat3 = self.share3(feat2)
        ir_pyr = (feat1[:n], feat2[:n], feat3[:n])
        vi_pyr = (feat1[n:], feat2[n:], feat3[n:])

        def full(d: Array) -> Array:
            d = resize_bilinear(d, h + ph, w + pw)
            if ph or pw:
                d = crop_disp(d, h, w, self.variant.align_corners_base_grid)
            return d

        if direction == "ir2vis":
            return {"ir2vis": full(self.match(ir_pyr, vi_pyr, train)[0])}
        if direction == "vis2ir":
            return {"vis2ir": full(self.match(vi_pyr, ir_pyr, train)[0])}
        ir2vis = self.match(ir_pyr, vi_pyr, train)
        vis2ir = self.match(vi_pyr, ir_pyr, train)
        pairs = zip(ir2vis, vis2ir, strict=True)
        down2, down4, down8 = (full(jnp.concatenate([a, b])) for a, b in pairs)
        return {
            "ir2vis": down2[:n],
            "vis2ir": down2[n:],
            "down2": down2,
            "down4": down4,
            "down8": down8,
        }
