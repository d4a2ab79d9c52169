"""Tests for ddkit.data.images (uint8 conversion, grids) and the figures of ddkit.plots that the
trainer draws (the scatter of 2-D samples, the loss curve)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.data.images import make_grid, save_grid, to_uint8
from ddkit.plots import plot_loss_curve, plot_points, smooth


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


BLUE = (31, 119, 180)  # matplotlib's C0 (tab:blue)
ORANGE = (255, 127, 14)  # C1


def _near(image: np.ndarray, colour, tol: int = 40) -> np.ndarray:
    return (np.abs(image.astype(int) - np.array(colour)) <= tol).all(2)


def test_points_plot_size_and_content(tmp_path):
    points = torch.tensor([[0.5, 0.5], [-0.5, -0.5], [float("nan"), 0.0], [9.0, 9.0]])
    path = plot_points(points, tmp_path / "points.png", size=200, lim=1.0, labels=torch.tensor([0, 1, 0, 1]))
    image = _open_rgb(path)
    assert image.shape == (200, 200, 3)
    # the axes fill the figure: (0.5, 0.5) lands near column 150, row 50, in label 0's colour
    blue, orange = _near(image, BLUE), _near(image, ORANGE)
    assert blue[45:56, 145:156].any() and not blue[:, :100].any()
    assert orange[145:156, 45:56].any() and not orange[:, 100:].any()  # (−0.5, −0.5), label 1
    assert not (blue | orange)[:30, 170:].any()  # (9, 9) is outside, the NaN point is not drawn


def test_points_plot_default_limits_include_all_points(tmp_path):
    points = np.random.default_rng(0).normal(size=(1000, 2)) * 3
    image = _open_rgb(plot_points(points, tmp_path / "p.png", size=256))
    drawn = _near(image, BLUE)
    assert image.shape == (256, 256, 3) and drawn.sum() > 500
    rows, columns = np.nonzero(drawn)
    assert abs(rows.mean() - 128) < 15 and abs(columns.mean() - 128) < 15  # centred, as the points are


def test_points_plot_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plot_points(np.zeros((4, 3)), tmp_path / "p.png")


def test_loss_curve_png(tmp_path):
    steps = np.arange(1, 501)
    losses = 1.0 / np.sqrt(steps) + 0.01 * np.random.default_rng(0).random(500)
    losses[7] = np.nan  # skipped
    image = _open_rgb(plot_loss_curve(steps, losses, tmp_path / "loss.png"))
    assert image.shape == (360, 640, 3)
    blue = _near(image, BLUE, tol=10)
    assert blue.sum() > 300  # the smoothed curve is drawn
    # decreasing loss: the curve starts high on the left and ends low on the right
    rows, columns = np.nonzero(blue)
    assert rows[columns < columns.min() + 50].mean() < rows[columns > columns.max() - 50].mean()


def test_smooth_is_a_debiased_moving_average():
    assert np.allclose(smooth(np.full(10, 3.0), 4), 3.0)  # debiased: a constant stays itself
    out = smooth(np.array([0.0, 1.0]), 2)  # β = 0.5: (0.5·1) / (1 − 0.25)
    assert out[0] == 0.0 and out[1] == pytest.approx(0.5 / 0.75)


def test_loss_curve_handles_edge_cases(tmp_path):
    for name, losses in [("neg", [0.5, -0.1, 0.2]), ("one", [0.3]), ("none", [])]:
        steps = list(range(len(losses)))
        image = _open_rgb(plot_loss_curve(steps, losses, tmp_path / f"{name}.png"))
        assert image.shape == (360, 640, 3)
    with pytest.raises(ValueError, match="same length"):
        plot_loss_curve([1, 2], [0.1], tmp_path / "bad.png")
