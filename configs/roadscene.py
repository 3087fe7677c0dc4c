"""Stage RF on RoadScene's 201 real aligned pairs, sized for a CPU: the recipe of the shipped model.

  python train.py --config=configs/roadscene.py --workdir=runs/roadscene \
      --config.data.ir_dir=../shared/data/roadscene_train/ir \
      --config.data.vi_dir=../shared/data/roadscene_train/vi

The release trains its RoadScene model on such pairs with synthetic misalignment; this recipe
keeps the release's objectives, misalignment (rotation, translation and elastic field, whose
size in pixels does not depend on the frame) and optimiser, and shrinks what a 2-core CPU cannot
afford: batch 4 of 128 x 128 crops cut from 160 x 160 misaligned frames (the release: 16 of
256 x 256). Held-out evaluation: 8 other RoadScene-like pairs would be ideal, but all 201 are for
training, so the run evaluates on the MSRS test pairs' aligned images (`eval.ir_dir`,
`eval.vi_dir`), misaligned synthetically with fixed seeds.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    """Stage RF on aligned pairs in two folders; 4000 updates of batch 4 (80 epochs of 50)."""
    config = common.get_base_config()
    config.batch_size = 4
    config.crop_size = 128
    config.misalign.frame_size = 160
    config.num_steps = -1
    config.steps_per_epoch = 50
    config.n_ep = 80
    config.n_ep_decay = 60
    config.data.source = "folder"
    config.data.ir_dir = "../shared/data/roadscene_train/ir"
    config.data.vi_dir = "../shared/data/roadscene_train/vi"
    config.eval.source = "folder"
    config.eval.ir_dir = "../shared/data/msrs_test/ir"
    config.eval.vi_dir = "../shared/data/msrs_test/vi"
    config.eval.num_pairs = 8
    config.eval.batch_size = 4
    config.log_every = 10
    config.image_every = 200
    config.eval_every = 200
    config.checkpoint_every = 25
    config.keep = 2
    return config
