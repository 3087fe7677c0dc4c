"""FusionNet alone on aligned RoadScene pairs with stage RF's fusion objective, sized for a CPU
(the fusion weights of the package's default model: docs/model_card.md).

  python train.py --config=configs/fusion.py:data=../shared/data --workdir=runs/fusion

(data=DIR: the folder holding roadscene_train/ and msrs_test/, configs/common.py.)

Stage RF trains FusionNet only behind the registration (its fused images are of registered
pairs); without a trained registration its inputs stay misaligned and it learns a near-constant
image. Here it sees the aligned pairs themselves, through the stage-FS step (FusionNet only,
DenseMatcher untouched) with stage RF's max-target objective (`fusion_objective='rf'`: the
per-pixel maximum of the inputs' intensities and gradient magnitudes, plus SSIM to both). The
release's stage-FS objective (mean targets, `fusion_objective='fs'`) gives a darker image.
Batch 4 of 192 x 192 crops of the 201 RoadScene pairs, Adam 1e-3 (the release's), constant for
1750 updates then decaying linearly to 0 at 2500 (about 1 h 45 min on one core of this CPU).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """FusionNet on aligned folder pairs (see configs/common.py for the other fields)."""
    args = common.parse_arg(arg, data="", runlocal=False)
    config = common.get_base_config()
    config.stage = "FS"
    config.fusion_objective = "rf"
    # Weights of its gradient, SSIM and intensity terms; () keeps the release's (0.6, 0.3, 0.1).
    config.fusion_weights = ()
    config.misalign.frame_size = -1
    config.batch_size = 4
    config.crop_size = 192
    config.learning_rate = 1e-3
    config.steps_per_epoch = 50
    config.n_ep = 50
    config.n_ep_decay = 35
    common.use_roadscene_folders(config, args.data)
    config.eval.num_pairs = 4
    config.log_every = 25
    config.image_every = 250
    config.checkpoint_every = 50
    config.keep = 2
    if args.runlocal:
        common.use_runlocal(config)
    return config
