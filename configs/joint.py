"""Stage RF of the release (registration + fusion) on MSRS: `train.py --config=configs/joint.py`.

Data: the MSRS TFDS builder, prepared in `config.data.data_dir` from a local copy in
`config.data.manual_dir` (or downloaded when that is ''); held-out evaluation on its test split.
For aligned pairs in two folders instead:
  --config.data.source=folder --config.data.ir_dir=PATH/ir --config.data.vi_dir=PATH/vi
  --config.eval.source=folder --config.eval.ir_dir=... --config.eval.vi_dir=...
(or --config.eval.source=synthetic).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The release's stage-RF recipe (see configs/common.py for every field); arg `runlocal`:
    its offline CPU-sized form (`common.use_runlocal`)."""
    args = common.parse_arg(arg, runlocal=False)
    config = common.get_base_config()
    if args.runlocal:
        common.use_runlocal(config)
    return config
