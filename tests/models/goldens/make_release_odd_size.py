"""Make `release_odd_size.npz`: the release's own DenseMatcher on a crop whose sides are not
multiples of 8 (the golden of tests/models/test_parity.py::test_odd_size_matches_the_release).

    pip install kornia          # the release's dependency (not ours)
    python tests/models/goldens/make_release_odd_size.py RELEASE_DIR

RELEASE_DIR: a checkout of github.com/Linfeng-Tang/SuperFusion (its `modules/` is imported as it
is; nothing of it is copied here). The release moves its grids to CUDA unconditionally; on a CPU
`.cuda()` is made a no-op, and its CUDA spatial RNN (used by FusionNet only) is not imported.
Inputs: rows 101:176, columns 157:258 (75 x 101) of MSRS 00004N's `ir_warp` and `vi` from
../shared/data/msrs_test, RGB float32 in [0, 1]; weights: ../shared/parity/weights_seed0.pth.
Writes `disp` (1, 2, 75, 101), the 'ir2vis' field in normalised units, and `ir_reg`
(1, 3, 75, 101), ir_warp sampled by the release's SpatialTransformer; NCHW as the release.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2].parent / "shared"
ROWS, COLS = slice(101, 176), slice(157, 258)


def read(path: Path) -> torch.Tensor:
    image = np.asarray(Image.open(path).convert("RGB"), np.float32)[ROWS, COLS] / 255.0
    return torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()


def main(release: Path) -> None:
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    sys.modules["modules.irnn"] = types.SimpleNamespace(irnn=None)
    sys.path.insert(0, str(release))
    from modules.modules import DenseMatcher, SpatialTransformer

    matcher = DenseMatcher()
    weights = torch.load(SHARED / "parity" / "weights_seed0.pth", map_location="cpu")
    matcher.load_state_dict(weights["DM"])
    matcher.eval()
    msrs = SHARED / "data" / "msrs_test"
    ir_warp, vi = read(msrs / "ir_warp" / "00004N.png"), read(msrs / "vi" / "00004N.png")
    with torch.no_grad():
        disp = matcher(ir_warp, vi, "ir2vis")["ir2vis"]
        h, w = disp.shape[2:]
        ir_reg = SpatialTransformer(h, w, False)(ir_warp, disp)
    np.savez_compressed(
        HERE / "release_odd_size.npz",
        disp=disp.numpy(),
        ir_reg=ir_reg.numpy(),
        rows=np.array([ROWS.start, ROWS.stop]),
        cols=np.array([COLS.start, COLS.stop]),
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
