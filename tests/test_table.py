"""The quality-vs-steps table (ddkit.eval.table, and benchmarks/oracle_table.py on the exact ε):
layout, files, shared start noise, and its cells agreeing with sampling and scoring by hand."""

import csv
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import ddkit
from ddkit.data.images import to_uint8
from ddkit.eval import evaluate_samples
from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.eval.table import QualityTable, quality_table, sample_quality_table
from ddkit.generate import generate
from ddkit.nn import UNet

# the oracle's table is a benchmark (benchmarks/oracle_table.py), tested here as the table's exact case
_spec = importlib.util.spec_from_file_location(
    "oracle_table", Path(__file__).resolve().parents[1] / "benchmarks" / "oracle_table.py"
)
oracle_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle_table)
oracle_quality_table = oracle_table.oracle_quality_table


def test_oracle_table_layout_files_and_floor(tmp_path, gmm):
    S = ddkit.Schedule.cosine(100)
    table = oracle_quality_table(gmm, S, steps_list=(5, 50), etas=(0.0, 1.0), num=400, seeds=(0, 1))
    assert isinstance(table, QualityTable) and table.values.shape == (2, 2, 2)
    # the 5-step cells are far above the noise of true samples scored the same way (floor ≈ 0)
    assert (table.values[:, 0] > 0).all() and abs(table.floor) < 3 * table.floor_sd + 1e-3
    # deterministic: the same seeds give the same table
    again = oracle_quality_table(gmm, S, steps_list=(5,), etas=(0.0,), num=400, seeds=(0, 1))
    np.testing.assert_array_equal(again.values[0, 0], table.values[0, 0])
    # a cell is the energy distance to the mixture's exact law of DDIM samples from the per-sample start noise
    x_T, _ = ddkit.generate.start_noise(1, range(400), (2,))
    x = ddkit.ddim_sample(gmm.eps_fn(S.alpha_bars), x_T.double(), S, steps=5, eta=0.0)
    assert table.values[0, 0, 1] == pytest.approx(energy_distance_to_mixture(x, gmm), rel=1e-12)
    # the floor: true samples scored the same way
    assert table.floor == pytest.approx(
        np.mean(
            [
                energy_distance_to_mixture(gmm.sample(400, torch.Generator().manual_seed(20_000 + r))[0], gmm)
                for r in (0, 1)
            ]
        ),
        rel=1e-12,
    )
    paths = table.save(tmp_path)
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert [(float(r["eta"]), int(r["steps"])) for r in rows] == [(0.0, 5), (0.0, 50), (1.0, 5), (1.0, 50)]
    assert float(rows[1]["mean"]) == pytest.approx(table.mean()[0, 1]) and "seed_1" in rows[0]
    md = paths["md"].read_text()
    assert md.splitlines()[0] == "| energy distance (η \\ S) | 5 | 50 |" and "| η = 1 |" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_cell_shares_the_start_noise_and_the_sd_is_over_seeds():
    calls = []

    def sample_fn(steps, eta, seed):
        calls.append((steps, eta, seed))
        return torch.full((3,), float(seed))

    table = quality_table(
        sample_fn,
        lambda x, seed: float(x[0]) + 1.0,
        schedule=ddkit.Schedule.cosine(20),
        steps_list=(2, 20),
        etas=(0.0, 0.5),
        seeds=(3, 7),
    )
    assert calls == [(s, e, r) for e in (0.0, 0.5) for s in (2, 20) for r in (3, 7)]
    np.testing.assert_allclose(table.mean(), 6.0)
    np.testing.assert_allclose(table.sd(), np.std([4.0, 8.0], ddof=1))


def test_digits_table_cells_match_generate_and_evaluate_samples():
    torch.manual_seed(0)
    model = UNet(
        image_size=8,
        in_channels=1,
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(),
        dropout=0.0,
    ).eval()
    S = ddkit.Schedule.cosine(50)
    table = sample_quality_table(model, S, steps_list=(2, 4), etas=(0.0, 1.0), num=40, seeds=(0, 1), metric="kid")
    assert table.values.shape == (2, 2, 2) and table.metric == "KID" and table.floor is not None
    x = generate(model, S, 40, sampler="ddim", seed=1, steps=4, eta=1.0, clip_x0=(-1.0, 1.0))
    want = evaluate_samples(to_uint8(x.clamp(-1, 1)), "digits:test", metrics=("kid",), seed=1)["kid"]
    assert table.values[1, 1, 1] == pytest.approx(want, rel=1e-9)
    # an untrained network is far from real digits
    assert table.mean().min() > table.floor


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps_list": (0,)}, r"steps must be integers in \[1, 30\]"),
        ({"steps_list": (31,)}, r"steps must be integers in \[1, 30\]"),
        ({"steps_list": (5,), "etas": (1.5,)}, r"eta must be in \[0, 1\], got 1.5"),
        ({"steps_list": (5,), "seeds": ()}, "at least one value"),
    ],
)
def test_bad_grids_are_errors(kwargs, match, gmm):
    with pytest.raises(ValueError, match=match):
        oracle_quality_table(gmm, ddkit.Schedule.cosine(30), num=10, **kwargs)
