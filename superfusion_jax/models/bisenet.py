"""The release's segmentation network: SeAFusion's BiSeNet variant (`modules/TII.py`), NHWC.

It is not the BiSeNet of the paper by Yu et al.: there is no spatial path and no feature fusion
module (both are defined but unused in the release). What runs:

- context path: a ResNet-18 (`resnet.py`) gives features at 1/8, 1/16 and 1/32 of the input;
  attention refinement on each (`arm32`, `arm16`, `arm8`); the 1/32 branch is upsampled to 1/16
  (`conv_head32`) and concatenated with the refined 1/16 features (`sp16`), the refined 1/16 to
  1/8 (`conv_head16`) and concatenated with the refined 1/8 features (`sp8`); two sigmoid gates
  (`conv_fuse1` on the 1/32 branch at 1/8, `conv_fuse2` on the gated 1/16 branch) multiply into
  the 1/8 features, then `conv_fuse`;
- heads: the main head (`conv_out`, 128 -> 128 -> classes) on that 1/8 feature map, the
  auxiliary head (`conv_out16`, 128 -> 64 -> classes) on the refined 1/16 features;
- both logit maps are upsampled to the input size with align_corners=True; the feature resizes
  inside the context path use align_corners=False (torch's default).

Feature sizes follow the convolutions (each stride-2 stage gives ceil(size / 2)); at input sizes
not divisible by 32 the branches are brought to the 1/8 and 1/16 sizes by bilinear resizing to
those exact sizes, as the release does. Inputs are RGB in [0, 1] as the release feeds it (no
mean/std normalisation). Module and variable names follow the release's state_dict
(`convert/segmentation.py` maps them). The `ConvBNReLU` blocks of the release apply LeakyReLU
(slope 0.01), not ReLU; the ResNet blocks use ReLU.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from superfusion_jax.models.resnet import AffineBatchNorm, ResNet18, conv
from superfusion_jax.ops.resize import resize_bilinear

Array = jax.Array

_INIT_SIZE = 32  # side of the dummy input of `fresh_variables` (variables do not depend on it)
NUM_CLASSES = 9  # MSRS: background, car, person, bike, curve, car stop, guardrail, cone, bump


class ConvBNAct(nn.Module):
    """The release's `ConvBNReLU` / `ConvBNSig`: k x k conv (no bias, padding k // 2) -> BN -> act.

    act: 'leaky' (LeakyReLU 0.01, the `ConvBNReLU` of the release) or 'sigmoid'.
    (N, H, W, C_in) -> (N, H, W, features).
    """

    features: int
    kernel: int = 3
    act: str = "leaky"

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        x = conv(self.features, self.kernel, x.shape[-1], init="kaiming", name="conv")(x)
        x = AffineBatchNorm(self.features, name="bn")(x, train)
        if self.act == "leaky":
            return nn.leaky_relu(x, 0.01)
        if self.act == "sigmoid":
            return nn.sigmoid(x)
        raise ValueError(f"unknown activation {self.act!r}")


class AttentionRefinement(nn.Module):
    """Attention refinement: f = ConvBNAct(x); f * sigmoid(BN(conv1x1(mean over H, W of f))).

    (N, H, W, C_in) -> (N, H, W, features).
    """

    features: int

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        feat = ConvBNAct(self.features, 3, name="conv")(x, train)
        atten = jnp.mean(feat, axis=(1, 2), keepdims=True)
        atten = conv(self.features, 1, self.features, init="kaiming", name="conv_atten")(atten)
        atten = AffineBatchNorm(self.features, name="bn_atten")(atten, train)
        return feat * nn.sigmoid(atten)


class ContextPath(nn.Module):
    """ResNet-18 features refined and merged at 1/8 of the input (see the module docstring).

    (N, H, W, 3) -> (feat8_out (N, H8, W8, 128), feat16_arm (N, H16, W16, 128)), where H8, H16
    are the sizes of ResNet-18's 1/8 and 1/16 feature maps.
    """

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
        feat8, feat16, feat32 = ResNet18(name="resnet")(x, train)
        size8, size16 = feat8.shape[1:3], feat16.shape[1:3]

        feat32_arm = AttentionRefinement(128, name="arm32")(feat32, train)
        feat32_cat = resize_bilinear(feat32_arm, *size8)
        feat32_up = ConvBNAct(128, 3, name="conv_head32")(
            resize_bilinear(feat32_arm, *size16), train
        )

        feat16_arm = AttentionRefinement(128, name="arm16")(feat16, train)
        feat16_cat = ConvBNAct(128, 1, name="sp16")(
            jnp.concatenate([feat32_up, feat16_arm], axis=-1), train
        )
        feat16_cat = resize_bilinear(feat16_cat, *size8)
        feat16_up = ConvBNAct(128, 3, name="conv_head16")(
            resize_bilinear(feat16_arm, *size8), train
        )

        feat8_arm = AttentionRefinement(128, name="arm8")(feat8, train)
        feat8_cat = ConvBNAct(128, 1, name="sp8")(
            jnp.concatenate([feat16_up, feat8_arm], axis=-1), train
        )

        feat16_cat = ConvBNAct(128, 1, "sigmoid", name="conv_fuse1")(feat32_cat, train) * feat16_cat
        feat8_out = feat8_cat * ConvBNAct(128, 1, "sigmoid", name="conv_fuse2")(feat16_cat, train)
        feat8_out = ConvBNAct(128, 1, name="conv_fuse")(feat8_out, train)
        return feat8_out, feat16_arm


class OutputHead(nn.Module):
    """The release's `BiSeNetOutput`: ConvBNAct 3x3 to `mid` channels -> 1x1 conv (no bias).

    (N, H, W, C_in) -> (N, H, W, num_classes) logits.
    """

    mid: int
    num_classes: int

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        x = ConvBNAct(self.mid, 3, name="conv")(x, train)
        return conv(self.num_classes, 1, self.mid, init="kaiming", name="conv_out")(x)


class BiSeNet(nn.Module):
    """The release's segmentation network (SeAFusion's BiSeNet variant), NHWC.

    Call with `train=True` to normalise with batch statistics and update `batch_stats`
    (pass `mutable=['batch_stats']` to `apply`); the release uses it frozen in eval mode.

    Args (of `__call__`):
      x: (N, H, W, 3) RGB in [0, 1], any H, W (at least 1).
      train: BatchNorm mode.

    Returns:
      (main logits, auxiliary logits), each (N, H, W, num_classes), unnormalised.
    """

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
        height, width = x.shape[1:3]
        feat8, feat16 = ContextPath(name="cp")(x, train)
        out = OutputHead(128, self.num_classes, name="conv_out")(feat8, train)
        aux = OutputHead(64, self.num_classes, name="conv_out16")(feat16, train)
        out = resize_bilinear(out, height, width, align_corners=True)
        aux = resize_bilinear(aux, height, width, align_corners=True)
        return out, aux


def num_classes_of(variables: dict) -> int:
    """Number of classes of BiSeNet variables {'params', ...} (from the main head's kernel)."""
    return int(variables["params"]["conv_out"]["conv_out"]["kernel"].shape[-1])


def apply_segmenter(variables: dict, images: Array) -> tuple[Array, Array]:
    """BiSeNet in eval mode (running statistics), its number of classes read from `variables`.

    variables: its {'params', 'batch_stats'}; images: (B, H, W, 3) RGB in [0, 1].
    Returns (main, aux) logits, each (B, H, W, classes).
    """
    return BiSeNet(num_classes_of(variables)).apply(variables, images)


def fresh_variables(num_classes: int, seed: int) -> dict:
    """Randomly initialised BiSeNet variables {'params', 'batch_stats'} (the release's init laws,
    `models.resnet`), deterministic in `seed`."""
    x = jnp.zeros((1, _INIT_SIZE, _INIT_SIZE, 3), jnp.float32)
    return dict(BiSeNet(num_classes).init(jax.random.key(seed), x))
