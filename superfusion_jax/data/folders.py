"""Aligned infrared–visible pairs (and optional segmentation labels) from folders.

The layout is the release's: `ir/NAME.ext`, `vi/NAME.ext` and, for MSRS, `label/NAME.png`,
matched by file name stem (`superfusion_jax.io.pairs.find_pairs`). Entries that are not images
(e.g. RoadScene's Thumbs.db) and images without a partner are left out and reported through
`logging` when the source is made. Files are read only when a record is asked for, so a file
that is corrupt is found then: `PairedFolderSource[i]` raises `ImageReadError` naming it, and
the training pipeline (`superfusion_jax.data.pipeline`) skips that record with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from superfusion_jax.io.images import ImageReadError, read_image
from superfusion_jax.io.pairs import ImagePair, find_pairs

logger = logging.getLogger(__name__)

# Pillow modes of single-channel label images: grey, palette (indices kept), 16/32-bit integer.
_LABEL_MODES = {"L", "P", "I", "I;16", "I;16L", "I;16B"}


class PairedFolderSource:
    """Random-access source (len, getitem) of aligned pairs in two (or three) folders, for grain.

    Record i: dict(ir=(H, W, 3) float32 in [0, 1] (grey repeated to RGB), vi=(H, W, 3) float32
    in [0, 1], label=(H, W) int32 class indices (only with `label_dir`), name=str (the stem)).
    Pairs are in natural order of their names (`pairs`).

    Args:
      ir_dir, vi_dir: folders of infrared and visible images, matched by stem.
      label_dir: optional folder of single-channel label images (class index per pixel, e.g.
        MSRS `label/`), matched to the pairs by stem; pairs without a label are left out.

    Raises:
      FileNotFoundError: a folder does not exist.
      ValueError: no complete pair (or triple) was found.
    """

    def __init__(
        self, ir_dir: str | Path, vi_dir: str | Path, label_dir: str | Path | None = None
    ) -> None:
        self.ir_dir, self.vi_dir = Path(ir_dir), Path(vi_dir)
        self.label_dir = None if label_dir is None else Path(label_dir)
        listing = find_pairs(self.ir_dir, self.vi_dir)
        _report(listing.skipped, listing.ir_without_vi, "infrared", "visible")
        _report([], listing.vi_without_ir, "visible", "infrared")
        pairs = listing.pairs
        self.labels: dict[str, Path] = {}
        if self.label_dir is not None:
            # Labels are matched to the infrared images exactly as infrared to visible ones.
            label_listing = find_pairs(self.label_dir, self.ir_dir)
            junk = [s for s in label_listing.skipped if s[0].parent == self.label_dir]
            _report(junk, label_listing.ir_without_vi, "label", "infrared")
            self.labels = {p.name: p.ir for p in label_listing.pairs}
            missing = [p for p in pairs if p.name not in self.labels]
            for pair in missing:
                logger.warning("%s: no label in %s; pair left out", pair.name, self.label_dir)
            pairs = [p for p in pairs if p.name in self.labels]
        if not pairs:
            folders = ", ".join(str(d) for d in (self.ir_dir, self.vi_dir, self.label_dir) if d)
            raise ValueError(f"no complete image pairs found in {folders}")
        self.pairs: list[ImagePair] = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        """Read record `index` (see the class docstring); ImageReadError names a bad file."""
        pair = self.pairs[index]
        ir, vi = read_image(pair.ir), read_image(pair.vi)
        _check_same_size(pair.vi, vi.shape, pair.ir, ir.shape)
        record = {"ir": ir, "vi": vi, "name": pair.name}
        if self.label_dir is not None:
            label_path = self.labels[pair.name]
            record["label"] = read_label(label_path)
            _check_same_size(label_path, record["label"].shape, pair.ir, ir.shape)
        return record

    def __repr__(self) -> str:
        return (
            f"PairedFolderSource(ir_dir={str(self.ir_dir)!r}, vi_dir={str(self.vi_dir)!r}, "
            f"label_dir={None if self.label_dir is None else str(self.label_dir)!r}, "
            f"pairs={len(self.pairs)})"
        )


def read_label(path: str | Path) -> np.ndarray:
    """Read a segmentation label image.

    Args:
      path: a single-channel image (8-bit grey, palette, or 16/32-bit integer) whose pixel values
        are class indices (MSRS: 0 … 8). A palette image gives its indices, not its colours.

    Returns:
      (H, W) int32 class indices.

    Raises:
      ImageReadError: the file is missing, unreadable, or not single-channel; names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    try:
        with Image.open(path) as image:
            if image.mode not in _LABEL_MODES:
                raise ImageReadError(
                    path,
                    f"a label image must hold one class index per pixel (grey or palette), "
                    f"got Pillow mode {image.mode}",
                )
            image.load()
            return np.asarray(image).astype(np.int32)
    except UnidentifiedImageError as error:
        raise ImageReadError(path, "not an image file, or an unknown format") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(path, f"truncated or corrupt image data ({error})") from error


def _check_same_size(path: Path, shape: tuple, ir_path: Path, ir_shape: tuple) -> None:
    if shape[:2] != ir_shape[:2]:
        raise ImageReadError(
            path,
            f"size {shape[0]}x{shape[1]} differs from its infrared image {ir_path} "
            f"({ir_shape[0]}x{ir_shape[1]})",
        )


def _report(
    skipped: list[tuple[Path, str]], unmatched: list[Path], kind: str, partner: str
) -> None:
    for path, reason in skipped:
        logger.info("skipped %s: %s", path, reason)
    for path in unmatched:
        logger.warning("%s image %s has no %s partner; left out", kind, path, partner)
