"""Output hashes of every sampler x spacing x option combination the tests reach, to check that a
refactor of the samplers changes no sample bit for bit.

    python benchmarks/sampler_hashes.py record benchmarks/results/sampler_hashes.json
    python benchmarks/sampler_hashes.py compare benchmarks/results/sampler_hashes.json

Each combination samples a small deterministic model (the exact ε of ddkit.oracle's Gaussian
mixture in float64 and float32, and a tiny random-weight UNet with ε, x0 and v outputs) and hashes
the bytes of the output, and of every tensor and number the callback received. The keys use
today's names (spacing "leading", ``guidance_rescale``); run on older code they are translated.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys

import torch

import ddkit
from ddkit import guidance as G
from ddkit import timesteps as TS
from ddkit.nn import build_model
from ddkit.oracle import GaussianMixture
from ddkit.parameterization import model_fn_from
from ddkit.rng import SampleGenerators
from ddkit.samplers import ddim_invert, run_sampler

OLD_NAMES = "leading" not in TS.ALL_SPACINGS  # code before the 0.2.0 renames


def _spacing(name: str) -> str:
    return "uniform" if OLD_NAMES and name == "leading" else name


def _rescale_kw() -> str:
    params = inspect.signature(G.classifier_free_guidance).parameters
    return "guidance_rescale" if "guidance_rescale" in params else "rescale"


def _digest(h, value) -> None:
    if isinstance(value, torch.Tensor):
        h.update(str((value.dtype, tuple(value.shape))).encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, float):
        h.update(repr(float(value)).encode())
    else:
        h.update(repr(value).encode())


def _recorder():
    seen = []

    def callback(info):
        seen.append({k: info[k] for k in ("i", "t", "sigma", "alpha_bar", "x_t", "x0", "x", "denoised")})

    return seen, callback


def _denoised_fn(x0, info):
    return 0.9 * x0 + 0.01 * info.i


def run_one(fn, x, kwargs) -> str:
    seen, callback = _recorder()
    kwargs = dict(kwargs)
    if kwargs.pop("with_callback", False):
        kwargs["callback"] = callback
    if kwargs.get("spacing") is not None:
        kwargs["spacing"] = _spacing(kwargs["spacing"])
    out = fn(x, kwargs)
    h = hashlib.sha256()
    _digest(h, out)
    for step in seen:
        for k in sorted(step):
            h.update(k.encode())
            _digest(h, step[k])
    return h.hexdigest()


def _gen(seed=7):
    return torch.Generator().manual_seed(seed)


def combinations():
    """(key, thunk) for every combination: thunk() -> hash."""
    gm = GaussianMixture.default_2d()
    schedules = {"linear100": ddkit.Schedule.linear(100), "cosine100": ddkit.Schedule.cosine(100)}
    torch.manual_seed(0)
    net = build_model(
        ddkit.UNetConfig(
            image_size=8,
            in_channels=1,
            base_channels=8,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(4,),
            dropout=0.0,
            num_classes=3,
        )
    ).eval()
    labels = torch.tensor([0, 1, 2])
    spacings = ("leading", "quadratic", "trailing", "linspace", "logsnr", "karras", "exponential")
    per_sampler = {
        "ddim": [{"eta": 0.0}, {"eta": 1.0}, {"eta": 0.5}],
        "ddpm": [{"variance": "small"}, {"variance": "large"}],
        "dpm++": [{"order": 1}, {"order": 2}, {"order": 3}],
        "unipc": [{"order": 1}, {"order": 2}, {"order": 3}],
        "heun": [{}, {"s_churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}],
        "euler": [{}, {"s_churn": 5.0}],
    }
    steps_of = {"ddim": (4, 10), "dpm++": (4, 10), "unipc": (4, 10), "heun": (5, 9), "euler": (4, 10)}

    for sname, S in schedules.items():
        for dtype in (torch.float64, torch.float32):
            model = gm.eps_fn(S.alpha_bars)
            x_T = torch.randn(6, 2, generator=_gen(1), dtype=torch.float64).to(dtype)
            base = f"gm/{sname}/{str(dtype)[6:]}"

            def sample(name, S=S, model=model, x_T=x_T):
                return lambda x, kw: run_sampler(name, model, x_T, S, **kw)

            for name, options in per_sampler.items():
                for opt in options:
                    if name == "ddpm":
                        yield f"{base}/{name}/{opt}", (sample(name), opt | {"generator": _gen()})
                        yield (
                            f"{base}/{name}/{opt}/start_t=40",
                            (sample(name), opt | {"generator": _gen(), "start_t": 40}),
                        )
                        yield (
                            f"{base}/{name}/{opt}/timesteps",
                            (sample(name), opt | {"generator": _gen(), "timesteps": [90, 61, 30, 12, 3]}),
                        )
                        continue
                    for sp in spacings:
                        for steps in steps_of[name]:
                            kw = opt | {"steps": steps, "spacing": sp, "generator": _gen()}
                            yield f"{base}/{name}/{opt}/{sp}/{steps}", (sample(name), kw)
                    steps = steps_of[name][0]
                    common = opt | {"generator": _gen()}
                    n_t = 3 if name == "heun" else 4
                    yield (
                        f"{base}/{name}/{opt}/timesteps",
                        (sample(name), common | {"timesteps": [95, 60, 20, 4][:n_t]}),
                    )
                    yield (
                        f"{base}/{name}/{opt}/frac_timesteps",
                        (sample(name), common | {"timesteps": [95.5, 60.25, 20.0, 4.75][:n_t]}),
                    )
                    yield (
                        f"{base}/{name}/{opt}/sigmas",
                        (sample(name), common | {"sigmas": [40.0, 3.0, 0.5, 0.1][:n_t]}),
                    )
                    yield (
                        f"{base}/{name}/{opt}/sigmas0",
                        (sample(name), common | {"sigmas": [30.0, 2.0, 0.2, 0.0][:n_t] + ([0.0] if n_t == 3 else [])}),
                    )
                    own = [float(S.sigmas[k]) * f for k, f in ((95, 1.0), (60, 1.01), (20, 0.99), (4, 1.0))][:n_t]
                    yield (
                        f"{base}/{name}/{opt}/own_sigmas",
                        (sample(name), common | {"sigmas": own + [0.0]}),
                    )
                    for sp in ("leading", "trailing", "karras", "logsnr"):
                        yield (
                            f"{base}/{name}/{opt}/start_t=50/{sp}",
                            (sample(name), common | {"steps": steps, "spacing": sp, "start_t": 50}),
                        )
            # the per-step hooks and clipping on every sampler
            for name in per_sampler:  # the samplers recorded (not consistency, registered later)
                opt = per_sampler[name][-1] | {"generator": _gen()}
                if name != "ddpm":
                    opt["steps"] = steps_of[name][0]
                else:
                    opt["timesteps"] = [80, 50, 20, 5, 0]
                for hook, kw in (
                    ("clip", {"clip_x0": (-0.5, 0.5)}),
                    ("callback", {"with_callback": True}),
                    ("denoised_fn", {"denoised_fn": _denoised_fn, "with_callback": True}),
                    ("clip+denoised_fn", {"clip_x0": (-1.0, 1.0), "denoised_fn": _denoised_fn}),
                ):
                    yield f"{base}/{name}/hook/{hook}", (sample(name), opt | kw)
            # per-sample generators
            for name in ("ddim", "ddpm", "heun"):
                opt = per_sampler[name][-1] | {"generator": SampleGenerators(3, range(6))}
                if name == "ddim":
                    opt["steps"] = 5
                if name == "heun":
                    opt["steps"] = 5
                if name == "ddpm":
                    opt["timesteps"] = list(range(30, -1, -3))
                yield f"{base}/{name}/sample_generators", (sample(name), opt)
            # inversion
            x0 = gm.sample(6, _gen(3))[0].to(dtype)
            for sp in ("leading", "trailing", "logsnr", "karras"):
                for refine in (0, 1):
                    yield (
                        f"{base}/ddim_invert/{sp}/refine={refine}",
                        (
                            lambda x, kw, S=S, model=model, x0=x0: ddim_invert(model, x0, S, **kw),
                            {"steps": 6, "spacing": sp, "refine": refine, "with_callback": True},
                        ),
                    )
            yield (
                f"{base}/ddim_invert/start_t",
                (
                    lambda x, kw, S=S, model=model, x0=x0: ddim_invert(model, x0, S, **kw),
                    {"steps": 5, "spacing": "leading", "start_t": 60},
                ),
            )
            # guidance wrappers on the exact mixture
            classifier = gm.classifier_fn(S.alpha_bars)
            y = torch.tensor([0, 1, 2, 3, 4, 5])

            def cond_net(x, t, yy, S=S):
                comp = [gm.component(int(k) % 8).eps_fn(S.alpha_bars) for k in range(9)]
                return torch.stack([comp[int(k)](x[i : i + 1], t[i : i + 1])[0] for i, k in enumerate(yy)])

            cond_net.num_classes = 8
            for scale in (0.0, 1.0, 3.0):
                for phi in (0.0, 0.7):
                    for interval in (None, (10, 60)):
                        yield (
                            f"{base}/cfg/{scale}/{phi}/{interval}",
                            (
                                lambda x, kw, scale=scale, phi=phi, interval=interval, x_T=x_T, S=S, cond_net=cond_net: (
                                    ddkit.ddim_sample(
                                        G.classifier_free_guidance(
                                            cond_net, y, scale, interval=interval, **{_rescale_kw(): phi}
                                        ),
                                        x_T,
                                        S,
                                        **kw,
                                    )
                                ),
                                {"steps": 4},
                            ),
                        )
                yield (
                    f"{base}/classifier_guidance/{scale}",
                    (
                        lambda x, kw, scale=scale, x_T=x_T, S=S, model=model, classifier=classifier: (
                            ddkit.dpm_solver_sample(G.classifier_guidance(model, classifier, y, scale, S), x_T, S, **kw)
                        ),
                        {"steps": 5},
                    ),
                )
                yield (
                    f"{base}/autoguidance/{scale}",
                    (
                        lambda x, kw, scale=scale, x_T=x_T, S=S, model=model: ddkit.heun_sample(
                            G.autoguidance(model, lambda a, t: 0.8 * model(a, t), scale), x_T, S, **kw
                        ),
                        {"steps": 5},
                    ),
                )
    # a tiny random-weight UNet, with ε, x̂₀ and v outputs
    S = schedules["linear100"]
    x_T = torch.randn(3, 1, 8, 8, generator=_gen(2))
    for prediction in ("eps", "x0", "v"):
        model = model_fn_from(net, prediction, S, y=labels)
        for name in per_sampler:
            opt = {"generator": _gen()}
            if name == "ddpm":
                opt["timesteps"] = [99, 70, 40, 10, 0]
            else:
                opt["steps"] = 5
            for clip in (None, (-1.0, 1.0)):
                yield (
                    f"unet/{prediction}/{name}/clip={clip}",
                    (
                        lambda x, kw, name=name, model=model: run_sampler(name, model, x_T, S, **kw),
                        opt | {"clip_x0": clip, "with_callback": True},
                    ),
                )
    for scale in (1.0, 2.5):
        yield (
            f"unet/cfg/{scale}",
            (
                lambda x, kw, scale=scale: run_sampler(
                    "unipc", G.classifier_free_guidance(net, labels, scale, **{_rescale_kw(): 0.5}), x_T, S, **kw
                ),
                {"steps": 6, "spacing": "trailing"},
            ),
        )


def main(argv) -> int:
    torch.set_num_threads(1)
    mode, path = argv[1], argv[2]
    hashes = {}
    for key, (fn, kw) in combinations():
        try:
            hashes[key] = run_one(fn, None, kw)
        except ValueError as e:  # a combination the library refuses: record the refusal
            hashes[key] = "ValueError: " + str(e).split(";")[0].replace("uniform", "leading")
    if mode == "record":
        with open(path, "w") as f:
            json.dump(hashes, f, indent=0, sort_keys=True)
        print(f"recorded {len(hashes)} combinations to {path}")
        return 0
    with open(path) as f:
        old = json.load(f)
    differ = sorted(k for k in old if hashes.get(k) != old[k])
    missing = sorted(set(old) ^ set(hashes))
    refused = sum(v.startswith("ValueError") for v in old.values())
    print(f"{len(old)} combinations ({refused} refused with a ValueError), {len(old) - len(differ)} identical")
    for k in differ[:40]:
        print("DIFFERS", k, old[k][:60], "->", hashes.get(k, "missing")[:60])
    if missing:
        print("keys not in both:", missing[:10])
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
