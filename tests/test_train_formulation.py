"""The training formulation's options end to end: --augment, --preconditioning edm, --noise-levels,
--loss-weighting edm through ddkit train / ddkit.train; what they record, what resume may change,
sampling and export of the runs they make, and their bad input."""

import json

import pytest
import torch
from safetensors.torch import load_file

import ddkit
from ddkit.cli import main
from ddkit.data import load_data
from ddkit.training import ResumeConflict
from ddkit.training.config import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(data="digits:train", steps=4, batch_size=32, model_channels=8, sample_every=1000, log_every=2)
EDM = dict(preconditioning="edm", noise_levels="lognormal", loss_weighting="edm")


def _weights(run, step):
    return load_file(run / "checkpoints" / f"step-{step:06d}" / "model.safetensors")


def _same_weights(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_augment_0_is_bit_identical_to_no_option(tmp_path):
    plain = ddkit.train(out=tmp_path / "plain", progress=False, **TINY)
    zero = ddkit.train(out=tmp_path / "zero", progress=False, augment=0.0, **TINY)
    assert _same_weights(_weights(plain, 4), _weights(zero, 4))
    assert json.loads((plain / "config.json").read_text()) == json.loads((zero / "config.json").read_text())
    # and an augmenting run starts from the same network: its layer is zero and drawn last
    aug = ddkit.train(out=tmp_path / "aug", progress=False, augment=0.5, **{**TINY, "steps": 1, "lr": 1e-12})
    a, p = load_file(aug / "checkpoints" / "step-000001" / "model.safetensors"), _weights(plain, 4)
    assert set(a) - set(p) == {"augment_embed.weight"}


def test_config_records_the_decisions(tmp_path):
    run = ddkit.train(out=tmp_path / "r", progress=False, augment=0.3, **EDM, **TINY)
    cfg = RunConfig.load(run / "config.json")
    assert cfg.train.augment_ops == ("translate", "scale", "rotate", "aniso")  # the digits: no xflip
    assert cfg.model.augment_dim == 7
    assert cfg.diffusion.target == "edm" and cfg.diffusion.preconditioning == "edm"
    x = load_data("digits:train").x
    assert cfg.diffusion.sigma_data == pytest.approx(x.double().std().item(), abs=1e-4)
    assert cfg.train.noise_levels == "lognormal" and (cfg.train.p_mean, cfg.train.p_std) == (-1.2, 1.2)
    # a config.json written before these keys existed loads as the formulation it trained with
    old = json.loads((run / "config.json").read_text())
    for key in ("preconditioning", "sigma_data"):
        del old["diffusion"][key]
    for key in ("augment", "augment_ops", "noise_levels", "p_mean", "p_std"):
        del old["train"][key]
    old["train"]["loss_weighting"] = "uniform"
    del old["model"]["augment_dim"]
    back = RunConfig.from_dict(old)
    assert back.diffusion.target == "eps" and back.train.augment == 0 and back.model.augment_dim == 0


@pytest.mark.slow
def test_resume_is_exact_and_refuses_to_change_the_formulation(tmp_path):
    opts = dict(TINY, steps=6, ckpt_every=3, augment=0.5, **EDM)
    whole = ddkit.train(out=tmp_path / "whole", progress=False, **opts)
    half = ddkit.train(out=tmp_path / "half", progress=False, **{**opts, "steps": 3})
    ddkit.train(out=half, resume=True, progress=False, steps=6)
    assert _same_weights(_weights(whole, 6), _weights(half, 6))
    for change in ({"augment": 0.2}, {"augment_ops": "translate"}, {"noise_levels": "uniform"}, {"sigma_data": 0.5}):
        with pytest.raises(ResumeConflict):
            ddkit.train(out=half, resume=True, progress=False, steps=8, **change)
    ddkit.train(out=half, resume=True, progress=False, steps=6, augment_ops="aniso,rotate,scale,translate")


@pytest.mark.slow
def test_edm_and_augmenting_runs_sample_evaluate_and_export(tmp_path, capsys):
    """Every sampler, guidance and export see the runs through eps_network; an augmenting run
    exports without its augmentation layer (the same network at zero labels); an EDM run cannot be
    expressed in diffusers and says so in one line."""
    from ddkit.interop.diffusers import export_diffusers, load_diffusers

    edm = ddkit.train(out=tmp_path / "edm", progress=False, class_cond=True, augment=0.5, **EDM, **TINY)
    for sampler in ("ddim", "dpm++", "unipc"):
        argv = ["sample", str(edm), "--num", "4", "--sampler", sampler, "--steps", "5", "--guidance-scale", "2"]
        assert main([*argv, "--out", str(tmp_path / f"{sampler}.npz")]) == 0
    capsys.readouterr()
    assert main(["export", str(edm), "--diffusers", str(tmp_path / "edm_hf")]) == 2
    assert "EDM's preconditioning, which diffusers cannot express" in _error_line(capsys)
    assert not (tmp_path / "edm_hf").exists()
    with pytest.raises(ValueError, match="cannot express"):
        export_diffusers(edm, tmp_path / "edm_hf2")

    aug = ddkit.train(out=tmp_path / "aug", progress=False, augment=0.5, **{**TINY, "model_channels": 64})
    with torch.no_grad():
        load_file(aug / "checkpoints" / "step-000004" / "ema.safetensors")  # the run has its layer
        model, schedule, config = ddkit.load(aug)
        model.augment_embed.weight.normal_()  # whatever the layer learned, zero labels never reach it
        out = export_diffusers(aug, tmp_path / "aug_hf")
        hf, _ = load_diffusers(out)
        g = torch.Generator().manual_seed(0)
        x, t = torch.randn(3, 1, 8, 8, generator=g), torch.tensor([10, 500, 990])
        torch.testing.assert_close(hf(x, t), config.diffusion.eps_network(model, schedule)(x, t))


def test_an_edm_run_scores_bits_per_dim(tmp_path):
    from ddkit.eval.likelihood import nll_bpd

    run = ddkit.train(out=tmp_path / "r", progress=False, num_timesteps=20, **EDM, **TINY)
    model, schedule, config = ddkit.load(run)
    net = config.diffusion.eps_network(model, schedule)
    bound = nll_bpd(lambda x, t: net(x, t), schedule, load_data("digits:test").x[:4], levels=17)
    assert torch.isfinite(torch.as_tensor(bound.summary()["nll_bpd"]))


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddkit: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--augment", "1"], "--augment must be a probability in [0, 1), got 1.0"),
        (["--augment", "-0.1"], "--augment must be a probability in [0, 1)"),
        (["--augment", "0.2", "--augment-ops", "translate,shear"], "--augment-ops: unknown operation 'shear'"),
        (["--augment-ops", "scale"], "--augment-ops needs --augment > 0"),
        (["--augment", "0.2", "--data", "toy:moons"], "--augment (geometric augmentation) is for images"),
        (["--preconditioning", "edm", "--prediction", "x0"], "--preconditioning edm contradicts --prediction x0"),
        (["--preconditioning", "edm", "--prediction", "eps"], "drop --prediction"),
        (["--preconditioning", "edm", "--beta-end", "1"], None),
        (["--loss-weighting", "edm"], "--loss-weighting edm is EDM's λ(σ) = 1/c_out²"),
        (["--sigma-data", "0.5"], "--sigma-data is EDM's σ_data"),
        (["--preconditioning", "edm", "--sigma-data", "-1"], "--sigma-data must be"),
        (["--p-mean", "-1"], "--p-mean shapes the log-normal noise levels: give --noise-levels lognormal"),
        (["--noise-levels", "lognormal", "--p-std", "0"], "--p-std must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    if needle is None:  # no such flag: argparse's own one line
        needle = "unrecognized arguments"
    code = main(["train", "--out", str(tmp_path / "r"), "--steps", "1", "--no-progress", *args])
    assert code == 2
    assert needle in _error_line(capsys)
    assert not (tmp_path / "r" / "checkpoints").exists()
