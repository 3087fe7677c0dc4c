"""Reading registration ground truth: the MSRS test set's `flow/NAME.png.mat` sampling grids.

Each file (from the official SuperFusion release) holds one array `flow`, float32, shape
(1, H, W, 2): an ABSOLUTE sampling grid in normalised coordinates, x then y, with
align_corners=False, such that `ir_warp = grid_sample(ir, flow)` (shared/DATA.md). It is not a
displacement. For output pixel (i, j) of ir_warp, the source position in ir, in pixels, is
x = ((fx + 1) W - 1) / 2, y = ((fy + 1) H - 1) / 2 (the inverse of `ops.warp`'s convention:
pixel centre j at (2j + 1) / W - 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

# Largest plausible |normalised sampling position|: a source one image size beyond the frame.
MAX_GRID = 3.0


class GroundTruthReadError(Exception):
    """A ground-truth file that cannot be used; `path` is the file and `problem` says why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def grid_to_source_pixels(grid: np.ndarray) -> np.ndarray:
    """Absolute sampling grid (H, W, 2), normalised, align_corners=False, x then y -> the source
    positions (H, W, 2) in pixels, x (column) then y (row), float32."""
    height, width = grid.shape[0], grid.shape[1]
    size = np.asarray([width, height], np.float64)
    return (((grid.astype(np.float64) + 1.0) * size - 1.0) / 2.0).astype(np.float32)


def read_flow_mat(path: str | Path) -> np.ndarray:
    """Read a `flow/NAME.png.mat` ground-truth grid as source positions.

    Args:
      path: MATLAB (v5/v7) file with one array `flow` of shape (1, H, W, 2) or (H, W, 2),
        normalised sampling positions (x, y) with align_corners=False.

    Returns:
      (H, W, 2) float32: for each pixel of the warped image, the position in the unwarped image
      it was sampled from, in pixels, x (column) then y (row).

    Raises:
      GroundTruthReadError: the file is missing, not a readable MATLAB file (v7.3/HDF5 files are
        not supported by scipy), has no `flow` array, or the array has another shape,
        non-finite values or positions beyond ±MAX_GRID; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise GroundTruthReadError(path, "no such file" if not path.exists() else "not a file")
    try:
        contents = scipy.io.loadmat(path, variable_names=["flow"])
    except Exception as error:  # scipy raises many kinds on damaged files (even IndexError)
        raise GroundTruthReadError(path, f"not a readable MATLAB v5/v7 file ({error})") from error
    if "flow" not in contents:
        raise GroundTruthReadError(path, "no array named 'flow' in the file")
    grid = np.asarray(contents["flow"])
    if grid.ndim == 4 and grid.shape[0] == 1:
        grid = grid[0]
    if grid.ndim != 3 or grid.shape[2] != 2 or min(grid.shape[:2]) < 1:
        raise GroundTruthReadError(
            path, f"'flow' must have shape (1, H, W, 2) or (H, W, 2), got {contents['flow'].shape}"
        )
    if not np.issubdtype(grid.dtype, np.floating) or not np.all(np.isfinite(grid)):
        raise GroundTruthReadError(path, "'flow' must hold finite floating-point values")
    if np.abs(grid).max() > MAX_GRID:
        raise GroundTruthReadError(
            path,
            f"'flow' holds sampling positions up to {np.abs(grid).max():.3g} (normalised: the "
            f"image spans -1..1); a plausible grid stays within ±{MAX_GRID}",
        )
    return grid_to_source_pixels(grid)
