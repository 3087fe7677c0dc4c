"""Training batches (grain) with the release's augmentation, and evaluation batches.

A source is anything random-access (`len`, `[i]`) whose records are dicts with
`ir` (H, W, 3) float32 in [0, 1], `vi` (H, W, 3) float32 in [0, 1] and optionally
`label` (H, W) int32 (plus anything else, e.g. `name`): `SyntheticPairs`, `PairedFolderSource`,
`TfdsPairSource`. Records may differ in size.

Augmentation, as the release's `RegData` / `MSRSData` / `RoadSceneData` (dataset.py) and
`randfilp` / `randrot` (utils/utils.py), the same for ir, vi and label of a record:
1. resize up: an image whose shorter side is below `crop_size` is resized (aspect ratio kept,
   longer side int(crop · long / short), as torchvision's `resize(x, crop)`) so its shorter side
   is `crop_size`: bilinear for the images, nearest for the label. We resize like the release
   rather than pad, because padding would put black borders (no content, no gradient) into
   training crops, which the registration and border losses would then see as image content.
   The release also resizes its labels bilinearly and truncates them to integers (mixing
   classes along object borders); nearest keeps them valid class indices.
2. a uniformly placed crop_size × crop_size crop;
3. flip: vertical, horizontal or none, each with probability 1/3 (`randfilp`);
4. rotation: 90° anticlockwise, 180°, 90° clockwise or none, each 1/4 (`randrot`).
The release flips and rotates the whole image and then crops; cropping first gives the same
distribution of crops (the crop is square and its position uniform) for less work.
5. (ours, off by default) `Darken`: a random gamma on each image, so that a network trained on
   daylight pairs also sees night-dark ones.

The synthetic misalignment of stage RF is not done here (see `superfusion_jax.data.misalign`);
the release warps the whole (resized) image and then crops, so that the warp's black borders
mostly fall outside the crop. To do the same, ask this pipeline for a larger `crop_size` and let
`misalign_pair(..., crop_size=256)` make the final crop.

Records whose files cannot be read (`READ_ERRORS`) are skipped with a warning naming the file;
a training run never stops on one bad file. The iterator of `make_train_iterator` is grain's
`DataLoaderIterator`: `get_state()` / `set_state(state)` checkpoint and restore its position,
and the batches after a restore are the ones that would have come next.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence

import grain
import numpy as np
from PIL import Image

from superfusion_jax.io.images import ImageReadError

logger = logging.getLogger(__name__)

# Exceptions of a source's __getitem__ that mean "this record's files cannot be read".
READ_ERRORS = (ImageReadError, OSError)
# Keys of a record that are batched for training, in this order.
_TRAIN_KEYS = ("ir", "vi", "label")


@dataclasses.dataclass(frozen=True)
class Darken:
    """Photometric augmentation toward night scenes (not the release's; config.data.darken_*).

    With `probability`, each of ir and vi independently becomes x ** gamma, gamma uniform in
    [1, max_gamma]: mid-tones darken (0.4 -> 0.1 at gamma 2.5) while black, white and the order
    of intensities stay. probability 0 draws nothing, so the random stream of the release's
    augmentation is unchanged.
    """

    probability: float = 0.0
    max_gamma: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"darken probability must be in [0, 1], got {self.probability}")
        if self.max_gamma < 1.0:
            raise ValueError(f"darken max_gamma must be >= 1, got {self.max_gamma}")


def make_train_iterator(
    source: Sequence[dict],
    *,
    batch_size: int,
    crop_size: int = 256,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_epochs: int | None = None,
    worker_count: int = 0,
    read_threads: int = 4,
    darken: Darken = Darken(),
) -> grain.DataLoaderIterator:
    """Shuffled, augmented, batched training examples for one host.

    Args:
      source: random-access records (see the module docstring).
      batch_size: the GLOBAL batch size; this host gets batch_size // shard_count examples per
        batch (must divide evenly), so shard_count hosts together make one global batch.
      crop_size: side of the square training crops, in pixels.
      seed: shuffling and augmentation seed (any int): the same seed, source, sharding and
        worker_count give the same batches (each grain worker batches its own records, so a
        different worker_count groups the same examples into batches differently).
      shard_index, shard_count: this host's part of the records (e.g. jax.process_index(),
        jax.process_count()). Each host reads a disjoint, contiguous 1/shard_count of the
        records; the remainder of len(source) / shard_count is dropped so hosts stay in step.
      num_epochs: passes over this host's records; None repeats forever.
      worker_count: grain worker processes (0: read and augment in this process). With workers
        the source must be picklable (all sources of this package are) and absl flags must have
        been parsed (as in an absl app), which grain's workers read.
      read_threads: threads reading records in parallel; reading runs ahead by up to two
        batches.
      darken: the night-darkening augmentation applied after the release's (off by default).

    Returns:
      A grain DataLoaderIterator of dicts with ir, vi: (B, crop, crop, 3) float32 in [0, 1] and,
      when the records have labels, label: (B, crop, crop) int32, B = batch_size // shard_count.
      Incomplete last batches (finite num_epochs) are dropped.
    """
    if batch_size <= 0 or batch_size % shard_count:
        raise ValueError(
            f"the global batch size {batch_size} must be a positive multiple of the number of "
            f"hosts {shard_count}"
        )
    per_host = batch_size // shard_count
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=grain.sharding.ShardOptions(shard_index, shard_count, drop_remainder=True),
        shuffle=True,
        num_epochs=num_epochs,
        seed=_seed32(seed),
    )
    loader = grain.DataLoader(
        data_source=SkipUnreadable(source),
        sampler=sampler,
        operations=[
            _IsReadable(),
            _Augment(crop_size, darken),
            grain.transforms.Batch(batch_size=per_host, drop_remainder=True),
        ],
        worker_count=worker_count,
        read_options=grain.ReadOptions(
            num_threads=read_threads, prefetch_buffer_size=max(2 * per_host, read_threads)
        ),
    )
    return iter(loader)


def make_eval_batches(source: Sequence[dict], batch_size: int) -> Iterator[dict]:
    """All records in order, unaugmented, stacked into batches of up to `batch_size`.

    Consecutive records of the same size are stacked together; a batch ends early where the size
    changes and at the end, so every record is seen exactly once. Unreadable records are skipped
    with a warning.

    Args:
      source: random-access records (see the module docstring).
      batch_size: most records per batch.

    Yields:
      dicts with ir, vi: (B, H, W, 3) float32 in [0, 1]; label: (B, H, W) int32 if the records
      have labels; index: (B,) int64 record indices; name: list of B names if the records have
      them.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    readable = SkipUnreadable(source)
    group: list[tuple[int, dict]] = []
    for index in range(len(readable)):
        record = readable[index]
        if record is None:
            continue
        if group and record["ir"].shape != group[0][1]["ir"].shape:
            yield _stack_eval(group)
            group = []
        group.append((index, record))
        if len(group) == batch_size:
            yield _stack_eval(group)
            group = []
    if group:
        yield _stack_eval(group)


def augment(
    record: dict, rng: np.random.Generator, crop_size: int, darken: Darken = Darken()
) -> dict[str, np.ndarray]:
    """The release's training augmentation of one record (see the module docstring).

    Args:
      record: dict with ir, vi (H, W, 3) float32 and optionally label (H, W) int32, same H, W.
      rng: draws, in order, the flip mode, the rotation mode, the crop's top and left (then, for
        ir and vi, whether to darken and the gamma, when darken.probability > 0).
      crop_size: side of the output crop, in pixels.
      darken: the night-darkening augmentation (`Darken`).

    Returns:
      dict with ir, vi (crop_size, crop_size, 3) float32 and label (crop_size, crop_size) int32
      if the record has one; other keys are dropped.
    """
    arrays = {key: record[key] for key in _TRAIN_KEYS if key in record}
    height, width = arrays["ir"].shape[:2]
    if min(height, width) < crop_size:
        height, width = _short_side_size(height, width, crop_size)
        arrays = {key: _resize(value, height, width) for key, value in arrays.items()}
    flip_mode, rot_mode = int(rng.integers(3)), int(rng.integers(4))
    top = int(rng.integers(height - crop_size + 1))
    left = int(rng.integers(width - crop_size + 1))
    window = (slice(top, top + crop_size), slice(left, left + crop_size))
    out = {
        key: np.ascontiguousarray(rotate(flip(value[window], flip_mode), rot_mode))
        for key, value in arrays.items()
    }
    if darken.probability > 0:
        for key in ("ir", "vi"):
            if rng.random() < darken.probability:
                out[key] = out[key] ** np.float32(rng.uniform(1.0, darken.max_gamma))
    return out


def flip(image: np.ndarray, mode: int) -> np.ndarray:
    """The release's `flip`: mode 0 upside down (H axis), 1 left–right (W axis), 2 unchanged.

    image: (H, W) or (H, W, C); returns a view of the same shape.
    """
    if mode == 0:
        return image[::-1]
    if mode == 1:
        return image[:, ::-1]
    return image


def rotate(image: np.ndarray, mode: int) -> np.ndarray:
    """The release's `rot`: mode 0 rotates 90° anticlockwise, 1 by 180°, 2 90° clockwise,
    3 leaves the image unchanged (as seen on screen, row 0 at the top).

    image: (H, W) or (H, W, C); returns a view, (W, H, ...) for modes 0 and 2.
    """
    if mode == 0:
        return image.swapaxes(0, 1)[::-1]
    if mode == 1:
        return image[::-1, ::-1]
    if mode == 2:
        return image[::-1].swapaxes(0, 1)
    return image


class SkipUnreadable:
    """A source whose unreadable records (READ_ERRORS) become None, with a warning.

    Wraps any random-access source; len and records are otherwise those of `source`.
    """

    def __init__(self, source: Sequence[dict]) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict | None:
        try:
            return self.source[index]
        except READ_ERRORS as error:
            logger.warning("skipping record %d, it cannot be read: %s", index, error)
            return None

    def __repr__(self) -> str:
        return f"SkipUnreadable({self.source!r})"


class _IsReadable(grain.transforms.Filter):
    def filter(self, element: dict | None) -> bool:
        return element is not None


class _Augment(grain.transforms.RandomMap):
    def __init__(self, crop_size: int, darken: Darken) -> None:
        self.crop_size = crop_size
        self.darken = darken

    def random_map(self, element: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return augment(element, rng, self.crop_size, self.darken)


def _seed32(seed: int) -> int:
    """An unsigned 32-bit sampler seed from any int, well spread: grain seeds record i with
    seed + i, so raw seeds 0 and 1 would share all but one record's random streams."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0])


def _short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(H, W) with the shorter side `short` and the aspect ratio kept, as torchvision."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (H, W, C) float images bilinearly (half-pixel centres), (H, W) int labels by
    nearest neighbour, per channel with Pillow."""
    nearest = array.ndim == 2
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    planes = [array] if nearest else [array[..., c] for c in range(array.shape[-1])]
    out = [np.asarray(Image.fromarray(p).resize((width, height), method)) for p in planes]
    return out[0].astype(array.dtype) if nearest else np.stack(out, axis=-1).astype(array.dtype)


def _stack_eval(group: list[tuple[int, dict]]) -> dict:
    records = [record for _, record in group]
    batch = {key: np.stack([r[key] for r in records]) for key in _TRAIN_KEYS if key in records[0]}
    batch["index"] = np.array([index for index, _ in group], np.int64)
    if "name" in records[0]:
        batch["name"] = [r["name"] for r in records]
    return batch
