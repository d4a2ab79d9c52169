"""Fashion-MNIST (ddkit.data.fashion_mnist): the idx reader on small files written here (gzip and
raw), its one-line errors, the CLI's error before any work, the run's default reference and
features, and the real files (which must be there when CI is set)."""

import gzip
import json
import os
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddkit.cli import main
from ddkit.data import FASHION_CLASSES, DataError, check_fashion_files, load_data, read_idx
from ddkit.data.fashion_mnist import DEFAULT_DIR, ENV_DIR, fashion_dir
from ddkit.eval.features import FASHION_WEIGHTS, FashionFeatures, default_features
from ddkit.eval.references import run_reference
from ddkit.nn import default_model_config
from ddkit.training.augment import default_ops
from ddkit.training.config import DataConfig


def idx_bytes(array: np.ndarray, magic_type: int = 0x08) -> bytes:
    """The idx encoding of a uint8 array: magic 00 00 type ndim, big-endian uint32 sizes, the bytes."""
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def small_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def write_fashion(folder: Path, gz: bool = True, n_train: int = 40, n_test: int = 20) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    sets = {"train": small_set(n_train, 0), "t10k": small_set(n_test, 1)}
    for prefix, (images, labels) in sets.items():
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return sets


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    sets = write_fashion(tmp_path / "fm")
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "fm"))
    return sets


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_files_gzip_or_raw(tmp_path, monkeypatch, gz):
    sets = write_fashion(tmp_path / "fm", gz=gz)
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "fm"))
    for source, prefix in [
        ("fashion-mnist", "train"),
        ("fashion-mnist:train", "train"),
        ("fashion-mnist:test", "t10k"),
    ]:
        data = load_data(source)
        images, labels = sets[prefix]
        assert data.source == source and data.kind == "image"
        assert data.x.shape == (len(images), 1, 28, 28) and data.x.dtype == torch.float32
        # pixel u -> u / 127.5 - 1, exactly
        torch.testing.assert_close(data.x[:, 0], torch.from_numpy(images).float() / 127.5 - 1, rtol=0, atol=0)
        assert data.y.tolist() == labels.tolist()
        assert data.num_classes == 10 and data.class_names == FASHION_CLASSES
    rgb = load_data("fashion-mnist:test", channels=3)
    assert rgb.x.shape == (20, 3, 28, 28) and torch.equal(rgb.x[:, 2], rgb.x[:, 0])
    small = load_data("fashion-mnist:test", image_size=14)
    assert small.x.shape == (20, 1, 14, 14) and small.x.min() >= -1 and small.x.max() <= 1


def test_class_names_and_folder():
    assert FASHION_CLASSES[0] == "T-shirt/top" and FASHION_CLASSES[6] == "Shirt" and FASHION_CLASSES[9] == "Ankle boot"
    assert fashion_dir({}) == Path(DEFAULT_DIR)
    assert fashion_dir({ENV_DIR: "/x/y"}) == Path("/x/y")


def test_read_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", a, gz=False), 3), a)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b", a, gz=True), 3), a)


def test_missing_folder_or_file_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as e:
        load_data("fashion-mnist")
    assert ENV_DIR in str(e.value) and "\n" not in str(e.value)
    write_fashion(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "fm"))
    load_data("fashion-mnist:train")  # the training files are all there
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        check_fashion_files("fashion-mnist:test")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("magic", "not an idx file"),
        ("ndim", "has 1 dimensions, expected 3"),
        ("short", "is truncated"),
        ("long", "longer than its header says"),
        ("counts", "has 39 labels but"),
        ("gzip", "cannot read"),
        ("label", "has label 12"),
    ],
)
def test_corrupt_files_are_one_line_naming_the_file(tmp_path, monkeypatch, damage, message):
    folder = tmp_path / "fm"
    images, labels = write_fashion(folder)["train"]
    images_path, labels_path = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    raw = idx_bytes(images)
    bad = {
        "magic": (images_path, gzip.compress(b"\x00\x00\x09\x03" + raw[4:])),
        "ndim": (images_path, gzip.compress(idx_bytes(images.reshape(-1)))),
        "short": (images_path, gzip.compress(raw[:-5])),
        "long": (images_path, gzip.compress(raw + b"\x00")),
        "counts": (labels_path, gzip.compress(idx_bytes(labels[:-1]))),
        "gzip": (images_path, gzip.compress(raw)[:-20]),
        "label": (labels_path, gzip.compress(idx_bytes(np.full_like(labels, 12)))),
    }
    path, content = bad[damage]
    path.write_bytes(content)
    monkeypatch.setenv(ENV_DIR, str(folder))
    with pytest.raises(DataError, match=message) as e:
        load_data("fashion-mnist")
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_cli_without_the_files_is_one_line_exit_2_and_no_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "nowhere"))
    out = tmp_path / "run"
    assert main(["train", "--data", "fashion-mnist", "--out", str(out), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddkit: error: Fashion-MNIST not found") and "\n" not in err
    assert "apt-get install dataset-fashion-mnist" in err and ENV_DIR in err
    assert not out.exists()


def test_run_defaults_reference_network_ops(fashion):
    for source in ("fashion-mnist", "fashion-mnist:train"):
        ref = run_reference(SimpleNamespace(data=DataConfig(source=source)))
        assert ref.name == "fashion-mnist:test" and not ref.trained_on and ref.images.shape == (20, 28, 28, 1)
    ref = run_reference(SimpleNamespace(data=DataConfig(source="fashion-mnist")), "fashion-mnist:train")
    assert ref.trained_on
    with pytest.raises(ValueError, match="fashion-mnist:test"):
        DataConfig(source="fashion-mnist", holdout=0.1)
    assert "xflip" in default_ops("fashion-mnist")
    cfg = default_model_config("image", (1, 28, 28), num_classes=10)
    assert cfg.image_size == 28 and cfg.in_channels == 1 and cfg.num_classes == 10
    assert default_features((28, 28, 1)) == "fashion" and default_features((8, 8, 1)) == "digits"
    assert default_features((28, 28, 3)) == "inception"


def test_shipped_fashion_features_load():
    assert FASHION_WEIGHTS.is_file() and FASHION_WEIGHTS.stat().st_size < 2_000_000
    f = FashionFeatures()
    assert f.heldout_accuracy >= 0.89  # 0.8987 when shipped (docs: Fashion-MNIST, the feature network)
    assert set(f.heldout_accuracy_per_class) == set(FASHION_CLASSES)
    out = f(np.zeros((3, 28, 28, 1), dtype=np.uint8))
    assert out.shape == (3, 128) and out.dtype == np.float64
    with pytest.raises(ValueError, match="need 28×28 images"):
        f(np.zeros((3, 8, 8, 1), dtype=np.uint8))


@pytest.mark.slow
def test_train_class_cond_val_augment_end_to_end(tmp_path, monkeypatch, capsys):
    write_fashion(tmp_path / "fm", n_train=300, n_test=150)
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "fm"))
    out = tmp_path / "run"
    args = ["train", "--data", "fashion-mnist", "--out", str(out), "--steps", "2", "--batch-size", "8"]
    args += ["--model-channels", "8", "--class-cond", "--val", "150", "--eval-every", "2", "--eval-num", "150"]
    args += ["--augment", "0.5", "--no-progress"]
    assert main(args) == 0

    config = json.loads((out / "config.json").read_text())
    assert config["data"]["source"] == "fashion-mnist" and config["model"]["num_classes"] == 10
    assert "xflip" in config["train"]["augment_ops"]
    assert any("fid" in json.loads(line).get("eval", {}) for line in (out / "log.jsonl").read_text().splitlines())
    capsys.readouterr()
    assert main(["eval", str(out), "--num", "130", "--steps", "2", "--fid", "--memorization", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reference"] == "fashion-mnist:test" and result["features"] == "fashion"
    assert not result["reference_is_training_data"] and 0 <= result["closer_than_real"] <= 1


def _real_files_or_skip():
    try:
        check_fashion_files("fashion-mnist:train")
        check_fashion_files("fashion-mnist:test")
    except DataError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the Fashion-MNIST files are missing: {e}")
        pytest.skip(str(e))


def test_real_files():
    _real_files_or_skip()
    train, test = load_data("fashion-mnist:train"), load_data("fashion-mnist:test")
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.y).tolist() == [6000] * 10 and torch.bincount(test.y).tolist() == [1000] * 10
    assert train.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert train.x.min() == -1 and train.x.max() == 1


@pytest.mark.slow
def test_shipped_features_reach_their_accuracy_on_the_real_test_set():
    _real_files_or_skip()
    test = load_data("fashion-mnist:test")
    f = FashionFeatures()
    images = ((test.x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    acc = float((f.predict(images) == test.y.numpy()).mean())
    assert acc == pytest.approx(f.heldout_accuracy, abs=1e-4)
