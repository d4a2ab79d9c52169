"""Training targets ε, x₀ and v: the loss targets, eps_network's conversion, and x₀/v runs trained
and sampled through the CLI (every sampler sees ε)."""

import numpy as np
import pytest
import torch

import ddkit
from conftest import energy_distance
from ddkit.cli import main
from ddkit.parameterization import EpsNetwork, eps_network, prediction_target
from ddkit.training.config import DiffusionConfig, RunConfig

S = ddkit.Schedule.cosine(100)


class _Oracle(torch.nn.Module):
    """A 'network' that outputs the exact target for known (x0, ε): target-agnostic test double
    built from the real conversions (no mocks of ddkit code)."""

    def __init__(self, x0, eps, prediction):
        super().__init__()
        self.x0, self.eps, self.prediction = x0, eps, prediction
        self.config = ddkit.MLPConfig(dim=x0.shape[1])

    def forward(self, x_t, t, y=None):
        return prediction_target(self.prediction, self.x0, self.eps, t, S)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_eps_network_round_trip_and_zero_loss(prediction):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, 100, (64,), generator=g)
    net = _Oracle(x0, eps, prediction)
    f = eps_network(net, prediction, S)
    assert isinstance(f, EpsNetwork) and eps_network(f, "v", S) is f  # never wrapped twice
    assert f.config is net.config and f.num_classes is None
    x_t = ddkit.q_sample(S, x0, t, eps)
    torch.testing.assert_close(f(x_t, t), eps, rtol=1e-6, atol=1e-6)
    # the loss on the chosen target is zero for the exact output, positive for another target's
    loss = ddkit.diffusion_loss(lambda x, tt: net(x, tt), S, x0, t=t, noise=eps, prediction=prediction)
    assert loss.item() < 1e-20
    other = "x0" if prediction != "x0" else "eps"
    assert ddkit.diffusion_loss(lambda x, tt: net(x, tt), S, x0, t=t, noise=eps, prediction=other).item() > 0.1
    for weighting in ("uniform", "min-snr"):
        assert (
            ddkit.diffusion_loss(
                lambda x, tt: net(x, tt), S, x0, t=t, noise=eps, prediction=prediction, weighting=weighting
            ).item()
            < 1e-20
        )


def test_v_target_and_bad_names():
    x0, eps, t = torch.ones(2, 1, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64), torch.tensor([10, 90])
    ab = S.alpha_bars[t].unsqueeze(1)
    torch.testing.assert_close(prediction_target("v", x0, eps, t, S), -(1 - ab).sqrt())
    with pytest.raises(ValueError, match="prediction must be one of eps, x0, v"):
        eps_network(torch.nn.Identity(), "score", S)
    with pytest.raises(ValueError, match="needs the schedule"):
        EpsNetwork(torch.nn.Identity(), "v", None)
    with pytest.raises(ValueError, match="prediction must be one of"):
        DiffusionConfig(prediction="x_0")
    cfg = RunConfig(model=ddkit.MLPConfig(dim=2), diffusion=DiffusionConfig(prediction="v"))
    assert RunConfig.from_dict(cfg.to_dict()).diffusion.prediction == "v"
    assert RunConfig.from_dict({**cfg.to_dict(), "diffusion": {"schedule": "cosine"}}).diffusion.prediction == "eps"


@pytest.mark.slow
@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_x0_and_v_runs_train_and_sample_through_the_cli(tmp_path, prediction):
    """A small MLP on toy:gmm, 150 steps: samples from every sampler (through eps_network) land on
    the data far better than the start noise does."""
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                "toy:gmm",
                "--out",
                str(run),
                "--steps",
                "150",
                "--batch-size",
                "256",
                "--model-channels",
                "64",
                "--num-timesteps",
                "100",
                "--prediction",
                prediction,
                "--lr",
                "3e-3",
                "--warmup",
                "20",
                "--ckpt-every",
                "150",
                "--sample-every",
                "150",
                "--no-progress",
            ]
        )
        == 0
    )
    assert RunConfig.load(run / "config.json").diffusion.prediction == prediction
    assert (run / "samples" / "step-000150.png").exists()
    data = torch.from_numpy(np.asarray(ddkit.data.load_data("toy:gmm").x[:500], dtype=np.float32))
    noise = energy_distance(torch.randn(500, 2, generator=torch.Generator().manual_seed(0)), data)
    for args in (["--sampler", "dpm++", "--steps", "10"], ["--sampler", "ddpm"]):
        out = tmp_path / f"{args[1]}.npz"
        assert main(["sample", str(run), "--num", "500", *args, "--out", str(out)]) == 0
        points = torch.from_numpy(np.load(out)["points"])
        assert energy_distance(points, data) < noise / 4, (args, energy_distance(points, data), noise)
