"""Pairs (and labels) from folders: matching, junk, missing partners, bad files, real RoadScene."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from superfusion_jax.data.folders import PairedFolderSource, read_label
from superfusion_jax.io.images import ImageReadError
from tests.conftest import SHARED, require

ROADSCENE = SHARED / "data" / "roadscene_train"


def write_pairs(
    root: Path,
    names: list[str],
    size: tuple[int, int] = (24, 32),
    ext: str = ".png",
    labels: str | None = None,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Write root/ir/NAME.ext (grey), root/vi/NAME.ext (RGB) and, if `labels` names a folder,
    root/<labels>/NAME.png (class indices 0..8). Returns the uint8 arrays written, by name."""
    rng = np.random.default_rng(seed)
    folders = ["ir", "vi"] + ([labels] if labels else [])
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        arrays = {
            "ir": rng.integers(0, 256, size, dtype=np.uint8),
            "vi": rng.integers(0, 256, size + (3,), dtype=np.uint8),
        }
        Image.fromarray(arrays["ir"]).save(root / "ir" / f"{name}{ext}")
        Image.fromarray(arrays["vi"]).save(root / "vi" / f"{name}{ext}")
        if labels:
            arrays["label"] = rng.integers(0, 9, size, dtype=np.uint8)
            Image.fromarray(arrays["label"]).save(root / labels / f"{name}.png")
        written[name] = arrays
    return written


def corrupt_jpeg(path: Path) -> None:
    """Overwrite `path` with the first half of a valid JPEG (a truncated file)."""
    Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(path, format="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_records_match_files(tmp_path):
    written = write_pairs(tmp_path, ["a10", "a2", "a1"])
    source = PairedFolderSource(tmp_path / "ir", tmp_path / "vi")
    assert len(source) == 3
    assert [p.name for p in source.pairs] == ["a1", "a2", "a10"]  # natural order
    record = source[2]
    assert record["name"] == "a10" and "label" not in record
    assert record["ir"].shape == record["vi"].shape == (24, 32, 3)
    assert record["ir"].dtype == record["vi"].dtype == np.float32
    np.testing.assert_array_equal(record["ir"][..., 1], written["a10"]["ir"] / np.float32(255))
    np.testing.assert_array_equal(record["vi"], written["a10"]["vi"] / np.float32(255))


def test_junk_and_missing_partners_are_reported(tmp_path, caplog):
    write_pairs(tmp_path, ["x1", "x2"])
    (tmp_path / "vi" / "Thumbs.db").write_bytes(b"\x00junk")
    write_pairs(tmp_path / "extra", ["x3"])
    (tmp_path / "extra" / "ir" / "x3.png").rename(tmp_path / "ir" / "x3.png")
    with caplog.at_level(logging.INFO, logger="superfusion_jax.data.folders"):
        source = PairedFolderSource(tmp_path / "ir", tmp_path / "vi")
    assert [p.name for p in source.pairs] == ["x1", "x2"]
    assert "Thumbs.db" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("x3.png" in w and "no visible partner" in w for w in warnings)


def test_labels(tmp_path, caplog):
    written = write_pairs(tmp_path, ["m1", "m2", "m3"], labels="label")
    (tmp_path / "label" / "m3.png").unlink()
    with caplog.at_level(logging.WARNING):
        source = PairedFolderSource(tmp_path / "ir", tmp_path / "vi", tmp_path / "label")
    assert [p.name for p in source.pairs] == ["m1", "m2"]
    assert "m3: no label" in caplog.text
    record = source[1]
    assert record["label"].dtype == np.int32 and record["label"].shape == (24, 32)
    np.testing.assert_array_equal(record["label"], written["m2"]["label"])


def test_read_label_keeps_palette_indices_and_refuses_colour(tmp_path):
    indices = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32) % 9
    palette = Image.fromarray(indices).convert("P")  # grey → palette, indices = grey levels
    palette.putpalette([(7 * i) % 256 for i in range(768)])  # colours unrelated to the indices
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label(tmp_path / "p.png"), indices)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError, match="rgb.png.*class index"):
        read_label(tmp_path / "rgb.png")


def test_corrupt_file_raises_naming_it(tmp_path):
    write_pairs(tmp_path, ["c1", "c2"], ext=".jpg")
    corrupt_jpeg(tmp_path / "vi" / "c2.jpg")
    source = PairedFolderSource(tmp_path / "ir", tmp_path / "vi")
    source[0]
    with pytest.raises(ImageReadError, match="c2.jpg"):
        source[1]


def test_size_mismatch_raises_naming_the_file(tmp_path):
    write_pairs(tmp_path, ["s1"])
    Image.fromarray(np.zeros((20, 32, 3), np.uint8)).save(tmp_path / "vi" / "s1.png")
    with pytest.raises(ImageReadError, match=r"s1.png: size 20x32 differs"):
        PairedFolderSource(tmp_path / "ir", tmp_path / "vi")[0]


def test_no_pairs(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    with pytest.raises(ValueError, match="no complete image pairs"):
        PairedFolderSource(tmp_path / "ir", tmp_path / "vi")
    with pytest.raises(FileNotFoundError):
        PairedFolderSource(tmp_path / "nope", tmp_path / "vi")


def test_real_roadscene(caplog):
    root = require(ROADSCENE)
    with caplog.at_level(logging.INFO, logger="superfusion_jax.data.folders"):
        source = PairedFolderSource(root / "ir", root / "vi")
    assert len(source) == 201
    assert "Thumbs.db" in caplog.text
    record = source[0]
    assert record["ir"].shape == record["vi"].shape and record["ir"].shape[2] == 3
