"""The exact oracle: an isotropic Gaussian mixture, whose noised law, score, ε and classifier are
known in closed form at every noise level — and its exact posterior under a linear observation.

Notation (DDPM / DDIM):

    ᾱ_t        alpha_bar, cumulative product of (1 − β), float64
    x_t        √ᾱ_t x_0 + √(1 − ᾱ_t) ε,  ε ~ N(0, I)
    q_t        the law of x_t (a Gaussian mixture when q_0 is one)
    ∇log q_t   the score of q_t
    ε*(x_t, t) E[ε | x_t] = −√(1 − ᾱ_t) ∇log q_t(x_t)   (Tweedie)

A mixture ``Σ_k w_k N(μ_k, s_k² I)`` stays a mixture under the forward process:
``q_t = Σ_k w_k N(√ᾱ μ_k, (ᾱ s_k² + 1 − ᾱ) I)``, so ε* is known in closed form and
serves as a perfect "model" for testing samplers, guidance and editing; the exact distances of
:mod:`ddkit.eval.energy` score samples against it. Observed through a linear map without noise,
A·x = y, it stays a mixture of isotropic Gaussians in the null space of A
(:meth:`GaussianMixture.posterior`): the exact law that inpainting and restoration should reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .checks import timestep_batch
from .timesteps import alpha_bar_at

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """An isotropic Gaussian mixture ``Σ_k w_k N(μ_k, s_k² I)`` in float64.

    means: [K, D]; stds: [K] (positive); weights: [K] (positive, normalised to sum 1 here).
    """

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self) -> None:
        means = torch.as_tensor(self.means, dtype=torch.float64)
        stds = torch.as_tensor(self.stds, dtype=torch.float64)
        weights = torch.as_tensor(self.weights, dtype=torch.float64)
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape [K, D] with K, D >= 1, got {list(means.shape)}")
        k, per_component = means.shape[0], (("stds", stds), ("weights", weights))
        for name, value in per_component:
            if value.shape != (k,):
                raise ValueError(f"{name} must have shape [K] = [{k}], got {list(value.shape)}")
        for name, value in (("means", means), *per_component):
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} must be finite")
        for name, value in per_component:
            if not (value > 0).all():
                raise ValueError(f"{name} must be positive, got min {value.min().item():g}")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)
        object.__setattr__(self, "weights", weights / weights.sum())

    @property
    def dim(self) -> int:
        """D, the dimension of a sample."""
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @classmethod
    def default_2d(cls) -> GaussianMixture:
        """Eight modes on a circle of radius 1.25, std 0.1, weights ∝ 1, 2, …, 8.

        Neighbouring modes are ~9.6 std apart; each coordinate has std ≈ 0.89.
        """
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        means = 1.25 * torch.stack([angles.cos(), angles.sin()], dim=1)
        stds = torch.full((8,), 0.1, dtype=torch.float64)
        weights = torch.arange(1, 9, dtype=torch.float64)
        return cls(means, stds, weights)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n samples: returns (x: [n, D] float64, component: [n] int64)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        x = self.means[component] + self.stds[component, None] * noise
        return x, component

    def _log_joint(
        self, x: torch.Tensor, alpha_bar: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log w_k + log N(x; √ᾱ μ_k, (ᾱ s_k² + 1 − ᾱ) I) for each sample and component: the one
        place the density is written. x: [N, D] float64; alpha_bar: [N] (None: ᾱ = 1, the data).
        Returns (log joint [N, K], x − √ᾱ μ_k [N, K, D], variances [N, K])."""
        ab = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if alpha_bar is None else alpha_bar
        means, stds = self.means.to(x.device), self.stds.to(x.device)
        var = ab[:, None] * stds**2 + (1 - ab[:, None])  # [N, K]
        diff = x[:, None, :] - ab.sqrt()[:, None, None] * means[None]  # [N, K, D]
        log_joint = (
            self.weights.to(x.device).log()
            - 0.5 * self.dim * torch.log(2 * math.pi * var)
            - (diff**2).sum(-1) / (2 * var)
        )
        return log_joint, diff, var

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log q(x).  x: [N, D] (any float dtype) -> [N] float64."""
        x = self._check_points(x)
        return torch.logsumexp(self._log_joint(x)[0], dim=1)

    def marginal(self, alpha_bar: float) -> GaussianMixture:
        """The law of x_t = √ᾱ x_0 + √(1 − ᾱ) ε.

        Means √ᾱ μ_k, variances ᾱ s_k² + (1 − ᾱ), the same weights.
        """
        alpha_bar = float(alpha_bar)
        if not 0.0 <= alpha_bar <= 1.0:
            raise ValueError(f"alpha_bar must be in [0, 1], got {alpha_bar}")
        var = alpha_bar * self.stds**2 + (1.0 - alpha_bar)
        return GaussianMixture(math.sqrt(alpha_bar) * self.means, var.sqrt(), self.weights)

    def score(self, x: torch.Tensor, alpha_bar: float | torch.Tensor = 1.0) -> torch.Tensor:
        """∇_x log q_t(x) with q_t the marginal at ᾱ.

        x: [N, D] (any float dtype); alpha_bar: a float or a [N] tensor (one ᾱ per sample).
        Returns [N, D] float64, from log-sum-exp responsibilities (stable far from all modes).
        """
        x = self._check_points(x)
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=x.device)
        if ab.ndim == 0:
            ab = ab.expand(x.shape[0])
        if ab.shape != (x.shape[0],):
            raise ValueError(f"alpha_bar must be a float or a [N] = [{x.shape[0]}] tensor, got shape {list(ab.shape)}")
        if not ((ab >= 0) & (ab <= 1)).all():
            raise ValueError("alpha_bar must be in [0, 1]")
        log_joint, diff, var = self._log_joint(x, ab)
        resp = torch.softmax(log_joint, dim=1)  # [N, K]
        return -(resp[:, :, None] * diff / var[:, :, None]).sum(1)

    def eps_fn(self, alpha_bars: torch.Tensor) -> ModelFn:
        """The exact optimal ε* as a ``model_fn(x_t, t) -> ε``.

        alpha_bars: [T] float64, indexed by 0-based timesteps. The returned function takes
        x_t: [N, ...] (trailing dims flatten to D) and t: [N] (int64, or float timesteps of a σ-grid,
        whose ᾱ is interpolated in log σ as :func:`ddkit.timesteps.alpha_bar_at` does), and returns
        ε*(x_t, t) = −√(1 − ᾱ_t) ∇log q_t(x_t) with x_t's shape, dtype and device.
        """
        alpha_bars = torch.as_tensor(alpha_bars, dtype=torch.float64)
        if alpha_bars.ndim != 1 or alpha_bars.numel() < 1:
            raise ValueError(f"alpha_bars must have shape [T], got {list(alpha_bars.shape)}")
        if not ((alpha_bars > 0) & (alpha_bars <= 1)).all():
            raise ValueError("alpha_bars must lie in (0, 1]")

        def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            n = x_t.shape[0]
            ab = self._alpha_bars_for(alpha_bars, t, x_t)  # [N]
            flat = x_t.reshape(n, -1)
            eps = -(1 - ab).sqrt()[:, None] * self.score(flat, ab)
            return eps.reshape(x_t.shape).to(x_t.dtype)

        return model_fn

    def component(self, k: int) -> GaussianMixture:
        """Component k alone, ``N(μ_k, s_k² I)``: its ``eps_fn`` is the exact conditional ε of class k."""
        if not 0 <= int(k) < self.num_components:
            raise ValueError(f"k must be in [0, {self.num_components - 1}], got {k}")
        k = int(k)
        return GaussianMixture(self.means[k : k + 1], self.stds[k : k + 1], torch.ones(1, dtype=torch.float64))

    def classifier_fn(self, alpha_bars: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact noise-conditional classifier as ``classifier(x_t, t) -> logits [N, K]``:

            log p(k | x_t) = log w_k + log N(x_t; √ᾱ_t μ_k, (ᾱ_t s_k² + 1 − ᾱ_t) I) + const,

        differentiable in x_t (float64 logits; x_t [N, ...] flattens to D)."""
        alpha_bars = torch.as_tensor(alpha_bars, dtype=torch.float64)

        def classifier(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ab = self._alpha_bars_for(alpha_bars, t, x_t)  # [N]
            return self._log_joint(x_t.reshape(x_t.shape[0], -1).to(torch.float64), ab)[0]

        return classifier

    def mean_distance(self, x: torch.Tensor) -> torch.Tensor:
        """E|x − Y| for Y ~ this mixture, in closed form, D = 1 or 2.  x: [N, D] -> [N] float64.

        |x − Y| given component k is the norm of N(x − μ_k, s_k² I): a folded normal (D = 1) or a
        Rice distribution (D = 2) with ν = |x − μ_k|, whose mean is, with q = ν²/(2 s_k²),

            D = 1:  s·√(2/π)·e^{−q} + ν·erf(√q)
            D = 2:  s·√(π/2)·[(1 + q)·I₀(q/2) + q·I₁(q/2)]·e^{−q/2}   (I₀, I₁ modified Bessel)
        """
        x = self._check_points(x)
        if self.dim not in (1, 2):
            raise ValueError(f"mean_distance has a closed form for D = 1 or 2, got D = {self.dim}")
        nu = torch.cdist(x, self.means.to(x.device))  # [N, K]
        return (_mean_norm(nu, self.stds.to(x.device)[None], self.dim) * self.weights.to(x.device)).sum(1)

    def self_distance(self) -> float:
        """E|Y − Y'| for two independent draws (D = 1 or 2): Y − Y' given components k, l is
        N(μ_k − μ_l, (s_k² + s_l²) I), so this is a weighted sum of the means in :meth:`mean_distance`."""
        if self.dim not in (1, 2):
            raise ValueError(f"self_distance has a closed form for D = 1 or 2, got D = {self.dim}")
        nu = torch.cdist(self.means, self.means)  # [K, K]
        s = (self.stds[:, None] ** 2 + self.stds[None] ** 2).sqrt()
        return float((_mean_norm(nu, s, self.dim) * self.weights[:, None] * self.weights[None]).sum())

    def posterior(self, A: torch.Tensor, y: torch.Tensor, *, rtol: float = 1e-10) -> LinearPosterior:
        """The exact law of x ~ this mixture given the noiseless observation A·x = y.

        A: [M, D] (any linear map of a sample, e.g. the rows of the identity that a mask keeps);
        y: [M]. With the SVD A = U_r S_r V_rᵀ (rank r, singular values above ``rtol``·S_max) and
        V_n an orthonormal basis of the null space of A, the coordinates u = V_rᵀx and z = V_nᵀx of
        a component are independent and isotropic, u | k ~ N(V_rᵀμ_k, s_k² I_r), z | k ~ N(V_nᵀμ_k,
        s_k² I_{D-r}). A·x = y fixes u = u* = S_r⁻¹U_rᵀy, so (Bayes)

            x = V_r u* + V_n z,   z | y ~ Σ_k w'_k N(V_nᵀμ_k, s_k² I),
            w'_k ∝ w_k N(u*; V_rᵀμ_k, s_k² I_r),

        a :class:`GaussianMixture` in the D - r null-space coordinates (components whose weight
        underflows to 0 are left out). A ValueError if y is not in the range of A or r = D."""
        A = torch.as_tensor(A, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if A.ndim != 2 or A.shape[1] != self.dim or A.shape[0] < 1:
            raise ValueError(f"A must have shape [M, {self.dim}] (the mixture's dimension), got {list(A.shape)}")
        if y.shape != (A.shape[0],):
            raise ValueError(f"y must have shape [{A.shape[0]}] (A's rows), got {list(y.shape)}")
        U, S, Vh = torch.linalg.svd(A, full_matrices=True)
        r = int((rtol * S.max() < S).sum()) if S.max() > 0 else 0
        if r == self.dim:
            raise ValueError("A has full column rank: A·x = y determines x, the posterior is a point mass")
        u_star = (U[:, :r].T @ y) / S[:r]  # [r]
        V_r, V_n = Vh[:r].T, Vh[r:].T  # [D, r], [D, D - r]
        particular = V_r @ u_star
        if (A @ particular - y).norm() > 1e-8 * (1.0 + y.norm()):
            raise ValueError("y is not in the range of A: no x has A·x = y")
        mu_r, mu_n = self.means @ V_r, self.means @ V_n  # [K, r], [K, D - r]
        log_w = self.weights.log() - r * torch.log(self.stds) - ((u_star[None] - mu_r) ** 2).sum(1) / (2 * self.stds**2)
        w = torch.softmax(log_w, 0)
        keep = w > 0
        return LinearPosterior(particular, V_n, GaussianMixture(mu_n[keep], self.stds[keep], w[keep]))

    @staticmethod
    def _alpha_bars_for(alpha_bars: torch.Tensor, t, x_t: torch.Tensor) -> torch.Tensor:
        """ᾱ [N] float64 for timesteps t (an int, or [N] integer or fractional) of a schedule's ᾱ."""
        n = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(n)
        t = timestep_batch(t, n, alpha_bars.numel(), fractional=True, phrase="be in")
        return alpha_bar_at(alpha_bars, t)

    def _check_points(self, x: torch.Tensor) -> torch.Tensor:
        """Validate x: [N, D] and cast to float64."""
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [N, {self.dim}], got {list(x.shape)}")
        return x.to(torch.float64)


@dataclass(frozen=True, eq=False)
class LinearPosterior:
    """The law of x given A·x = y for x from a :class:`GaussianMixture` (:meth:`GaussianMixture.posterior`):
    x = ``particular`` + ``basis``·z with z ~ ``mixture``.

    particular: [D] the minimum-norm solution A⁺y; basis: [D, D - r] an orthonormal basis of the
    null space of A; mixture: the posterior of the null-space coordinates z = basisᵀ·x (dimension
    D - r; :func:`ddkit.eval.energy.energy_distance_to_mixture` scores samples there in closed form
    when D - r is 1 or 2)."""

    particular: torch.Tensor
    basis: torch.Tensor
    mixture: GaussianMixture

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact draws x: [n, D] float64."""
        z, _ = self.mixture.sample(n, generator)
        return self.particular + z @ self.basis.T

    def coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """The null-space coordinates z = basisᵀ·x of samples x: [N, D] (or [N, ...] flattening to D)
        → [N, D - r] float64, where ``mixture`` is their exact law."""
        x = torch.as_tensor(x).reshape(len(x), -1).to(torch.float64)
        if x.shape[1] != self.basis.shape[0]:
            raise ValueError(f"x must have {self.basis.shape[0]} values per sample, got {x.shape[1]}")
        return x @ self.basis.to(x.device)


def _mean_norm(nu: torch.Tensor, s: torch.Tensor, dim: int) -> torch.Tensor:
    """E|Z| for Z ~ N(m, s² I_D) with |m| = ν, D = 1 (folded normal) or 2 (Rice); float64, broadcast."""
    q = nu**2 / (2 * s**2)
    if dim == 1:
        return s * math.sqrt(2 / math.pi) * torch.exp(-q) + nu * torch.erf(q.sqrt())
    half = q / 2  # i0e(z) = e^{-z}·I₀(z): the e^{−q/2} of the Rice mean
    return s * math.sqrt(math.pi / 2) * ((1 + q) * torch.special.i0e(half) + q * torch.special.i1e(half))
