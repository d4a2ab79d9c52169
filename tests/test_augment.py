"""Non-leaking augmentation (EDM §5): the operations and their labels, EDM's resampling, the
network's augmentation layer, and the options that choose them."""

import math

import numpy as np
import pytest
import torch

import ddkit
from ddkit.checks import ParameterError
from ddkit.nn import UNet, UNetConfig, default_model_config
from ddkit.training.augment import (
    DIGITS_OPS,
    FOLDER_OPS,
    OPS,
    SYM6,
    _resample,
    _rotate,
    augment,
    check_ops,
    default_ops,
    label_dim,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _blob(size: int, cx: float, cy: float, std: float = 1.2) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing="ij")
    return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * std**2))[None, None]


def _centroid(x: torch.Tensor) -> tuple[float, float]:
    w = x[0, 0].clamp(min=0)
    idx = torch.arange(w.shape[0], dtype=w.dtype)
    return float((w * idx[None, :]).sum() / w.sum()), float((w * idx[:, None]).sum() / w.sum())


def test_sym6_is_an_orthonormal_wavelet_filter():
    h = np.array(SYM6)
    assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-12) and (h**2).sum() == pytest.approx(1, abs=1e-11)
    for m in range(1, 6):  # orthogonal to its even shifts: up- then down-sampling is the identity
        assert abs(np.dot(h[: -2 * m], h[2 * m :])) < 1e-11
    g = np.array([(-1) ** k * h[-1 - k] for k in range(12)])  # the high-pass: 6 vanishing moments
    for p in range(6):
        assert abs((g * np.arange(12) ** p).sum()) < 1e-7 * 12**p


def test_resampling_identity_and_rotation():
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(_resample(x, torch.eye(3, dtype=torch.float64).expand(3, 3, 3).clone()), x)
    # a quarter turn takes a blob right of the centre to above it (y down): the geometry, not the pixels
    blob = _blob(16, 10.0, 7.5)
    theta = torch.tensor([math.pi / 2], dtype=torch.float64)
    cx, cy = _centroid(_resample(blob, _rotate(theta, theta)))
    assert (cx, cy) == pytest.approx((7.5, 5.0), abs=0.15)


def test_translate_moves_whole_pixels_with_reflection_and_labels_say_how_far():
    x = torch.arange(64.0).reshape(1, 1, 8, 8).repeat(256, 1, 1, 1)
    out, labels = augment(x, 0.5, ["translate"], torch.Generator().manual_seed(3))
    assert labels.shape == (256, 2)
    tx, ty = (labels * 8 * 0.125).round().long().unbind(1)  # labels are shifts / (size/8)
    assert set(tx.tolist()) <= {-1, 0, 1} and set(ty.tolist()) <= {-1, 0, 1}
    for i in range(256):
        rows = (torch.arange(8) - ty[i]).abs()
        rows = torch.where(rows > 7, 14 - rows, rows)
        cols = (torch.arange(8) - tx[i]).abs()
        cols = torch.where(cols > 7, 14 - cols, cols)
        assert torch.equal(out[i, 0], x[0, 0][rows][:, cols])
    moved = (labels != 0).any(1).float().mean().item()
    assert moved == pytest.approx(0.5 * (1 - 0.25), abs=0.08)  # P·P(a shift is not (0, 0))


def test_each_op_applies_with_probability_p_and_zero_labels_mean_the_image_as_it_is():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4000, 1, 8, 8, generator=g) * 2 - 1
    out, labels = augment(x, 0.3, OPS, torch.Generator().manual_seed(6))
    assert labels.shape == (4000, label_dim(OPS)) == (4000, 8)
    # columns: xflip | translate x, y | scale | rotate cos-1, sin | aniso w·cos r, w·sin r
    assert (labels[:, 0] != 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert (labels[:, 3] != 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert (labels[:, 5] != 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert (labels[:, 6:] != 0).any(1).float().mean().item() == pytest.approx(0.3, abs=0.03)
    untouched = (labels == 0).all(1)
    assert untouched.float().mean().item() == pytest.approx(0.7**4 * (1 - 0.3 * 0.75), abs=0.03)
    assert torch.equal(out[untouched], x[untouched])  # bit for bit, not resampled
    # xflip alone: a mirror exactly where the label says so
    flipped, fl = augment(x[:64], 0.5, ["xflip"], torch.Generator().manual_seed(1))
    assert torch.equal(flipped, torch.where(fl[:, :, None, None] == 1, x[:64].flip(3), x[:64]))
    # the same generator state, the same images and labels (exact resume)
    again, labels2 = augment(x, 0.3, OPS, torch.Generator().manual_seed(6))
    assert torch.equal(again, out) and torch.equal(labels2, labels)
    assert augment(x, 0.0, OPS)[0] is x


def test_scale_keeps_a_centred_blob_centred_and_changes_its_size():
    blob = _blob(16, 7.5, 7.5, std=2.0).float().repeat(64, 1, 1, 1)
    out, labels = augment(blob, 0.9, ["scale"], torch.Generator().manual_seed(0))
    for i in range(64):
        assert _centroid(out[i : i + 1]) == pytest.approx((7.5, 7.5), abs=0.05)
    mass = out.clamp(min=0).sum((1, 2, 3)) / blob[0].sum()
    w = labels[:, 0]
    big = w > 0.5  # s = 2^(0.2·w) > 1.07: the blob grows (area ∝ s²)
    assert (mass[big] > 1.05).all() and (mass[w < -0.5] < 0.95).all()


def test_ops_names_defaults_and_errors():
    assert check_ops("scale, translate") == ("translate", "scale")  # canonical order
    assert default_ops("digits:train") == DIGITS_OPS and "xflip" not in DIGITS_OPS
    assert default_ops("/data/faces") == FOLDER_OPS and "xflip" in FOLDER_OPS
    with pytest.raises(ParameterError, match="unknown operation 'shear'"):
        check_ops("translate,shear")
    with pytest.raises(ParameterError, match="twice"):
        check_ops(["scale", "scale"])
    for p in (1.0, -0.1, 1.5, True):
        with pytest.raises(ParameterError, match=r"augment must be a probability in \[0, 1\)"):
            augment(torch.zeros(1, 1, 8, 8), p, OPS)


def test_the_augmentation_layer_changes_nothing_at_initialisation():
    """Same seed, same network: the layer is built last and starts at zero, so a network with it
    equals one without, whatever labels it is given; None means zero labels."""
    cfg = default_model_config("image", (1, 8, 8), channels=16)
    torch.manual_seed(0)
    plain = UNet.from_config(cfg).eval()
    torch.manual_seed(0)
    told = UNet.from_config(UNetConfig(**{**cfg.__dict__, "augment_dim": 8})).eval()
    shared = plain.state_dict()
    assert all(torch.equal(told.state_dict()[k], v) for k, v in shared.items())
    assert torch.equal(told.augment_embed.weight, torch.zeros(16, 8))
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(5, 1, 8, 8, generator=g), torch.randint(0, 1000, (5,), generator=g)
    labels = torch.randn(5, 8, generator=g)
    with torch.no_grad():
        # a fresh UNet ignores t (DDPM's init zeroes each residual branch's last conv): wake every
        # weight, the same in both, so that the embedding matters
        for v in shared.values():
            v.copy_(torch.randn(v.shape, generator=g) * 0.2)
        plain.load_state_dict(shared)
        told.load_state_dict(shared, strict=False)
        ref = plain(x, t)
        assert not torch.allclose(plain(x, t + 50), ref)
        assert torch.equal(told(x, t), ref) and torch.equal(told(x, t, augment_labels=labels), ref)
        told.augment_embed.weight.normal_()  # once trained, the labels matter; zero labels still change nothing
        assert not torch.allclose(told(x, t, augment_labels=labels), ref)
        assert torch.equal(told(x, t, augment_labels=torch.zeros(5, 8)), ref)
    assert told.augment_embed.bias is None
    assert set(told.state_dict()) - set(plain.state_dict()) == {"augment_embed.weight"}
    with pytest.raises(ValueError, match="no augmentation layer"):
        plain(x, t, augment_labels=labels)
    with pytest.raises(ValueError, match=r"\[N, augment_dim\] = \[5, 8\]"):
        told(x, t, augment_labels=labels[:, :3])
    with pytest.raises(ValueError, match="augment_dim"):
        UNetConfig(8, 1, channel_mult=(1, 2), attn_resolutions=(), augment_dim=-1)


def test_old_model_configs_and_checkpoints_load_unchanged(tmp_path):
    """A config.json and a checkpoint written before augment_dim existed describe a network without
    the layer: they load as they are."""
    from safetensors.torch import save_file

    from ddkit.nn import config_to_dict
    from ddkit.training.checkpoint import MODEL_METADATA, load_matching

    cfg = default_model_config("image", (1, 8, 8), channels=8)
    old = {k: v for k, v in config_to_dict(cfg).items() if k != "augment_dim"}
    assert ddkit.nn.config_from_dict(old) == cfg
    net = UNet.from_config(cfg)
    import json

    save_file(net.state_dict(), tmp_path / "w.safetensors", metadata={MODEL_METADATA: json.dumps(old)})
    load_matching(UNet.from_config(cfg), tmp_path / "w.safetensors", config_to_dict(cfg))
    with pytest.raises(ValueError, match="augment_dim"):
        load_matching(UNet.from_config(cfg), tmp_path / "w.safetensors", {**config_to_dict(cfg), "augment_dim": 2})


def test_augmentation_runs_in_full_precision_under_autocast():
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, labels_low = augment(x, 0.5, OPS, torch.Generator().manual_seed(1))
    full, labels = augment(x, 0.5, OPS, torch.Generator().manual_seed(1))
    assert torch.equal(low, full) and torch.equal(labels_low, labels)
