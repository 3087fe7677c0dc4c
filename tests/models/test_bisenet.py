"""models.bisenet (the release's segmentation network) against the release and against torch.

Golden file: ../shared/parity/segmentation/bisenet_00004N_seed0.npz (the release's eval-mode
`out`, `mid` for bisenet_seed0.pth on a 256x320 crop of msrs_test/vi/00004N.png).
At other sizes (not divisible by 32, tiny), in train mode and for input gradients, the model is
compared with `torch_bisenet` below: the release's forward pass written with torch.nn.functional
from the state_dict (every size, pooling and resize there is torch's own).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from superfusion_jax.convert.segmentation import export_state_dict, import_bisenet, variable_shapes
from superfusion_jax.io.images import read_image
from superfusion_jax.models.bisenet import BiSeNet
from tests.conftest import MSRS, PARITY, require

SEG = PARITY / "segmentation"


def torch_bisenet(sd: dict, x: torch.Tensor, train: bool = False):
    """The release's BiSeNet forward from a state_dict; x (N, 3, H, W) -> (out, aux) NCHW.

    In train mode the running statistics in `sd` are updated in place (momentum 0.1).
    """

    def bn(name, h):
        return F.batch_norm(
            h, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
            sd[f"{name}.bias"], train, 0.1, 1e-5,
        )  # fmt: skip

    def conv_bn(name, h, act=F.leaky_relu):  # ConvBNReLU (leaky) / ConvBNSig
        w = sd[f"{name}.conv.weight"]
        return act(bn(f"{name}.bn", F.conv2d(h, w, padding=w.shape[-1] // 2)))

    def block(name, h, stride):
        y = F.relu(bn(f"{name}.bn1", F.conv2d(h, sd[f"{name}.conv1.weight"], None, stride, 1)))
        y = bn(f"{name}.bn2", F.conv2d(y, sd[f"{name}.conv2.weight"], padding=1))
        if f"{name}.downsample.0.weight" in sd:
            h = bn(
                f"{name}.downsample.1", F.conv2d(h, sd[f"{name}.downsample.0.weight"], None, stride)
            )
        return F.relu(h + y)

    def arm(name, h):
        f = conv_bn(f"{name}.conv", h)
        a = F.conv2d(f.mean((2, 3), keepdim=True), sd[f"{name}.conv_atten.weight"])
        return f * torch.sigmoid(bn(f"{name}.bn_atten", a))

    def head(name, h):
        return F.conv2d(conv_bn(f"{name}.conv", h), sd[f"{name}.conv_out.weight"])

    def resize(h, like, align_corners=False):
        return F.interpolate(h, like.shape[2:], mode="bilinear", align_corners=align_corners)

    h = F.conv2d(x, sd["cp.resnet.conv1.weight"], None, 2, 3)
    h = F.max_pool2d(F.relu(bn("cp.resnet.bn1", h)), 3, 2, 1)
    feats = []
    for stage, stride in zip((1, 2, 3, 4), (1, 2, 2, 2), strict=True):
        h = block(f"cp.resnet.layer{stage}.1", block(f"cp.resnet.layer{stage}.0", h, stride), 1)
        feats.append(h)
    f8, f16, f32 = feats[1:]
    a32, a16, a8 = arm("cp.arm32", f32), arm("cp.arm16", f16), arm("cp.arm8", f8)
    up32 = conv_bn("cp.conv_head32", resize(a32, f16))
    cat16 = resize(conv_bn("cp.sp16", torch.cat([up32, a16], 1)), f8)
    up16 = conv_bn("cp.conv_head16", resize(a16, f8))
    cat8 = conv_bn("cp.sp8", torch.cat([up16, a8], 1))
    cat16 = conv_bn("cp.conv_fuse1", resize(a32, f8), torch.sigmoid) * cat16
    out8 = conv_bn("cp.conv_fuse", cat8 * conv_bn("cp.conv_fuse2", cat16, torch.sigmoid))
    out, aux = head("conv_out", out8), head("conv_out16", a16)
    return resize(out, x, True), resize(aux, x, True)


def nchw(a) -> np.ndarray:
    return np.transpose(np.asarray(a), (0, 3, 1, 2))


@pytest.fixture(scope="module")
def random_model():
    """BiSeNet with random weights, BatchNorm statistics and affine parameters.

    Drawn with numpy on the shapes of `variable_shapes` (kernels N(0, 1/fan_in)); running
    `model.init` eagerly would take longer than the tests themselves on a small CPU.
    """
    rng = np.random.default_rng(0)
    draw = {
        "kernel": lambda s: rng.normal(0, np.prod(s[:-1]) ** -0.5, s),
        "mean": lambda s: rng.normal(0, 0.1, s),
        "var": lambda s: rng.uniform(0.5, 1.5, s),
        "scale": lambda s: rng.uniform(0.5, 1.5, s),
        "bias": lambda s: rng.normal(0, 0.1, s),
        "num_batches_tracked": lambda s: np.full(s, 7),
    }
    variables = jax.tree_util.tree_map_with_path(
        lambda path, v: np.asarray(draw[path[-1].key](v.shape), v.dtype), variable_shapes()
    )
    state = {k: torch.from_numpy(np.array(v)) for k, v in export_state_dict(variables).items()}
    return BiSeNet(), variables, state


def test_matches_release_on_msrs_crop():
    variables = import_bisenet(require(SEG / "bisenet_seed0.pth"))
    golden = np.load(require(SEG / "bisenet_00004N_seed0.npz"))
    image = read_image(require(MSRS / "vi" / "00004N.png"))[112:368, 160:480][None]
    out, aux = jax.jit(BiSeNet().apply)(variables, jnp.asarray(image))
    assert out.shape == aux.shape == (1, 256, 320, 9)
    np.testing.assert_allclose(nchw(out), golden["out"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(nchw(aux), golden["mid"], rtol=0, atol=1e-5)


def test_parameter_count_matches_release():
    shapes = json.loads(require(SEG / "bisenet_state_dict_shapes.json").read_text())
    expected = sum(
        int(np.prod(s)) for k, s in shapes.items() if k.endswith((".weight", ".bias"))
    )  # running statistics are buffers, not parameters
    x = jnp.zeros((1, 32, 32, 3))
    params = jax.eval_shape(lambda: BiSeNet().init(jax.random.key(1), x))["params"]
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == expected


@pytest.mark.parametrize("shape", [(1, 45, 70), (2, 5, 7)])
def test_eval_matches_torch_at_sizes_not_divisible_by_32(random_model, shape):
    model, variables, state = random_model
    x = np.random.default_rng(1).random(shape + (3,), np.float32)
    out, aux = jax.jit(model.apply)(variables, jnp.asarray(x))
    assert out.shape == aux.shape == shape + (9,)
    with torch.no_grad():
        expected = torch_bisenet(state, torch.from_numpy(nchw(x)))
    for got, want in zip((out, aux), expected, strict=True):
        scale = float(want.abs().max())
        np.testing.assert_allclose(nchw(got), want.numpy(), rtol=0, atol=2e-5 * max(1.0, scale))


def test_train_mode_matches_torch(random_model):
    model, variables, state = random_model
    state = {k: v.clone() for k, v in state.items()}
    x = np.random.default_rng(2).random((2, 40, 52, 3), np.float32)
    apply = jax.jit(lambda v, x: model.apply(v, x, True, mutable=["batch_stats"]))
    (out, aux), updated = apply(variables, jnp.asarray(x))
    with torch.no_grad():
        expected = torch_bisenet(state, torch.from_numpy(nchw(x)), train=True)
    # Batch statistics over few values (the attention BatchNorms see N = 2 per channel) amplify
    # float32 rounding: measured 3.4e-5 on outputs of magnitude 2.7.
    for got, want in zip((out, aux), expected, strict=True):
        scale = float(want.abs().max())
        np.testing.assert_allclose(nchw(got), want.numpy(), rtol=0, atol=1e-4 * max(1.0, scale))
    exported = export_state_dict({**variables, **updated})
    for key, value in exported.items():
        if key.endswith("num_batches_tracked"):
            assert value == 8, key  # 7 + one training step
        elif "running" in key:
            np.testing.assert_allclose(value, state[key].numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.slow  # compiling the backward pass takes ~15 s of CPU
def test_input_gradient_matches_torch(random_model):
    model, variables, state = random_model
    rng = np.random.default_rng(3)
    x = rng.random((1, 37, 50, 3), np.float32)
    w_out, w_aux = rng.standard_normal((2, 1, 37, 50, 9)).astype(np.float32)

    def loss(image):  # the release weighs the auxiliary output by 0.25
        out, aux = model.apply(variables, image)
        return jnp.sum(out * w_out) + 0.25 * jnp.sum(aux * w_aux)

    grad = jax.jit(jax.grad(loss))(jnp.asarray(x))
    x_t = torch.from_numpy(nchw(x)).requires_grad_()
    out_t, aux_t = torch_bisenet(state, x_t)
    (
        (out_t * torch.from_numpy(nchw(w_out))).sum()
        + 0.25 * (aux_t * torch.from_numpy(nchw(w_aux))).sum()
    ).backward()
    want = x_t.grad.numpy()
    np.testing.assert_allclose(nchw(grad), want, rtol=0, atol=1e-4 * np.abs(want).max())
