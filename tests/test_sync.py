"""The sampling loops read nothing back from the device: run on PyTorch's "meta" device (tensors
with shapes and no data), any host read of a tensor (``.item()``, ``bool()``, ``.tolist()``,
``nonzero``, a copy to the CPU) raises, so a loop that finishes there has no host-device
synchronisation. Samplers, σ-grids, churn, classifier-free guidance with an interval, classifier
guidance, x0/v networks and the schedule lookups are covered; and the CPU and device paths of
guidance agree."""

import copy

import pytest
import torch

import ddkit
import ddkit.guidance as guidance
from ddkit.guidance import classifier_free_guidance, classifier_guidance
from ddkit.nn import build_model
from ddkit.nn.defaults import default_model_config
from ddkit.parameterization import eps_network
from ddkit.samplers import SAMPLERS, run_sampler
from ddkit.timesteps import karras

pytestmark = pytest.mark.usefixtures("one_thread")
META = torch.device("meta")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model(default_model_config("image", (1, 8, 8), channels=8, num_classes=3)).eval()


def on_meta(module):
    return copy.deepcopy(module).to(META)


def _options(name):
    return {"steps": 5} if "steps" in SAMPLERS[name].options else {}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("spacing", [None, "karras"])
def test_samplers_never_read_the_device(net, name, spacing):
    schedule = ddkit.Schedule.cosine(200)
    model = on_meta(net)
    y = torch.tensor([0, 1, 2, 0], device=META)
    opts = _options(name) | ({"spacing": spacing} if spacing and "spacing" in SAMPLERS[name].options else {})
    if name == "ddpm":  # a short sub-sequence instead of all T steps
        opts = {"sigmas": karras(schedule, 4).tolist()} if spacing else {"timesteps": [150, 100, 50, 0]}
    if name in ("heun", "euler"):
        opts["s_churn"] = 1.0
    x = torch.randn(4, 1, 8, 8, device=META)
    out = run_sampler(name, lambda x, t: model(x, t, y), x, schedule, clip_x0=(-1, 1), callback=lambda i: None, **opts)
    assert out.device == META and out.shape == x.shape


@pytest.mark.parametrize(
    "make",
    [
        lambda net, s: classifier_free_guidance(net, torch.tensor([0, 1, 2, 0]), 3.0, interval=(50, 150)),
        lambda net, s: classifier_free_guidance(net, 1, 0.0),
        lambda net, s: classifier_free_guidance(net, 1, 2.5, guidance_rescale=0.7),
        lambda net, s: lambda x, t: eps_network(net, "v", s)(x, t, torch.zeros(4, dtype=torch.long, device=META)),
        lambda net, s: lambda x, t: eps_network(net, "x0", s)(x, t, None),
    ],
)
def test_guidance_and_targets_never_read_the_device(net, make):
    schedule = ddkit.Schedule.cosine(200)
    fn = make(on_meta(net), schedule)
    for name in ("dpm++", "heun"):
        out = run_sampler(name, fn, torch.randn(4, 1, 8, 8, device=META), schedule, steps=5, clip_x0=(-1, 1))
        assert out.device == META


def test_classifier_guidance_never_reads_the_device(net):
    from ddkit.nn.classifier import ClassifierConfig, NoisyClassifier

    schedule = ddkit.Schedule.cosine(200)
    classifier = NoisyClassifier(ClassifierConfig(image_size=8, in_channels=1, num_classes=3)).to(META)
    model = on_meta(net)
    fn = classifier_guidance(lambda x, t: model(x, t, None), classifier, torch.tensor([0, 1, 2, 0]), 2.0, schedule)
    out = run_sampler("ddim", fn, torch.randn(4, 1, 8, 8, device=META), schedule, steps=3)
    assert out.device == META


def test_guidance_interval_is_the_same_on_host_and_device_paths(net, monkeypatch):
    """The device path (both branches for every row, then a mask) equals the host path (the
    unconditional branch only for the guided rows)."""
    schedule = ddkit.Schedule.cosine(200)
    model = net
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 60, 100, 150, 151, 199])
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    fn = classifier_free_guidance(model, y, 3.0, interval=(50, 150), guidance_rescale=0.5)
    with torch.no_grad():
        host = fn(x, t)
        monkeypatch.setattr(guidance, "_select_rows", lambda x: False)
        device = fn(x, t)
    torch.testing.assert_close(host, device, rtol=1e-5, atol=1e-5)
    del schedule
