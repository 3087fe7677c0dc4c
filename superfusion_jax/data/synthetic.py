"""Procedural infrared–visible road scenes, so that training and tests run offline.

Each scene is a road under a sky with buildings, road markings and a few objects, rendered
twice, the way the two sensors see it:
- visible: colour and fine texture (sky gradient, road grain, lane and zebra stripes, windows,
  coloured cars and clothes, traffic cones), dark and noisy at night with lamp glows;
- infrared: smooth temperatures (cold sky, warm ground, lukewarm buildings), people and car
  engines/tyres hot whatever their colour, visible-only paint and texture nearly invisible,
  some warmth with no visible counterpart (heat spots, a person camouflaged in the visible
  image), and blurrier edges than the visible image.
Labels follow the MSRS classes (`MSRS_CLASSES`) for the objects drawn: car, person, bike,
curve (kerb), guardrail, color cone; everything else is 0.

Everything is numpy and deterministic given the seed (about 10 ms of CPU time for 256×256).
"""

from __future__ import annotations

import numpy as np

# The nine MSRS segmentation classes, index = label value.
MSRS_CLASSES = (
    "unlabelled",
    "car",
    "person",
    "bike",
    "curve",
    "car_stop",
    "guardrail",
    "color_cone",
    "bump",
)
CAR, PERSON, BIKE, CURVE, GUARDRAIL, COLOR_CONE = 1, 2, 3, 4, 6, 7

# Object classes drawn on the road and how often.
_OBJECT_CLASSES = (CAR, PERSON, BIKE, COLOR_CONE)
_OBJECT_PROBABILITIES = (0.35, 0.35, 0.15, 0.15)


def synthetic_pair(seed: int, height: int, width: int) -> dict[str, np.ndarray]:
    """One procedural infrared–visible scene (aligned: the same geometry in both images).

    Args:
      seed: any non-negative integer; the same seed always gives the same scene.
      height, width: image size in pixels (at least 16 each).

    Returns:
      dict with
        ir: (height, width, 3) float32 in [0, 1], a grey infrared image repeated to RGB (hot is
          bright), as the release reads infrared files;
        vi: (height, width, 3) float32 in [0, 1], the visible RGB image;
        label: (height, width) int32 MSRS class per pixel (0 background; see `MSRS_CLASSES`).
    """
    if height < 16 or width < 16:
        raise ValueError(f"synthetic scenes need height, width >= 16, got {height}x{width}")
    rng = np.random.default_rng(seed)
    scene = _Scene(rng, height, width)
    scene.draw_background()
    if rng.random() < 0.5:
        scene.draw_kerb()
    if rng.random() < 0.3:
        scene.draw_guardrail()
    scene.draw_objects(int(rng.integers(2, 7)))
    return scene.finish()


class SyntheticPairs:
    """`num_pairs` procedural scenes as a random-access source (len, getitem) for grain.

    Record i is `synthetic_pair` of a seed derived from (seed, i), plus its name
    "synthetic_000042": dict(ir (H, W, 3) float32, vi (H, W, 3) float32, label (H, W) int32,
    name str), H, W = height, width.
    """

    def __init__(self, num_pairs: int, height: int, width: int, seed: int = 0) -> None:
        if num_pairs <= 0:
            raise ValueError(f"num_pairs must be positive, got {num_pairs}")
        self.num_pairs, self.height, self.width, self.seed = num_pairs, height, width, seed

    def __len__(self) -> int:
        return self.num_pairs

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_pairs:
            raise IndexError(f"record {index} out of range [0, {self.num_pairs})")
        pair_seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        record = synthetic_pair(pair_seed, self.height, self.width)
        record["name"] = f"synthetic_{index:06d}"
        return record

    def __repr__(self) -> str:
        return (
            f"SyntheticPairs(num_pairs={self.num_pairs}, height={self.height}, "
            f"width={self.width}, seed={self.seed})"
        )


class _Scene:
    """Canvases of one scene being painted: visible RGB, infrared grey, labels (painter's order)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.rng, self.h, self.w = rng, height, width
        self.vi = np.empty((height, width, 3), np.float32)
        self.ir = np.empty((height, width), np.float32)
        self.label = np.zeros((height, width), np.int32)
        self.horizon = int(height * rng.uniform(0.25, 0.5))
        self.night = rng.random() < 0.4
        self.hidden = []  # (cy, cx, ry, rx, heat): infrared-only warmth, added at the end

    # Background ---------------------------------------------------------------------------

    def draw_background(self) -> None:
        rng, h, w, hz = self.rng, self.h, self.w, self.horizon
        rows = np.arange(h, dtype=np.float32)[:, None]
        # Visible sky: vertical gradient between two blue-grey colours.
        top = np.array([0.30, 0.50, 0.85]) + rng.uniform(-0.1, 0.1, 3)
        low = np.array([0.75, 0.80, 0.90]) + rng.uniform(-0.1, 0.1, 3)
        t = (rows[:hz] / max(hz - 1, 1))[..., None]
        self.vi[:hz] = (1 - t) * top + t * low
        # Visible road: grey getting lighter toward the camera, smooth blotches and grain.
        road = rng.uniform(0.3, 0.5)
        t = ((rows[hz:] - hz) / max(h - hz - 1, 1))[..., None]
        tint = rng.uniform(-0.04, 0.04, 3)
        self.vi[hz:] = road + tint + 0.15 * t
        self.vi[hz:] += 0.08 * _smooth_field(rng, h - hz, w, 8)[..., None]
        self.vi[hz:] += 0.04 * rng.standard_normal((h - hz, w, 1), np.float32)
        # Infrared: cold sky, warm ground, smooth variations.
        self.ir[:hz] = rng.uniform(0.05, 0.2) + 0.1 * (rows[:hz] / max(hz, 1))
        self.ir[hz:] = rng.uniform(0.3, 0.45) + 0.1 * ((rows[hz:] - hz) / max(h - hz, 1))
        self.ir += 0.08 * _smooth_field(rng, h, w, 5)
        self._draw_buildings()
        self._draw_road_markings()

    def _draw_buildings(self) -> None:
        rng, h, w, hz = self.rng, self.h, self.w, self.horizon
        for _ in range(int(rng.integers(1, 5))):
            x0 = int(rng.uniform(-0.1, 0.9) * w)
            bw = int(rng.uniform(0.1, 0.35) * w)
            y0 = int(hz * rng.uniform(0.0, 0.7))
            ys, xs = slice(y0, hz), slice(max(x0, 0), min(x0 + bw, w))
            if xs.stop <= xs.start or ys.stop <= ys.start:
                continue
            self.vi[ys, xs] = rng.uniform(0.2, 0.8, 3)
            self.ir[ys, xs] = rng.uniform(0.25, 0.45)
            # Windows: a visible grid (lit windows slightly warm in the infrared image at night).
            step = max(int(rng.uniform(0.02, 0.05) * h), 3)
            rows = np.arange(ys.stop - ys.start) % step < step // 2
            cols = np.arange(xs.stop - xs.start) % step < step // 2
            window = rows[:, None] & cols[None, :]
            self.vi[ys, xs][window] = [0.95, 0.9, 0.6] if self.night else rng.uniform(0, 1, 3)
            if self.night:
                self.ir[ys, xs][window] += 0.05

    def _draw_road_markings(self) -> None:
        rng, h, w, hz = self.rng, self.h, self.w, self.horizon
        paint = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.7 else np.array([0.95, 0.8, 0.2])
        for _ in range(int(rng.integers(1, 4))):  # dashed lane lines (paint: visible only)
            y = int(rng.uniform(hz + 0.05 * h, h - 2))
            thick = max(1, int(0.01 * h * (1 + 3 * (y - hz) / (h - hz))))
            dash, gap = int(rng.uniform(0.05, 0.15) * w), int(rng.uniform(0.03, 0.1) * w)
            for x in range(int(rng.integers(0, dash + gap)) - dash, w, dash + gap):
                self.vi[y : y + thick, max(x, 0) : max(x + dash, 0)] = paint
                self.ir[y : y + thick, max(x, 0) : max(x + dash, 0)] -= 0.02
        if rng.random() < 0.4:  # zebra crossing
            y0 = int(rng.uniform(hz + 0.3 * (h - hz), h - 0.1 * h))
            y1 = min(h, y0 + int(0.08 * h))
            stripe = max(2, int(0.03 * w))
            for x in range(int(rng.integers(0, 2 * stripe)), w, 2 * stripe):
                self.vi[y0:y1, x : x + stripe] = 0.9

    def draw_kerb(self) -> None:
        """A slanted kerb band (class curve) from the horizon to the bottom edge."""
        rng, h, w, hz = self.rng, self.h, self.w, self.horizon
        x_top, x_bottom = rng.uniform(0.3, 0.7) * w, rng.uniform(-0.2, 1.2) * w
        rows = np.arange(hz, h, dtype=np.float32)
        centre = x_top + (x_bottom - x_top) * (rows - hz) / max(h - 1 - hz, 1)
        half = 0.5 + 0.03 * w * (rows - hz) / max(h - hz, 1)
        cols = np.arange(w, dtype=np.float32)[None, :]
        band = np.abs(cols - centre[:, None]) <= half[:, None]
        blocks = ((cols // max(2, int(0.04 * w))) % 2 == 0) & band
        self.vi[hz:][band] = [0.75, 0.75, 0.7]
        self.vi[hz:][blocks] = [0.15, 0.15, 0.15] if rng.random() < 0.5 else [0.85, 0.75, 0.1]
        self.ir[hz:][band] += 0.05
        self.label[hz:][band] = CURVE

    def draw_guardrail(self) -> None:
        """A metal guardrail (cold in infrared) along the horizon, with posts."""
        rng, h, w, hz = self.rng, self.h, self.w, self.horizon
        y0 = hz + int(0.02 * h)
        y1 = min(h, y0 + max(2, int(0.03 * h)))
        x0, x1 = sorted(int(v) for v in rng.uniform(0, w, 2))
        x1 = max(x1, x0 + 4)
        self.vi[y0:y1, x0:x1] = [0.7, 0.72, 0.75]
        self.ir[y0:y1, x0:x1] -= 0.08
        self.label[y0:y1, x0:x1] = GUARDRAIL
        post = max(1, int(0.006 * w))
        for x in range(x0, x1, max(4, int(0.06 * w))):
            self.vi[y1 : y1 + (y1 - y0), x : x + post] = [0.5, 0.5, 0.5]
            self.label[y1 : y1 + (y1 - y0), x : x + post] = GUARDRAIL

    # Objects -------------------------------------------------------------------------------

    def draw_objects(self, count: int) -> None:
        """`count` objects standing on the road, far ones first, sized by perspective."""
        rng, h, hz = self.rng, self.h, self.horizon
        classes = rng.choice(_OBJECT_CLASSES, size=count, p=_OBJECT_PROBABILITIES)
        bottoms = np.sort(rng.uniform(hz + 0.08 * (h - hz), h + 0.05 * h, count))
        draw = {CAR: self._car, PERSON: self._person, BIKE: self._bike, COLOR_CONE: self._cone}
        for cls, bottom in zip(classes, bottoms, strict=True):
            scale = 0.3 + 0.9 * (bottom - hz) / (h - hz)  # 0.3 at the horizon, ~1.2 at the bottom
            cx = rng.uniform(0.0, 1.0) * self.w
            draw[int(cls)](float(bottom), float(cx), float(scale) * h)
        for _ in range(int(rng.integers(0, 3))):  # heat spots with no visible counterpart
            cy, cx = rng.uniform(hz, h), rng.uniform(0, self.w)
            r = rng.uniform(0.02, 0.08) * h
            self.hidden.append((cy, cx, r, r * rng.uniform(0.7, 1.5), rng.uniform(0.1, 0.3)))

    def _car(self, bottom: float, cx: float, size: float) -> None:
        rng = self.rng
        body_h, body_w = 0.16 * size, 0.38 * size * rng.uniform(0.8, 1.2)
        colour = rng.uniform(0.0, 1.0, 3)
        warm = rng.uniform(0.5, 0.65)
        body = (
            bottom - 0.05 * size - body_h,
            bottom - 0.05 * size,
            cx - body_w / 2,
            cx + body_w / 2,
        )
        cabin = (body[0] - 0.09 * size, body[0] + 1, cx - body_w / 3, cx + body_w / 4)
        self._fill_rect(cabin, colour * 0.8, warm - 0.1, CAR)
        self._fill_rect(body, colour, warm, CAR)
        window = (cabin[0] + 0.02 * size, cabin[1] - 0.01 * size, cabin[2] + 2, cabin[3] - 2)
        self._fill_rect(window, np.array([0.15, 0.2, 0.3]), warm - 0.15, CAR)
        if rng.random() < 0.5:  # a coloured stripe: visible-only texture
            stripe = (body[0] + 0.3 * body_h, body[0] + 0.45 * body_h, body[2], body[3])
            self._fill_rect(stripe, 1.0 - colour, None, CAR)
        engine = (body[0] + 0.2 * body_h, body[1], body[3] - 0.3 * body_w, body[3])
        self._fill_rect(engine, None, rng.uniform(0.8, 0.95), CAR)
        for wx in (body[2] + 0.2 * body_w, body[3] - 0.2 * body_w):  # hot tyres
            self._fill_ellipse(bottom - 0.05 * size, wx, 0.05 * size, 0.05 * size, 0.05, 0.8, CAR)

    def _person(self, bottom: float, cx: float, size: float) -> None:
        rng = self.rng
        tall = 0.35 * size * rng.uniform(0.85, 1.15)
        heat = rng.uniform(0.8, 0.95)
        # Clothes: any colour; sometimes the background colour (invisible in the visible image).
        camouflaged = rng.random() < 0.25
        cy = bottom - 0.45 * tall
        y_clip = int(min(max(cy, 0), self.h - 1))
        x_clip = int(min(max(cx, 0), self.w - 1))
        clothes = self.vi[y_clip, x_clip].copy() if camouflaged else rng.uniform(0.0, 1.0, 3)
        self._fill_ellipse(cy, cx, 0.45 * tall, 0.12 * tall, clothes, heat, PERSON)
        skin = clothes if camouflaged else np.array([0.85, 0.65, 0.5]) * rng.uniform(0.5, 1.1)
        head_r = 0.08 * tall
        self._fill_ellipse(bottom - 0.9 * tall - head_r, cx, head_r, head_r, skin, 1.0, PERSON)

    def _bike(self, bottom: float, cx: float, size: float) -> None:
        rng = self.rng
        r = 0.06 * size
        frame = rng.uniform(0.0, 1.0, 3)
        for wx in (cx - 1.3 * r, cx + 1.3 * r):
            tyre = np.array([0.1, 0.1, 0.1])
            self._fill_ellipse(bottom - r, wx, r, r, tyre, 0.45, BIKE, hole=0.7)
        self._fill_rect(
            (bottom - 1.6 * r, bottom - 1.3 * r, cx - 1.3 * r, cx + 1.3 * r), frame, None, BIKE
        )

    def _cone(self, bottom: float, cx: float, size: float) -> None:
        tall = 0.1 * size
        y0, y1 = int(max(bottom - tall, 0)), int(min(bottom, self.h))
        if y1 <= y0:
            return
        rows = np.arange(y0, y1, dtype=np.float32)[:, None]
        half = 0.3 * tall * (rows - (bottom - tall)) / tall + 1
        x0, x1 = int(max(cx - 0.3 * tall - 1, 0)), int(min(cx + 0.3 * tall + 2, self.w))
        if x1 <= x0:
            return
        cols = np.arange(x0, x1, dtype=np.float32)[None, :]
        mask = np.abs(cols - cx) <= half
        band = max(int(tall) // 4, 1)
        white = ((rows - y0) // band % 2 == 1)[..., None]
        colour = np.where(white, [0.95, 0.95, 0.95], [1.0, 0.45, 0.05]).astype(np.float32)
        colour = np.broadcast_to(colour, mask.shape + (3,))
        self.vi[y0:y1, x0:x1][mask] = colour[mask]
        self.ir[y0:y1, x0:x1][mask] += 0.03  # nearly invisible in the infrared image
        self.label[y0:y1, x0:x1][mask] = COLOR_CONE

    # Painting primitives -------------------------------------------------------------------

    def _window(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        ys = slice(int(max(y0, 0)), int(min(np.ceil(y1), self.h)))
        xs = slice(int(max(x0, 0)), int(min(np.ceil(x1), self.w)))
        return (ys, xs) if ys.stop > ys.start and xs.stop > xs.start else None

    def _paint(self, window, mask, colour, heat, cls) -> None:
        ys, xs = window
        if colour is not None:
            self.vi[ys, xs][mask] = colour
        if heat is not None:
            self.ir[ys, xs][mask] = heat
        if cls is not None:
            self.label[ys, xs][mask] = cls

    def _fill_rect(self, box, colour, heat, cls) -> None:
        window = self._window(*box)
        if window is not None:
            shape = (window[0].stop - window[0].start, window[1].stop - window[1].start)
            self._paint(window, np.ones(shape, bool), colour, heat, cls)

    def _fill_ellipse(self, cy, cx, ry, rx, colour, heat, cls, hole: float = 0.0) -> None:
        """Fill an ellipse (centre cy, cx; radii ry, rx), minus a concentric hole (radius ratio)."""
        window = self._window(cy - ry, cy + ry + 1, cx - rx, cx + rx + 1)
        if window is None:
            return
        ys, xs = window
        dy = (np.arange(ys.start, ys.stop, dtype=np.float32)[:, None] - cy) / max(ry, 0.5)
        dx = (np.arange(xs.start, xs.stop, dtype=np.float32)[None, :] - cx) / max(rx, 0.5)
        d2 = dy**2 + dx**2
        self._paint(window, (d2 <= 1.0) & (d2 >= hole**2), colour, heat, cls)

    # Sensors -------------------------------------------------------------------------------

    def finish(self) -> dict[str, np.ndarray]:
        rng, h, w = self.rng, self.h, self.w
        for cy, cx, ry, rx, heat in self.hidden:
            self.ir += heat * _gaussian_blob(h, w, cy, cx, ry, rx)
        ir = _blur(_blur(self.ir)) + 0.01 * rng.standard_normal((h, w), np.float32)
        vi = self.vi
        if self.night:
            vi *= rng.uniform(0.1, 0.3)
            for _ in range(int(rng.integers(1, 4))):  # street lamps: visible-only glow
                cy, cx = rng.uniform(0, self.horizon + 0.2 * h), rng.uniform(0, w)
                r = rng.uniform(0.04, 0.14) * h
                glow = 0.8 * _gaussian_blob(h, w, cy, cx, r, r)
                vi += glow[..., None] * np.array([1.0, 0.85, 0.6], np.float32)
            vi += 0.02 * rng.standard_normal((h, w, 1), np.float32)
        vi += 0.01 * rng.standard_normal((h, w, 3), np.float32)
        ir = np.clip(ir, 0.0, 1.0)
        return {
            "ir": np.repeat(ir[..., None], 3, axis=-1),
            "vi": np.clip(vi, 0.0, 1.0),
            "label": self.label,
        }


def _gaussian_blob(height: int, width: int, cy: float, cx: float, ry: float, rx: float):
    """(height, width) float32 exp(-((y - cy) / ry)² - ((x - cx) / rx)²), as an outer product."""
    ys = np.exp(-(((np.arange(height) - cy) / ry) ** 2)).astype(np.float32)
    xs = np.exp(-(((np.arange(width) - cx) / rx) ** 2)).astype(np.float32)
    return ys[:, None] * xs[None, :]


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(height, width) float32 smooth noise in about [-1, 1]: a (cells+1)² random grid,
    bilinearly interpolated."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    return _interp_matrix(height, cells + 1) @ grid @ _interp_matrix(width, cells + 1).T


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation weights from n_in knots spread over n_out pixels."""
    position = np.linspace(0.0, n_in - 1.0, n_out)
    lower = np.minimum(np.floor(position).astype(int), n_in - 2)
    frac = (position - lower).astype(np.float32)
    weights = np.zeros((n_out, n_in), np.float32)
    weights[np.arange(n_out), lower] = 1.0 - frac
    weights[np.arange(n_out), lower + 1] = frac
    return weights


def _blur(image: np.ndarray) -> np.ndarray:
    """Separable [1, 4, 6, 4, 1] / 16 blur of an (H, W) float32 image, edges replicated."""
    taps = np.array([1, 4, 6, 4, 1], np.float32) / 16.0
    for _ in range(2):  # along rows, transpose, along the other axis, transpose back
        n = image.shape[0]
        padded = np.pad(image, ((2, 2), (0, 0)), mode="edge")
        image = sum(t * padded[k : k + n] for k, t in enumerate(taps)).T
    return image
