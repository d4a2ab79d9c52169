import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import ddkit
from ddkit.checks import ParameterError
from ddkit.nn import MLPConfig, UNetConfig
from ddkit.training import DistContext, ShardedBatches, learning_rate, train
from ddkit.training.config import DataConfig, RunConfig, TrainConfig
from ddkit.training.ema import EMA

TINY_UNET = UNetConfig(
    image_size=8,
    in_channels=1,
    base_channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attn_resolutions=(4,),
    dropout=0.1,
)


def tiny_config(**train):
    base = dict(steps=6, batch_size=32, ckpt_every=3, sample_every=100, log_every=2, warmup=2, seed=3)
    return RunConfig(model=TINY_UNET, train=TrainConfig(**{**base, **train}))


def _resolved(config, saved):
    """``config`` with its precision as the trainer resolved and saved it."""
    return config.replace(train=dataclasses.replace(config.train, precision=saved["train"]["precision"]))


def _weights(run, step, name="model"):
    return load_file(str(run / "checkpoints" / f"step-{step:06d}" / f"{name}.safetensors"))


def test_run_folder_layout(tmp_path):
    run = train(tiny_config(), tmp_path / "run", progress=False)
    saved = json.loads((run / "config.json").read_text())
    assert saved["version"] == 2 and saved["diffusion"]["num_timesteps"] == 1000
    # precision "auto" is saved as the choice it resolved to, so a resume keeps it
    assert saved["train"]["precision"] in ("fp32", "bf16")
    assert RunConfig.load(run / "config.json") == _resolved(tiny_config(), saved)
    # a version-1 config (T named diffusion.timesteps) still loads, as the same run
    v1 = {**saved, "version": 1, "diffusion": {**saved["diffusion"], "timesteps": 1000}}
    del v1["diffusion"]["num_timesteps"]
    assert RunConfig.from_dict(v1) == _resolved(tiny_config(), saved)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    for f in ("model.safetensors", "ema.safetensors", "state.pt"):
        assert (run / "checkpoints" / "step-000006" / f).is_file()
    state = torch.load(run / "checkpoints" / "step-000006" / "state.pt", weights_only=True)
    assert state["step"] == 6
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]
    assert all(set(r) == {"step", "loss", "lr", "images_per_s", "elapsed_s"} for r in log)
    assert (run / "samples" / "step-000006.png").is_file() and (run / "loss.png").is_file()


@pytest.mark.slow
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    full = train(tiny_config(), tmp_path / "full", progress=False)
    part = train(tiny_config(), tmp_path / "part", progress=False)
    # a crash after the step-3 checkpoint: the later checkpoint and log lines never happened
    shutil.rmtree(part / "checkpoints" / "step-000006")
    train(tiny_config(), part, resume=True, progress=False)
    for name in ("model", "ema"):
        a, b = _weights(full, 6, name), _weights(part, 6, name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # and the run really changed the weights between the checkpoints
    assert not all(torch.equal(a, b) for a, b in zip(_weights(full, 3).values(), _weights(full, 6).values()))
    log = [json.loads(line)["step"] for line in (part / "log.jsonl").read_text().splitlines()]
    assert log == [2, 4, 6]


def test_resume_without_checkpoint_starts_from_scratch(tmp_path):
    run = train(tiny_config(steps=2, ckpt_every=2), tmp_path / "empty", resume=True, progress=False)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000002"]


def test_ckpt_minutes_checkpoints_by_training_time_and_changes_no_weights(tmp_path):
    # 1e-9 minutes (60 ns) is past after any step, whatever the machine: a checkpoint at every step;
    # 0 turns the clock off: only the final one. Saving touches no state, so the weights agree
    slow = dict(steps=4, ckpt_every=1000, keep_checkpoints=10)
    timed = train(tiny_config(**slow, ckpt_minutes=1e-9), tmp_path / "timed", progress=False)
    steps_only = train(tiny_config(**slow, ckpt_minutes=0.0), tmp_path / "steps", progress=False)
    assert sorted(p.name for p in (timed / "checkpoints").iterdir()) == [f"step-00000{i}" for i in (1, 2, 3, 4)]
    assert [p.name for p in (steps_only / "checkpoints").iterdir()] == ["step-000004"]
    a, b = _weights(timed, 4), _weights(steps_only, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ParameterError, match="ckpt_minutes must be >= 0"):
        tiny_config(ckpt_minutes=-1.0)


def test_load_returns_ema_model_schedule_and_config(tmp_path):
    run = train(tiny_config(steps=3), tmp_path / "run", progress=False)
    model, schedule, config = ddkit.load(run)
    assert not model.training and config == _resolved(tiny_config(steps=3), config.to_dict())
    assert schedule.num_timesteps == 1000
    ema = _weights(run, 3, "ema")
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    raw, _, _ = ddkit.load(run, ema=False)
    assert not all(torch.equal(v, ema[k]) for k, v in raw.state_dict().items())
    x = ddkit.ddim_sample(lambda x, t: model(x, t), torch.randn(2, 1, 8, 8), schedule, steps=3)
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()


def test_class_conditional_and_toy_runs(tmp_path):
    cond = RunConfig(
        model=UNetConfig(**{**TINY_UNET.__dict__, "num_classes": 10}),
        train=TrainConfig(steps=2, batch_size=16, class_cond=True, log_every=1),
    )
    train(cond, tmp_path / "cond", progress=False)
    toy = RunConfig(
        model=MLPConfig(dim=2, hidden=32),
        data=DataConfig(source="toy:moons", toy_size=512),
        train=TrainConfig(steps=2, batch_size=64, log_every=1),
    )
    run = train(toy, tmp_path / "toy", progress=False)
    assert (run / "samples" / "step-000002.png").is_file()


def test_class_cond_needs_labels_and_matching_model(tmp_path):
    bad = RunConfig(model=TINY_UNET, train=TrainConfig(steps=2, class_cond=True))
    with pytest.raises(ValueError, match="num_classes"):
        train(bad, tmp_path / "x", progress=False)
    wrong = RunConfig(
        model=UNetConfig(**{**TINY_UNET.__dict__, "image_size": 16, "attn_resolutions": ()}), train=TrainConfig(steps=1)
    )
    with pytest.raises(ValueError, match="does not fit the data"):
        train(wrong, tmp_path / "y", progress=False)


def test_sharded_batches_are_disjoint_and_resumable():
    ranks = [ShardedBatches(100, 10, seed=1, dist=DistContext(r, 2)) for r in range(2)]
    first = [set(b.next().tolist()) for b in ranks]
    assert not first[0] & first[1]
    epoch = [set().union(*[set(b.next().tolist()) for _ in range(4)]) | f for b, f in zip(ranks, first)]
    assert epoch[0] | epoch[1] == set(range(100)) and not epoch[0] & epoch[1]
    a = ShardedBatches(100, 7, seed=2, dist=DistContext())
    for _ in range(20):
        a.next()
    b = ShardedBatches(100, 7, seed=2, dist=DistContext())
    b.load(a.state())
    assert all(torch.equal(a.next(), b.next()) for _ in range(30))
    with pytest.raises(ValueError, match="batch size per process"):
        ShardedBatches(10, 8, seed=0, dist=DistContext(0, 2))


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 9, 0.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50, 0.5) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert learning_rate(cfg, 100, 1.0) == pytest.approx(1e-4)


def test_ema_update_rule():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    before = ema.model.weight.clone()
    ema.update(net)  # first update: decay warm-up min(0.9, 1/10) = 0.1
    torch.testing.assert_close(ema.model.weight, 0.1 * before + 0.9 * torch.ones_like(before))
    for _ in range(100):
        ema.update(net)
    assert ema.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.model.parameters())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": None, "minutes": None}, "training budget"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"device": "tpu"}, "device must be one of cpu, cuda"),
        ({"precision": "fp8"}, "precision must be one of fp32, bf16, fp16"),
        ({"precision": "fp16"}, "fp16 needs --device cuda"),
        ({"ema_decay": 1.5}, r"ema_decay must be in \[0, 1\]"),
        ({"loss_weighting": "p2"}, "loss_weighting must be one of uniform, min-snr"),
        ({"snr_gamma": 0.0}, "snr_gamma must be a positive number"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_config_json_round_trip_and_versioning(tmp_path):
    cfg = tiny_config()
    cfg.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json") == cfg
    d = cfg.to_dict()
    with pytest.raises(ValueError, match="unsupported config version"):
        RunConfig.from_dict({**d, "version": 99})
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        RunConfig.from_dict({**d, "train": {**d["train"], "learning_rate": 1}})
