"""Tests for ddkit.nn: the DDPM UNet, the toy MLP, embeddings and config round trips."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import pytest
import torch

from ddkit.interop.diffusers import diffusers_to_ddkit_state
from ddkit.nn import (
    MLPConfig,
    MLPDenoiser,
    UNet,
    UNetConfig,
    build_model,
    config_from_dict,
    config_to_dict,
    timestep_embedding,
)
from ddkit.nn.layers import num_groups

CIFAR10_PARAMS = 35_746_307  # DDPM's "35.7M"; diffusers' google/ddpm-cifar10-32 has the same


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny tensors run faster on one thread


def tiny_unet(**kw) -> UNet:
    args = dict(image_size=16, in_channels=3, base_channels=16, channel_mult=(1, 2),
                num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)  # fmt: skip
    args.update(kw)
    return UNet(**args)


def unzero_(model: torch.nn.Module, std: float = 0.05) -> None:
    """Give every all-zero weight tensor (zero-initialised layers) small random values."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and not p.any():
                p.normal_(0.0, std)


def batch(n=4, c=3, s=16):
    return torch.randn(n, c, s, s), torch.randint(0, 1000, (n,))


# --- UNet architecture -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(image_size=8, in_channels=1, base_channels=16, channel_mult=(1, 2), attn_resolutions=()),
        dict(image_size=16, in_channels=1, base_channels=32, channel_mult=(1, 2), attn_resolutions=(8,)),
        dict(image_size=16, in_channels=3, base_channels=16, channel_mult=(1, 1, 2), attn_resolutions=(16, 4)),
        dict(image_size=32, in_channels=3, base_channels=16, channel_mult=(1, 2, 2), attn_resolutions=(16,)),
        dict(image_size=32, in_channels=3, base_channels=24, channel_mult=(1, 2, 2, 2), num_res_blocks=2),
    ],
)
def test_unet_output_shape_equals_input_shape(kw):
    torch.manual_seed(0)
    model = UNet(dropout=0.0, **{"num_res_blocks": 1, **kw})
    unzero_(model)
    x, t = batch(3, kw["in_channels"], kw["image_size"])
    out = model(x, t)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert out.abs().mean() > 0


def test_unet_signature_is_the_public_contract():
    params = inspect.signature(UNet).parameters
    expected = dict(image_size=inspect.Parameter.empty, in_channels=inspect.Parameter.empty,
                    base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                    attn_resolutions=(16,), dropout=0.1, num_classes=None, augment_dim=0)  # fmt: skip
    assert list(params) == list(expected)
    assert {k: p.default for k, p in params.items()} == expected
    fields = {f.name: f.default for f in dataclasses.fields(UNetConfig)}
    assert fields == {k: (dataclasses.MISSING if v is inspect.Parameter.empty else v)
                      for k, v in expected.items()}  # fmt: skip


def test_cifar10_parameter_count_matches_ddpm():
    with torch.device("meta"):  # shapes only: no memory, no initialisation work
        model = UNet(image_size=32, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == CIFAR10_PARAMS
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        ref = diffusers.UNet2DModel(**_diffusers_kwargs(32, 3, (128, 256, 256, 256), 2, (16,)))
    assert sum(p.numel() for p in ref.parameters()) == CIFAR10_PARAMS


@pytest.mark.parametrize(
    "channels, groups",
    [(1, 1), (2, 1), (3, 1), (7, 1), (16, 8), (20, 10), (32, 16), (48, 24), (64, 32), (96, 32),
     (128, 32), (256, 32), (384, 32), (160, 32), (200, 25)],
)  # fmt: skip
def test_groupnorm_groups_rule(channels, groups):
    """Largest divisor <= min(32, C // 2): DDPM's 32 for its widths, >= 2 channels per group."""
    assert num_groups(channels) == groups


def test_tiny_unet_still_depends_on_time_through_groupnorm():
    # With one channel per group (InstanceNorm) the additive timestep embedding would be
    # removed by the norm that follows it, and this 16/32-channel model would ignore t.
    torch.manual_seed(0)
    model = tiny_unet(base_channels=16, channel_mult=(1, 2))
    assert {m.num_channels // m.num_groups for m in model.modules()
            if isinstance(m, torch.nn.GroupNorm)} == {2}  # fmt: skip


def test_fresh_model_outputs_exactly_zero_then_not_after_perturbing():
    torch.manual_seed(0)
    model = tiny_unet()
    x, t = batch()
    assert torch.equal(model(x, t), torch.zeros_like(x))
    with torch.no_grad():
        model.out_conv.weight.normal_(0.0, 0.1)
    assert model(x, t).abs().mean() > 1e-3


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = tiny_unet(num_classes=3, dropout=0.1)
    unzero_(model)
    x, t = batch()
    y = torch.tensor([0, 1, 2, 3])
    model(x, t, y).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_outputs_are_deterministic_given_the_seed():
    def run(seed):
        torch.manual_seed(seed)
        model = tiny_unet(dropout=0.3)
        unzero_(model)
        x, t = batch()
        return model(x, t)  # train mode: dropout masks also come from the seed

    a = run(123)
    assert torch.equal(a, run(123))
    assert (a - run(124)).abs().max() > 1e-4
    model = tiny_unet(dropout=0.3).eval()
    unzero_(model)
    x, t = batch()
    assert torch.equal(model(x, t), model(x, t))


def test_time_changes_the_output():
    torch.manual_seed(0)
    model = tiny_unet()
    unzero_(model)
    x, _ = batch(2)
    out0 = model(x, torch.tensor([0, 0]))
    out1 = model(x, torch.tensor([500, 500]))
    assert (out0 - out1).abs().max() > 1e-4


# --- class conditioning ------------------------------------------------------------------------


def test_class_labels_change_output_and_none_is_the_null_label():
    torch.manual_seed(0)
    model = tiny_unet(num_classes=4)
    unzero_(model)
    assert model.label_embed.num_embeddings == 5
    x, t = batch(3)
    out_a = model(x, t, torch.tensor([0, 1, 2]))
    out_b = model(x, t, torch.tensor([3, 3, 3]))
    assert (out_a - out_b).abs().max() > 1e-4
    null = torch.full((3,), 4, dtype=torch.long)
    assert torch.equal(model(x, t, None), model(x, t, null))
    assert (model(x, t, None) - out_a).abs().max() > 1e-4


# --- agreement with diffusers' DDPM UNet (an independent implementation) -----------------------


def _diffusers_kwargs(size, channels, block_out, layers, attn_res, num_class_embeds=None):
    """google/ddpm-cifar10-32's options (attention_head_dim=None is a single head)."""
    levels = len(block_out)
    down = tuple("AttnDownBlock2D" if size // 2**i in attn_res else "DownBlock2D" for i in range(levels))
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    return dict(sample_size=size, in_channels=channels, out_channels=channels,
                block_out_channels=block_out, layers_per_block=layers, down_block_types=down,
                up_block_types=up, attention_head_dim=None, downsample_padding=0,
                flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, dropout=0.0,
                num_class_embeds=num_class_embeds)  # fmt: skip


@pytest.mark.parametrize("num_classes", [None, 5])
def test_matches_diffusers_ddpm_unet_with_the_same_weights(num_classes):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.UNet2DModel(
        **_diffusers_kwargs(16, 3, (64, 128), 2, (8,), None if num_classes is None else num_classes + 1)
    ).eval()
    ours = UNet(16, 3, base_channels=64, channel_mult=(1, 2), attn_resolutions=(8,),
                num_classes=num_classes).eval()  # fmt: skip
    ours.load_state_dict(diffusers_to_ddkit_state(ref.state_dict()), strict=True)
    x, t = torch.randn(4, 3, 16, 16), torch.tensor([0, 10, 500, 999])
    y = None if num_classes is None else torch.tensor([0, 1, 4, 5])
    expected = ref(x, t, class_labels=y).sample
    assert expected.abs().mean() > 0.1  # diffusers does not zero-initialise: a real comparison
    torch.testing.assert_close(ours(x, t, y), expected, atol=2e-5, rtol=1e-4)


# --- embeddings --------------------------------------------------------------------------------


def test_timestep_embedding_closed_form_and_order():
    t = torch.tensor([0, 1, 7, 999])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (4, 8) and emb.dtype == torch.float32
    freqs = [10000 ** (-k / 3) for k in range(4)]  # DDPM: log(10000) / (half - 1)
    expected = [[math.sin(s * f) for f in freqs] + [math.cos(s * f) for f in freqs] for s in t.tolist()]
    torch.testing.assert_close(emb, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    # sin first: t = 0 gives [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_timestep_embedding_distinct_for_different_t_and_odd_dim():
    emb = timestep_embedding(torch.arange(1000), 128)
    dists = torch.cdist(emb, emb)
    dists.fill_diagonal_(float("inf"))
    assert dists.min() > 1e-2
    odd = timestep_embedding(torch.tensor([3, 5]), 9)
    assert odd.shape == (2, 9)
    assert torch.equal(odd[:, -1], torch.zeros(2))
    torch.testing.assert_close(odd[:, :8], timestep_embedding(torch.tensor([3, 5]), 8))


def test_timestep_embedding_rejects_bad_args():
    with pytest.raises(ValueError, match=r"dim must be an int >= 2"):
        timestep_embedding(torch.tensor([1]), 1)
    with pytest.raises(ValueError, match=r"t must have shape \[N\]"):
        timestep_embedding(torch.tensor([[1]]), 8)


# --- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(32, 3),
        UNetConfig(
            16,
            1,
            base_channels=16,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(),
            dropout=0.0,
            num_classes=10,
        ),  # fmt: skip
        MLPConfig(),
        MLPConfig(dim=3, hidden=32, depth=2, num_classes=4),
    ],
)
def test_config_dict_round_trip(cfg):
    d = config_to_dict(cfg)
    assert d["kind"] == ("unet" if isinstance(cfg, UNetConfig) else "mlp")
    restored = config_from_dict(json.loads(json.dumps(d)))
    assert restored == cfg
    assert type(restored) is type(cfg)
    for f in dataclasses.fields(cfg):
        assert type(getattr(restored, f.name)) is type(getattr(cfg, f.name)), f.name


def test_build_model_and_from_config_keep_the_config():
    cfg = UNetConfig(8, 1, base_channels=16, channel_mult=[1, 2], attn_resolutions=[4], num_res_blocks=1)
    assert cfg.channel_mult == (1, 2) and cfg.attn_resolutions == (4,)  # lists become tuples
    assert isinstance(build_model(cfg), UNet) and build_model(cfg).config == cfg
    assert UNet.from_config(cfg).config == cfg
    mcfg = MLPConfig(hidden=16, depth=1)
    model = build_model(mcfg)
    assert isinstance(model, MLPDenoiser) and model.config == mcfg
    assert MLPDenoiser.from_config(mcfg).config == mcfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 16


def test_config_from_dict_errors_name_allowed_values():
    with pytest.raises(ValueError, match=r"'kind' must be one of \['classifier', 'mlp', 'unet'\], got 'gan'"):
        config_from_dict({"kind": "gan"})
    with pytest.raises(ValueError, match=r"'kind' must be one of"):
        config_from_dict({"dim": 2})
    with pytest.raises(ValueError, match=r"unknown unet config field\(s\) \['width'\]; allowed fields: \["):
        config_from_dict({"kind": "unet", "image_size": 32, "in_channels": 3, "width": 4})
    with pytest.raises(ValueError, match=r"missing required field\(s\) \['in_channels'\]"):
        config_from_dict({"kind": "unet", "image_size": 32})
    with pytest.raises(ValueError, match=r"must be one of UNetConfig, MLPConfig"):
        build_model({"kind": "unet"})


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(image_size=30), r"divisible by 2\*\*\(len\(channel_mult\) - 1\) = 8"),
        (dict(attn_resolutions=(12,)), r"reachable resolutions \(32, 16, 8, 4\), got \[12\]"),
        (dict(attn_resolutions=(64,)), r"reachable resolutions"),
        (dict(channel_mult=()), r"channel_mult must not be empty"),
        (dict(channel_mult="1,2"), r"channel_mult must be a tuple of positive ints"),
        (dict(channel_mult=(1, 0)), r"channel_mult entries must be a positive int, got 0"),
        (dict(base_channels=0), r"base_channels must be a positive int"),
        (dict(num_res_blocks=True), r"num_res_blocks must be a positive int"),
        (dict(dropout=1.0), r"dropout must be a number in \[0, 1\)"),
        (dict(num_classes=0), r"num_classes must be a positive int"),
    ],
)
def test_unet_rejects_bad_arguments(kw, message):
    args = {"image_size": 32, "in_channels": 3, **kw}
    with pytest.raises(ValueError, match=message):
        UNet(**args)
    with pytest.raises(ValueError, match=message):
        UNetConfig(**args)


def test_unet_forward_rejects_bad_inputs():
    model = tiny_unet()
    x, t = batch(2)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 16, 16\], got \(2, 3, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8), t)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 16, 16\], got \(2, 1, 16, 16\)"):
        model(torch.randn(2, 1, 16, 16), t)
    with pytest.raises(ValueError, match=r"t must have shape \[N\] = \[2\], got \(3,\)"):
        model(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"t must have shape \[N\] = \[2\], got \(\)"):
        model(x, torch.tensor(5))
    with pytest.raises(ValueError, match=r"y was given but the model is unconditional"):
        model(x, t, torch.tensor([0, 1]))
    cond = tiny_unet(num_classes=3)
    with pytest.raises(ValueError, match=r"y must be in \[0, 3\].*got values in \[0, 4\]"):
        cond(x, t, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"y must be an int64 or int32 tensor"):
        cond(x, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must have shape \[N\] = \[2\]"):
        cond(x, t, torch.tensor([0]))


# --- MLP ---------------------------------------------------------------------------------------


def test_mlp_shapes_zero_init_and_conditioning():
    torch.manual_seed(0)
    model = MLPDenoiser(dim=2, hidden=32, depth=2, num_classes=3)
    x, t = torch.randn(5, 2), torch.randint(0, 1000, (5,))
    assert torch.equal(model(x, t), torch.zeros(5, 2))  # zero-initialised output layer
    unzero_(model)
    out = model(x, t)
    assert out.shape == (5, 2) and out.abs().mean() > 0
    y = torch.tensor([0, 1, 2, 0, 1])
    assert (model(x, t, y) - out).abs().max() > 1e-4
    assert torch.equal(out, model(x, t, torch.full((5,), 3)))  # None is the null label
    assert (model(x, t + 100) - out).abs().max() > 1e-4
    model(x, t, y).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mlp_other_dims_and_errors():
    model = MLPDenoiser(dim=5, hidden=16, depth=1)
    assert model(torch.randn(3, 5), torch.zeros(3, dtype=torch.long)).shape == (3, 5)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 5\], got \(3, 2\)"):
        model(torch.randn(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y was given but the model is unconditional"):
        model(torch.randn(3, 5), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"hidden must be an int >= 2"):
        MLPDenoiser(hidden=1)
    with pytest.raises(ValueError, match=r"depth must be a positive int, got 0"):
        MLPConfig(depth=0)
