"""``ddkit edit`` end to end on tiny runs: every method writes its NPZ and grid, known pixels stay
exactly, labels where they apply, ``--diffusers``, and each bad input of the issue is one line on
stderr with exit code 2 before any work."""

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.cli import main
from ddkit.data import load_data
from ddkit.data.images import to_uint8
from ddkit.data.inputs import load_images, load_mask

FAST = ["--steps", "3"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, digits_run, cond_run):
    root = tmp_path_factory.mktemp("edit_cli")
    runs = {"uncond": digits_run, "cond": cond_run}  # conftest.py's shared runs
    images = to_uint8(load_data("digits:test").x[:5])
    np.savez(root / "in.npz", images=images)
    np.savez(root / "other.npz", images=images[::-1].copy())
    Image.fromarray(images[0, :, :, 0]).save(root / "one.png")
    Image.new("L", (16, 16)).save(root / "big.png")
    Image.new("RGB", (8, 8)).save(root / "rgb.png")
    np.savez(root / "rgb.npz", images=np.repeat(images, 3, axis=3))
    keep = np.zeros((1, 8, 8), np.uint8)
    keep[:, :, :3] = 1
    np.savez(root / "mask.npz", mask=keep)
    np.savez(root / "ones.npz", mask=np.ones((1, 8, 8), np.uint8))
    np.savez(root / "zeros.npz", mask=np.zeros((5, 8, 8), bool))
    Image.new("L", (4, 4), 255).save(root / "small_mask.png")
    return root, runs, images


def _edit(run, root, tmp_path, *args):
    out = tmp_path / "out.npz"
    grid = tmp_path / "grid.png"
    assert main(["edit", str(run), "--input", str(root / "in.npz"), "--out", str(out), "--grid", str(grid), *args]) == 0
    assert grid.is_file() and Image.open(grid).size[0] > 0
    with np.load(out) as f:
        return dict(f)


@pytest.mark.parametrize(
    "args, per_input",
    [
        (["--method", "sdedit", "--strength", "0.3", *FAST], 1),
        (["--method", "sdedit", "--invert", "--sampler", "dpm++", "--order", "2", *FAST], 1),
        (["--method", "replace", "--mask-preset", "center", *FAST], 1),
        (["--method", "ddnm", "--operator", "downsample:2", *FAST], 1),
        (["--method", "dps", "--operator", "blur:1", "--dps-scale", "0.5", *FAST], 1),
        (["--method", "ddnm", "--mask-preset", "random:0.3", *FAST], 1),
        (["--method", "interpolate", "--with", "{root}/other.npz", "--frames", "3", *FAST], 3),
    ],
    ids=["sdedit", "sdedit-invert", "replace", "ddnm-sr", "dps-blur", "ddnm-mask", "interpolate"],
)
def test_each_method_writes_images(setup, tmp_path, args, per_input):
    root, runs, images = setup
    out = _edit(runs["uncond"], root, tmp_path, *[a.replace("{root}", str(root)) for a in args])
    assert out["images"].shape == (5 * per_input, 8, 8, 1) and out["images"].dtype == np.uint8
    assert "labels" not in out


def test_repaint_keeps_the_known_pixels_exactly(setup, tmp_path):
    root, runs, images = setup
    out = _edit(
        runs["uncond"], root, tmp_path, "--method", "repaint", "--mask-preset", "lower-half", "--steps", "4",
        "--jump-length", "1", "--resample", "2", "--batch-size", "2",
    )["images"]  # fmt: skip
    assert np.array_equal(out[:, :4], images[:, :4]) and not np.array_equal(out, images)
    masked = _edit(runs["uncond"], root, tmp_path, "--method", "replace", "--mask", str(root / "mask.npz"), *FAST)
    assert np.array_equal(masked["images"][:, :, :3], images[:, :, :3])


def test_class_conditional_run_inpaints_with_guidance_and_translates(setup, tmp_path):
    root, runs, images = setup
    out = _edit(
        runs["cond"], root, tmp_path, "--method", "replace", "--mask-preset", "upper-half", "--label", "3",
        "--guidance-scale", "2", *FAST,
    )  # fmt: skip
    assert (out["labels"] == 3).all() and np.array_equal(out["images"][:, 4:], images[:, 4:])
    out = _edit(runs["cond"], root, tmp_path, "--method", "translate", "--to-label", "7", *FAST)
    assert out["images"].shape == (5, 8, 8, 1) and (out["labels"] == 7).all()
    out = _edit(runs["cond"], root, tmp_path, "--method", "translate", "--to-labels", "all", *FAST)
    assert out["images"].shape == (50, 8, 8, 1) and (out["labels"] == np.tile(np.arange(10), 5)).all()


def test_batches_and_seeds_give_the_same_images(setup, tmp_path):
    root, runs, _ = setup
    args = ["--method", "sdedit", "--strength", "0.5", "--eta", "1", *FAST]
    a = _edit(runs["uncond"], root, tmp_path, *args, "--batch-size", "5")["images"]
    b = _edit(runs["uncond"], root, tmp_path, *args, "--batch-size", "2")["images"]
    c = _edit(runs["uncond"], root, tmp_path, *args, "--seed", "1")["images"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_diffusers_model_in_place_of_a_run(setup, tmp_path, monkeypatch):
    diffusers = pytest.importorskip("diffusers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, _, _ = setup
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
        norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    folder = tmp_path / "pipe"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(folder)
    out = tmp_path / "d.npz"
    args = ["edit", "--diffusers", str(folder), "--input", str(root / "one.png"), "--method", "sdedit", *FAST]
    assert main([*args, "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["images"].shape == (1, 8, 8, 1)


def test_inputs_are_read_as_the_run_data_were(setup):
    root, _, images = setup
    x = load_images(root / "in.npz", image_size=8, channels=1)
    assert x.shape == (5, 1, 8, 8) and np.array_equal(to_uint8(x), images)
    torch.testing.assert_close(load_images(root / "one.png", image_size=8, channels=1), x[:1])
    m = load_mask(preset="random:0.5", num=5, image_size=8, seed=3)
    assert m.shape == (5, 1, 8, 8) and torch.equal(
        m[2:], load_mask(preset="random:0.5", num=5, image_size=8, seed=3)[2:]
    )


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddkit: error: "), err
    return err


@pytest.mark.parametrize(
    "run, args, needle",
    [
        ("uncond", ["--input", "{root}/big.png", "--method", "sdedit"], "is 16×16 but the run's images are 8×8"),
        (
            "uncond",
            ["--input", "{root}/rgb.png", "--method", "sdedit"],
            "has 3 channels (RGB) but the run's images have 1",
        ),
        ("uncond", ["--input", "{root}/rgb.npz", "--method", "sdedit"], "has 3 channels but the run's images have 1"),
        ("uncond", ["--method", "repaint", "--mask", "{root}/small_mask.png"], "mask {root}/small_mask.png is 4×4"),
        ("uncond", ["--method", "repaint", "--mask", "{root}/ones.npz"], "the mask is all ones: nothing to fill"),
        ("uncond", ["--method", "replace", "--mask", "{root}/zeros.npz"], "mask 0 (of 5) is all zeros"),
        ("uncond", ["--method", "ddnm", "--mask", "{root}/ones.npz"], "all ones"),
        ("uncond", ["--method", "sdedit", "--strength", "0"], "--strength must be a number in (0, 1], got 0.0"),
        ("uncond", ["--method", "sdedit", "--strength", "1.5"], "--strength must be a number in (0, 1]"),
        ("uncond", ["--method", "ddnm", "--operator", "downsample:3"], "factor 3 does not divide the image size 8×8"),
        ("uncond", ["--method", "dps", "--operator", "blur:x"], "--operator blur:S needs a positive σ"),
        ("uncond", ["--method", "ddnm", "--operator", "grayscale"], "--operator grayscale needs RGB images"),
        ("uncond", ["--method", "translate", "--to-label", "1"], "needs a class-conditional network or a --classifier"),
        ("uncond", ["--method", "interpolate"], "method interpolate needs a second image"),
        ("uncond", ["--method", "sdedit", "--jump-length", "3"], "--jump-length does not apply to method sdedit"),
        (
            "uncond",
            ["--method", "ddnm", "--operator", "downsample:2", "--dps-scale", "1"],
            "--dps-scale does not apply",
        ),
        (
            "uncond",
            ["--method", "repaint", "--mask-preset", "center", "--strength", "0.5"],
            "--strength does not apply",
        ),
        ("uncond", ["--method", "replace", "--mask-preset", "center", "--resample", "3"], "--resample does not apply"),
        ("uncond", ["--method", "repaint", "--mask-preset", "center", "--sampler", "ddpm"], "--sampler does not apply"),
        (
            "uncond",
            ["--method", "interpolate", "--frames", "3", "--to-label", "2", "--with", "{root}/in.npz"],
            "--to-label",
        ),
        ("uncond", ["--method", "repaint"], "method repaint needs a --mask"),
        ("uncond", ["--method", "repaint", "--mask-preset", "bottom"], "--mask-preset must be one of lower-half"),
        ("uncond", ["--method", "sdedit", "--sampler", "ddpm", "--steps", "3"], "sampler ddpm does not take --steps"),
        ("uncond", ["--method", "sdedit", "--guidance-scale", "2"], "needs labels"),
        ("cond", ["--method", "sdedit", "--guidance-scale", "2"], "needs labels: give --label"),
        ("cond", ["--method", "translate", "--to-label", "12"], "--to-label must be in [0, 9]"),
        ("cond", ["--method", "translate", "--to-label", "1", "--label", "2"], "not --label"),
        ("uncond", ["--method", "sdedit", "--out", "{tmp}/x.txt"], "--out must name a .npz file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_the_work(setup, tmp_path, capsys, run, args, needle):
    root, runs, _ = setup
    args = [a.replace("{root}", str(root)).replace("{tmp}", str(tmp_path)) for a in args]
    base = ["edit", str(runs[run])]
    if "--input" not in args:
        base += ["--input", str(root / "in.npz")]
    if "--out" not in args:
        base += ["--out", str(tmp_path / "o.npz")]
    assert main(base + args) == 2
    assert needle.replace("{root}", str(root)) in _error_line(capsys)
    assert not (tmp_path / "o.npz").exists()
