"""The recipe study's bookkeeping (benchmarks/generalisation.py, issue 24 §2): which runs it plans,
that it skips finished runs and resumes a started one, and its results file. No training here: the
training and the scoring are replaced."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "generalisation.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("generalisation_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(study, stage, recipe, seed, evals):
    return {"name": study.run_name(stage, recipe, seed), "stage": stage, "recipe": recipe, "seed": seed, "evals": evals}


def _evals(fid, closer):
    return [{"step": 200, "fid": fid, "kid": 1.0, "loss_val": 1.0, "loss_gap": 0.0, "closer_than_real": closer}]


def test_stage_2_waits_for_stage_1_then_takes_the_augmentation_levels_and_the_best_third(study):
    recipes = list(study.RECIPES)
    results = {}
    assert study.plan(results) == [{"stage": 1, "recipe": r, "seed": 0} for r in recipes]
    # every stage-1 run but the last: stage 2 is not planned yet
    for i, r in enumerate(recipes[:-1]):
        results[study.run_name(1, r, 0)] = _record(
            study, 1, r, 0, _evals(10.0, 0.6 + 0.01 * i)
        )  # all copying: the least first
    assert all(run["stage"] == 1 for run in study.plan(results))
    # the last recipe is fresh: fid-fresh ranks it first whatever its fid
    last = recipes[-1]
    results[study.run_name(1, last, 0)] = _record(study, 1, last, 0, _evals(99.0, 0.5))
    ranked = study.stage1_rank(results)
    assert ranked[0] == last and ranked[1:4] == recipes[:3]
    third = -(-len(recipes) // 3)
    stage2 = [run for run in study.plan(results) if run["stage"] == 2]
    chosen = set(ranked[:third]) | set(study.AUGMENT_LEVELS)
    assert {run["recipe"] for run in stage2} == chosen
    assert [run["seed"] for run in stage2] == sorted(run["seed"] for run in stage2)  # seed 0 of all first
    assert len(stage2) == 3 * len(chosen)


def test_results_are_appended_and_replaced_by_name(study, tmp_path):
    path = tmp_path / "results" / "g.json"
    assert study.load_results(path) == {}
    a, b = _record(study, 1, "default", 0, []), _record(study, 1, "edm", 0, [])
    study.append_result(path, a)
    study.append_result(path, b)
    study.append_result(path, {**a, "evals": _evals(1.0, 0.5)})
    runs = json.loads(path.read_text())["runs"]
    assert [r["name"] for r in runs] == [a["name"], b["name"]] and runs[0]["evals"] == _evals(1.0, 0.5)
    assert not path.with_suffix(".tmp").exists()


@pytest.mark.parametrize(("trained", "expect"), [(0, 1), (400, 1), (1200, 0)])  # fresh, resumed, only scored
def test_a_run_starts_resumes_or_is_only_scored(study, tmp_path, monkeypatch, trained, expect):
    out = tmp_path / "runs" / study.run_name(1, "edm", 0)
    calls = []
    monkeypatch.setattr(study, "trained_to", lambda o: trained)
    monkeypatch.setattr(study, "train", lambda args: calls.append(args))
    evals = [{**e, "step": s} for s in (200, 400) for e in _evals(3.0 if s == 200 else 2.0, 0.5)]
    monkeypatch.setattr(study, "evaluations", lambda o: [dict(e) for e in evals])
    monkeypatch.setattr(study, "score_checkpoints", lambda o, ev, n: [e.update(gu_ratio=0.0) for e in ev])
    monkeypatch.setattr(study, "prune", lambda o: None)
    results = tmp_path / "g.json"
    study.do_run({"stage": 1, "recipe": "edm", "seed": 0}, 1200, results, tmp_path / "runs", 10, False)
    assert len(calls) == expect
    if calls:
        args = calls[0]
        assert args[args.index("--out") + 1] == str(out) and args.count("--keep-step") == 6
        assert "--preconditioning" in args and args[args.index("--val-seed") + 1] == "0"
    rec = study.load_results(results)[out.name]
    assert rec["picks"]["fid"] == 400 and rec["picks"]["last"] == 400 and rec["picks"]["gu-fresh"] == 400


def test_the_study_skips_finished_runs(study, tmp_path, monkeypatch):
    results = tmp_path / "g.json"
    done = [study.run_name(1, r, 0) for r in list(study.RECIPES)[:3]]
    for name in done:
        study.append_result(results, {"name": name, "stage": 1, "recipe": "x", "seed": 0, "evals": []})
    ran = []

    def fake(run, steps, path, runs, num, keep, *rest):
        ran.append(study.run_name(run["stage"], run["recipe"], run["seed"]))
        if len(ran) == 2:
            raise KeyboardInterrupt  # stop the loop after two runs

    monkeypatch.setattr(study, "do_run", lambda *a: (fake(*a), study.append_result(a[2], {"name": ran[-1]})))
    monkeypatch.setattr(study, "draw_plot", lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        study.main(["--results", str(results), "--runs", str(tmp_path / "runs")])
    assert ran == [study.run_name(1, r, 0) for r in list(study.RECIPES)[3:5]]


def test_rule_table_judges_each_rule_s_pick_on_the_held_out_part(study):
    def ev(step, fid, closer, h_fid, h_closer, gap=0.0):
        return {"step": step, "fid": fid, "kid": fid, "loss_val": 1.0, "loss_gap": gap, "closer_than_real": closer,
                "heldout_fid": h_fid, "heldout_closer": h_closer, "gu_ratio": 0.0}  # fmt: skip

    # fid picks the copying step 600 (held-out 9.0, closer 0.8); fid-fresh the fresh step 400 (5.0)
    evals = [ev(200, 9.0, 0.5, 8.0, 0.5), ev(400, 6.0, 0.54, 5.0, 0.52), ev(600, 3.0, 0.7, 9.0, 0.8, gap=0.1)]
    rows = {r["rule"]: r for r in study.rule_table({"a": {"name": "a", "evals": evals}})}
    assert rows["fid"]["heldout_fid"] == 9.0 and rows["fid"]["regret"] == 4.0 and rows["fid"]["fresh_share"] == 0
    assert rows["fid-fresh"]["heldout_fid"] == 5.0 and rows["fid-fresh"]["regret"] == 0.0
    assert rows["gap-fresh"]["heldout_fid"] == 5.0 and rows["last"]["heldout_closer"] == 0.8
    assert study.rule_table({"b": {"name": "b", "evals": [{"step": 200, "fid": 1.0}]}}) == []  # not scored yet


def test_upto_judges_the_picks_as_if_the_runs_had_stopped_there(study):
    def ev(step, fid, h_fid, h_closer):
        return {"step": step, "fid": fid, "kid": fid, "loss_val": 1.0, "loss_gap": 0.0, "closer_than_real": h_closer,
                "heldout_fid": h_fid, "heldout_closer": h_closer}  # fmt: skip

    # by step 400 fid picks the fresh step 400; with step 600 in, the copying one
    evals = [ev(200, 9.0, 8.0, 0.4), ev(400, 6.0, 5.0, 0.5), ev(600, 3.0, 9.0, 0.9)]
    results = {"a": {"name": "a", "stage": 2, "evals": evals}, "b": {"name": "b", "stage": 1, "evals": evals[:1]}}
    full = {r["rule"]: r for r in study.rule_table(results, stage=2)}
    short = {r["rule"]: r for r in study.rule_table(results, stage=2, upto=400)}
    assert full["fid"]["runs"] == 1 and full["fid"]["heldout_fid"] == 9.0 and full["fid"]["regret"] == 4.0
    assert short["fid"]["heldout_fid"] == 5.0 and short["fid"]["heldout_closer"] == 0.5 and short["fid"]["regret"] == 0
    assert {r["rule"]: r for r in study.rule_table(results)}["fid"]["runs"] == 2  # both stages


def test_two_runners_claim_different_runs_and_a_dead_runner_s_lock_is_taken_over(study, tmp_path):
    import os
    import subprocess
    import sys

    runs = tmp_path / "runs"
    assert study.claim(runs, "x") and (runs / "x.lock").read_text() == str(os.getpid())
    # a live process running the script holds its run; a dead pid or another program's does not
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", SCRIPT.name])
    try:
        (runs / "y.lock").write_text(str(other.pid))
        assert study.claim(runs, "y") is False
        (runs / "z.lock").write_text(str(os.getppid()))  # a live pid that is not a runner
        assert study.claim(runs, "z") is True
    finally:
        other.kill()
        other.wait()
    assert study.claim(runs, "y") is True and (runs / "y.lock").read_text() == str(os.getpid())
