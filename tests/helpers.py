"""Small helpers shared by tests (reading the parity inputs as the release does)."""

from pathlib import Path

import numpy as np
from PIL import Image


def read_rgb(path: Path) -> np.ndarray:
    """A PNG as the release's TestData reads it: RGB float32 in [0, 1], shape (1, H, W, 3)."""
    return (np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)[None]
