"""Where training writes its numbers and pictures: JSON lines, the console, TensorBoard.

`make_writer(workdir)` returns one `Writer` for the run:
- `workdir/metrics.jsonl`: one JSON object per `write_scalars` call, {"step": int, name: float};
  a resumed run continues it, one record per step and kind (see `JsonlWriter`);
- `workdir/images/NAME_STEP.png`: one PNG per image of each `write_images` call;
- the console: a one-line summary per `write_scalars` call (through `tqdm.write`, so that a
  progress bar stays intact);
- TensorBoard event files in `workdir/tensorboard/` through `clu.metric_writers.SummaryWriter`,
  only when TensorFlow is importable (`pip install 'superfusion-jax[tensorboard]'`); without it
  that part is left out with one log message.
Only process 0 of a multi-host run writes anything; the other processes get a writer that
discards everything, so the loop calls the writer on every process the same way.

`MetricAverager` keeps the mean of each step metric between two log points (`clu.metrics`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics
from tqdm import tqdm

from superfusion_jax.io.images import write_image

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
IMAGES_DIR = "images"
TENSORBOARD_DIR = "tensorboard"


class Writer:
    """Sink for scalars and images of one run; this base class discards everything."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record scalar values (name -> float) at training step `step`."""

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Record pictures (name -> (H, W, 3) uint8 RGB) at training step `step`."""

    def flush(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None:
        """Flush and release files."""
        self.flush()


class JsonlWriter(Writer):
    """Scalars appended to `workdir/metrics.jsonl`, images as PNGs in `workdir/images/`.

    The file is opened in append mode, so a resumed run continues it. `start_step`: the step
    the run starts from (that of the checkpoint it resumes); the records of the steps the run
    writes again are first dropped from the file (those after `start_step`; all of them when it
    is 0), so each step is recorded once, by the run that led to the final model. None keeps
    the file as it is.
    """

    def __init__(self, workdir: str | Path, start_step: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / METRICS_FILE
        if start_step is not None and path.is_file():
            _drop_records_after(path, int(start_step))
        # Line buffered: every record is on disk when written (the file can be followed live).
        self._file = open(path, "a", buffering=1, encoding="utf-8")

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        record = {"step": int(step), **{k: _json_float(v) for k, v in scalars.items()}}
        self._file.write(json.dumps(record) + "\n")

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        folder = self.workdir / IMAGES_DIR
        folder.mkdir(exist_ok=True)
        for name, image in images.items():
            image = _check_image(name, image)
            write_image(folder / f"{_file_name(name)}_{int(step):07d}.png", image / 255.0)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ConsoleWriter(Writer):
    """One line per `write_scalars` call: 'step 100: loss=0.1234, ...' (images are skipped)."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        values = ", ".join(f"{name}={_format(value)}" for name, value in sorted(scalars.items()))
        tqdm.write(f"step {int(step)}: {values}")


class TensorBoardWriter(Writer):
    """TensorBoard event files through `clu.metric_writers.SummaryWriter` (needs TensorFlow)."""

    def __init__(self, logdir: str | Path) -> None:
        from clu import metric_writers  # imports TensorFlow

        self._writer = metric_writers.SummaryWriter(str(logdir))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._writer.write_scalars(int(step), dict(scalars))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        batch = {name: _check_image(name, image)[None] for name, image in images.items()}
        self._writer.write_images(int(step), batch)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MultiWriter(Writer):
    """Passes every call on to each of `writers`, in order."""

    def __init__(self, writers: list[Writer]) -> None:
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for writer in self.writers:
            writer.write_scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for writer in self.writers:
            writer.write_images(step, images)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (needed for TensorBoard files only)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def make_writer(
    workdir: str | Path,
    *,
    tensorboard: bool | None = None,
    console: bool = True,
    process_index: int | None = None,
    start_step: int | None = None,
) -> Writer:
    """The writer of a training run (see the module docstring).

    Args:
      workdir: the run's folder.
      tensorboard: True requires TensorBoard files (ImportError without TensorFlow), False never
        writes them, None writes them when TensorFlow is importable.
      console: also print a summary line per `write_scalars` call.
      process_index: this process's index (default `jax.process_index()`); only process 0 writes.
      start_step: the step a run starts or resumes from: `metrics.jsonl` loses the records the
        run writes again (`JsonlWriter`); None keeps it as it is.

    Returns:
      A `Writer`; a discarding one on processes other than 0.
    """
    if process_index is None:
        process_index = jax.process_index()
    if process_index != 0:
        return Writer()
    writers: list[Writer] = [JsonlWriter(workdir, start_step)]
    if console:
        writers.append(ConsoleWriter())
    if tensorboard is None:
        tensorboard = tensorflow_available()
        if not tensorboard:
            logger.info("TensorFlow is not installed: no TensorBoard files (metrics.jsonl only)")
    if tensorboard:
        writers.append(TensorBoardWriter(Path(workdir) / TENSORBOARD_DIR))
    return MultiWriter(writers)


class MetricAverager:
    """Mean of each scalar step metric since the last `reset` (a `clu.metrics.Average` each).

    `update` takes the metrics dict of a step (device arrays are fine: nothing is fetched from
    the device until `compute`); non-floating values (e.g. the boolean `nonfinite` flag) are
    ignored. The names are taken from the first update after a reset.
    """

    def __init__(self) -> None:
        self._collection: clu_metrics.Collection | None = None
        self._names: tuple[str, ...] = ()

    def update(self, step_metrics: Mapping[str, Any]) -> None:
        """Add one step's metrics (name -> scalar)."""
        values = {
            name: jnp.asarray(value, jnp.float32)
            for name, value in step_metrics.items()
            if jnp.issubdtype(jnp.result_type(value), jnp.floating)
        }
        if self._collection is None:
            self._names = tuple(sorted(values))
            collection_cls = clu_metrics.Collection.create(
                **{name: clu_metrics.Average.from_output(name) for name in self._names}
            )
            self._collection = collection_cls.single_from_model_output(**values)
        else:
            self._collection = self._collection.merge(
                self._collection.single_from_model_output(**values)
            )

    def compute(self) -> dict[str, float]:
        """{name: mean since the last reset} as Python floats; {} when nothing was added."""
        if self._collection is None:
            return {}
        return {name: float(value) for name, value in self._collection.compute().items()}

    def reset(self) -> None:
        """Forget everything added so far."""
        self._collection = None


def _drop_records_after(path: Path, start_step: int) -> None:
    """Rewrite the JSON-lines file `path` without the records a run from `start_step` writes
    again: those of later steps, and all of them from step 0 (whose evaluation is repeated).
    Lines that are not whole JSON records (a write cut short by a kill) go as well."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if step < start_step or (step == start_step and start_step > 0):
            kept.append(line + "\n")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(kept), encoding="utf-8")
    os.replace(temporary, path)


def _check_image(name: str, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image {name!r} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return image


def _file_name(name: str) -> str:
    """A metric name as a file name: anything but letters, digits, '-', '_', '.' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _json_float(value: Any) -> float | None | str:
    """JSON has no NaN/Inf: those are written as the strings 'nan', 'inf', '-inf'."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _format(value: float) -> str:
    value = float(value)
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
