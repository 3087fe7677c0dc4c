"""FusionNet with the global spatial-attention module (GSAM) (the release's
`FusionNet`, modules/modules.py of github.com/Linfeng-Tang/SuperFusion).

Fuses the luminance of a registered infrared image and a visible image:
(N, H, W, 1) x 2 in [0, 1] -> fused luminance (N, H, W, 1) in [0, 1]. Any H and W.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from superfusion_jax.models.layers import ConvAct, conv_kernel_init, torch_bias_init
from superfusion_jax.models.variants import FAITHFUL, Variant
from superfusion_jax.ops.spatial_rnn import spatial_rnn

Array = jax.Array

ENCODER_CHANNELS = (8, 16, 16, 32)


class SpatialRNN(nn.Module):
    """Four-direction spatial IRNN with a per-channel recurrent weight and bias per direction.

    Parameters `weight`, `bias`: (4, C) in the order (up, right, down, left).
    (N, H, W, C) -> (N, H, W, 4, C): the four direction maps, [..., k, :] in that order.
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = x.shape[-1]
        # The release declares these as depthwise 1x1 convs initialised to 0.2, but its
        # gaussian_weights_init then redraws them N(0, 0.02); the biases keep PyTorch's default
        # U(-1, 1) (fan_in = 1).
        weight = self.param("weight", conv_kernel_init, (4, c))
        bias = self.param("bias", torch_bias_init(1), (4, c))
        return spatial_rnn(x, weight, bias)


class GSAM(nn.Module):
    """Global spatial-attention module: (N, H, W, 2C) -> mask (N, H, W, C).

    The faithful variant reproduces quirks 1 and 2: no sigmoid on the direction attention or on
    the mask (the mask is unbounded), and the direction attention is computed but not applied.
    """

    channels: int = 32
    variant: Variant = FAITHFUL

    @nn.compact
    def __call__(self, x: Array) -> Array:
        last_act = None if self.variant.sigmoid_typo else "sigmoid"
        c = self.channels
        attention = ConvAct(c // 2, name="attention_0")(x)
        attention = ConvAct(c // 2, name="attention_1")(attention)
        attention = ConvAct(4, activation=last_act, name="attention_2")(attention)

        def directions(y: Array, rnn: SpatialRNN) -> Array:
            """The four direction maps (N, H, W, 4, C) as the next conv's (N, H, W, 4C) input."""
            maps = rnn(y)
            if not self.variant.discarded_direction_attention:
                maps = maps * attention[..., None]
            return maps.reshape(*maps.shape[:3], -1)

        out = ConvAct(c, activation=None, name="conv_in")(x)
        out = ConvAct(c, activation=None, name="conv2")(directions(out, SpatialRNN(name="irnn1")))
        out = ConvAct(c, name="conv3")(directions(out, SpatialRNN(name="irnn2")))
        return ConvAct(c, activation=last_act, name="conv_out")(out)


class FusionNet(nn.Module):
    """Two encoders (1->8->16->16->32, LReLU 0.01), GSAM mask m, fused = f_ir*m + f_vi*(1-m),
    decoder 32->16->16->8->1 (tanh), output (x + 1) / 2. ~0.14 M parameters.

    (N, H, W, 1) infrared luminance, (N, H, W, 1) visible luminance -> (N, H, W, 1)."""

    variant: Variant = FAITHFUL

    @nn.compact
    def __call__(self, ir_y: Array, vi_y: Array) -> Array:
        f_ir, f_vi = ir_y, vi_y
        for i, c in enumerate(ENCODER_CHANNELS):
            f_ir = ConvAct(c, name=f"encoder_ir_{i}")(f_ir)
            f_vi = ConvAct(c, name=f"encoder_vi_{i}")(f_vi)
        mask = GSAM(ENCODER_CHANNELS[-1], self.variant, name="gsam")(
            jnp.concatenate([f_ir, f_vi], axis=-1)
        )
        x = f_ir * mask + f_vi * (1.0 - mask)
        decoder = (*ENCODER_CHANNELS[-2::-1], 1)
        for i, c in enumerate(decoder):
            x = ConvAct(
                c, activation="tanh" if i == len(decoder) - 1 else "lrelu", name=f"decoder_{i}"
            )(x)
        return (x + 1.0) / 2.0
