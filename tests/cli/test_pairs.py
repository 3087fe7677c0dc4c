"""Pairing infrared and visible files by name: junk, partners, extensions, natural order."""

import pytest

from superfusion_jax.io.pairs import ImagePair, find_pairs, natural_key
from tests.conftest import SHARED, require


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")  # pairing looks at names only


def test_folders_pair_by_stem_in_natural_order_and_report_the_rest(tmp_path):
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    _touch(ir, "00010.png", "00009.png", "00004N.png", "ir_only.png", ".00011.png", "notes.txt")
    _touch(vi, "00009.jpg", "00010.JPG", "00004N.png", "vi_only.tif", "Thumbs.db", "._00009.jpg")
    (vi / "sub").mkdir()
    listing = find_pairs(ir, vi)
    assert listing.pairs == [
        ImagePair("00004N", ir / "00004N.png", vi / "00004N.png"),
        ImagePair("00009", ir / "00009.png", vi / "00009.jpg"),
        ImagePair("00010", ir / "00010.png", vi / "00010.JPG"),
    ]
    skipped = {path.name: reason for path, reason in listing.skipped}
    assert set(skipped) == {".00011.png", "notes.txt", "Thumbs.db", "._00009.jpg", "sub"}
    assert "hidden" in skipped["._00009.jpg"]
    assert "not an image" in skipped["Thumbs.db"]
    assert "folder" in skipped["sub"]
    assert listing.ir_without_vi == [ir / "ir_only.png"]
    assert listing.vi_without_ir == [vi / "vi_only.tif"]


def test_two_images_with_one_stem_in_a_folder_are_ambiguous(tmp_path):
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    _touch(ir, "a.png", "a.jpg", "b.png")
    _touch(vi, "a.png", "b.png")
    listing = find_pairs(ir, vi)
    assert [pair.name for pair in listing.pairs] == ["b"]
    assert {path.name for path, _ in listing.skipped} == {"a.png", "a.jpg"}
    assert all("ambiguous" in reason for _, reason in listing.skipped)
    assert listing.vi_without_ir == [vi / "a.png"]


def test_two_files_are_one_pair_named_after_the_visible_file(tmp_path):
    _touch(tmp_path, "thermal.png", "colour.jpg")
    listing = find_pairs(tmp_path / "thermal.png", tmp_path / "colour.jpg")
    assert listing.pairs == [ImagePair("colour", tmp_path / "thermal.png", tmp_path / "colour.jpg")]
    assert listing.skipped == [] and listing.ir_without_vi == [] and listing.vi_without_ir == []


def test_bad_paths(tmp_path):
    _touch(tmp_path / "ir", "a.png")
    with pytest.raises(FileNotFoundError, match="absent"):
        find_pairs(tmp_path / "ir", tmp_path / "absent")
    with pytest.raises(ValueError, match="both be folders"):
        find_pairs(tmp_path / "ir", tmp_path / "ir" / "a.png")


def test_natural_key_orders_numbers_by_value():
    names = ["img10.png", "img9.png", "IMG2.png", "img09b.png", "a"]
    expected = ["a", "IMG2.png", "img9.png", "img09b.png", "img10.png"]
    assert sorted(names, key=natural_key) == expected


def test_roadscene_folder_pairs_all_and_skips_thumbs_db():
    root = require(SHARED / "data" / "roadscene_train")
    listing = find_pairs(root / "ir", root / "vi")
    assert len(listing.pairs) == 201
    assert [(path.name, "not an image" in reason) for path, reason in listing.skipped] == [
        ("Thumbs.db", True)
    ]
    assert listing.ir_without_vi == [] and listing.vi_without_ir == []
    first = "FLIR_00006"
    assert listing.pairs[0] == ImagePair(first, root / f"ir/{first}.jpg", root / f"vi/{first}.jpg")
    assert listing.pairs[-1].name.startswith("FLIR_video_")
