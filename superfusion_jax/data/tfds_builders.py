"""TFDS builders for MSRS and RoadScene, stored as ArrayRecord and read without TensorFlow.

`prepare_dataset(Msrs, data_dir, manual_dir)` converts a local copy (or, without one, downloads
the dataset's GitHub archive) into `data_dir/<name>/<version>/` as ArrayRecord files;
`TfdsPairSource(builder, split)` then reads it by random access (`builder.as_data_source`), with
records in the form of `PairedFolderSource`, ready for `superfusion_jax.data.pipeline`.

Stored features (uint8 arrays, zlib-compressed; no image codec, so TensorFlow is not needed):
- ir: (H, W, 1) infrared grey levels (the mean of the file's channels: exact for grey files);
- vi: (H, W, 3) visible RGB;
- label: (H, W) class indices (MSRS only; 0 … 8, see `synthetic.MSRS_CLASSES`);
- name: the file name stem.
Images are read with `superfusion_jax.io.images.read_image`: 8-bit files are stored exactly;
deeper files are min–max normalised per image, then quantised to 8 bits.

Published layouts:
- MSRS (github.com/Linfeng-Tang/MSRS): train/ and test/, each with ir/, vi/ and a label folder
  (`MSRS_LABEL_FOLDERS`), PNG files of the same names, 480×640. Splits train and test.
- RoadScene (github.com/hanna-xu/RoadScene): cropinfrared/ and crop_LR_visible/ (the visible
  images at the infrared's size; crop_HR_visible/ is not used), JPEG files of the same names;
  ir/ and vi/ are accepted too. One split, train. Junk such as Thumbs.db is skipped.
A copy may sit directly in manual_dir or one folder below it (e.g. manual_dir/MSRS-main/).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from superfusion_jax.data.folders import PairedFolderSource
from superfusion_jax.data.pipeline import SkipUnreadable

logger = logging.getLogger(__name__)

MSRS_URL = "https://github.com/Linfeng-Tang/MSRS/archive/refs/heads/main.zip"
ROADSCENE_URL = "https://github.com/hanna-xu/RoadScene/archive/refs/heads/master.zip"
# Names under which MSRS copies hold the segmentation labels (first found is used).
MSRS_LABEL_FOLDERS = ("label", "Label", "labels", "Segmentation_labels")
# (infrared folder, visible folder) of RoadScene copies, in order of preference.
ROADSCENE_FOLDERS = (("cropinfrared", "crop_LR_visible"), ("ir", "vi"))


def _uint8_image(shape: tuple) -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=shape, dtype=np.uint8, encoding="zlib")


class _PairBuilder(tfds.core.GeneratorBasedBuilder):
    """What the two builders share: ArrayRecord output, manual copy or download, pair encoding.

    Abstract (TFDS does not register it)."""

    URL = ""

    def __init__(self, *, file_format: str = "array_record", **kwargs) -> None:
        super().__init__(file_format=file_format, **kwargs)

    def _dataset_root(
        self, dl_manager: tfds.download.DownloadManager, has_layout: Callable[[Path], bool]
    ) -> Path:
        """The folder holding the layout: in manual_dir if there is one, else downloaded."""
        try:
            root, origin = Path(dl_manager.manual_dir), "manual_dir"
        except AssertionError:  # TFDS's way of saying: manual_dir missing or empty
            logger.warning("no manual copy of %s found; downloading %s", self.name, self.URL)
            root, origin = Path(dl_manager.download_and_extract(self.URL)), "download"
        for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            if has_layout(candidate):
                return candidate
        raise FileNotFoundError(
            f"{self.name}: the {origin} {root} does not hold the expected layout "
            f"(directly or one folder below).\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )

    def _generate_examples(self, source: PairedFolderSource):
        """(key, example) for every readable record of `source`; unreadable ones are logged."""
        readable = SkipUnreadable(source)
        for index in range(len(readable)):
            record = readable[index]
            if record is None:
                continue
            example = {
                "ir": _to_uint8(record["ir"].mean(axis=-1, keepdims=True)),
                "vi": _to_uint8(record["vi"]),
                "name": record["name"],
            }
            if "label" in record:
                if record["label"].min() < 0 or record["label"].max() > 255:
                    logger.warning("%s: label values outside 0..255; left out", record["name"])
                    continue
                example["label"] = record["label"].astype(np.uint8)
            yield record["name"], example


class Msrs(_PairBuilder):
    """MSRS: 1,083 train and 361 test aligned pairs (480×640) with 9-class segmentation labels."""

    name = "msrs"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "ir, vi, label as zlib-compressed uint8 arrays, ArrayRecord."}
    URL = MSRS_URL
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Get MSRS from https://github.com/Linfeng-Tang/MSRS (e.g. {MSRS_URL}) and extract it into
    manual_dir, so that manual_dir/[one folder/]train/ and test/ each hold ir/, vi/ and a label
    folder (one of {", ".join(MSRS_LABEL_FOLDERS)}) of PNG files with the same names.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Multi-Spectral Road Scenarios: aligned infrared-visible pairs with "
            "segmentation labels (unlabelled, car, person, bike, curve, car stop, guardrail, "
            "color cone, bump).",
            features=tfds.features.FeaturesDict(
                {
                    "ir": _uint8_image((None, None, 1)),
                    "vi": _uint8_image((None, None, 3)),
                    "label": _uint8_image((None, None)),
                    "name": tfds.features.Text(),
                }
            ),
            homepage="https://github.com/Linfeng-Tang/MSRS",
            citation="Tang, Yuan, Zhang, Jiang, Ma. PIAFusion: A progressive infrared and visible "
            "image fusion network based on illumination aware. Information Fusion, 2022.",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        root = self._dataset_root(dl_manager, _is_msrs_root)
        return {
            split: self._generate_examples(_msrs_split(root / split)) for split in ("train", "test")
        }


class RoadScene(_PairBuilder):
    """RoadScene: 221 aligned infrared–visible road pairs from FLIR videos, sizes vary."""

    name = "roadscene"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "ir, vi as zlib-compressed uint8 arrays, ArrayRecord."}
    URL = ROADSCENE_URL
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Get RoadScene from https://github.com/hanna-xu/RoadScene (e.g. {ROADSCENE_URL}) and extract
    it into manual_dir, so that manual_dir/[one folder/]cropinfrared/ and crop_LR_visible/ (or
    ir/ and vi/) hold JPEG files with the same names.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="RoadScene: aligned infrared-visible pairs of road scenes (FLIR ADAS).",
            features=tfds.features.FeaturesDict(
                {
                    "ir": _uint8_image((None, None, 1)),
                    "vi": _uint8_image((None, None, 3)),
                    "name": tfds.features.Text(),
                }
            ),
            homepage="https://github.com/hanna-xu/RoadScene",
            citation="Xu, Ma, Le, Jiang, Guo. FusionDN: A unified densely connected network for "
            "image fusion. AAAI 2020.",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        root = self._dataset_root(dl_manager, lambda p: _roadscene_folders(p) is not None)
        ir_name, vi_name = _roadscene_folders(root)
        source = PairedFolderSource(root / ir_name, root / vi_name)
        return {"train": self._generate_examples(source)}


def prepare_dataset(
    builder_cls: type[_PairBuilder],
    data_dir: str | Path,
    manual_dir: str | Path | None = None,
) -> tfds.core.DatasetBuilder:
    """Build `builder_cls` (Msrs or RoadScene) into data_dir, unless it is there already.

    Args:
      builder_cls: `Msrs` or `RoadScene`.
      data_dir: where TFDS keeps prepared datasets (data_dir/<name>/<version>/).
      manual_dir: a folder holding a local copy in the published layout; None downloads the
        dataset's GitHub archive (`MSRS_URL`, `ROADSCENE_URL`) instead.

    Raises:
      FileNotFoundError: manual_dir is not a folder, or holds no copy in the expected layout.

    Returns:
      The prepared builder; read a split with `TfdsPairSource(builder, split)`.
    """
    if manual_dir is not None and not Path(manual_dir).is_dir():
        raise FileNotFoundError(f"manual_dir {manual_dir} is not a folder")
    builder = builder_cls(data_dir=str(data_dir))
    manual = None if manual_dir is None else str(manual_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual)
    builder.download_and_prepare(download_config=config)
    return builder


class TfdsPairSource:
    """Random access to a prepared split, records as `PairedFolderSource` gives them.

    Record i: dict(ir=(H, W, 3) float32 in [0, 1] (grey repeated), vi=(H, W, 3) float32 in
    [0, 1], label=(H, W) int32 (MSRS), name=str). Record order is the one TFDS stored (by key
    hash), not name order.
    """

    def __init__(self, builder: tfds.core.DatasetBuilder, split: str) -> None:
        self.name, self.split = f"{builder.name}:{builder.version}", split
        self.data_dir = str(builder.data_dir)
        self._examples = builder.as_data_source(split)

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict:
        example = self._examples[index]
        record = {
            "ir": np.repeat(example["ir"], 3, axis=-1).astype(np.float32) / 255.0,
            "vi": example["vi"].astype(np.float32) / 255.0,
            "name": _text(example["name"]),
        }
        if "label" in example:
            record["label"] = example["label"].astype(np.int32)
        return record

    def __repr__(self) -> str:
        return f"TfdsPairSource({self.name}, split={self.split!r}, data_dir={self.data_dir!r})"


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats → nearest of the 256 levels (exact for images read from 8-bit files)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _msrs_label_folder(split_dir: Path) -> Path | None:
    return next((split_dir / n for n in MSRS_LABEL_FOLDERS if (split_dir / n).is_dir()), None)


def _is_msrs_root(root: Path) -> bool:
    return all(
        (root / split / kind).is_dir() for split in ("train", "test") for kind in ("ir", "vi")
    ) and all(_msrs_label_folder(root / split) is not None for split in ("train", "test"))


def _msrs_split(split_dir: Path) -> PairedFolderSource:
    return PairedFolderSource(split_dir / "ir", split_dir / "vi", _msrs_label_folder(split_dir))


def _roadscene_folders(root: Path) -> tuple[str, str] | None:
    return next(
        (pair for pair in ROADSCENE_FOLDERS if all((root / name).is_dir() for name in pair)),
        None,
    )
