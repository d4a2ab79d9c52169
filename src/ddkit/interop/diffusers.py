"""diffusers model folders in and out: ``load_diffusers(PATH) -> (model_fn, schedule)`` and
``export_diffusers(RUN, OUT)``.

In: a local folder written by diffusers' ``save_pretrained`` holding a ``UNet2DModel`` (the layout
of google/ddpm-cifar10-32): a pipeline folder (``unet/``, ``scheduler/``, with or without
``model_index.json``) or a bare model folder (``config.json``,
``diffusion_pytorch_model.safetensors``) with ``scheduler_config.json`` beside it. Nothing is ever
downloaded. The network runs in one of two ways:

* **ddkit's UNet** when the UNet2DModel's config is DDPM's architecture (what ddkit's UNet is:
  positional time embedding with ``flip_sin_to_cos=False, freq_shift=1``, ``downsample_padding=0``,
  ``norm_eps=1e-6``, single-head attention, ``DownBlock2D``/``AttnDownBlock2D`` mirrored on the way
  up, ``norm_num_groups`` equal to ddkit's group count at every width). The weights are renamed
  weight for weight (q, k, v fused into one linear) and read straight from the safetensors file:
  diffusers need not even be installed.
* **diffusers' own module** otherwise (e.g. ``UNet2DModel()``'s defaults: flipped sinusoids,
  symmetric downsampling padding, eps 1e-5, multi-head attention); that needs ``pip install
  ddkit[diffusers]``.

The schedule comes from the scheduler config (``beta_schedule`` linear / scaled_linear /
squaredcos_cap_v2 or ``trained_betas``; ``num_train_timesteps``), and ``prediction_type``
(epsilon / sample / v_prediction) is converted to ε through :mod:`ddkit.parameterization`, so the
result is an ordinary ``model_fn(x_t, t) -> ε`` for every ddkit sampler. Sampling settings of the
scheduler (``timestep_spacing``, ``clip_sample``, ``steps_offset``, …) are not read: ddkit's own
sampler options choose them. Settings ddkit cannot honour are a one-line ValueError.

Class labels: a class-conditional UNet2DModel (``num_class_embeds = K``) has
``model_fn.num_classes`` classes and takes them as the third argument, ``model_fn(x_t, t, y)`` with
``y`` int64 [N] (bind them with ``lambda x, t: model_fn(x, t, y)``). A folder exported by ddkit
keeps its null label (``num_classes = K - 1``; ``y=None`` means the null label); for any other
model ``y`` is required.

Out: :func:`export_diffusers` writes ``unet/`` (config.json, diffusion_pytorch_model.safetensors),
``scheduler/scheduler_config.json`` (a DDPMScheduler with the run's β) and ``model_index.json``
(DDPMPipeline), which ``DDPMPipeline.from_pretrained`` and ``DDIMPipeline.from_pretrained`` load.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checks import is_int
from ..nn import UNet, UNetConfig
from ..nn.layers import NORM_EPS, num_groups
from ..parameterization import TARGETS, eps_from_prediction, get_target
from ..schedule import Schedule, rescale_zero_terminal_snr
from ..training.load import load

__all__ = [
    "DiffusersModel",
    "load_diffusers",
    "export_diffusers",
    "diffusers_to_ddkit_state",
    "ddkit_to_diffusers_state",
    "schedule_from_scheduler_config",
    "scheduler_config_for",
]

WEIGHTS = "diffusion_pytorch_model.safetensors"
# diffusers' prediction_type -> ddkit's (EDM's preconditioned network has none)
PREDICTIONS = {t.diffusers_name: name for name, t in TARGETS.items() if t.diffusers_name is not None}
NULL_LABEL_KEY = "_ddkit_null_label"  # private keys ("_…") are ignored by diffusers' from_config

# --- weights: diffusers' UNet2DModel names <-> ddkit.nn.UNet names --------------------------------
# (diffusers, ddkit) parts of names, applied in order either way; a part that does not start with "."
# starts the name; <D> is down or up, <I> and <J> numbers
_NAMES = [
    ("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
    ("class_embedding.", "label_embed."), ("conv_norm_out.", "out_norm."), ("conv_out.", "out_conv."),
    (".time_emb_proj.", ".emb_proj."), (".conv_shortcut.", ".shortcut."), (".to_out.0.", ".proj_out."),
    (".group_norm.", ".norm."), ("mid_block.resnets.0.", "mid.0.res."),
    ("mid_block.attentions.0.", "mid.0.attn."), ("mid_block.resnets.1.", "mid.1.res."),
    ("<D>_blocks.<I>.resnets.<J>.", "<D>.<I>.blocks.<J>.res."),
    ("<D>_blocks.<I>.attentions.<J>.", "<D>.<I>.blocks.<J>.attn."),
    ("down_blocks.<I>.downsamplers.0.", "down.<I>.resample."), ("up_blocks.<I>.upsamplers.0.", "up.<I>.resample."),
]  # fmt: skip
_PLACES = {"<D>": "(?P<D>down|up)", "<I>": r"(?P<I>\d+)", "<J>": r"(?P<J>\d+)"}


def _rules(to_ddkit: bool) -> list[tuple[str, str]]:
    """:data:`_NAMES` as (regex, replacement) pairs, diffusers → ddkit or back."""
    rules = []
    for names in _NAMES:
        old, new = names if to_ddkit else names[::-1]
        pattern = ("" if old.startswith(".") else "^") + re.escape(old)
        for place, group in _PLACES.items():
            pattern = pattern.replace(place, group)
        rules.append((pattern, new.replace("<", r"\g<")))
    return rules


_TO_DDKIT, _TO_DIFFUSERS = _rules(True), _rules(False)


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def diffusers_to_ddkit_state(sd: dict) -> dict:
    """A diffusers UNet2DModel state dict renamed to ddkit.nn.UNet's (to_q, to_k, to_v fused into qkv)."""
    out, qkv = {}, {}
    for key, value in sd.items():
        key = _rename(key, _TO_DDKIT)
        m = re.match(r"(.*)\.to_([qkv])\.(weight|bias)$", key)
        if m:
            qkv.setdefault(f"{m[1]}.qkv.{m[3]}", {})[m[2]] = value
        else:
            out[key] = value
    out.update({k: torch.cat([d["q"], d["k"], d["v"]]) for k, d in qkv.items()})
    return out


def ddkit_to_diffusers_state(sd: dict) -> dict:
    """Inverse of :func:`diffusers_to_ddkit_state` (qkv split into to_q, to_k, to_v); contiguous tensors."""
    out = {}
    for key, value in sd.items():
        key = _rename(key, _TO_DIFFUSERS)
        m = re.match(r"(.*)\.qkv\.(weight|bias)$", key)
        if m:
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                out[f"{m[1]}.to_{name}.{m[2]}"] = part.contiguous()
        else:
            out[key] = value.contiguous()
    return out


# --- schedules ----------------------------------------------------------------------------------
def _diffusers_cosine_betas(num_timesteps: int) -> Tensor:
    """diffusers' ``betas_for_alpha_bar(T)`` ("squaredcos_cap_v2"), in float64 before its float32 cast."""
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    T = num_timesteps
    return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64)


def schedule_from_scheduler_config(cfg: dict) -> tuple[Schedule, str]:
    """``(schedule, prediction)`` from a diffusers scheduler config; prediction is "eps", "x0" or "v"."""
    prediction_type = cfg.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTIONS:
        raise ValueError(
            f"scheduler prediction_type {prediction_type!r} is not supported; allowed: {', '.join(PREDICTIONS)}"
        )
    prediction = PREDICTIONS[prediction_type]
    if cfg.get("thresholding"):
        raise ValueError(
            "scheduler thresholding=True (dynamic thresholding) is not supported; ddkit clips x̂₀ to [-1, 1]"
        )
    if str(cfg.get("variance_type")).startswith("learned"):
        raise ValueError(f"scheduler variance_type {cfg['variance_type']!r} (a learned variance) is not supported")
    if "beta_schedule" not in cfg and cfg.get("trained_betas") is None:
        raise ValueError(f"scheduler {cfg.get('_class_name', '?')} has no beta schedule (a σ-based scheduler?)")
    T = int(cfg.get("num_train_timesteps", 1000))
    if cfg.get("trained_betas") is not None:
        schedule = Schedule(torch.tensor(cfg["trained_betas"], dtype=torch.float64))
    else:
        kind, lo, hi = cfg.get("beta_schedule", "linear"), cfg.get("beta_start", 1e-4), cfg.get("beta_end", 0.02)
        if kind == "linear":
            schedule = Schedule.linear(T, lo, hi)
        elif kind == "scaled_linear":
            schedule = Schedule.scaled_linear(T, lo, hi)
        elif kind == "squaredcos_cap_v2":
            schedule = Schedule.cosine(T)
        else:
            raise ValueError(
                f"scheduler beta_schedule {kind!r} is not supported; "
                "allowed: linear, scaled_linear, squaredcos_cap_v2 (or trained_betas)"
            )
    if cfg.get("rescale_betas_zero_snr"):
        if prediction == "eps":
            raise ValueError(
                "rescale_betas_zero_snr with prediction_type 'epsilon' is not supported: "
                "ε cannot give x̂₀ at zero terminal SNR"
            )
        schedule = Schedule(rescale_zero_terminal_snr(schedule.betas))
    return schedule, prediction


def scheduler_config_for(schedule: Schedule, prediction: str = "eps") -> dict:
    """A DDPMScheduler config with ``schedule``'s β: "linear" for a linear run, "squaredcos_cap_v2"
    when the β equal diffusers' cosine exactly (float64), else ``trained_betas``."""
    T = schedule.num_timesteps
    cfg = {"_class_name": "DDPMScheduler", "num_train_timesteps": T, "beta_start": 1e-4, "beta_end": 0.02,
           "trained_betas": None, "variance_type": "fixed_small", "clip_sample": True, "clip_sample_range": 1.0,
           "prediction_type": get_target(prediction).diffusers_name, "timestep_spacing": "leading",
           "steps_offset": 0}  # fmt: skip
    if schedule.name == "linear":
        cfg.update(
            beta_schedule="linear", beta_start=schedule.params["beta_start"], beta_end=schedule.params["beta_end"]
        )
    elif torch.equal(schedule.betas, _diffusers_cosine_betas(T)):
        cfg.update(beta_schedule="squaredcos_cap_v2")
    else:
        cfg.update(beta_schedule="linear", trained_betas=schedule.betas.tolist())
    return cfg


# --- UNet configs -------------------------------------------------------------------------------
# UNet2DModel's defaults for the options that decide whether ddkit's UNet is the same network
# (google/ddpm-cifar10-32's config predates some of them; a missing key means the default).
_UNET2D_DEFAULTS = dict(
    center_input_sample=False, time_embedding_type="positional", time_embedding_dim=None, freq_shift=0,
    flip_sin_to_cos=True, mid_block_type="UNetMidBlock2D", mid_block_scale_factor=1, downsample_padding=1,
    downsample_type="conv", upsample_type="conv", act_fn="silu", attention_head_dim=8, norm_num_groups=32,
    attn_norm_num_groups=None, norm_eps=1e-5, resnet_time_scale_shift="default", add_attention=True,
    class_embed_type=None, num_class_embeds=None, num_train_timesteps=None, layers_per_block=2, dropout=0.0,
)  # fmt: skip
# what ddkit's UNet (DDPM's architecture) fixes
_DDPM_FIXED = dict(
    center_input_sample=False, time_embedding_type="positional", freq_shift=1, flip_sin_to_cos=False,
    mid_block_type="UNetMidBlock2D", mid_block_scale_factor=1, downsample_padding=0, downsample_type="conv",
    upsample_type="conv", act_fn="silu", norm_eps=NORM_EPS, resnet_time_scale_shift="default", add_attention=True,
    class_embed_type=None, num_train_timesteps=None, attn_norm_num_groups=None,
)  # fmt: skip


@dataclass(frozen=True)
class DiffusersModelConfig:
    """What a loaded diffusers model denoises: ``[N, in_channels, image_size, image_size]``."""

    image_size: int
    in_channels: int
    num_classes: int | None
    prediction: str  # what the network outputs ("eps" | "x0" | "v"); the model_fn returns ε
    backend: str  # "ddkit" (weights loaded into ddkit.nn.UNet) or "diffusers" (UNet2DModel itself)


def _image_size(cfg: dict) -> int:
    size = cfg.get("sample_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not is_int(size) or size < 1:
        raise ValueError(f"the UNet2DModel config needs a square sample_size, got {cfg.get('sample_size')!r}")
    return size


def ddkit_unet_config(cfg: dict, num_classes: int | None) -> UNetConfig | str:
    """The :class:`UNetConfig` of ddkit's UNet that equals this UNet2DModel config, or why none does."""
    c = {**_UNET2D_DEFAULTS, **cfg}
    differ = [f"{k}={c[k]!r}" for k, v in _DDPM_FIXED.items() if c[k] != v]
    if differ:
        return f"DDPM's UNet has other {', '.join(differ)}"
    widths = list(c["block_out_channels"])
    base = widths[0]
    if any(w % base for w in widths) or c["time_embedding_dim"] not in (None, 4 * base):
        return "block_out_channels are not multiples of the first or time_embedding_dim is not 4x"
    if any(num_groups(w) != c["norm_num_groups"] for w in widths):
        return f"norm_num_groups={c['norm_num_groups']} differs from ddkit's group count at some width"
    down, up = list(c.get("down_block_types", ())), list(c.get("up_block_types", ()))
    if not set(down) <= {"DownBlock2D", "AttnDownBlock2D"} or up != [b.replace("Down", "Up") for b in down[::-1]]:
        return f"blocks {down} / {up} are not DownBlock2D/AttnDownBlock2D mirrored on the way up"
    attn = [w for w, b in zip(widths, down) if b.startswith("Attn")] + [widths[-1]]
    if c["attention_head_dim"] is not None and any(w != c["attention_head_dim"] for w in attn):
        return f"attention_head_dim={c['attention_head_dim']} makes multi-head attention"
    size = _image_size(c)
    try:
        return UNetConfig(image_size=size, in_channels=c["in_channels"], base_channels=base,
                          channel_mult=tuple(w // base for w in widths), num_res_blocks=c["layers_per_block"],
                          attn_resolutions=tuple(size // 2**i for i, b in enumerate(down) if b.startswith("Attn")),
                          dropout=c["dropout"], num_classes=num_classes)  # fmt: skip
    except ValueError as e:
        return str(e)


def diffusers_unet_config(cfg: UNetConfig) -> dict:
    """UNet2DModel's config.json for ddkit's UNet ``cfg``; ValueError when it has no equivalent."""
    if cfg.channel_mult[0] != 1:
        raise ValueError(
            f"channel_mult must start with 1 for UNet2DModel (its first width is also the "
            f"time embedding's), got {cfg.channel_mult}"
        )
    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    groups = sorted({(num_groups(w), w) for w in widths})
    if len({g for g, _ in groups}) > 1:
        (g1, w1), (g2, w2) = groups[0], groups[-1]
        raise ValueError(
            f"ddkit's GroupNorm has {g1} groups at {w1} channels but {g2} at {w2}; UNet2DModel has one "
            "norm_num_groups for every width, so this UNet has no diffusers equivalent "
            "(widths that are multiples of 32 from 64 up, e.g. --model-channels 64, have one)"
        )
    down = ["AttnDownBlock2D" if r in cfg.attn_resolutions else "DownBlock2D" for r in cfg.resolutions]
    out = {"_class_name": "UNet2DModel", "_diffusers_version": _diffusers_version(), **_DDPM_FIXED,
           "sample_size": cfg.image_size, "in_channels": cfg.in_channels, "out_channels": cfg.in_channels,
           "block_out_channels": widths, "layers_per_block": cfg.num_res_blocks, "down_block_types": down,
           "up_block_types": [b.replace("Down", "Up") for b in down[::-1]], "attention_head_dim": None,
           "norm_num_groups": groups[0][0], "dropout": cfg.dropout, "time_embedding_dim": None,
           "num_class_embeds": None if cfg.num_classes is None else cfg.num_classes + 1}  # fmt: skip
    if cfg.num_classes is not None:
        out[NULL_LABEL_KEY] = cfg.num_classes
    return out


def _diffusers_version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusers")
    except Exception:  # not installed: any recent version reads the folder
        return "0.30.0"


# --- in -----------------------------------------------------------------------------------------
class DiffusersModel(nn.Module):
    """A diffusers UNet2DModel as ``model_fn(x_t, t, y=None) -> ε``.

    x_t: [N, C, S, S]; t: LongTensor [N] of 0-based training timesteps; y: int64 [N] class labels
    (class-conditional models only). ``network`` is ddkit's UNet or diffusers' UNet2DModel (see
    ``config.backend``); its output (``config.prediction``) is converted to ε with ``schedule``.
    """

    def __init__(
        self, network: nn.Module, config: DiffusersModelConfig, schedule: Schedule, null_label: int | None = None
    ):
        super().__init__()
        self.network, self.config, self.schedule, self.null_label = network, config, schedule, null_label
        self.num_classes = config.num_classes

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes is None and y is not None:
            raise ValueError("labels were given but the diffusers model is unconditional")
        if self.num_classes is not None and y is None:
            if self.null_label is None:
                raise ValueError(
                    f"this diffusers model is class-conditional ({self.num_classes} classes): "
                    "pass labels, model_fn(x_t, t, y)"
                )
            y = torch.full((x_t.shape[0],), self.null_label, dtype=torch.long, device=x_t.device)
        if self.config.backend == "ddkit":
            out = self.network(x_t, t, y)
        else:
            out = self.network(x_t, t, class_labels=y).sample
        return eps_from_prediction(out, self.config.prediction, x_t, t, self.schedule)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _locate(path: Path) -> tuple[Path, Path]:
    """``(unet folder, scheduler config file)`` of a pipeline or bare-model folder."""
    if not path.is_dir():
        raise ValueError(f"diffusers folder {path} does not exist")
    index = path / "model_index.json"
    if index.is_file():
        parts = _read_json(index)
        others = sorted(k for k, v in parts.items() if not k.startswith("_") and isinstance(v, list)
                        and k not in ("unet", "scheduler") and v[0] is not None)  # fmt: skip
        if others or parts.get("unet", [None, None])[1] != "UNet2DModel":
            raise ValueError(
                f"{path} is a {parts.get('_class_name', '?')} with parts {['unet', 'scheduler'] + others}; "
                "ddkit loads pipelines of a UNet2DModel and a scheduler only"
            )
    if (path / "unet" / "config.json").is_file() and (path / "scheduler" / "scheduler_config.json").is_file():
        return path / "unet", path / "scheduler" / "scheduler_config.json"
    if (path / "config.json").is_file() and (path / "scheduler_config.json").is_file():
        return path, path / "scheduler_config.json"
    raise ValueError(
        f"{path} is not a diffusers folder: expected unet/config.json and "
        "scheduler/scheduler_config.json, or config.json with scheduler_config.json beside it"
    )


def _load_network(unet_dir: Path, cfg: dict, num_classes: int | None, device) -> tuple[nn.Module, str]:
    """ddkit's UNet with the renamed weights when the architecture is DDPM's, else UNet2DModel."""
    weights = unet_dir / WEIGHTS
    if not weights.is_file():
        found = sorted(p.name for p in unet_dir.glob("diffusion_pytorch_model*"))
        raise ValueError(
            f"no {WEIGHTS} in {unet_dir} (found {found or 'nothing'}); ddkit reads safetensors "
            "only, never pickles: re-save with save_pretrained(..., safe_serialization=True)"
        )
    ours = ddkit_unet_config(cfg, num_classes)
    if isinstance(ours, UNetConfig):
        from safetensors.torch import load_file

        net = UNet.from_config(ours)
        try:
            net.load_state_dict(diffusers_to_ddkit_state(load_file(weights)))
        except RuntimeError as e:
            raise ValueError(f"the weights in {weights} do not match its config: {str(e).splitlines()[0]}") from None
        return net.to(device).eval(), "ddkit"
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise ValueError(
            f"this UNet2DModel is not DDPM's architecture ({ours}), so it runs in diffusers' own "
            "module: pip install ddkit[diffusers]"
        ) from None
    net = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True, local_files_only=True)
    return net.to(device).eval(), "diffusers"


def load_diffusers(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[DiffusersModel, Schedule]:
    """``(model_fn, schedule)`` from a local diffusers folder (see the module docstring).

    ``model_fn(x_t, t) -> ε`` (and ``model_fn(x_t, t, y)`` for a class-conditional model) is a
    :class:`DiffusersModel` in eval mode on ``device``; ``schedule`` has the scheduler's β.
    Raises ValueError (one line) for a folder or a setting ddkit cannot use.
    """
    unet_dir, scheduler_file = _locate(Path(path))
    cfg = _read_json(unet_dir / "config.json")
    if cfg.get("_class_name") != "UNet2DModel":
        raise ValueError(f"{unet_dir} holds a {cfg.get('_class_name')!r}; ddkit loads UNet2DModel only")
    size = _image_size(cfg)
    if cfg.get("out_channels", 3) != cfg.get("in_channels", 3):
        raise ValueError(
            f"out_channels={cfg.get('out_channels')} differs from in_channels={cfg.get('in_channels')} "
            "(a learned variance?); ddkit needs a network that outputs ε, x0 or v"
        )
    if cfg.get("class_embed_type") is not None:
        raise ValueError(f"class_embed_type {cfg['class_embed_type']!r} is not supported (only num_class_embeds)")
    schedule, prediction = schedule_from_scheduler_config(_read_json(scheduler_file))
    embeds, null = cfg.get("num_class_embeds"), cfg.get(NULL_LABEL_KEY)
    classes = None if embeds is None else (embeds - 1 if null == embeds - 1 else embeds)
    # ddkit's UNet(num_classes=K) has K + 1 label rows: a plain K-class model maps to num_classes=K-1
    network, backend = _load_network(unet_dir, cfg, None if embeds is None else embeds - 1, device)
    config = DiffusersModelConfig(size, cfg.get("in_channels", 3), classes, prediction, backend)
    return DiffusersModel(network, config, schedule, null if classes != embeds else None), schedule


# --- out ----------------------------------------------------------------------------------------
def export_diffusers(run: str | os.PathLike, out: str | os.PathLike, *, checkpoint=None, ema: bool = True) -> Path:
    """Write run ``run`` as a DDPMPipeline folder: its EMA weights (raw ones unless ``ema``) of
    ``checkpoint`` ("best", "last", a checkpoint folder or file; by default the best checkpoint when
    the run has one, else the newest: :func:`ddkit.load`)."""
    from safetensors.torch import save_file

    model, schedule, config = load(run, checkpoint=checkpoint, ema=ema)
    if not isinstance(config.model, UNetConfig):
        raise ValueError(
            f"only UNet runs can be exported to diffusers; {run} has a {type(config.model).__name__} "
            "(2-D points), which diffusers has no model for"
        )
    if get_target(config.diffusion.target).diffusers_name is None:
        raise ValueError(
            f"{run} was trained with EDM's preconditioning, which diffusers cannot express (its UNet2DModel "
            "takes x_t and t, EDM's network c_in·x̃ and c_noise); sample it with ddkit"
        )
    unet_cfg = diffusers_unet_config(config.model)
    sched_cfg = scheduler_config_for(schedule, getattr(config.diffusion, "prediction", "eps"))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty")
    for sub in ("unet", "scheduler"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # an augmenting run's augmentation layer is left out: at sampling its labels are zero, and the
    # network without it is the same network (diffusers' UNet2DModel has no such input)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("augment_embed.")}
    state = ddkit_to_diffusers_state(weights)
    save_file(state, out / "unet" / WEIGHTS, metadata={"format": "pt"})
    index = {
        "_class_name": "DDPMPipeline",
        "_diffusers_version": unet_cfg["_diffusers_version"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    }
    sched_cfg["_diffusers_version"] = unet_cfg["_diffusers_version"]
    for name, obj in (
        ("unet/config.json", unet_cfg),
        ("scheduler/scheduler_config.json", sched_cfg),
        ("model_index.json", index),
    ):
        (out / name).write_text(json.dumps(obj, indent=2) + "\n")
    return out
