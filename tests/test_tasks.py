"""The commands from Python (``ddkit.sample_run``, ``ddkit.evaluate_run``, ``ddkit.edit_run``): the
same results as the command line, and the argparse namespace never below cli/."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import ddkit
from ddkit.checks import ParameterError
from ddkit.cli import build_parser, main
from ddkit.tasks import EditOptions, EvalOptions, SampleOptions, TuneOptions

SRC = Path(ddkit.__file__).parent
TINY = ["--model-channels", "8", "--batch-size", "32", "--ckpt-every", "2", "--sample-every", "100", "--no-progress"]


def test_no_module_below_cli_takes_an_argparse_namespace():
    """Every function outside cli/ takes named options, never ``args``/``namespace`` (an AST scan)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
                found += [f"{path.relative_to(SRC)}:{node.lineno} {n}" for n in names if n in ("args", "namespace")]
    assert not found, found


@pytest.mark.parametrize(
    "command, cls",
    [("sample", SampleOptions), ("eval", EvalOptions), ("edit", EditOptions), ("tune-steps", TuneOptions)],
)
def test_every_option_is_a_keyword_with_the_cli_default(command, cls):
    """The command's flags are the option dataclass's fields: same names, same defaults."""
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    dests = {a.dest: a.default for a in sub._actions if a.option_strings and a.dest not in ("help", "out", "json")}
    fields = cls.__dataclass_fields__
    assert set(dests) <= set(fields)
    for name, default in dests.items():
        assert fields[name].default == default, name


def test_options_are_checked_before_any_work():
    with pytest.raises(ParameterError, match="num must be a positive integer"):
        ddkit.sample_run("/nowhere", num=0)
    with pytest.raises(TypeError, match="unknown option.*guidance_scal\\b"):
        ddkit.sample_run("/nowhere", guidance_scal=2.0)
    with pytest.raises(ParameterError, match="give timesteps or sigmas, not both"):
        ddkit.sample_run("/nowhere", timesteps=[5, 1], sigmas=[1.0])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks") / "run"
    assert main(["train", "--data", "digits:train", "--out", str(out), "--steps", "2", "--class-cond", *TINY]) == 0
    return out


@pytest.mark.slow
def test_sample_run_is_ddkit_sample_bit_for_bit(run, tmp_path):
    options = ["--num", "10", "--batch-size", "4", "--sampler", "dpm++", "--steps", "3", "--seed", "5"]
    options += ["--guidance-scale", "2", "--label", "3"]
    assert main(["sample", str(run), "--out", str(tmp_path / "cli.npz"), *options]) == 0
    kwargs = dict(num=10, batch_size=4, sampler="dpm++", steps=3, seed=5, guidance_scale=2.0, label=3)
    s = ddkit.sample_run(run, **kwargs)
    with np.load(tmp_path / "cli.npz") as z:
        assert set(z.files) == {"images", "labels"}
        assert np.array_equal(z["images"], s.images) and np.array_equal(z["labels"], s.labels)
    assert s.images.dtype == np.uint8 and s.images.shape == (10, 8, 8, 1) and (s.labels == 3).all()
    written = ddkit.sample_run(run, out=tmp_path / "py.npz", grid=str(tmp_path / "g.png"), **kwargs)
    assert written.written == [tmp_path / "py.npz", tmp_path / "g.png"]
    with np.load(tmp_path / "py.npz") as z:
        assert np.array_equal(z["images"], s.images)


@pytest.mark.slow
def test_evaluate_run_returns_what_eval_json_prints(run, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    capsys.readouterr()
    argv = ["eval", str(run), "--num", "130", "--steps", "2", "--fid", "--memorization", "--cache-dir", cache]
    assert main([*argv, "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    result = ddkit.evaluate_run(run, num=130, steps=2, fid=True, memorization=True, cache_dir=cache, no_progress=True)
    assert json.loads(json.dumps(result)) == printed
    assert set(result) >= {"fid", "nn_median", "reference", "settings"} and result["settings"]["num"] == 130


@pytest.mark.slow
def test_edit_run_is_ddkit_edit(run, tmp_path):
    images = np.zeros((3, 8, 8, 1), np.uint8)
    np.savez(tmp_path / "in.npz", images=images)
    argv = ["edit", str(run), "--input", str(tmp_path / "in.npz"), "--method", "sdedit", "--steps", "3"]
    assert main([*argv, "--label", "1", "--out", str(tmp_path / "cli.npz")]) == 0
    s = ddkit.edit_run(run, input=str(tmp_path / "in.npz"), method="sdedit", steps=3, label=1)
    with np.load(tmp_path / "cli.npz") as z:
        assert np.array_equal(z["images"], s.images)


def test_a_scatter_without_matplotlib_is_refused_before_any_work(toy_run, tmp_path, monkeypatch):
    """A 2-D run's grid is a matplotlib scatter: without matplotlib, one error before sampling, and
    no NPZ is written (the check must come before the work, not after it)."""
    import ddkit.tasks.sample as sample

    monkeypatch.setattr(sample, "have_matplotlib", lambda: False)
    out = tmp_path / "points.npz"
    with pytest.raises(ParameterError, match="needs matplotlib|need matplotlib"):
        sample.sample_run(toy_run, out=out, num=4, grid=str(tmp_path / "g.png"))
    assert not out.exists()
    assert sample.sample_run(toy_run, out=out, num=4).points.shape == (4, 2)  # without a grid it samples
