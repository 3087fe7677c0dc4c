"""ResNet-18 feature extractor of the release's BiSeNet (`modules/TII.py` `Resnet18`), NHWC.

Also the two building blocks its BiSeNet shares: PyTorch-style convolutions and `nn.BatchNorm2d`
with affine parameters. Names follow the release's state_dict (`layer1.0` is `layer1_0`,
`downsample.0` / `.1` are `downsample_0` / `_1`; `convert/segmentation.py` maps them).

Initialisation: the release loads ImageNet weights into this ResNet from torchvision's model zoo
(not available here; import a trained segmentation checkpoint instead), so its convolutions get
PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the BiSeNet convolutions around it
use kaiming_normal(a=1), i.e. N(0, 1/fan_in). BatchNorm starts at scale 1, bias 0.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from superfusion_jax.models.layers import BatchNorm, normal_init, torch_bias_init

Array = jax.Array


def conv(
    features: int,
    kernel: int,
    in_features: int,
    stride: int = 1,
    init: str = "kaiming",
    name: str | None = None,
) -> nn.Conv:
    """A k x k conv without bias, PyTorch padding k // 2 on every side.

    init: 'kaiming' = N(0, 1/fan_in) (the release's kaiming_normal(a=1)); 'torch' = PyTorch's
    default conv init U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the same law as its bias init.
    (N, H, W, in_features) -> (N, ceil(H / stride), ceil(W / stride), features) for odd k.
    """
    fan_in = in_features * kernel * kernel
    if init == "kaiming":
        kernel_init = normal_init(fan_in**-0.5)
    elif init == "torch":
        kernel_init = torch_bias_init(fan_in)
    else:
        raise ValueError(f"unknown init {init!r}")
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=kernel_init,
        name=name,
    )


class AffineBatchNorm(nn.Module):
    """`nn.BatchNorm2d(features)` (affine): `layers.BatchNorm` then per-channel scale and bias.

    Running statistics ('mean', 'var', 'num_batches_tracked' in `batch_stats`) and parameters
    ('scale', 'bias' in `params`) live in this module's own scope.
    (N, H, W, features) -> (N, H, W, features).
    """

    features: int

    def setup(self) -> None:
        self.norm = BatchNorm()
        nn.share_scope(self, self.norm)
        self.scale = self.param("scale", nn.initializers.ones, (self.features,))
        self.bias = self.param("bias", nn.initializers.zeros, (self.features,))

    def __call__(self, x: Array, train: bool = False) -> Array:
        return self.norm(x, train) * self.scale + self.bias


class BasicBlock(nn.Module):
    """ResNet basic block: relu(shortcut(x) + BN(conv3x3(relu(BN(conv3x3(x, stride)))))).

    The shortcut is a 1x1 conv (stride) + BN when the channels or the stride change.
    (N, H, W, C_in) -> (N, ceil(H / stride), ceil(W / stride), features).
    """

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        f, s = self.features, self.stride
        y = conv(f, 3, x.shape[-1], s, init="torch", name="conv1")(x)
        y = nn.relu(AffineBatchNorm(f, name="bn1")(y, train))
        y = conv(f, 3, f, init="torch", name="conv2")(y)
        y = AffineBatchNorm(f, name="bn2")(y, train)
        if x.shape[-1] != f or s != 1:
            x = conv(f, 1, x.shape[-1], s, init="torch", name="downsample_0")(x)
            x = AffineBatchNorm(f, name="downsample_1")(x, train)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """ResNet-18 without its classifier: 7x7/2 conv, BN, ReLU, 3x3/2 max pool, four stages.

    Returns the outputs of stages 2, 3, 4: (feat8, feat16, feat32) with 128, 256, 512 channels at
    1/8, 1/16, 1/32 of the input (each stride-2 step gives ceil(size / 2)). Input (N, H, W, 3).
    """

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array, Array]:
        x = conv(64, 7, x.shape[-1], 2, init="torch", name="conv1")(x)
        x = nn.relu(AffineBatchNorm(64, name="bn1")(x, train))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        feats = []
        for stage, (features, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
            x = BasicBlock(features, stride, name=f"layer{stage}_0")(x, train)
            x = BasicBlock(features, 1, name=f"layer{stage}_1")(x, train)
            feats.append(x)
        return feats[1], feats[2], feats[3]
