"""The stage-RF recipe on built-in synthetic scenes, small enough for a CPU.

  python train.py --config=configs/demo.py --workdir=/tmp/superfusion_demo

Nothing to download. 64 x 64 crops of 80 x 80 misalignment frames cut from 96 x 96 synthetic
scenes, batch 2, 150 updates: the held-out registration error falls below the misalignment's
own size (the identity field's error) toward the end (measured: 19.0 px for no registration,
19.0 px untrained, 15.3 px after 150 updates); not a useful model. Measured on a shared
2-core CPU: 13 min in all, several of them compiling the step, then 2-5 s per update.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    """Stage RF on 64 synthetic scenes; evaluation on 8 other synthetic scenes."""
    config = common.get_base_config()
    config.batch_size = 2
    config.crop_size = 64
    config.misalign.frame_size = 80
    config.num_steps = 150
    # 32 updates per epoch (64 pairs / batch 2): constant learning rate for 3 epochs, then a
    # linear decay over the last ones.
    config.n_ep = 5
    config.n_ep_decay = 3
    config.data.source = "synthetic"
    config.data.synthetic_pairs = 64
    config.data.synthetic_size = 96
    config.eval.source = "synthetic"
    config.eval.synthetic_pairs = 8
    config.eval.synthetic_size = 96
    config.eval.num_pairs = 8
    config.eval.batch_size = 4
    config.log_every = 10
    config.image_every = 50
    config.eval_every = 50
    config.checkpoint_every = 50
    config.keep = 2
    return config
