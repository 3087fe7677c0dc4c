"""Stage FS of the release (fusion, FusionNet only, on aligned pairs) on MSRS.

The release starts this stage from the stage-RF model: pass it with
  --config.init_checkpoint=RF_WORKDIR/model    (or an official .pth)
`semantic_weight` is reserved for the semantic loss (Lovasz-Softmax of a frozen segmentation
network on the fused image, paper Eq. 12). It is NOT wired yet: the release itself multiplies it
by 0 (REFERENCE.md, quirk 5), so the only accepted value is 0.0, which is the released recipe.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    """The release's stage-FS recipe (see configs/common.py for the other fields)."""
    config = common.get_base_config()
    config.stage = "FS"
    # FS trains on aligned crops: no misalignment frame.
    config.misalign.frame_size = -1
    config.semantic_weight = 0.0
    return config
