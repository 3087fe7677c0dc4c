"""Matching infrared and visible image files into pairs, by file name stem."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from superfusion_jax.io.images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class ImagePair:
    """One infrared–visible pair; `name` (a file name stem) names its outputs."""

    name: str
    ir: Path
    vi: Path


@dataclass(frozen=True)
class PairListing:
    """What `find_pairs` found.

    Attributes:
      pairs: matched pairs in natural order of their names.
      skipped: (path, reason) for entries of the folders that were not considered: hidden files,
        non-image files (e.g. Thumbs.db), sub-folders, and files whose stem is ambiguous.
      ir_without_vi: infrared images with no visible partner.
      vi_without_ir: visible images with no infrared partner.
    """

    pairs: list[ImagePair]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    ir_without_vi: list[Path] = field(default_factory=list)
    vi_without_ir: list[Path] = field(default_factory=list)


def natural_key(name: str) -> tuple:
    """Sort key ordering digit runs by value: 'img9' < 'img10', '00009' < '00010'."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if part.isdigit() else part.lower() for part in parts), name


def find_pairs(ir_path: str | Path, vi_path: str | Path) -> PairListing:
    """List the infrared–visible pairs to process.

    Args:
      ir_path, vi_path: two image files (one pair, named after the visible file's stem), or two
        folders. Folders are not searched recursively; their image files (extensions in
        IMAGE_EXTENSIONS, any case) are matched by stem, so ir/00004N.png pairs with
        vi/00004N.jpg.

    Returns:
      The pairs in natural order, plus what was skipped and what has no partner.

    Raises:
      FileNotFoundError: a path does not exist.
      ValueError: one path is a file and the other a folder.
    """
    ir_path, vi_path = Path(ir_path), Path(vi_path)
    for path in (ir_path, vi_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
    if ir_path.is_dir() != vi_path.is_dir():
        raise ValueError(
            f"--ir and --vi must both be files or both be folders: {ir_path} is a "
            f"{_kind(ir_path)}, {vi_path} is a {_kind(vi_path)}"
        )
    if not ir_path.is_dir():
        return PairListing(pairs=[ImagePair(vi_path.stem, ir_path, vi_path)])

    skipped: list[tuple[Path, str]] = []
    ir_images = _images_by_stem(ir_path.iterdir(), skipped)
    vi_images = _images_by_stem(vi_path.iterdir(), skipped)
    common = sorted(ir_images.keys() & vi_images.keys(), key=natural_key)
    return PairListing(
        pairs=[ImagePair(stem, ir_images[stem], vi_images[stem]) for stem in common],
        skipped=sorted(skipped, key=lambda item: natural_key(str(item[0]))),
        ir_without_vi=_sorted_paths(p for s, p in ir_images.items() if s not in vi_images),
        vi_without_ir=_sorted_paths(p for s, p in vi_images.items() if s not in ir_images),
    )


def _kind(path: Path) -> str:
    return "folder" if path.is_dir() else "file"


def _sorted_paths(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda path: natural_key(path.name))


def _images_by_stem(entries: Iterable[Path], skipped: list[tuple[Path, str]]) -> dict[str, Path]:
    """Image files of a folder by stem; everything else is appended to `skipped` with a reason."""
    by_stem: dict[str, list[Path]] = {}
    for entry in entries:
        if entry.name.startswith("."):
            skipped.append((entry, "hidden file"))
        elif entry.is_dir():
            skipped.append((entry, "folder (folders are not searched)"))
        elif entry.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((entry, "not an image file (by its extension)"))
        else:
            by_stem.setdefault(entry.stem, []).append(entry)
    images = {}
    for stem, paths in by_stem.items():
        if len(paths) == 1:
            images[stem] = paths[0]
            continue
        reason = f"ambiguous: several images named {stem} ({', '.join(p.name for p in paths)})"
        skipped.extend((path, reason) for path in paths)
    return images
