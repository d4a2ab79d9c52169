"""Timesteps judged on the law, with a trained model's errors: a small MLP trained on the 2-D
mixture (seeded), its 4- and 5-NFE DDIM samples scored against the exact law (mean log-density
against that of true samples, χ² of the mass per component, energy distance). The grid that
``tune_timesteps_klub`` chooses must beat the RMSE-tuned one on all three (the RMSE objective, run
alone, gives the red side: its grid starts at σ_{T-1} ≈ 2·10⁴, where x̂₀ = x̃ − σ·ε̂ multiplies the
MLP's ε error 2·10⁴-fold, and its samples land far off the law)."""

import pytest
import torch

import ddkit
from ddkit.eval.energy import energy_distance, energy_distance_to_mixture
from ddkit.forward import q_sample
from ddkit.nn.mlp import MLPDenoiser
from ddkit.samplers import run_sampler
from ddkit.tuning import teacher_solution, tune_timesteps, tune_timesteps_klub

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def mlp(gmm):
    schedule = ddkit.Schedule.cosine()
    torch.manual_seed(0)
    net = MLPDenoiser(2, hidden=64, depth=2)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        x0 = gmm.sample(512, generator=g)[0].float()
        t = torch.randint(0, schedule.num_timesteps, (512,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss = (net(q_sample(schedule, x0, t, noise), t) - noise).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return schedule, lambda x, t: net(x.float(), t).to(x.dtype)


def _law(gmm, x: torch.Tensor) -> dict:
    x = x.double()
    resp = torch.softmax(gmm._log_joint(x)[0], 1)  # responsibilities: the mass per component
    w = gmm.weights
    return {
        "log_density": gmm.log_prob(x).mean().item(),
        "chi2": (len(x) * (resp.mean(0) - w) ** 2 / w).sum().item(),
        "energy": energy_distance_to_mixture(x, gmm),
    }


@pytest.mark.parametrize("nfe", [4, 5])
@torch.no_grad()
def test_klub_chosen_grid_beats_rmse_tuned_on_the_law(gmm, mlp, nfe):
    schedule, fn = mlp
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(11))
    train = gmm.sample(1024, generator=torch.Generator().manual_seed(1))[0].float()
    val = gmm.sample(2000, generator=torch.Generator().manual_seed(2))[0]
    rmse = tune_timesteps(
        fn,
        schedule,
        sampler="ddim",
        nfe=nfe,
        x_T=x_T,
        teacher=teacher_solution(fn, schedule, x_T, steps=200),
        max_evals=60,
    )
    chosen = tune_timesteps_klub(
        fn,
        schedule,
        sampler="ddim",
        nfe=nfe,
        x0=train,
        x_T=x_T,
        score_fn=lambda x: energy_distance(x.double(), val),
        sigma_data=0.85,
    )
    assert chosen.objective == "klub" and chosen.chosen in chosen.candidates
    x = torch.randn(8000, 2, generator=torch.Generator().manual_seed(12))
    law_rmse = _law(gmm, run_sampler("ddim", fn, x, schedule, timesteps=list(rmse.timesteps)))
    law_klub = _law(gmm, run_sampler("ddim", fn, x, schedule, timesteps=list(chosen.timesteps)))
    true = gmm.log_prob(gmm.sample(20000, generator=torch.Generator().manual_seed(5))[0]).mean().item()
    # the chosen grid's samples are near the law (true samples: log-density -0.17, energy 0)...
    assert law_klub["energy"] < 0.02 and law_klub["log_density"] > true - 3 and law_klub["chi2"] < 500
    # ...and the RMSE-tuned grid's measurably worse on all three
    assert law_rmse["energy"] > 10 * law_klub["energy"]
    assert law_rmse["log_density"] < law_klub["log_density"] - 1
    assert law_rmse["chi2"] > 2 * law_klub["chi2"]
