"""Tests for ddkit.data: digits, toy sources and folders of images."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from ddkit.data import DataError, Dataset, load_data, load_image_folder
from ddkit.data.toy import TOY_NAMES


def _save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _solid(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


def _level(u: float) -> float:
    return u / 127.5 - 1


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_data("digits")


def test_digits_shape_range_levels_and_labels(digits):
    assert digits.kind == "image" and digits.source == "digits" and len(digits) == 1797
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == torch.float32
    assert digits.x.min().item() == -1.0 and digits.x.max().item() == 1.0
    levels = torch.unique(digits.x)
    torch.testing.assert_close(levels, torch.arange(17, dtype=torch.float32) / 8 - 1)
    assert digits.y.dtype == torch.int64 and digits.num_classes == 10
    assert digits.class_names == tuple("0123456789")
    counts = torch.bincount(digits.y, minlength=10).tolist()
    assert counts == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_three_channels_repeat_grey(digits):
    rgb = load_data("digits", channels=3)
    assert rgb.x.shape == (1797, 3, 8, 8)
    for c in range(3):
        assert torch.equal(rgb.x[:, c : c + 1], digits.x)
    assert torch.equal(rgb.y, digits.y)


def test_digits_resized(digits):
    big = load_data("digits", image_size=16)
    assert big.x.shape == (1797, 1, 16, 16)
    assert big.x.min() >= -1 and big.x.max() <= 1
    # downsampling the upsampled image by 2×2 means stays close to the original
    back = torch.nn.functional.avg_pool2d(big.x, 2)
    assert (back - digits.x).abs().mean() < 0.1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(channels=2), "channels must be 1 or 3, got 2"),
        (dict(image_size=0), "image_size must be >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_data("digits", **kwargs)


# ---------------------------------------------------------------- toy


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_sources(name):
    data = load_data(f"toy:{name}", toy_size=3000, seed=1)
    assert data.kind == "points" and data.source == f"toy:{name}"
    assert data.x.shape == (3000, 2) and data.x.dtype == torch.float32
    if name == "swissroll":
        assert data.y is None and data.num_classes is None and data.class_names == ()
    else:
        assert data.y.shape == (3000,) and int(data.y.max()) < data.num_classes
        assert len(data.class_names) == data.num_classes
    assert torch.equal(load_data(f"toy:{name}", toy_size=3000, seed=1).x, data.x)
    assert not torch.equal(load_data(f"toy:{name}", toy_size=3000, seed=2).x, data.x)


def test_toy_gmm_has_eight_classes():
    data = load_data("toy:gmm", toy_size=2000)
    assert data.num_classes == 8 and set(data.y.tolist()) == set(range(8))


def test_toy_errors():
    with pytest.raises(ValueError, match="image_size and channels must be None"):
        load_data("toy:moons", image_size=8)
    with pytest.raises(ValueError, match="allowed: gmm, moons, swissroll, circles"):
        load_data("toy:nope")


# ---------------------------------------------------------------- image folders


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    root = tmp_path / "classes"
    _save(root / "cats" / "a.png", _solid(40, 30, (255, 0, 51)))
    _save(root / "cats" / "nested" / "b.JPG", _solid(20, 20, (128, 128, 128)), quality=95)
    _save(root / "dogs" / "c.png", np.full((16, 50), 200, dtype=np.uint8))  # mode L
    _save(root / "dogs" / "d.bmp", _solid(12, 12, (10, 20, 30)))
    rgba = np.dstack([_solid(12, 12, (10, 20, 30)), np.full((12, 12), 99, np.uint8)])
    _save(root / "dogs" / "e.png", rgba)  # RGBA: alpha is dropped
    palette = Image.new("P", (9, 9), 3)  # palette index 3 is green
    palette.putpalette([0, 0, 0] * 3 + [0, 255, 0] + [0, 0, 0] * 252)
    (root / "birds").mkdir()
    palette.save(root / "birds" / "f.png")
    (root / "birds" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "g.png").write_bytes(b"ignored, hidden")
    (root / "empty").mkdir()  # no images: not a class
    return root


def test_folder_with_class_subfolders(class_folder):
    data = load_data(str(class_folder), image_size=8)
    assert data.kind == "image" and data.source == str(class_folder)
    assert data.class_names == ("birds", "cats", "dogs") and data.num_classes == 3
    # files sorted by path: birds/f, cats/a, cats/nested/b, dogs/c, dogs/d, dogs/e
    assert data.y.tolist() == [0, 1, 1, 2, 2, 2]
    assert data.x.shape == (6, 3, 8, 8) and data.x.dtype == torch.float32
    assert data.x.min() >= -1 and data.x.max() <= 1
    expected = [(0, 255, 0), (255, 0, 51), (128, 128, 128), (200, 200, 200), (10, 20, 30), (10, 20, 30)]
    for i, rgb in enumerate(expected):
        target = torch.tensor([_level(v) for v in rgb]).view(3, 1, 1).expand(3, 8, 8)
        atol = 3 / 127.5 if i == 2 else 1e-6  # JPEG is lossy
        torch.testing.assert_close(data.x[i], target, atol=atol, rtol=0)


def test_folder_grey_conversion(class_folder):
    data = load_data(str(class_folder), image_size=4, channels=1)
    assert data.x.shape == (6, 1, 4, 4)
    grey = (255 * 299 + 0 * 587 + 51 * 114) / 1000  # Pillow's ITU-R 601-2 luma
    torch.testing.assert_close(data.x[1], torch.full((1, 4, 4), _level(round(grey))))


def test_unlabelled_folder(tmp_path):
    for i in range(3):
        _save(tmp_path / f"img{i}.png", _solid(10, 10, (i * 100, 0, 0)))
    data = load_image_folder(tmp_path, image_size=10)
    assert data.y is None and data.num_classes is None and data.class_names == ()
    assert data.x.shape == (3, 3, 10, 10)
    assert data.x[:, 0, 0, 0].tolist() == pytest.approx([_level(0), _level(100), _level(200)])


def test_centre_crop_without_resize(tmp_path):
    wide = np.tile((np.arange(31) * 8).astype(np.uint8), (10, 1))  # column j has value 8j
    _save(tmp_path / "wide" / "w.png", wide)
    _save(tmp_path / "tall" / "t.png", np.ascontiguousarray(wide.T))
    data = load_data(str(tmp_path), image_size=10, channels=1)
    tall, wide_x = data.x[0, 0], data.x[1, 0]  # classes sorted: tall, wide
    columns = torch.tensor([_level(8 * j) for j in range(10, 20)])
    torch.testing.assert_close(wide_x, columns.expand(10, 10))  # crop starts at (31-10)//2 = 10
    torch.testing.assert_close(tall, columns[:, None].expand(10, 10))


def test_resize_short_side_then_centre_crop(tmp_path):
    stripes = np.zeros((20, 60), dtype=np.uint8)
    stripes[:, 20:40] = 255  # black | white | black
    _save(tmp_path / "s.png", stripes)
    data = load_data(str(tmp_path), image_size=10, channels=1)
    x = data.x[0, 0]
    # 60×20 → 30×10, keep columns 10..19: the white stripe, blurred only at its edges
    assert (x[:, 2:8] == 1.0).all()
    assert (x[:, 0] < 1.0).all() and (x[:, 9] < 1.0).all()
    reference = Image.fromarray(stripes).resize((30, 10), Image.Resampling.BICUBIC)
    reference = np.asarray(reference.crop((10, 0, 20, 10)), dtype=np.float32) / 127.5 - 1
    torch.testing.assert_close(x, torch.from_numpy(reference))


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp_is_accepted(tmp_path):
    _save(tmp_path / "a.WEBP", _solid(8, 8, (0, 0, 255)), lossless=True)
    data = load_data(str(tmp_path), image_size=8)
    assert data.x[0, 2].eq(1.0).all() and data.x[0, 0].eq(-1.0).all()


def _one_line_error(source: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_data(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    message = _one_line_error(str(missing))
    assert "does not exist" in message and str(missing) in message


def test_path_is_a_file(tmp_path):
    file = _save(tmp_path / "single.png", _solid(4, 4, (0, 0, 0)))
    message = _one_line_error(str(file))
    assert "not a directory" in message and str(file) in message


def test_no_images(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    message = _one_line_error(str(tmp_path))
    assert "no images found" in message and str(tmp_path) in message
    for ext in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        assert ext in message


def test_corrupt_image(tmp_path):
    _save(tmp_path / "good.png", _solid(4, 4, (0, 0, 0)))
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n this is\n not a png\n")
    message = _one_line_error(str(tmp_path))
    assert "x.png" in message and "cannot read image" in message


def test_truncated_image(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _save(tmp_path / "cut.png", noise)
    path.write_bytes(path.read_bytes()[:2000])
    message = _one_line_error(str(tmp_path))
    assert "cut.png" in message


def test_images_in_root_beside_class_folders(tmp_path):
    _save(tmp_path / "a" / "one.png", _solid(4, 4, (0, 0, 0)))
    _save(tmp_path / "stray.png", _solid(4, 4, (0, 0, 0)))
    message = _one_line_error(str(tmp_path))
    assert "stray.png" in message and "sub-folder" in message


def test_dataset_validates_its_fields():
    with pytest.raises(ValueError, match="kind must be 'image' or 'points'"):
        Dataset(torch.zeros(2, 2), None, None, (), "audio", "x")
    with pytest.raises(ValueError, match=r"y must have shape \[2\]"):
        Dataset(torch.zeros(2, 2), torch.zeros(3, dtype=torch.long), 1, ("a",), "points", "x")
