"""Stage RF on RoadScene's 201 real aligned pairs, sized for a CPU (the model in training
for the package: resume/README.md).

  python train.py --config=configs/roadscene.py:data=../shared/data --workdir=runs/roadscene

(data=DIR: the folder holding roadscene_train/ and msrs_test/, configs/common.py.)

The release trains its RoadScene model on such pairs with synthetic misalignment; this recipe
keeps the release's objectives, misalignment (rotation, translation and elastic field, whose
size in pixels does not depend on the frame) and optimiser, and shrinks what a 2-core CPU cannot
afford: batch 2 of 192 x 192 crops (the release: 16 of 256 x 256) cut at random positions from
320 x 320 misaligned frames, with the learning rate scaled down for the small batch.

Why these sizes (larger frames and crops at random positions, a learning rate below the
release's for the small batch): the measurements of this recipe's history in resume/README.md.

Held-out evaluation: 8 other RoadScene-like pairs would be ideal, but all 201 are for
training, so the run evaluates on the MSRS test pairs' aligned images (`eval.ir_dir`,
`eval.vi_dir`), misaligned synthetically with fixed seeds.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Stage RF on aligned pairs in two folders; 4000 updates of batch 2 (80 epochs of 50)."""
    args = common.parse_arg(arg, data="", runlocal=False)
    config = common.get_base_config()
    config.batch_size = 2
    config.crop_size = 192
    config.learning_rate = 2.5e-4
    config.misalign.frame_size = 320
    config.num_steps = -1
    config.steps_per_epoch = 50
    config.n_ep = 80
    config.n_ep_decay = 60
    common.use_roadscene_folders(config, args.data)
    common.use_cpu_periods(config)
    config.image_every = 200
    config.eval_every = 200
    if args.runlocal:
        common.use_runlocal(config)
    return config
