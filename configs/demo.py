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

from configs import joint


def get_config() -> ml_collections.ConfigDict:
    """Stage RF on 64 synthetic scenes; evaluation on 8 other synthetic scenes (the same as
    configs/joint.py:runlocal)."""
    return joint.get_config("runlocal")
