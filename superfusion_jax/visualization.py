"""Pictures for people: displacement fields as colours, images side by side."""

from __future__ import annotations

import flow_vis
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Colours of the label maps in the image log (MSRS classes; more classes cycle through them).
PALETTE = np.array(
    [
        [0, 0, 0],  # unlabelled
        [220, 20, 60],  # car
        [255, 200, 0],  # person
        [0, 160, 255],  # bike
        [150, 80, 255],  # curve
        [0, 200, 120],  # car stop
        [255, 120, 200],  # guardrail
        [255, 110, 0],  # color cone
        [140, 140, 140],  # bump
    ],
    np.uint8,
)


def flow_to_color(disp_px: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a displacement field with the Middlebury colour wheel (Baker et al., 2007).

    Hue gives the direction (+x red, +y yellow, −x light blue, −y violet; image coordinates,
    x to the right and y down), saturation the length: white is no displacement, the full
    wheel colour a displacement of `max_magnitude`; longer ones are drawn darker (×0.75).
    The wheel itself is `flow_vis.flow_uv_to_colors`.

    Args:
      disp_px: (H, W, 2) displacement in pixels, x then y.
      max_magnitude: length in pixels drawn fully saturated; None for the largest length in
        `disp_px` (colours then compare only within one field).

    Returns:
      (H, W, 3) uint8 RGB.
    """
    disp_px = np.asarray(disp_px, dtype=np.float64)
    if disp_px.ndim != 3 or disp_px.shape[2] != 2:
        raise ValueError(f"flow_to_color needs (H, W, 2), got shape {disp_px.shape}")
    if max_magnitude is None:
        max_magnitude = float(np.max(np.hypot(disp_px[..., 0], disp_px[..., 1]), initial=0.0))
    scale = 1.0 / max_magnitude if max_magnitude > 0 else 0.0
    # + 0.0 turns −0.0 into +0.0: the wheel's arctan2 puts them at opposite ends of its table.
    u = disp_px[..., 0] * scale + 0.0
    v = disp_px[..., 1] * scale + 0.0
    return flow_vis.flow_uv_to_colors(u, v)


def image_grid(
    images: list[np.ndarray],
    ncols: int,
    labels: list[str] | None = None,
    gap: int = 4,
) -> np.ndarray:
    """Lay images out in a grid, row by row, each with an optional caption above it.

    Args:
      images: (H, W, 3) or (H, W, 1) float in [0, 1] (clipped); sizes may differ, each cell is
        as large as the largest image and images sit at its top left.
      ncols: images per row.
      labels: one caption per image, or None for no captions.
      gap: white pixels between cells and around the grid.

    Returns:
      (H', W', 3) uint8 RGB on a white background.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    tiles = [_to_rgb8(image) for image in images]
    font = ImageFont.load_default()
    caption = 0 if labels is None else _text_height(font) + gap
    cell_h = max(tile.shape[0] for tile in tiles) + caption
    cell_w = max(tile.shape[1] for tile in tiles)
    nrows = -(-len(tiles) // ncols)
    ncols = min(ncols, len(tiles))
    canvas = Image.new(
        "RGB", (gap + ncols * (cell_w + gap), gap + nrows * (cell_h + gap)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    for index, tile in enumerate(tiles):
        top = gap + (index // ncols) * (cell_h + gap)
        left = gap + (index % ncols) * (cell_w + gap)
        if labels is not None:
            draw.text((left, top), labels[index], fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(tile), (left, top + caption))
    return np.asarray(canvas)


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image_grid needs (H, W, 3) or (H, W, 1) images, got {image.shape}")
    levels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(levels, 3, axis=2) if levels.shape[2] == 1 else levels


def _text_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    return int(font.getbbox("Ag")[3])


def label_colors(label: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours (`PALETTE`; ids >= 9 cycle, 255 is white)."""
    label = np.asarray(label)
    colours = PALETTE[np.mod(label, len(PALETTE))]
    colours[label == 255] = 255
    return colours
