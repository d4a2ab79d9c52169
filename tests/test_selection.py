"""Issue 24 §1: selection that sees copying. The fid-fresh rule (fid among the evaluations whose
closer_than_real is at most select_closer, else the lowest closer) on synthetic scores: its order, its
online choice equal to the choice made afterwards, its state across a resume; the held-out part carved
from digits:train to judge rules without touching digits:test; the one line that says which rule
chose a checkpoint."""

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddkit
from ddkit.checks import ParameterError
from ddkit.cli import main
from ddkit.data import holdout_split, load_data, load_run_data
from ddkit.training import DataConfig
from ddkit.training.checkpoint import latest_checkpoint, load_train_state, read_best
from ddkit.training.config import SELECT, TrainConfig
from ddkit.training.load import Weights
from ddkit.training.selection import ModelSelection
from ddkit.training.validation import EvalState, Validator, describe_choice, pick, selection_key

pytestmark = pytest.mark.usefixtures("one_thread")


def _rec(fid, closer):
    return {"fid": fid, "kid": fid / 10, "loss_val": fid / 100, "closer_than_real": closer}


# ---- the rule --------------------------------------------------------------------------------------
def test_fid_fresh_key_fresh_beats_copying_and_falls_back_to_the_lowest_closer():
    assert selection_key(_rec(9.0, 0.55), "fid-fresh") == (0, 9.0)  # the threshold is inclusive
    assert selection_key(_rec(1.0, 0.56), "fid-fresh") == (1, 0.56)
    assert selection_key(_rec(1.0, 0.56), "fid-fresh", 0.6) == (0, 1.0)
    assert selection_key(_rec(1.0, 0.9), "fid") == (0, 1.0)
    assert selection_key(_rec(1.0, 0.9), "loss") == (0, 0.01)
    tier, score = selection_key(_rec(1.0, math.nan), "fid-fresh")  # NaN closer: never fresh, never best
    assert tier == 1 and math.isnan(score)
    with pytest.raises(ParameterError, match="fid-fresh"):
        selection_key(_rec(1.0, 0.5), "fidd")
    assert "fid-fresh" in SELECT


def test_fid_fresh_picks():
    copying = [_rec(5.0, 0.7), _rec(4.0, 0.62), _rec(1.0, 0.9)]
    assert pick(copying, "fid") == 2
    assert pick(copying, "fid-fresh") == 1  # none fresh: the least copying
    later = [*copying, _rec(6.0, 0.5), _rec(7.0, 0.3), _rec(0.5, 0.56)]
    assert pick(later, "fid-fresh") == 3  # the first fresh one beats every copying one
    assert pick(later, "fid-fresh", 0.6) == 5
    assert pick(later + [_rec(6.0, 0.2)], "fid-fresh") == 3  # ties keep the first
    assert pick([], "fid-fresh") is None and pick([_rec(math.nan, 0.5)], "fid-fresh") is None


scores = st.lists(
    st.tuples(st.floats(0.1, 50.0), st.sampled_from([0.3, 0.5, 0.55, 0.56, 0.6, 0.8, 1.0])), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(scores, st.sampled_from(["fid", "kid", "loss", "fid-fresh"]))
def test_online_choice_equals_the_choice_afterwards_and_survives_a_resume_anywhere(seq, select):
    records = [_rec(f, c) for f, c in seq]
    expected = pick(records, select)
    for cut in range(len(records) + 1):  # stop after `cut` evaluations, save the state, resume
        state = EvalState()
        for i, r in enumerate(records):
            if i == cut:
                state = EvalState.from_dict(json.loads(json.dumps(state.to_dict())))
            tier, score = selection_key(r, select)
            state.update(i, score, tier)
        assert state.best_step == expected
        if select == "fid-fresh":  # the best is the lexicographic minimum of (tier, score)
            keys = [selection_key(r, select) for r in records]
            assert (state.best_tier, state.best_score) == min(keys)


def test_eval_state_of_an_older_run_reads_as_tier_0():
    old = {"best_step": 4, "best_score": 3.0, "since_best": 1, "warned": False, "last_step": 6}
    s = EvalState.from_dict(old)
    assert s.best_tier == 0 and not s.update(8, 3.5) and s.update(10, 2.0)


def test_select_closer_is_checked():
    with pytest.raises(ValueError, match="select_closer must be a share in \\[0, 1\\], got 1.5"):
        TrainConfig(select_closer=1.5)
    assert TrainConfig(select="fid-fresh", select_closer=0.6).select_closer == 0.6


def test_describe_choice_says_the_rule_and_the_closer():
    assert describe_choice("fid", 4.0) == "val fid 4"
    assert describe_choice("fid", 4.0, closer=0.613) == "val fid 4, closer 0.61"
    assert describe_choice("fid-fresh", 4.25, 0, 0.52, 0.55) == "val fid-fresh: fid 4.25 with closer 0.52 <= 0.55"
    assert describe_choice("fid-fresh", 0.62, 1, None, 0.55) == (
        "val fid-fresh: no evaluation with closer <= 0.55, the least copying (closer 0.62)"
    )
    best = {"step": 8, "select": "fid-fresh", "score": 6.0, "tier": 0, "select_closer": 0.55}
    w = Weights(Path("r/checkpoints/best/ema.safetensors"), "best", 8, best)
    w.record["scores"] = {"closer_than_real": 0.5}
    assert (
        w.describe() == "the best checkpoint r/checkpoints/best (step 8, val fid-fresh: fid 6 with closer 0.50 <= 0.55)"
    )


# ---- the held-out part of digits:train ---------------------------------------------------------------
def test_holdout_carves_a_second_part_of_digits_train_never_trained_on_nor_validated():
    full = load_data("digits:train")
    d = DataConfig(source="digits:train", holdout=0.25, holdout_seed=0, val=150, val_seed=1)
    train, val, held = (load_run_data(d, 0, p) for p in ("train", "val", "heldout"))
    assert (len(train), len(val), len(held)) == (823, 150, 324)
    rest, out = holdout_split(1297, 0.25, 0)
    assert torch.equal(held.x, full.x[out])
    rows = {tuple(x.flatten().tolist()) for x in full.x[rest]}  # train and val come out of the rest
    assert all(tuple(x.flatten().tolist()) in rows for x in torch.cat([train.x, val.x]))
    # the held-out part does not depend on the validation split
    other = DataConfig(source="digits:train", holdout=0.25, holdout_seed=0, val=150, val_seed=2)
    assert torch.equal(load_run_data(other, 0, "heldout").x, held.x)
    assert not torch.equal(load_run_data(other, 0, "val").x, val.x)
    for source in ("digits", "digits:test"):
        with pytest.raises(ValueError, match="holdout is for image folders and digits:train"):
            DataConfig(source=source, holdout=0.2)


# ---- online, in a training run, across a crash ------------------------------------------------------
TINY = dict(
    data="digits:train", val=129, eval_num=129, model_channels=8, batch_size=32, num_timesteps=50,
    sample_every=1000, log_every=1, seed=3, steps=12, eval_every=2, ckpt_every=4, select="fid-fresh",
)  # fmt: skip
# step → (fid, closer): fid-fresh keeps the least copying (4), then the first fresh one (8); fid takes 6
SCRIPT = {2: (9.0, 0.7), 4: (8.0, 0.62), 6: (1.0, 0.9), 8: (6.0, 0.5), 10: (7.0, 0.4), 12: (2.0, 0.56)}


class Crash(Exception):
    pass


def _scripted(monkeypatch, crash_at=None):
    real = ModelSelection.evaluate

    def evaluate(self, step, *args, **kwargs):
        self.validator.step_now = step
        return real(self, step, *args, **kwargs)

    def scores(self, model):
        if self.step_now == crash_at:
            raise Crash
        fid, closer = SCRIPT[self.step_now]
        return {"fid": fid, "kid": fid, "kid_std": 0.0, "closer_than_real": closer, "loss_val": 1.0, "loss_gap": 0.0}

    monkeypatch.setattr(ModelSelection, "evaluate", evaluate)
    monkeypatch.setattr(Validator, "evaluate", scores)
    monkeypatch.setattr("ddkit.training.reporting.have_matplotlib", lambda: False)


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [6, 10])
def test_fid_fresh_online_and_resumed_after_a_crash_equal_an_uninterrupted_run(tmp_path, monkeypatch, crash_at):
    _scripted(monkeypatch)
    ref = ddkit.train(out=tmp_path / "ref", progress=False, **TINY)
    best = read_best(ref)
    assert (best["step"], best["score"], best["tier"], best["select_closer"]) == (8, 6.0, 0, 0.55)
    _scripted(monkeypatch, crash_at=crash_at)
    with pytest.raises(Crash):
        ddkit.train(out=tmp_path / "run", progress=False, **TINY)
    _scripted(monkeypatch)
    run = ddkit.train(out=tmp_path / "run", resume=True, progress=False)
    assert read_best(run) == best
    for name in ("ema.safetensors", "model.safetensors"):
        assert (run / "checkpoints/best" / name).read_bytes() == (ref / "checkpoints/best" / name).read_bytes()
    final = [load_train_state(latest_checkpoint(r) / "state.pt")["eval"] for r in (ref, run)]
    assert final[0] == final[1] and final[0]["best_step"] == 8 and final[0]["best_tier"] == 0


@pytest.mark.slow
def test_sample_says_which_rule_chose_the_checkpoint_and_its_closer(tmp_path, monkeypatch, capsys):
    _scripted(monkeypatch)
    run = ddkit.train(out=tmp_path / "run", progress=False, **{**TINY, "steps": 6})  # none fresh: the fallback
    capsys.readouterr()
    assert main(["sample", str(run), "--num", "4", "--steps", "3", "--out", str(tmp_path / "s.npz")]) == 0
    line = [x for x in capsys.readouterr().err.splitlines() if "using the best checkpoint" in x]
    assert (
        len(line) == 1
        and "(step 4, val fid-fresh: no evaluation with closer <= 0.55, the least copying (closer 0.62))" in line[0]
    )
