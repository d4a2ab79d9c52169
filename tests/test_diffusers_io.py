"""diffusers folders in (load_diffusers, ddkit sample --diffusers) and out (ddkit export --diffusers).

Every diffusers model here is built locally and saved to a temporary folder; nothing is downloaded.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers / huggingface_hub read it

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

import ddkit  # noqa: E402
from ddkit.cli import main  # noqa: E402
from ddkit.interop.diffusers import ddkit_to_diffusers_state, diffusers_to_ddkit_state  # noqa: E402
from ddkit.nn import UNet, UNetConfig  # noqa: E402
from ddkit.training import train  # noqa: E402
from ddkit.training.config import DataConfig, RunConfig, TrainConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


def ddpm_unet2d(num_class_embeds=None, channels=1):
    """A small UNet2DModel in google/ddpm-cifar10-32's layout (DDPM's architecture), random weights."""
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=channels, out_channels=channels, block_out_channels=(64, 128),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None,
                       downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
                       num_class_embeds=num_class_embeds).eval()  # fmt: skip


def default_unet2d():
    """UNet2DModel's own defaults (flipped sinusoids, symmetric padding, 8-dim heads): not DDPM's UNet."""
    torch.manual_seed(1)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                       layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D")).eval()  # fmt: skip


def save(unet, scheduler, root, layout):
    if layout == "pipeline":
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(root)
    elif layout == "pipeline-no-index":
        unet.save_pretrained(root / "unet")
        scheduler.save_pretrained(root / "scheduler")
    else:  # bare model folder with scheduler_config.json beside it
        unet.save_pretrained(root)
        scheduler.save_pretrained(root)
    return root


@torch.no_grad()
def diffusers_ddim(unet, scheduler_config, x, steps, labels=None):
    sched = DDIMScheduler.from_config(scheduler_config, set_alpha_to_one=True, timestep_spacing="leading",
                                      steps_offset=0, clip_sample=True)  # fmt: skip
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        # use_clipped_model_output: ε re-derived from the clipped x̂₀, as ddkit's clip_x0 does
        x = sched.step(unet(x, t, class_labels=labels).sample, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    return x


@pytest.mark.parametrize("layout", ["pipeline", "pipeline-no-index", "bare"])
def test_ddpm_layout_loads_into_ddkit_unet_and_ddim_matches_diffusers(tmp_path, layout):
    unet, sched = ddpm_unet2d(), DDPMScheduler(beta_schedule="linear")
    model_fn, schedule = ddkit.load_diffusers(save(unet, sched, tmp_path, layout))
    assert model_fn.config.backend == "ddkit" and isinstance(model_fn.network, UNet)
    assert torch.equal(schedule.betas, ddkit.Schedule.linear(1000).betas)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    ours = ddkit.ddim_sample(model_fn, x_T, schedule, steps=10, spacing="leading", clip_x0=(-1, 1))
    ref = diffusers_ddim(unet, sched.config, x_T, 10)
    assert (ref - x_T).abs().mean() > 0.1
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "beta_schedule, prediction",
    [("squaredcos_cap_v2", "v_prediction"), ("scaled_linear", "sample"), ("linear", "epsilon")],
)
def test_other_unet2d_runs_in_diffusers_module_and_matches_for_each_target(tmp_path, beta_schedule, prediction):
    unet = default_unet2d()
    sched = DDPMScheduler(beta_schedule=beta_schedule, prediction_type=prediction, beta_start=1e-3, beta_end=0.012)
    model_fn, schedule = ddkit.load_diffusers(save(unet, sched, tmp_path, "pipeline"))
    assert model_fn.config.backend == "diffusers" and model_fn.config.prediction != "epsilon"
    torch.testing.assert_close(schedule.alpha_bars.float(), sched.alphas_cumprod, rtol=1e-5, atol=1e-7)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = ddkit.ddim_sample(model_fn, x_T, schedule, steps=8, spacing="leading", clip_x0=(-1, 1))
    ref = diffusers_ddim(unet, sched.config, x_T, 8)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_class_conditional_model_takes_labels(tmp_path):
    unet = ddpm_unet2d(num_class_embeds=3)
    model_fn, _ = ddkit.load_diffusers(save(unet, DDPMScheduler(), tmp_path, "bare"))
    assert model_fn.num_classes == 3 and model_fn.config.backend == "ddkit"
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(model_fn(x, t, y), unet(x, t, class_labels=y).sample, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="class-conditional"):
        model_fn(x, t)


def test_state_dict_renaming_round_trips():
    sd = UNet(8, 1, 64, (1, 2), 1, (4,), num_classes=4).state_dict()
    back = diffusers_to_ddkit_state(ddkit_to_diffusers_state(sd))
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


# --- out ----------------------------------------------------------------------------------------
def tiny_run(root, *, channels=64, class_cond=False, schedule="cosine"):
    from ddkit.training.config import DiffusionConfig

    cfg = RunConfig(model=UNetConfig(8, 1, channels, (1, 2), 1, (4,), dropout=0.0,
                                     num_classes=10 if class_cond else None),
                    diffusion=DiffusionConfig(schedule=schedule), data=DataConfig("digits"),
                    train=TrainConfig(steps=2, batch_size=16, class_cond=class_cond, sample_every=1000))  # fmt: skip
    return train(cfg, root, progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("run"))


@pytest.mark.slow
def test_export_loads_in_diffusers_with_the_same_eps(run_dir, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), "--diffusers", str(out)]) == 0
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["beta_schedule"] == "squaredcos_cap_v2"
    model, schedule, _ = ddkit.load(run_dir)
    unet = UNet2DModel.from_pretrained(out / "unet", local_files_only=True).eval()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        ref, ours = unet(x, t).sample, model(x, t)
    assert ours.abs().mean() > 1e-3
    torch.testing.assert_close(ref, ours, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(DDPMScheduler.from_pretrained(out / "scheduler").alphas_cumprod,
                               schedule.alpha_bars.float(), atol=1e-7, rtol=1e-6)  # fmt: skip
    pipe = DDIMPipeline.from_pretrained(out, local_files_only=True)
    images = pipe(
        batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert images.shape == (2, 8, 8, 1) and np.isfinite(images).all()
    assert isinstance(DDPMPipeline.from_pretrained(out, local_files_only=True).unet, UNet2DModel)
    back, _ = ddkit.load_diffusers(out)  # and back into ddkit: the same network
    torch.testing.assert_close(back(x, t), ours, atol=0, rtol=0)


@pytest.mark.slow
def test_class_conditional_export_keeps_the_null_label(tmp_path):
    run = tiny_run(tmp_path / "run", class_cond=True, schedule="linear")
    out = tmp_path / "out"
    ddkit.export_diffusers(run, out)
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["beta_schedule"] == "linear"
    model, _, _ = ddkit.load(run)
    back, _ = ddkit.load_diffusers(out)
    assert back.num_classes == 10
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        torch.testing.assert_close(back(x, t), model(x, t))  # null label
        torch.testing.assert_close(back(x, t, torch.tensor([1, 9])), model(x, t, torch.tensor([1, 9])))


def test_sample_cli_with_diffusers_folder(tmp_path, capsys):
    folder = save(ddpm_unet2d(num_class_embeds=3), DDPMScheduler(), tmp_path / "m", "pipeline")
    npz = tmp_path / "s.npz"
    assert main(["sample", "--diffusers", str(folder), "--num", "6", "--steps", "4", "--out", str(npz)]) == 0
    data = np.load(npz)
    assert data["images"].shape == (6, 8, 8, 1) and data["labels"].tolist() == [0, 1, 2, 0, 1, 2]
    assert main(["sample", "--out", str(npz)]) == 2
    assert main(["sample", str(tmp_path), "--diffusers", str(folder), "--out", str(npz)]) == 2
    assert "exactly one" in capsys.readouterr().err


# --- errors -------------------------------------------------------------------------------------
def _edit(path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize("where, changes, message", [
    ("scheduler", {"beta_schedule": "sigmoid"}, "beta_schedule 'sigmoid' is not supported"),
    ("scheduler", {"rescale_betas_zero_snr": True}, "rescale_betas_zero_snr with prediction_type 'epsilon'"),
    ("scheduler", {"prediction_type": "flow"}, "prediction_type 'flow'"),
    ("unet", {"_class_name": "UNet2DConditionModel"}, "UNet2DModel only"),
    ("unet", {"out_channels": 2}, "learned variance"),
])  # fmt: skip
def test_unsupported_settings_are_one_line_errors(tmp_path, capsys, where, changes, message):
    folder = save(ddpm_unet2d(), DDPMScheduler(), tmp_path / "m", "pipeline-no-index")
    _edit(folder / where / ("scheduler_config.json" if where == "scheduler" else "config.json"), **changes)
    with pytest.raises(ValueError, match=message):
        ddkit.load_diffusers(folder)
    assert main(["sample", "--diffusers", str(folder), "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddkit: error:") and err.count("\n") == 1


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a diffusers folder"):
        ddkit.load_diffusers(tmp_path)
    folder = save(ddpm_unet2d(), DDPMScheduler(), tmp_path / "m", "bare")
    (folder / "diffusion_pytorch_model.safetensors").rename(folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="never pickles"):
        ddkit.load_diffusers(folder)


def test_zero_snr_with_v_prediction_is_honoured(tmp_path):
    sched = DDPMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True)
    _, schedule = ddkit.load_diffusers(save(ddpm_unet2d(), sched, tmp_path, "bare"))
    assert 0 < schedule.alpha_bars[-1].item() <= min(2.0**-24, schedule.alpha_bars[-2].item() / 2)
    torch.testing.assert_close(schedule.alpha_bars[:-1].float(), sched.alphas_cumprod[:-1], rtol=1e-4, atol=1e-7)


def test_export_errors_for_runs_without_a_diffusers_equivalent(tmp_path, capsys):
    run = tiny_run(tmp_path / "run32", channels=32)  # 16 GroupNorm groups at 32 channels, 32 at 64
    assert main(["export", str(run), "--diffusers", str(tmp_path / "out")]) == 2
    assert "norm_num_groups" in capsys.readouterr().err
