"""Issue 15 §1: the validation part carved out of the training data, evaluation during training (FID,
KID, memorisation, the val/train loss gap), the best checkpoint and which checkpoint sample/eval/load
use, early stopping, and that evaluation never changes training (weights with evaluation on equal
those with it off). The kill -9 test of a run with evaluation on is in test_validation_crash.py.

Runs are tiny (an 8-channel UNet, T = 50, a few steps): the validation part and the samples are the
fewest that FID allows in the 128-D digits features (129)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ddkit
from ddkit.cli import main
from ddkit.data import holdout_split, load_data, load_run_data
from ddkit.data.images import to_uint8
from ddkit.training import RESUME_MAY_CHANGE, DataConfig, RunConfig
from ddkit.training.checkpoint import BEST_FILES, is_complete, latest_checkpoint, read_best, recover_best
from ddkit.training.config import DEFAULT_EVAL_EVERY
from ddkit.training.validation import EvalState, Validator

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(
    data="digits:train",
    val=129,
    eval_num=129,
    model_channels=8,
    batch_size=32,
    num_timesteps=50,
    sample_every=1000,
    log_every=1,
    seed=3,
)
ON = {**TINY, "dropout": 0.1, "steps": 6}  # the evaluated run of the fixture
EVAL_KEYS = {
    "fid",
    "kid",
    "kid_std",
    "closer_than_real",
    "nn_median",
    "nn_median_real",
    "loss_val",
    "loss_train",
    "loss_gap",
    "loss_val_bands",
    "loss_train_bands",
    "loss_gap_bands",
    "num",
    "val_num",
    "seconds",
    "best",
    "best_step",
    "since_best",
}


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _evals(run):
    return [r for r in _log(run) if "eval" in r]


def _weights(ckpt):
    return {name: load_file(str(ckpt / f"{name}.safetensors")) for name in ("model", "ema")}


def _same(a, b) -> bool:
    return all(a[n].keys() == b[n].keys() and all(torch.equal(a[n][k], b[n][k]) for k in a[n]) for n in a)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A run evaluated at steps 2, 4 and 6 (TensorBoard too when it is installed), with dropout
    (which draws from torch's global generator, as evaluation must not)."""
    log_to = "tensorboard" if _have("tensorboard") else "none"
    out = tmp_path_factory.mktemp("val") / "run"
    return ddkit.train(out=out, eval_every=2, ckpt_every=4, keep_checkpoints=9, log_to=log_to, progress=False, **ON)


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---- the split -----------------------------------------------------------------------------------
def test_val_is_carved_out_of_digits_train_disjoint_and_seeded():
    full = load_data("digits:train")
    for val, seed, n_val in ((200, 0, 200), (200, 1, 200), (0.1, 0, 130)):
        d = DataConfig(source="digits:train", val=val, val_seed=seed)
        train, held = load_run_data(d, 0, "train"), load_run_data(d, 0, "val")
        assert (len(train), len(held)) == (1297 - n_val, n_val)
        keep, out = holdout_split(1297, val, seed)  # the one splitter: a seeded permutation
        assert not set(keep) & set(out) and len(keep) + len(out) == 1297
        assert torch.equal(train.x, full.x[keep]) and torch.equal(held.x, full.x[out])
        assert torch.equal(held.y, full.y[out])
    a = load_run_data(DataConfig(source="digits:train", val=200, val_seed=0), 0, "val")
    b = load_run_data(DataConfig(source="digits:train", val=200, val_seed=1), 0, "val")
    assert not torch.equal(a.x, b.x)  # another seed, another part
    assert torch.equal(a.x, load_run_data(DataConfig(source="digits:train", val=200), 0, "val").x)  # same seed


def test_folder_val_comes_out_of_what_holdout_leaves(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(to_uint8(load_data("digits").x)[:40, :, :, 0]):  # 40 distinct digits
        Image.fromarray(img, "L").save(folder / f"{i:03d}.png")
    d = DataConfig(source=str(folder), image_size=8, channels=1, holdout=0.25, val=5, val_seed=2)
    parts = {p: load_run_data(d, 0, p).x.flatten(1) for p in ("train", "val", "heldout")}
    assert {p: len(x) for p, x in parts.items()} == {"train": 25, "val": 5, "heldout": 10}
    for a, b in (("train", "val"), ("train", "heldout"), ("val", "heldout")):
        assert not (parts[a][:, None] == parts[b][None]).all(-1).any(), (a, b)
    no_val = DataConfig(source=str(folder), image_size=8, channels=1, holdout=0.25)
    assert torch.equal(load_run_data(no_val, 0, "heldout").x.flatten(1), parts["heldout"])  # val leaves it alone


@pytest.mark.slow
def test_val_is_recorded_and_old_configs_still_load(evaluated):
    saved = json.loads((evaluated / "config.json").read_text())
    assert saved["data"]["val"] == 129 and saved["data"]["val_seed"] == 0
    assert saved["train"]["eval_every"] == 2 and saved["train"]["eval_num"] == 129
    assert saved["train"]["select"] == "fid" and saved["train"]["early_stop"] is None
    old = json.loads(json.dumps(saved))
    for section, keys in (("data", ("val", "val_seed")), ("train", ("eval_every", "eval_num", "select", "early_stop"))):
        for k in keys:
            del old[section][k]
    cfg = RunConfig.from_dict(old)  # a config.json written before these keys existed
    assert cfg.data.val == 0 and cfg.train.eval_every is None and not cfg.evaluates
    # a val part without a cadence gets the default one, recorded
    with_val = RunConfig.from_dict({**old, "data": {**old["data"], "val": 200}})
    assert with_val.train.eval_every == DEFAULT_EVAL_EVERY
    assert {"eval_every", "early_stop"} <= set(RESUME_MAY_CHANGE)
    assert not {"val", "val_seed", "eval_num", "select"} & set(RESUME_MAY_CHANGE)


def test_the_trainer_never_sees_the_val_part(tmp_path):
    from ddkit.training.api import run_config
    from ddkit.training.trainer import Trainer

    config, data = run_config({**TINY, "steps": 1, "out": str(tmp_path / "r")})
    assert len(data) == 1297 - 129
    trainer = Trainer(config, tmp_path / "r", data=data, progress=False)
    try:
        assert torch.equal(trainer.data.x, load_run_data(config.data, 0, "train").x)
        assert trainer.batches.n == len(data)  # the batches index the training part alone
    finally:
        trainer.lock.release()


# ---- evaluation, the best checkpoint ------------------------------------------------------------
def test_evaluation_logs_every_field(evaluated):
    evals = _evals(evaluated)
    assert [r["step"] for r in evals] == [2, 4, 6]
    for r in evals:
        e = r["eval"]
        assert set(e) == EVAL_KEYS
        assert e["num"] == 129 and e["val_num"] == 129 and e["fid"] > 0 and 0 <= e["closer_than_real"] <= 1
        assert list(e["loss_gap_bands"]) == ["0-11", "12-24", "25-37", "38-49"]
        assert e["loss_gap"] == pytest.approx(e["loss_val"] - e["loss_train"])
        assert e["loss_val"] == pytest.approx(np.mean(list(e["loss_val_bands"].values())))
    assert (evaluated / "val.png").is_file()
    if _have("tensorboard"):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(evaluated / "tensorboard"))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"eval/fid", "eval/kid", "eval/closer_than_real", "eval/loss_gap", "eval/loss_gap/38-49"} <= tags
        assert [e.value for e in acc.Scalars("eval/fid")] == pytest.approx([r["eval"]["fid"] for r in evals])


def test_best_checkpoint_holds_the_lowest_fid(evaluated):
    evals = _evals(evaluated)
    best = min(evals, key=lambda r: r["eval"]["fid"])
    record = read_best(evaluated)
    assert record["step"] == best["step"] and record["select"] == "fid"
    assert record["score"] == pytest.approx(best["eval"]["fid"])
    assert is_complete(evaluated / "checkpoints" / "best", BEST_FILES)
    assert [r["eval"]["best"] for r in evals].count(True) >= 1 and evals[-1]["eval"]["best_step"] == best["step"]
    # each new best forced a step checkpoint first (so the resume point never falls behind the best)
    new_bests = [r["step"] for r in evals if r["eval"]["best"]]
    steps = sorted(int(p.name[5:]) for p in (evaluated / "checkpoints").glob("step-*"))
    assert steps == sorted(set(new_bests) | {4, 6})  # --ckpt-every 4, the final 6 and each new best
    best_dir = evaluated / "checkpoints" / "best"
    assert _same(_weights(best_dir), _weights(evaluated / "checkpoints" / f"step-{best['step']:06d}"))


def test_evaluation_is_reproducible(evaluated):
    """The same EMA weights give the same scores: evaluation draws from its own fixed generators."""
    model, _, config = ddkit.load(evaluated, checkpoint="best")
    train = load_run_data(config.data, config.train.seed)
    from ddkit.training.objectives import DiffusionObjective

    v = Validator(config, train, DiffusionObjective(config, train.num_classes), torch.device("cpu"))
    state = torch.get_rng_state()
    a, b = v.evaluate(model), v.evaluate(model)
    assert torch.equal(state, torch.get_rng_state())  # torch's global generator is left as it was
    logged = [r["eval"] for r in _evals(evaluated) if r["step"] == read_best(evaluated)["step"]][0]
    for key in ("fid", "kid", "closer_than_real", "loss_val", "loss_train"):
        assert a[key] == b[key] == pytest.approx(logged[key], rel=1e-9), key


def test_loss_is_measured_on_at_most_loss_num_images(evaluated):
    """A validation part larger than LOSS_NUM: the loss takes its first LOSS_NUM images and as many
    training images (a smaller part, as the digits' 150, is used whole: tested above)."""
    from ddkit.training.objectives import DiffusionObjective
    from ddkit.training.validation import LOSS_NUM

    _, _, config = ddkit.load(evaluated)
    config = config.replace(data=dataclasses.replace(config.data, val=600))
    train, val = (load_run_data(config.data, config.train.seed, part) for part in ("train", "val"))
    assert len(val.x) == 600 and len(train.x) > LOSS_NUM == 512
    v = Validator(config, train, DiffusionObjective(config, train.num_classes), torch.device("cpu"))
    assert torch.equal(v.loss_sets["val"][0], val.x[:LOSS_NUM]) and len(v.loss_sets["train"][0]) == LOSS_NUM


def test_load_sample_and_eval_choose_best_or_last(evaluated, tmp_path, capsys):
    model, _, _ = ddkit.load(evaluated)
    assert model.loaded_from.kind == "best" and model.loaded_from.step == read_best(evaluated)["step"]
    last, _, _ = ddkit.load(evaluated, checkpoint="last")
    assert last.loaded_from.kind == "last" and last.loaded_from.step == 6
    best_ema = load_file(str(evaluated / "checkpoints" / "best" / "ema.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best_ema.items())
    best_dir, last_dir = str(evaluated / "checkpoints" / "best"), str(latest_checkpoint(evaluated))
    draws = {}
    for choice in (None, "best", "last", best_dir, last_dir):
        out = tmp_path / f"{len(draws)}.npz"
        argv = ["sample", str(evaluated), "--num", "4", "--steps", "3", "--out", str(out)]
        assert main(argv + (["--checkpoint", choice] if choice else [])) == 0
        err = capsys.readouterr().err
        assert ("using the best checkpoint" in err) == (choice in (None, "best")), (choice, err)
        draws[choice] = np.load(out)["images"]
    assert np.array_equal(draws[None], draws["best"]) and np.array_equal(draws["best"], draws[best_dir])
    assert np.array_equal(draws["last"], draws[last_dir])
    assert main(["eval", str(evaluated), "--num", "129", "--steps", "2", "--json", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["checkpoint"] == "best" and "using the best checkpoint" in out.err


@pytest.mark.slow
def test_early_stop_stops_after_k_evaluations_without_a_better_one(tmp_path, monkeypatch, capsys):
    fids = iter([5.0, 4.0, 4.5, 4.2, 3.0, 2.0])  # best at step 4; 6 and 8 are worse: stop at 8
    closer = iter([0.3, 0.65, 0.7, 0.9, 0.9, 0.9])  # passes 0.6 at step 4: one warning
    real = Validator.evaluate

    def scripted(self, model):
        record = real(self, model)
        record.update(fid=next(fids), closer_than_real=next(closer))
        return record

    monkeypatch.setattr(Validator, "evaluate", scripted)
    monkeypatch.setattr("ddkit.training.reporting.have_matplotlib", lambda: False)  # no val.png: one note
    out = ddkit.train(out=tmp_path / "run", steps=20, eval_every=2, early_stop=2, ckpt_every=5, progress=False, **TINY)
    err = capsys.readouterr().err
    assert [r["step"] for r in _evals(out)] == [2, 4, 6, 8]
    assert [r["eval"]["since_best"] for r in _evals(out)] == [0, 0, 1, 2]
    assert latest_checkpoint(out).name == "step-000008"  # the final checkpoint, written at the stop
    assert read_best(out)["step"] == 4
    assert [r for r in _log(out) if "early_stop" in r] == [
        {"step": 8, "early_stop": {"evaluations": 2, "best_step": 4}}
    ]
    assert err.count("early stop at step 8") == 1
    assert err.count("RUN/val.png is skipped") == 1 and not (out / "val.png").exists()
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "step 4: 65% of the samples are nearer a training image" in warnings[0]
    assert "checkpoints/best (step 4, val fid 4)" in warnings[0]
    # resuming a run that stopped early trains no further, unless early_stop is raised
    ddkit.train(out=out, resume=True, progress=False)
    assert "stopped early at step 8 already" in capsys.readouterr().err
    assert latest_checkpoint(out).name == "step-000008"


def test_weights_with_evaluation_equal_weights_without(evaluated, tmp_path):
    """The fixture's run (evaluated at steps 2, 4, 6, with dropout) against the same run evaluated
    only after training (eval_every past the budget)."""
    off = ddkit.train(out=tmp_path / "off", eval_every=1000, progress=False, **ON)
    assert [r["step"] for r in _evals(evaluated)] == [2, 4, 6] and [r["step"] for r in _evals(off)] == [6]
    assert _same(_weights(latest_checkpoint(evaluated)), _weights(latest_checkpoint(off)))
    assert _evals(evaluated)[-1]["eval"]["fid"] == _evals(off)[-1]["eval"]["fid"]


def test_recover_best_after_a_crash_between_its_renames(evaluated, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(evaluated, run)
    best = run / "checkpoints" / "best"
    best.rename(run / "checkpoints" / ".tmp-best-4242")  # the old best already renamed away
    assert read_best(run) is None
    assert recover_best(run) == best and read_best(run)["step"] == read_best(evaluated)["step"]


def test_eval_state_selects_strictly_lower_scores():
    s = EvalState()
    assert s.update(2, 5.0) and not s.update(4, 5.0) and not s.update(6, float("nan")) and s.update(8, 1.0)
    assert (s.best_step, s.since_best, s.last_step) == (8, 0, 8)
    assert EvalState.from_dict(s.to_dict()) == s and EvalState.from_dict(None) == EvalState()


# ---- bad input: one line, exit 2 -----------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--val", "-3"], "--val must be a number of images"),
        (["--val", "1.5"], "--val must be a number of images"),
        (["--val", "abc"], "argument --val: invalid"),
        (["--val", "1297"], "--val 1297 of the 1297 training images of digits:train leaves none to train on"),
        (["--val", "100"], "too few for FID in the 128-dimensional digits feature space, which needs at least 129"),
        (["--val", "0.05"], "gives 65 validation images: too few for FID"),
        (["--val", "200", "--eval-num", "50"], "--eval-num 50 is too few samples for FID"),
        (["--early-stop", "3"], "--early-stop counts evaluations during training: give --val"),
        (["--eval-every", "5"], "--eval-every evaluates on a validation part: give --val"),
        (["--val", "200", "--early-stop", "0"], "--early-stop must be a positive integer"),
        (["--val", "200", "--select", "fidd"], "argument --select: invalid choice"),
        (["--val", "200", "--data", "toy:moons"], "--val (evaluation during training) is for images"),
    ],
)
def test_bad_training_input_is_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    base = ["train", "--out", str(out), "--steps", "1", "--data", "digits:train", "--no-progress"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ddkit: error: ") and message in err, err
    assert not (out / "checkpoints").exists()  # refused before any work


def test_checkpoint_best_without_one_and_resume_conflicts_are_one_line(tmp_path, capsys, evaluated):
    plain = ddkit.train(out=tmp_path / "plain", data="digits:train", steps=1, model_channels=8, progress=False)
    capsys.readouterr()
    for argv in (
        ["sample", str(plain), "--num", "2", "--out", str(tmp_path / "s.npz"), "--checkpoint", "best"],
        ["eval", str(plain), "--num", "2", "--checkpoint", "best", "--memorization", "--reference", "digits:test"],
        ["export", str(plain), "--diffusers", str(tmp_path / "hf"), "--checkpoint", "best"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--checkpoint best: " in err and "has no best checkpoint" in err, err
    assert main(["train", "--out", str(evaluated), "--resume", "--val", "200", "--no-progress"]) == 2
    assert "--val 200 (the run has 129)" in capsys.readouterr().err
