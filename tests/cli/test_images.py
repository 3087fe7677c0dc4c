"""Reading and writing images: bit depths, channel layouts, formats and broken files."""

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from superfusion_jax.io.images import ImageReadError, image_size, read_image, write_image

RNG = np.random.default_rng(0)


def _grey8(h=24, w=40):
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def _rgb8(h=24, w=40):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _min_max(x):
    x = x.astype(np.float64)
    return (x - x.min()) / (x.max() - x.min())


def test_grey_8bit_png_is_repeated_to_rgb_and_divided_by_255(tmp_path):
    grey = _grey8()
    Image.fromarray(grey).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (24, 40, 3) and image.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], grey / np.float32(255))


def test_rgb_and_rgba_8bit_png(tmp_path):
    rgb = _rgb8()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, RNG.integers(0, 256, (24, 40, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb / np.float32(255))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb / np.float32(255))


def test_palette_png_reads_as_its_colours(tmp_path):
    rgb = _rgb8()
    palette_image = Image.fromarray(rgb).quantize(colors=16)
    palette_image.save(tmp_path / "p.png")
    expected = np.asarray(palette_image.convert("RGB")) / np.float32(255)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), expected)


def test_grey_16bit_png_is_min_max_normalised(tmp_path):
    frame = RNG.integers(7000, 9000, (24, 40), dtype=np.uint16)  # a thermal camera's range
    Image.fromarray(frame).save(tmp_path / "t.png")
    image = read_image(tmp_path / "t.png")
    assert image.min() == 0.0 and image.max() == 1.0
    np.testing.assert_allclose(image[..., 1], _min_max(frame), atol=1e-6)


def test_constant_16bit_image_reads_as_zeros(tmp_path):
    Image.fromarray(np.full((24, 40), 1234, np.uint16)).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), 0.0)


@pytest.mark.parametrize(
    "pixels",
    [
        RNG.integers(0, 65536, (24, 40), dtype=np.uint16),
        RNG.integers(0, 65536, (24, 40, 3), dtype=np.uint16),
        RNG.integers(0, 65536, (24, 40, 4), dtype=np.uint16),
        RNG.normal(300.0, 5.0, (24, 40)).astype(np.float32),
        RNG.normal(300.0, 5.0, (24, 40, 3)).astype(np.float32),
    ],
    ids=["grey16", "rgb16", "rgba16", "float", "float-rgb"],
)
def test_deep_tiffs_keep_full_precision(tmp_path, pixels):
    kwargs = {}
    if pixels.ndim == 3:
        kwargs["photometric"] = "rgb"
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        kwargs["extrasamples"] = ["unassalpha"]
    tifffile.imwrite(tmp_path / "x.tif", pixels, **kwargs)
    colour = pixels[..., :3] if pixels.ndim == 3 else pixels[..., None]
    expected = np.broadcast_to(_min_max(colour), (24, 40, 3))
    np.testing.assert_allclose(read_image(tmp_path / "x.tif"), expected, atol=1e-6)
    assert image_size(tmp_path / "x.tif") == (24, 40)
    misnamed = tmp_path / "x.png"  # recognised by content, not by name
    misnamed.write_bytes((tmp_path / "x.tif").read_bytes())
    np.testing.assert_allclose(read_image(misnamed), expected, atol=1e-6)


def test_8bit_rgb_tiff(tmp_path):
    rgb = _rgb8()
    Image.fromarray(rgb).save(tmp_path / "x.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "x.tiff"), rgb / np.float32(255))


def test_jpeg_grey_and_rgb(tmp_path):
    smooth = np.linspace(0, 255, 40)[None, :].repeat(24, 0).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.stack([smooth, smooth[:, ::-1], smooth], -1)).save(
        tmp_path / "c.JPEG", quality=95
    )
    grey = read_image(tmp_path / "g.jpg")
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    np.testing.assert_allclose(grey[..., 0], smooth / 255, atol=0.03)
    colour = read_image(tmp_path / "c.JPEG")
    np.testing.assert_allclose(colour[..., 1], smooth[:, ::-1] / 255, atol=0.05)


def _png_bytes(h, w, depth, colour_type, samples):
    """A minimal PNG written by hand (Pillow cannot write 16-bit colour PNGs)."""

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    row = bytes(w * samples * depth // 8)
    raw = b"".join(b"\x00" + row for _ in range(h))
    header = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_16bit_colour_png_is_refused_not_truncated(tmp_path):
    (tmp_path / "rgb16.png").write_bytes(_png_bytes(6, 5, 16, 2, 3))
    with pytest.raises(ImageReadError, match="16-bit colour PNG"):
        read_image(tmp_path / "rgb16.png")


def _encoded(tmp_path, fmt):
    path = tmp_path / f"good.{fmt}"
    Image.fromarray(_rgb8()).save(path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("half.png", lambda tmp: _encoded(tmp, "png")[:300], "truncated"),
        ("half.jpg", lambda tmp: _encoded(tmp, "jpg")[:400], "truncated"),
        ("garbage.png", lambda tmp: bytes(range(256)) * 4, "not an image"),
        ("empty.jpg", lambda tmp: b"", "empty"),
        ("notes.tif", lambda tmp: b"II*\x00 this is not a tiff", "TIFF"),
    ],
)
# PIL warns about the junk TIFF's EXIF before it fails; the test is about the error that follows
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_broken_files_raise_image_read_error_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content(tmp_path))
    with pytest.raises(ImageReadError, match=problem) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and caught.value.path == path


def test_missing_file_and_folder_raise_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "absent.png")
    with pytest.raises(ImageReadError, match="not a regular file"):
        image_size(tmp_path)


def test_image_size_reads_the_header_only(tmp_path):
    Image.fromarray(_rgb8(30, 36)).save(tmp_path / "x.png")
    truncated = (tmp_path / "x.png").read_bytes()[:200]
    (tmp_path / "cut.png").write_bytes(truncated)
    assert image_size(tmp_path / "x.png") == (30, 36)
    assert image_size(tmp_path / "cut.png") == (30, 36)
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "cut.png")


def test_write_image_rounds_and_clips(tmp_path):
    values = np.array([[[-0.2, 0.0, 0.5], [1 / 255 * 0.49, 1 / 255 * 0.51, 1.7]]], np.float32)
    write_image(tmp_path / "w.png", values)
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "w.png")), [[[0, 0, 128], [0, 1, 255]]]
    )
    grey = RNG.random((24, 40)).astype(np.float32)
    write_image(tmp_path / "g.png", grey)
    back = read_image(tmp_path / "g.png")[..., 0]
    np.testing.assert_array_equal(np.round(back * 255), np.round(grey * 255))


def test_write_image_rejects_other_shapes(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 2)))
