"""A plain-PyTorch restatement of SuperFusion (faithful variant), to check exported .pth files.

Written from a description of the release (layers, conventions) and our Flax modules
(superfusion_jax/models), not from the release's code. Module and attribute names follow the
keys of the release's state_dicts, so an exported file loads with `load_state_dict(strict=True)`:

    model = SuperFusionReference().eval()
    model.DM.load_state_dict(pth["DM"]); model.FN.load_state_dict(pth["FN"])

Images are NCHW float32 in [0, 1]; displacements (N, 2, H, W) in the release's normalised units
(x then y). Only the evaluation path is restated (BatchNorm reads its running statistics).
"""

from tests.torch_reference.dense_matcher import DenseMatcher
from tests.torch_reference.fusion_net import FusionNet
from tests.torch_reference.superfusion import SuperFusionReference

__all__ = ["DenseMatcher", "FusionNet", "SuperFusionReference"]
