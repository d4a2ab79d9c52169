"""Guidance as wrappers: each function here returns a ``model_fn(x_t, t) -> ε`` that any sampler
(DDIM, DDPM, the inversion, samplers registered later) takes unchanged.

Notation (t a batch of 0-based training timesteps, ᾱ_t from the schedule, y the class label,
∅ the null label):

    ε(x_t, y)       the conditional prediction;  ε(x_t, ∅) the unconditional one
    w               the guidance scale (diffusers' convention: w = 1 is the plain model)
    ∇log p(y|x_t)   the gradient of a noise-conditional classifier's log-probability

    classifier-free (Ho & Salimans 2022)   ε̃ = ε(x_t, ∅) + w·(ε(x_t, y) − ε(x_t, ∅))
    classifier (Dhariwal & Nichol 2021)    ε̂ = ε − s·√(1−ᾱ_t)·∇_{x_t} log p_φ(y | x_t, t)
    autoguidance (Karras et al. 2024)      ε̃ = ε_weak + w·(ε − ε_weak)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .checks import ParameterError, number
from .checks import labels as _check_labels
from .parameterization import ModelFn
from .schedule import Schedule

Labels = torch.Tensor | int


def _check_scale(name: str, scale: float) -> float:
    return number(name, scale, low=0.0, what="a finite number >= 0")


def _check_rescale(guidance_rescale) -> float:
    """φ of :func:`rescale_guided`, in [0, 1]."""
    phi = float(guidance_rescale)
    if not 0.0 <= phi <= 1.0:
        raise ParameterError(f"`guidance_rescale` must be in [0, 1], got {guidance_rescale!r}")
    return phi


def _select_rows(x: torch.Tensor) -> bool:
    """Whether guidance may pick rows by value (``nonzero``): on the host only, where reading a
    tensor costs nothing; on an accelerator it would wait for the queue at every model call."""
    return x.device.type == "cpu"


class _DeviceLabels:
    """Labels as a [N] tensor on x's device (a 0-d label repeated for the batch), copied to each
    device once: a copy from the host at every model call would stall an accelerator's queue."""

    def __init__(self, labels: torch.Tensor):
        self.labels, self._copies = labels, {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, labels = x.shape[0], self.labels
        if labels.ndim and labels.shape[0] != n:
            raise ValueError(f"labels have {labels.shape[0]} entries but the batch has {n} samples")
        if x.device != labels.device:
            labels = self._copies.get(x.device)
            if labels is None:
                labels = self._copies[x.device] = self.labels.to(x.device)
        return labels.expand(n) if labels.ndim == 0 else labels


def network_num_classes(net) -> int | None:
    """The class count of a network (``net.num_classes`` or ``net.config.num_classes``), or None."""
    k = getattr(net, "num_classes", None)
    if k is None:
        k = getattr(getattr(net, "config", None), "num_classes", None)
    return k


def _check_interval(interval, num_timesteps: int | None = None, name: str = "interval") -> tuple[int, int] | None:
    """``interval`` as (t_lo, t_hi) with 0 <= t_lo <= t_hi (<= T - 1 when ``num_timesteps`` T is
    given); the error names the parameter ``name``."""
    if interval is None:
        return None
    try:
        lo, hi = (int(v) for v in interval)
    except (TypeError, ValueError):
        raise ParameterError(f"`{name}` must be a pair (t_lo, t_hi) of training timesteps, got {interval!r}") from None
    high = "" if num_timesteps is None else f" <= {num_timesteps - 1}"
    if lo < 0 or lo > hi or (num_timesteps is not None and hi > num_timesteps - 1):
        raise ParameterError(f"`{name}` must satisfy 0 <= t_lo <= t_hi{high} (training timesteps), got ({lo}, {hi})")
    return lo, hi


def rescale_guided(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Lin et al. 2023, eq. 15–16: ε_rescaled = ε̃·std(ε_cond)/std(ε̃) per sample (std over all
    but the batch dimension), returned as φ·ε_rescaled + (1 − φ)·ε̃. guided, cond: [N, ...]."""
    if phi == 0:
        return guided
    dims = tuple(range(1, guided.ndim))
    ratio = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return phi * guided * ratio + (1 - phi) * guided


def classifier_free_guidance(
    net: Callable[..., torch.Tensor],
    labels: Labels,
    scale: float,
    *,
    null_label: int | None = None,
    interval: tuple[int, int] | None = None,
    guidance_rescale: float = 0.0,
) -> ModelFn:
    """Classifier-free guidance (Ho & Salimans 2022) for a network ``net(x_t, t, y) -> ε``:

        ε̃ = ε(x_t, ∅) + w·(ε(x_t, y) − ε(x_t, ∅))

    with diffusers' convention for ``scale`` = w: w = 1 is the plain conditional model, w = 0 the
    unconditional one, w > 1 guides. The paper writes ε̃ = (1 + w')·ε(x_t, y) − w'·ε(x_t, ∅): its
    w' is our w minus 1. Both branches run in one batched forward pass of 2N rows (w = 1 and
    w = 0 need only N).

    labels: an int or a LongTensor [N] in [0, K − 1]. null_label: the label that means "no class";
    default the network's own (``net.num_classes`` or ``net.config.num_classes``, the extra
    embedding row of ddkit's networks); required for a bare callable.
    interval: ``(t_lo, t_hi)`` in training timesteps (Kynkäänniemi et al. 2024): guidance only
    where t_lo ≤ t ≤ t_hi; elsewhere the conditional prediction alone, and the unconditional
    branch is not evaluated for those rows.
    guidance_rescale: φ ∈ [0, 1] (Lin et al. 2023; diffusers' name): the guided ε blended by φ with
    its copy rescaled to the conditional ε's per-sample standard deviation (:func:`rescale_guided`).
    """
    w = _check_scale("scale", scale)
    num_classes = network_num_classes(net)
    if null_label is None:
        if num_classes is None:
            raise ValueError("null_label is required: the network has no num_classes to take the null label from")
        null_label = num_classes
    labels = _check_labels(labels, num_classes)
    bounds = _check_interval(interval)
    phi = _check_rescale(guidance_rescale)
    device_labels = _DeviceLabels(labels)

    def guide_all(x_t, t, y, null):
        """(ε(x_t, y), ε̃) for every row, both branches in one batched pass of 2N rows."""
        eps, eps_u = net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return eps, rescale_guided(eps_u + w * (eps - eps_u), eps, phi).to(eps.dtype)

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = device_labels(x_t)
        null = torch.full_like(y, int(null_label))
        if w == 1.0:
            return net(x_t, t, y)
        if bounds is None:
            return net(x_t, t, null) if w == 0.0 else guide_all(x_t, t, y, null)[1]
        guide = (t >= bounds[0]) & (t <= bounds[1])
        if not _select_rows(x_t):  # both branches for every row, no data-dependent shapes: no sync
            eps, guided = guide_all(x_t, t, y, null)
            return torch.where(guide.reshape(-1, *([1] * (eps.ndim - 1))), guided, eps)
        # on the CPU: every row with its label, then only the guided rows again with the null label
        idx = guide.nonzero().squeeze(1)
        out = net(torch.cat([x_t, x_t[idx]]), torch.cat([t, t[idx]]), torch.cat([y, null[idx]]))
        eps, eps_u = out[: len(t)], out[len(t) :]
        if idx.numel() == 0:
            return eps
        guided = rescale_guided(eps_u + w * (eps[idx] - eps_u), eps[idx], phi)
        return eps.index_copy(0, idx, guided.to(eps.dtype))

    return model_fn


def classifier_guidance(
    model_fn: ModelFn,
    classifier: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    labels: Labels,
    scale: float,
    schedule: Schedule,
) -> ModelFn:
    """Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2; guided-diffusion's
    ``condition_score``, valid for DDIM and DDPM alike):

        ε̂(x_t, t) = ε(x_t, t) − s·√(1−ᾱ_t)·∇_{x_t} log p_φ(y | x_t, t)

    ``classifier(x_t, t) -> logits [N, K]`` is any noise-conditional classifier (ddkit's
    :class:`~ddkit.nn.NoisyClassifier` or an exact one); labels: an int or LongTensor [N] in
    [0, K − 1]; scale s ≥ 0 (s = 0 returns ``model_fn``'s prediction untouched). The gradient is
    taken with gradients enabled even inside the samplers' ``torch.no_grad``.
    """
    s = _check_scale("scale", scale)
    labels = _check_labels(labels, network_num_classes(classifier))

    device_labels = _DeviceLabels(labels)

    def guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model_fn(x_t, t)
        if s == 0.0:
            return eps
        y = device_labels(x_t)
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            logits = classifier(x_in, t)
            if logits.ndim != 2 or logits.shape[0] != x_t.shape[0]:
                raise ValueError(f"the classifier must return logits [N, K], got {list(logits.shape)}")
            # the label range is read on the host only (a read from an accelerator would stall it at
            # every call); there the gather below fails on a label out of range anyway
            if y.device.type == "cpu" and int(y.max()) >= logits.shape[1]:
                raise ValueError(
                    f"labels must be in [0, {logits.shape[1] - 1}] for this classifier, got {int(y.max())}"
                )
            log_p = torch.log_softmax(logits.double(), dim=1).gather(1, y[:, None]).sum()
            grad = torch.autograd.grad(log_p, x_in)[0].double()
        factor = (1.0 - schedule.alpha_bars_at(t, grad)).sqrt()  # √(1−ᾱ_t) [N, 1, …] float64
        return (eps.double() - s * factor * grad).to(eps.dtype)

    return guided


def autoguidance(model_fn: ModelFn, weak_model_fn: ModelFn, scale: float) -> ModelFn:
    """Autoguidance (Karras et al. 2024): guide a model by a weaker version of itself (an earlier
    checkpoint, a smaller network) trained on the same task,

        ε̃ = ε_weak + w·(ε − ε_weak),

    w = 1 is ``model_fn`` alone (the weak model is not evaluated). It needs no labels, so it guides
    unconditional models too; bind the same labels in both for a conditional one.
    """
    w = _check_scale("scale", scale)

    def guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = model_fn(x_t, t)
        if w == 1.0:
            return eps
        eps_weak = weak_model_fn(x_t, t)
        return eps_weak + w * (eps - eps_weak)

    return guided


@dataclass(frozen=True)
class GuidanceSettings:
    """Which guidance applies to a network, decided once by :func:`resolve_guidance`.

    cfg_scale: classifier-free guidance scale (None: none); interval, guidance_rescale: its options;
    auto_scale: autoguidance weight (None: no weak model); classifier_scale: 0 for none.
    """

    cfg_scale: float | None = None
    auto_scale: float | None = None
    classifier_scale: float = 0.0
    interval: tuple[int, int] | None = None
    guidance_rescale: float = 0.0


def resolve_guidance(
    *,
    conditional: bool,
    num_timesteps: int,
    guidance_scale: float | None = None,
    classifier: bool = False,
    classifier_scale: float | None = None,
    weak: bool = False,
    interval=None,
    guidance_rescale: float | None = None,
) -> GuidanceSettings:
    """Decide which guidance ``guidance_scale`` means for a network and check the options.

    - with a weak model (``weak``): ``guidance_scale`` is the autoguidance weight;
    - on a class-conditional network: the classifier-free guidance scale;
    - on an unconditional network with a classifier and no ``classifier_scale``: the classifier scale;
    - otherwise a scale other than 1 is an error (an unconditional network has nothing to guide with).

    ``interval`` and ``guidance_rescale`` apply to classifier-free guidance only. ``classifier_scale``
    defaults to 1 with a classifier. Errors name the parameters.
    """
    w = 1.0 if guidance_scale is None else _check_scale("guidance_scale", guidance_scale)
    s = None if classifier_scale is None else _check_scale("classifier_scale", classifier_scale)
    if s is not None and not classifier:
        raise ParameterError("`classifier_scale` needs `classifier`")
    cfg = auto = None
    if weak:
        auto = w
    elif conditional:
        cfg = w
    elif classifier and s is None:
        s, w = w, 1.0  # an unconditional network guided by a classifier: guidance_scale is its scale
    elif w != 1.0:
        raise ParameterError(
            f"`guidance_scale` {w:g} needs labels: this network is unconditional; use a "
            "class-conditional network, `classifier` or `weak`"
        )
    bounds = _check_interval(interval, num_timesteps, "guidance_interval")
    phi = 0.0 if guidance_rescale is None else _check_rescale(guidance_rescale)
    if cfg is None and (interval is not None or phi):
        raise ParameterError(
            "`guidance_interval`/`guidance_rescale` apply to classifier-free guidance: they need "
            "a class-conditional network and no `weak` model"
        )
    return GuidanceSettings(cfg, auto, 0.0 if not classifier else (1.0 if s is None else s), bounds, phi)


def guided_model_fn(
    net: Callable[..., torch.Tensor],
    labels: torch.Tensor | None,
    settings: GuidanceSettings,
    *,
    schedule: Schedule,
    weak: Callable[..., torch.Tensor] | None = None,
    classifier: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> ModelFn:
    """The ``model_fn(x_t, t) -> ε`` of ``net(x_t, t, y)`` with ``labels`` [N] (or None: a
    class-conditional network's unconditional prediction, which no guidance applies to) bound and the
    guidance of ``settings`` composed, innermost first: the network (classifier-free guided when
    ``settings.cfg_scale`` is set), then autoguidance by ``weak`` (bound to the same labels when it
    is class-conditional), then classifier guidance by ``classifier``."""
    conditional = network_num_classes(net) is not None
    if labels is None:  # a class-conditional network without labels: its unconditional prediction
        if settings.cfg_scale not in (None, 1.0) or settings.interval is not None or settings.guidance_rescale:
            raise ParameterError("`guidance_scale` (and its interval and rescale) needs labels: give `label`")
        if settings.classifier_scale:
            raise ParameterError("`classifier` guidance needs labels: give `label`")
    if settings.cfg_scale is not None and labels is not None:
        fn = classifier_free_guidance(
            net, labels, settings.cfg_scale, interval=settings.interval, guidance_rescale=settings.guidance_rescale
        )
    else:
        fn = _bind(net, labels if conditional else None)
    if settings.auto_scale is not None:
        if weak is None:
            raise ValueError("these guidance settings need the weak model")
        weak_labels = labels if conditional and network_num_classes(weak) is not None else None
        fn = autoguidance(fn, _bind(weak, weak_labels), settings.auto_scale)
    if settings.classifier_scale:
        if classifier is None:
            raise ValueError("these guidance settings need the classifier")
        fn = classifier_guidance(fn, classifier, labels, settings.classifier_scale, schedule)
    return fn


def _bind(net: Callable[..., torch.Tensor], labels: torch.Tensor | None) -> ModelFn:
    return (lambda x, t: net(x, t, labels)) if labels is not None else (lambda x, t: net(x, t))


__all__ = [
    "classifier_free_guidance",
    "classifier_guidance",
    "autoguidance",
    "rescale_guided",
    "network_num_classes",
    "GuidanceSettings",
    "resolve_guidance",
    "guided_model_fn",
]
