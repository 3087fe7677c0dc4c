"""Displacement colours (Middlebury wheel) and image grids."""

import flow_vis
import numpy as np
import pytest

from superfusion_jax.visualization import flow_to_color, image_grid

WHEEL = flow_vis.make_colorwheel()  # (55, 3): red at 0, through yellow, green, cyan, blue


def _field(*vectors):
    return np.array([vectors], dtype=np.float32)  # (1, len, 2)


def test_pure_directions_have_the_wheel_colours():
    colours = flow_to_color(_field((3.0, 0.0), (-3.0, 0.0), (0.0, -0.0)))
    np.testing.assert_array_equal(colours[0, 0], WHEEL[0])  # +x: first wheel entry, red
    np.testing.assert_array_equal(colours[0, 1], WHEEL[27])  # -x: half way round, cyan-blue
    np.testing.assert_array_equal(colours[0, 2], [255, 255, 255])
    assert colours.dtype == np.uint8 and colours.shape == (1, 3, 3)


def test_minus_zero_does_not_flip_the_hue():
    np.testing.assert_array_equal(flow_to_color(_field((2.0, -0.0)))[0, 0], WHEEL[0])


def test_zero_field_is_white():
    np.testing.assert_array_equal(flow_to_color(np.zeros((24, 40, 2))), 255)


def test_saturation_follows_the_magnitude():
    colours = flow_to_color(_field((4.0, 0.0), (2.0, 0.0)))
    np.testing.assert_array_equal(colours[0, 1], [255, 127, 127])  # half length: half saturated
    fixed = flow_to_color(_field((2.0, 0.0), (8.0, 0.0)), max_magnitude=4.0)
    np.testing.assert_array_equal(fixed[0, 0], [255, 127, 127])
    np.testing.assert_array_equal(fixed[0, 1], [191, 0, 0])  # beyond max_magnitude: darkened


def test_flow_to_color_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        flow_to_color(np.zeros((4, 4, 3)))


def test_image_grid_places_images_row_by_row():
    first = np.random.default_rng(0).random((24, 40, 3))
    second = np.full((30, 36, 1), 0.5)
    third = np.zeros((10, 10, 3))
    grid = image_grid([first, second, third], ncols=2, gap=4)
    assert grid.shape == (4 + 2 * (30 + 4), 4 + 2 * (40 + 4), 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[4:28, 4:44], np.round(first * 255))
    np.testing.assert_array_equal(grid[4:34, 48:84], 128)
    np.testing.assert_array_equal(grid[38:48, 4:14], 0)
    np.testing.assert_array_equal(grid[:4], 255)


def test_image_grid_labels_add_a_caption_row():
    image = np.ones((24, 40, 3))
    plain = image_grid([image, image], ncols=2)
    labelled = image_grid([image, image], ncols=2, labels=["infrared", "visible"])
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] == plain.shape[1]
    caption = labelled[4 : labelled.shape[0] - 28]
    assert caption.min() < 128  # dark text drawn above the (white) images


def test_image_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="labels"):
        image_grid([np.zeros((4, 4, 3))], ncols=1, labels=["a", "b"])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        image_grid([np.zeros((4, 4))], ncols=1)
