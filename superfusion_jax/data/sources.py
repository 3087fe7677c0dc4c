"""The random-access record sources a training run reads (`make_source`): synthetic scenes,
aligned pairs in folders, or a prepared TFDS dataset, optionally with `SyntheticInfrared` in
place of their infrared images; and `FirstRecords`, the first few records of one (a held-out
set). Each source reads a record when it is asked for (see each source for its keys: `ir`, `vi`
and, where labelled, `label`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
from jax.experimental import multihost_utils

from superfusion_jax.data.folders import PairedFolderSource
from superfusion_jax.data.stress import synthetic_infrared
from superfusion_jax.data.synthetic import SyntheticPairs

SOURCES = ("synthetic", "folder", "tfds")


def check_source(spec: ml_collections.ConfigDict, field: str) -> None:
    """Raise ValueError naming the first invalid field of `spec` (config.data or config.eval,
    named `field`) before anything is read: an unknown source, or a folder source without its
    two folders (recipes name no data path: the user gives it)."""
    if spec.source not in SOURCES:
        raise ValueError(f"{field}.source must be one of {SOURCES}, got {spec.source!r}")
    if spec.source == "folder" and not (spec.ir_dir and spec.vi_dir):
        raise ValueError(
            f"{field}.ir_dir and {field}.vi_dir must name the folders of aligned infrared and "
            f"visible images (--config.{field.removeprefix('config.')}.ir_dir=DIR ...); the "
            "RoadScene recipes set both from their data argument, e.g. "
            "--config=configs/fusion.py:data=../shared/data"
        )


def make_source(spec: ml_collections.ConfigDict) -> Sequence[dict]:
    """The random-access pairs `spec` (config.data or config.eval) names.

    spec.source: 'synthetic' (`SyntheticPairs(synthetic_pairs, synthetic_size,
    synthetic_size, synthetic_seed)`), 'folder' (`PairedFolderSource(ir_dir, vi_dir,
    label_dir or None)`) or 'tfds' (builder `tfds_name` 'msrs' / 'roadscene' prepared in
    data_dir from manual_dir ('' downloads), split `split`); spec.synthetic_infrared True
    wraps it in `SyntheticInfrared`.
    """
    source = _make_base_source(spec)
    return SyntheticInfrared(source) if spec.get("synthetic_infrared", False) else source


def _make_base_source(spec: ml_collections.ConfigDict) -> Sequence[dict]:
    """The pairs of `make_source` as read (no `SyntheticInfrared`)."""
    check_source(spec, "spec")
    if spec.source == "synthetic":
        size = spec.synthetic_size
        return SyntheticPairs(spec.synthetic_pairs, size, size, spec.synthetic_seed)
    if spec.source == "folder":
        return PairedFolderSource(spec.ir_dir, spec.vi_dir, spec.label_dir or None)
    if spec.source == "tfds":
        from superfusion_jax.data import tfds_builders  # imports tensorflow_datasets

        builders = {"msrs": tfds_builders.Msrs, "roadscene": tfds_builders.RoadScene}
        if spec.tfds_name not in builders:
            raise ValueError(f"unknown tfds_name {spec.tfds_name!r}; expected one of {builders}")
        data_dir = Path(spec.data_dir).expanduser()
        manual_dir = Path(spec.manual_dir).expanduser() if spec.manual_dir else None
        # Process 0 prepares the dataset; the others then find it prepared.
        if jax.process_index() == 0:
            builder = tfds_builders.prepare_dataset(builders[spec.tfds_name], data_dir, manual_dir)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("superfusion_tfds_prepared")
        if jax.process_index() != 0:
            builder = tfds_builders.prepare_dataset(builders[spec.tfds_name], data_dir, manual_dir)
        return tfds_builders.TfdsPairSource(builder, spec.split)


class FirstRecords(Sequence):
    """The first `count` records of a random-access source (all of them for count <= 0)."""

    def __init__(self, source: Sequence[dict], count: int) -> None:
        self.source = source
        self.count = len(source) if count <= 0 else min(count, len(source))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"record {index} out of range [0, {self.count})")
        return self.source[index]


class SyntheticInfrared(Sequence):
    """A source's records with `ir` replaced by `data.stress.synthetic_infrared` of their `vi`
    (seed = the record's index): pairs whose two images are aligned exactly, where real pairs'
    cameras leave 1-3 px of their own (docs/registration.md). Training the registration on
    them gives it exact targets at the residual scale; other keys pass unchanged.
    """

    def __init__(self, source: Sequence[dict]) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.source[index])
        record["ir"] = synthetic_infrared(record["vi"], seed=index)
        return record
