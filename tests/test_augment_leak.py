"""The leak test of non-leaking augmentation (EDM §5): a folder of one centred blob, trained briefly
with translation at P = 0.5, once telling the network which shift it sees and once with the labels
withheld (a network without the augmentation layer). Samples of the first stay centred; the second
draws shifted blobs too."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import ddkit
from ddkit.generate import generate
from ddkit.training.api import run_config

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

SIZE, BLOB_STD, STEPS, NUM = 8, 0.7, 1500, 128


def _blob_folder(root):
    c = (SIZE - 1) / 2
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    blob = np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * BLOB_STD**2))
    root.mkdir()
    for i in range(64):
        Image.fromarray((blob * 255).round().astype(np.uint8), mode="L").save(root / f"{i}.png")
    return root


def _offsets(run) -> torch.Tensor:
    """Each sample's centroid distance from the centre, in pixels [NUM] (DDIM, 20 steps, fixed seed)."""
    model, schedule, config = ddkit.load(run)
    x = generate(config.diffusion.eps_network(model, schedule), schedule, NUM, steps=20, seed=0, clip_x0=(-1, 1))
    w = ((x[:, 0] + 1) / 2).clamp(0, 1)
    idx = torch.arange(SIZE, dtype=w.dtype)
    cx = (w * idx[None, None, :]).sum((1, 2)) / w.sum((1, 2))
    cy = (w * idx[None, :, None]).sum((1, 2)) / w.sum((1, 2))
    return ((cx - (SIZE - 1) / 2) ** 2 + (cy - (SIZE - 1) / 2) ** 2).sqrt()


def test_translation_does_not_leak_when_the_network_is_told(tmp_path):
    folder = _blob_folder(tmp_path / "blob")
    options = dict(
        data=str(folder), image_size=SIZE, channels=1, steps=STEPS, batch_size=32, model_channels=8,
        augment=0.5, augment_ops="translate", warmup=20, sample_every=10**6, ckpt_every=10**6,
    )  # fmt: skip
    told = ddkit.train(out=tmp_path / "told", progress=False, **options)
    config, _ = run_config({**options, "out": str(tmp_path / "withheld")})
    assert config.model.augment_dim == 2
    withheld = ddkit.train(
        config.replace(model=dataclasses.replace(config.model, augment_dim=0)), tmp_path / "withheld", progress=False
    )
    near, far = _offsets(told), _offsets(withheld)
    shifted_told, shifted_withheld = (near > 0.5).float().mean().item(), (far > 0.5).float().mean().item()
    print(f"samples off centre by > 0.5 px: told {shifted_told:.3f}, withheld {shifted_withheld:.3f}")
    # a translation at P = 0.5 moves 37.5 % of the 8×8 training images by a pixel (P·P(shift ≠ 0))
    assert shifted_told <= 0.05
    assert shifted_withheld >= 0.2
    assert shifted_withheld - shifted_told >= 0.15
