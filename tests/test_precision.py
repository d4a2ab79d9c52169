"""--precision auto: bf16 only where the CPU has native bf16 and the model is large enough."""

import json
from pathlib import Path

import pytest
from torch import nn

from ddkit.cli import main
from ddkit.training.precision import AUTO_BF16_MIN_PARAMS, cpu_has_native_bf16, resolve_precision


def test_explicit_precisions_are_kept():
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, "cpu", nn.Linear(2, 2))[0] == p


def test_auto_follows_the_hardware_and_the_model_size():
    small, large = nn.Linear(4, 4), nn.Linear(1000, 1000)
    assert sum(p.numel() for p in large.parameters()) >= AUTO_BF16_MIN_PARAMS
    assert resolve_precision("auto", "cpu", small)[0] == "fp32"
    assert resolve_precision("auto", "cpu", large)[0] == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_native_bf16_agrees_with_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = cpuinfo.read_text()
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.slow
def test_train_records_the_resolved_choice_and_says_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "1", "--batch-size", "16", "--model-channels", "8",
                 "--num-timesteps", "50", "--no-progress"]) == 0  # fmt: skip
    assert json.loads((run / "config.json").read_text())["train"]["precision"] == "fp32"  # a 0.1M model
    assert "precision auto -> fp32" in capsys.readouterr().err
