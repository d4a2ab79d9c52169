"""Tests for ddkit.data.images: uint8 conversion, grids and PNG plots."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.data.images import (
    make_grid,
    save_grid,
    save_loss_curve,
    save_points_plot,
    to_uint8,
)


def test_to_uint8_mapping_and_layout():
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 3.0, 0.5, -0.5, float("nan")]).view(1, 1, 2, 4)
    u = to_uint8(x)
    assert u.dtype == np.uint8 and u.shape == (1, 2, 4, 1)
    # floor((x + 1)·127.5 + 0.5): 0.5 → 191.25 → 191, −0.5 → 63.75 → 64
    assert u[0, :, :, 0].tolist() == [[0, 255, 128, 0], [255, 191, 64, 0]]


def test_to_uint8_channels_last_and_round_trip():
    u = torch.arange(256, dtype=torch.uint8)
    x = torch.stack([u, 255 - u, u]).view(1, 3, 16, 16).float() / 127.5 - 1  # [1, 3, 16, 16]
    back = to_uint8(x)
    assert back.shape == (1, 16, 16, 3)
    assert np.array_equal(back[0, :, :, 0].reshape(-1), np.arange(256))
    assert np.array_equal(back[0, :, :, 1].reshape(-1), 255 - np.arange(256))


def test_to_uint8_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        to_uint8(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        to_uint8(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def _tiles(n: int, h: int, w: int, c: int) -> np.ndarray:
    values = (np.arange(n) * 20 + 10).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, h, w, c)).copy()


def test_grid_shape_padding_and_placement():
    images = _tiles(5, 4, 6, 3)
    grid = make_grid(images, nrow=3, padding=2, scale=1)
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (6 + 2) + 2, 3)
    # tile i sits at row i // 3, column i % 3
    for i in range(5):
        top, left = 2 + (i // 3) * 6, 2 + (i % 3) * 8
        assert (grid[top : top + 4, left : left + 6] == 10 + 20 * i).all()
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()  # border
    assert (grid[8:12, 18:24] == 255).all()  # the empty sixth cell


def test_grid_default_nrow_and_scale():
    grid = make_grid(_tiles(10, 8, 8, 1))  # 8×8 digits: scale 4, nrow ceil(√10) = 4
    assert grid.shape == (3 * (32 + 1) + 1, 4 * (32 + 1) + 1, 1)
    assert (grid[1:33, 1:33] == 10).all()
    assert make_grid(_tiles(4, 32, 32, 3)).shape == (2 * 33 + 1, 2 * 33 + 1, 3)
    assert make_grid(_tiles(1, 10, 10, 3), padding=0).shape == (40, 40, 3)  # ceil(32/10) = 4


def test_grid_nearest_neighbour_scaling():
    image = np.array([[0, 255], [100, 50]], dtype=np.uint8)[None, :, :, None]
    grid = make_grid(image, padding=0, scale=3)
    expected = np.kron(image[0, :, :, 0], np.ones((3, 3), dtype=np.uint8))
    assert np.array_equal(grid[:, :, 0], expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nrow=0), "nrow must be >= 1"),
        (dict(scale=0), "scale must be a positive integer"),
        (dict(padding=-1), "padding must be >= 0"),
    ],
)
def test_grid_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_grid(_tiles(2, 4, 4, 1), **kwargs)


def test_grid_rejects_float_images():
    with pytest.raises(ValueError, match="to_uint8"):
        make_grid(torch.zeros(2, 4, 4, 3))
    with pytest.raises(ValueError, match="uint8"):
        make_grid(np.zeros((2, 4, 4, 3), dtype=np.float32))


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_grid_round_trips_through_pillow(tmp_path, channels, mode):
    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, (6, 8, 8, channels), dtype=np.uint8)
    path = save_grid(images, tmp_path / "out" / "grid.png", nrow=3, scale=2)
    assert path == tmp_path / "out" / "grid.png"
    with Image.open(path) as loaded:
        assert loaded.format == "PNG" and loaded.mode == mode
        array = np.asarray(loaded)
    expected = make_grid(images, nrow=3, scale=2)
    assert np.array_equal(array.reshape(expected.shape), expected)
    assert os.listdir(path.parent) == ["grid.png"]  # no temporary file left behind


def test_save_grid_replaces_an_existing_file(tmp_path):
    path = tmp_path / "grid.png"
    path.write_bytes(b"old")
    save_grid(_tiles(1, 4, 4, 3), path, scale=1)
    with Image.open(path) as loaded:
        assert loaded.size == (6, 6)


def _open_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as loaded:
        assert loaded.format == "PNG"
        return np.asarray(loaded.convert("RGB"))


def test_points_plot_size_and_content(tmp_path):
    points = torch.tensor([[0.5, 0.5], [-0.5, -0.5], [float("nan"), 0.0], [9.0, 9.0]])
    path = save_points_plot(points, tmp_path / "points.png", size=200, lim=1.0, labels=torch.tensor([0, 1, 0, 1]))
    image = _open_rgb(path)
    assert image.shape == (200, 200, 3)
    # (0.5, 0.5) → column 150, row 199 − 150 = 49, in palette colour 0
    assert tuple(image[49, 150]) == (31, 119, 180)
    assert tuple(image[149, 50]) == (255, 127, 14)  # (−0.5, −0.5) → row 199 − 50, label 1
    coloured = (image != 255).any(2) & (image != 200).any(2) & (image != 0).any(2)
    assert coloured.sum() == 2  # the NaN and out-of-range points are not drawn


def test_points_plot_default_limits_include_all_points(tmp_path):
    points = np.random.default_rng(0).normal(size=(1000, 2)) * 3
    image = _open_rgb(save_points_plot(points, tmp_path / "p.png", size=256))
    drawn = (image == (31, 119, 180)).all(2)
    assert image.shape == (256, 256, 3) and drawn.sum() > 900  # a few dots overlap


def test_points_plot_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        save_points_plot(np.zeros((4, 3)), tmp_path / "p.png")


def test_loss_curve_png(tmp_path):
    steps = np.arange(1, 501)
    losses = 1.0 / np.sqrt(steps) + 0.01 * np.random.default_rng(0).random(500)
    losses[7] = np.nan  # skipped
    path = save_loss_curve(steps, losses, tmp_path / "loss.png", size=(400, 300))
    image = _open_rgb(path)
    assert image.shape == (300, 400, 3)
    blue = (image == (31, 119, 180)).all(2)
    assert blue.sum() > 300  # the smoothed curve is drawn
    # decreasing loss: the curve starts high on the left and ends low on the right
    rows = np.nonzero(blue)[0]
    columns = np.nonzero(blue)[1]
    assert rows[columns < 100].mean() < rows[columns > 300].mean()


def test_loss_curve_handles_edge_cases(tmp_path):
    for name, losses in [("neg", [0.5, -0.1, 0.2]), ("one", [0.3]), ("none", [])]:
        steps = list(range(len(losses)))
        image = _open_rgb(save_loss_curve(steps, losses, tmp_path / f"{name}.png"))
        assert image.shape == (360, 640, 3)
    with pytest.raises(ValueError, match="same length"):
        save_loss_curve([1, 2], [0.1], tmp_path / "bad.png")
