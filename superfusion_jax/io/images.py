"""Reading and writing the images the command line works on.

Every image is read as float32 RGB in [0, 1], shape (H, W, 3), whatever is on disk:
- grey images are repeated to three channels (as the official release reads the infrared PNG as
  RGB); an alpha channel is dropped;
- 8-bit data are divided by 255;
- deeper data (16-bit PNG/TIFF from thermal cameras, 32-bit integer, floating point) are
  normalised per image by min–max: (x − min) / (max − min), so the coldest pixel becomes 0 and
  the hottest 1 (a constant image becomes all 0). Absolute temperatures are therefore not kept.

Pillow decodes everything except TIFFs that Pillow cannot decode or would reduce to 8 bits
(16-bit RGB, floating-point multi-sample), which go through tifffile. 16-bit colour PNGs are
refused: Pillow can only read them reduced to 8 bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

# File name extensions (lower case, with the dot) that are looked at as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# First bytes of TIFF and BigTIFF files, little and big endian.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Pillow modes whose pixels np.asarray returns directly with their full depth (deep: > 8 bits).
_DEEP_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_DIRECT_MODES = {"L", "LA", "RGB", "RGBA", "RGBX"} | _DEEP_MODES
# Pillow modes converted by Pillow first (bilevel, palette, printing and video colour spaces).
_CONVERTED_MODES = {"1": "L", "P": "RGB", "PA": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}
_PNG_COLOUR_TYPES_WITH_COLOUR = (2, 6)  # IHDR colour types RGB and RGBA


class ImageReadError(Exception):
    """An image file that cannot be read; `path` is the file and `problem` says why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB intensities.

    Args:
      path: a PNG, JPEG, TIFF or BMP file; 8-bit or deeper; grey, grey+alpha, RGB or RGBA.

    Returns:
      (H, W, 3) float32 in [0, 1]. Grey is repeated to three channels, alpha is dropped; 8-bit
      data are divided by 255, deeper data (16-bit, 32-bit, float) are min–max normalised per
      image (a constant image gives zeros).

    Raises:
      ImageReadError: the file is missing, empty, not an image, truncated or corrupt, or its pixel
        format is not supported; the message names the file.
    """
    path = Path(path)
    _check_file(path)
    if _needs_tifffile(path):
        pixels = _read_with_tifffile(path)
    else:
        pixels = _read_with_pillow(path)
    return _to_rgb_unit(path, pixels)


def image_size(path: str | Path) -> tuple[int, int]:
    """Size of an image from its header, without decoding the pixels.

    Args:
      path: an image file, as for `read_image`.

    Returns:
      (H, W) in pixels.

    Raises:
      ImageReadError: as for `read_image`, except that truncated pixel data are only found by
        `read_image`.
    """
    path = Path(path)
    _check_file(path)
    if _needs_tifffile(path):
        with _tifffile_errors(path), tifffile.TiffFile(path) as tif:
            height, width = _tiff_layout(path, _first_page(path, tif))[1:]
        return height, width
    with _pillow_errors(path), Image.open(path) as image:
        return image.height, image.width


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write intensities as an 8-bit PNG.

    Args:
      path: the file to write (PNG whatever its extension says).
      image: (H, W, 3) RGB or (H, W) grey, float in [0, 1]; values outside are clipped, then
        x · 255 is rounded to the nearest level.

    Raises:
      ValueError: `image` has another shape.
      OSError: the file cannot be written.
    """
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"write_image needs (H, W, 3) or (H, W), got shape {image.shape}")
    levels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(levels).save(path, format="PNG")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")


@contextmanager
def _pillow_errors(path: Path) -> Iterator[None]:
    """Turn Pillow's exceptions inside the block into ImageReadError naming `path`."""
    try:
        yield
    except ImageReadError:
        raise
    except UnidentifiedImageError as error:
        raise ImageReadError(path, "not an image file, or an unknown format") from error
    except Image.DecompressionBombError as error:
        raise ImageReadError(path, f"too large to read safely ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(path, f"truncated or corrupt image data ({error})") from error


@contextmanager
def _tifffile_errors(path: Path) -> Iterator[None]:
    """Turn tifffile's exceptions inside the block into ImageReadError naming `path`."""
    try:
        yield
    except ImageReadError:
        raise
    except (tifffile.TiffFileError, OSError, ValueError, KeyError) as error:
        raise ImageReadError(path, f"cannot decode TIFF ({error})") from error


def _needs_tifffile(path: Path) -> bool:
    """True for a TIFF that Pillow cannot open, or whose deeper than 8-bit samples it would
    reduce to 8 bits (e.g. 16-bit RGB)."""
    with open(path, "rb") as file:
        if file.read(4) not in _TIFF_MAGIC:
            return False
    try:
        with Image.open(path) as image:
            bits = image.tag_v2.get(258, (8,))
            bits = max(bits) if isinstance(bits, tuple) else bits
            return bits > 8 and image.mode not in _DEEP_MODES
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return True


def _read_with_pillow(path: Path) -> np.ndarray:
    with _pillow_errors(path), Image.open(path) as image:
        if image.format == "PNG":
            _refuse_deep_colour_png(path)
        if image.mode in _CONVERTED_MODES:
            image = image.convert(_CONVERTED_MODES[image.mode])
        elif image.mode not in _DIRECT_MODES:
            raise ImageReadError(path, f"unsupported pixel format (Pillow mode {image.mode})")
        image.load()
        return np.asarray(image)


def _refuse_deep_colour_png(path: Path) -> None:
    with open(path, "rb") as file:
        header = file.read(26)  # signature, IHDR length and type, width, height, depth, colour
    bit_depth, colour_type = header[24], header[25]
    if bit_depth == 16 and colour_type in _PNG_COLOUR_TYPES_WITH_COLOUR:
        raise ImageReadError(
            path,
            "16-bit colour PNG is not supported (it could only be read reduced to 8 bits); "
            "save it as 16-bit TIFF, 16-bit grey PNG or 8-bit PNG",
        )


def _read_with_tifffile(path: Path) -> np.ndarray:
    with _tifffile_errors(path), tifffile.TiffFile(path) as tif:
        page = _first_page(path, tif)
        samples_first = _tiff_layout(path, page)[0]
        pixels = page.asarray()
    return np.moveaxis(pixels, 0, -1) if samples_first else pixels


def _first_page(path: Path, tif: tifffile.TiffFile) -> tifffile.TiffPage:
    if len(tif.pages) == 0:
        raise ImageReadError(path, "TIFF file holds no image")
    return tif.pages[0]


def _tiff_layout(path: Path, page: tifffile.TiffPage) -> tuple[bool, int, int]:
    """(samples stored first, H, W) of a TIFF page, or ImageReadError for other layouts."""
    layouts = {"YX": (False, 0, 1), "YXS": (False, 0, 1), "SYX": (True, 1, 2)}
    if page.axes not in layouts:
        raise ImageReadError(path, f"unsupported TIFF layout (axes {page.axes})")
    samples_first, y_axis, x_axis = layouts[page.axes]
    return samples_first, page.shape[y_axis], page.shape[x_axis]


def _to_rgb_unit(path: Path, pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) pixels of any dtype → (H, W, 3) float32 in [0, 1]."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2] if pixels.ndim == 3 else 0
    if channels not in (1, 2, 3, 4):
        raise ImageReadError(path, f"unsupported pixel layout: array of shape {pixels.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageReadError(path, f"image has no pixels (shape {pixels.shape[:2]})")
    colour = pixels[:, :, :3] if channels >= 3 else pixels[:, :, :1]
    if colour.dtype == np.uint8:
        unit = colour.astype(np.float32) / 255.0
    else:
        unit = _min_max(path, colour.astype(np.float64)).astype(np.float32)
    return np.broadcast_to(unit, unit.shape[:2] + (3,)).copy()


def _min_max(path: Path, values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ImageReadError(path, "image contains NaN or infinite values")
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    return (values - low) / (high - low)
