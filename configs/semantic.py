"""Stage FS of SuperFusion (fusion with the semantic term, FusionNet only, aligned pairs) on MSRS.

  python train.py --config=configs/semantic.py --workdir=runs/fs \
      --config.init_checkpoint=runs/rf/model --config.segmentation_checkpoint=runs/seg/best

The release starts this stage from the stage-RF model (init_checkpoint: a folder or an official
.pth). The loss is 10 · fusion loss + semantic_weight · (Lovasz-Softmax(main) + 0.25 ·
Lovasz-Softmax(aux)) of the frozen segmentation network (`segmentation_checkpoint`: SeAFusion's
model_final.pth, which the release loads as Seg_model.pth, or a folder trained with
configs/segmentation.py), in eval mode, applied to the fused RGB image, against the labels of
the training data (MSRS has them; RoadScene does not).

semantic_weight: the release multiplies the semantic term by 0.0 (quirk 5 in
superfusion_jax/models/variants.py) and nowhere states the value it would use otherwise; the
paper describes the term as part of the loss, so the default here is 1.0 (our choice, the
plain sum). --config.semantic_weight=0 is the released recipe, which needs no segmentation
network (and no labels).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Stage FS with the semantic term (see configs/common.py for the other fields)."""
    args = common.parse_arg(arg, runlocal=False)
    config = common.get_base_config()
    config.stage = "FS"
    # FS trains on aligned crops: no misalignment frame.
    config.misalign.frame_size = -1
    config.semantic_weight = 1.0
    # The frozen segmentation network: a BiSeNet .pth or a configs/segmentation.py folder.
    config.segmentation_checkpoint = ""
    if args.runlocal:
        common.use_runlocal(config)
    return config
