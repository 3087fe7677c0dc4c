"""TFDS builders: tiny fake MSRS / RoadScene copies → ArrayRecord → as_data_source, no TF."""

import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from superfusion_jax.data.pipeline import make_train_iterator
from superfusion_jax.data.tfds_builders import (
    ROADSCENE_URL,
    Msrs,
    RoadScene,
    TfdsPairSource,
    prepare_dataset,
)
from tests.data.test_folders import write_pairs


def assert_records_equal_files(source: TfdsPairSource, written: dict, with_label: bool):
    assert len(source) == len(written)
    names = set()
    for index in range(len(source)):
        record = source[index]
        files = written[record["name"]]
        names.add(record["name"])
        assert record["ir"].dtype == record["vi"].dtype == np.float32
        grey = np.repeat(files["ir"][..., None], 3, -1).astype(np.float32)
        np.testing.assert_array_equal(record["ir"], grey / np.float32(255))
        np.testing.assert_array_equal(record["vi"], files["vi"] / np.float32(255))
        if with_label:
            assert record["label"].dtype == np.int32
            np.testing.assert_array_equal(record["label"], files["label"])
        else:
            assert "label" not in record
    assert names == set(written)


def test_msrs_from_manual_dir(tmp_path):
    copy = tmp_path / "manual" / "MSRS-main"  # as the GitHub archive extracts
    train = write_pairs(copy / "train", ["00001D", "00002N", "00003D"], labels="label")
    test = write_pairs(copy / "test", ["00004N", "00005D"], labels="label", seed=1)
    (copy / "train" / "vi" / "Thumbs.db").write_bytes(b"junk")
    builder = prepare_dataset(Msrs, tmp_path / "data", tmp_path / "manual")

    files = sorted(p.name for p in (tmp_path / "data" / "msrs" / "1.0.0").iterdir())
    assert "msrs-train.array_record-00000-of-00001" in files
    assert "msrs-test.array_record-00000-of-00001" in files
    assert_records_equal_files(TfdsPairSource(builder, "train"), train, with_label=True)
    assert_records_equal_files(TfdsPairSource(builder, "test"), test, with_label=True)
    assert "tensorflow" not in sys.modules  # built and read without TensorFlow

    # reloading the prepared dataset needs no manual copy
    again = TfdsPairSource(Msrs(data_dir=str(tmp_path / "data")), "test")
    assert repr(again) == repr(TfdsPairSource(builder, "test"))
    batch = next(make_train_iterator(again, batch_size=2, crop_size=16, seed=0))
    assert batch["ir"].shape == (2, 16, 16, 3) and batch["label"].shape == (2, 16, 16)


def test_msrs_accepts_the_segmentation_labels_folder(tmp_path):
    copy = tmp_path / "manual"
    train = write_pairs(copy / "train", ["1", "2"], labels="Segmentation_labels")
    write_pairs(copy / "test", ["3"], labels="Segmentation_labels")
    builder = prepare_dataset(Msrs, tmp_path / "data", copy)
    assert_records_equal_files(TfdsPairSource(builder, "train"), train, with_label=True)


def test_roadscene_published_layout(tmp_path):
    copy = tmp_path / "manual" / "RoadScene-master"
    written = write_pairs(copy, ["FLIR_00001", "FLIR_00002", "FLIR_00010"], size=(26, 30))
    (copy / "ir").rename(copy / "cropinfrared")
    (copy / "vi").rename(copy / "crop_LR_visible")
    (copy / "crop_LR_visible" / "Thumbs.db").write_bytes(b"junk")
    builder = prepare_dataset(RoadScene, tmp_path / "data", tmp_path / "manual")
    assert list(builder.info.splits) == ["train"]
    assert_records_equal_files(TfdsPairSource(builder, "train"), written, with_label=False)


def test_download_when_no_manual_copy(tmp_path, monkeypatch):
    archive = tmp_path / "extracted"
    written = write_pairs(archive / "RoadScene-master", ["a", "b"])
    urls = []

    def fake_download_and_extract(self, url):
        urls.append(url)
        return archive

    monkeypatch.setattr(
        tfds.download.DownloadManager, "download_and_extract", fake_download_and_extract
    )
    builder = prepare_dataset(RoadScene, tmp_path / "data")
    assert urls == [ROADSCENE_URL]
    assert_records_equal_files(TfdsPairSource(builder, "train"), written, with_label=False)


def test_wrong_layout_is_explained(tmp_path):
    write_pairs(tmp_path / "manual" / "train", ["1"])  # no test split, no labels
    with pytest.raises(FileNotFoundError, match="label"):
        prepare_dataset(Msrs, tmp_path / "data", tmp_path / "manual")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        prepare_dataset(Msrs, tmp_path / "data", tmp_path / "missing")
