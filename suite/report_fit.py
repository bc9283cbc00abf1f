"""Scaling-law fits of final loss against model size, with their uncertainty.

Two forms, both over non-embedding parameters N (Kaplan et al. 2020 fit N without the
embedding matrices; with them, the smallest models' counts are mostly vocabulary):

- `PowerLaw`: L = a·N^(-α), least squares in log-log space — kept for comparison;
- `SaturatingPowerLaw`: L = E + A·N^(-α) with E ≥ 0 (Hoffmann et al. 2022), least squares on
  the loss with scipy's `curve_fit`. Parameter standard errors come from its covariance
  (scaled by the residual variance); the curve's ±1 SE band propagates that covariance
  (delta method). A bootstrap over sizes (refits on sizes drawn with replacement) gives a
  second, model-agnostic spread of α: how much the exponent depends on which sizes exist.
  It is not used for the band, because a draw that misses the smallest or largest size
  extrapolates there, and with 5–8 sizes that happens in a third of the draws.

R² is computed on the loss itself for both, so the two can be compared. scipy is imported
inside the functions: `suite plan/status` import nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The saturating form has three parameters: fewer than four sizes leave no residual degree of
#: freedom, and its covariance (hence the standard errors) is undefined.
MIN_SIZES_SATURATING = 4
#: Bootstrap draws for α's spread; 200 refits take a fraction of a second.
BOOTSTRAP_DRAWS = 200
#: α's bootstrap interval: the 16th–84th percentile of the refits (±1σ for a normal).
BOOTSTRAP_PERCENTILES = (16.0, 84.0)


def r_squared(observed, predicted) -> float:
    observed, predicted = np.asarray(observed, float), np.asarray(predicted, float)
    total = ((observed - observed.mean()) ** 2).sum()
    return float(1.0 - ((observed - predicted) ** 2).sum() / total) if total > 0 else 1.0


@dataclass(frozen=True)
class PowerLaw:
    """L(N) = a · N^(-alpha), fitted by least squares in log-log space."""

    a: float
    alpha: float
    r2: float

    def __call__(self, n):
        return self.a * np.power(np.asarray(n, float), -self.alpha)

    def __str__(self) -> str:
        return f"L = {self.a:.3g}·N^(-{self.alpha:.3f})  (R² {self.r2:.3f})"


def fit_power_law(params, losses) -> PowerLaw:
    x, y = np.log(np.asarray(params, float)), np.log(np.asarray(losses, float))
    if len(np.unique(x)) < 2:
        raise ValueError("a power law needs at least two distinct sizes")
    slope, intercept = np.polyfit(x, y, 1)
    fit = PowerLaw(a=float(np.exp(intercept)), alpha=float(-slope), r2=0.0)
    return PowerLaw(fit.a, fit.alpha, r_squared(np.exp(y), fit(np.exp(x))))


@dataclass(frozen=True, eq=False)  # eq=False: `cov` is an array
class SaturatingPowerLaw:
    """L(N) = e + a · N^(-alpha); `*_se` are standard errors from the fit's covariance `cov`
    of (e, a, alpha); NaN where scipy gives none (a flat or degenerate fit)."""

    e: float
    a: float
    alpha: float
    e_se: float
    a_se: float
    alpha_se: float
    r2: float
    sizes: int
    cov: np.ndarray

    def __call__(self, n):
        return self.e + self.a * np.power(np.asarray(n, float), -self.alpha)

    def band(self, n) -> tuple[np.ndarray, np.ndarray]:
        """The curve ± one standard error at `n`, propagating `cov` to first order."""
        n = np.asarray(n, float)
        if not np.isfinite(self.cov).all():
            return np.full_like(n, np.nan), np.full_like(n, np.nan)
        power = np.power(n, -self.alpha)
        # ∂L/∂(E, A, α) at each n.
        gradient = np.stack([np.ones_like(n), power, -self.a * power * np.log(n)])
        se = np.sqrt(np.einsum("ip,ij,jp->p", gradient, self.cov, gradient).clip(0))
        return self(n) - se, self(n) + se

    def __str__(self) -> str:
        return (
            f"L = {self.e:.3f}(±{self.e_se:.2g}) + {self.a:.3g}(±{self.a_se:.2g})"
            f"·N^(-{self.alpha:.3f}±{self.alpha_se:.2g})  (R² {self.r2:.3f})"
        )


def _saturating(n, e, a, alpha):
    return e + a * np.power(n, -alpha)


def _start_point(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """For a fixed α the model is linear in (E, A): solve that on a grid of α and keep the
    best — a start from which `curve_fit` converges even when the loss barely falls with N."""
    alphas = np.geomspace(0.01, 3.0, 120)
    basis = np.power(x[None, :], -alphas[:, None])  # (alpha, point)
    b_mean, y_mean = basis.mean(1), y.mean()
    cov = ((basis - b_mean[:, None]) * (y - y_mean)).mean(1)
    var = ((basis - b_mean[:, None]) ** 2).mean(1)
    a = np.clip(np.divide(cov, var, out=np.zeros_like(cov), where=var > 0), 0.0, None)
    e = y_mean - a * b_mean
    # E < 0 is outside the model: pin E at 0 and refit A alone.
    pinned = e < 0
    a[pinned] = (basis[pinned] @ y) / (basis[pinned] ** 2).sum(1)
    e[pinned] = 0.0
    sse = ((y[None, :] - e[:, None] - a[:, None] * basis) ** 2).sum(1)
    best = int(np.argmin(sse))
    return float(e[best]), float(a[best]), float(alphas[best])


def _fit_saturating_params(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, A, α) and their covariance (NaN where scipy cannot give one)."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    start = _start_point(x, y)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, cov = curve_fit(
                _saturating,
                x,
                y,
                p0=start,
                bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, 5.0]),
                x_scale="jac",
                max_nfev=5000,
            )
    except (RuntimeError, ValueError):
        return np.array(start), np.full((3, 3), np.nan)
    return params, cov


def fit_saturating(params, losses) -> SaturatingPowerLaw:
    """Fit L = E + A·N^(-α) to one loss per size (average seeds first)."""
    x, y = np.asarray(params, float), np.asarray(losses, float)
    sizes = len(np.unique(x))
    if sizes < MIN_SIZES_SATURATING:
        raise ValueError(f"E + A·N^(-α) needs at least {MIN_SIZES_SATURATING} sizes, got {sizes}")
    values, cov = _fit_saturating_params(x, y)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(cov))
    se = np.where(np.isfinite(se), se, np.nan)
    e, a, alpha = (float(v) for v in values)
    return SaturatingPowerLaw(
        e=e,
        a=a,
        alpha=alpha,
        e_se=float(se[0]),
        a_se=float(se[1]),
        alpha_se=float(se[2]),
        r2=r_squared(y, _saturating(x, e, a, alpha)),
        sizes=sizes,
        cov=cov,
    )


def bootstrap_alpha(
    params, losses, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float, int]:
    """(low, high, draws used): percentiles `BOOTSTRAP_PERCENTILES` of α over refits of
    E + A·N^(-α) on sizes drawn with replacement. Draws with fewer than three distinct sizes
    are skipped: three parameters through fewer points say nothing."""
    x, y = np.asarray(params, float), np.asarray(losses, float)
    rng = np.random.default_rng(seed)
    alphas = []
    for _ in range(draws):
        pick = rng.integers(0, len(x), len(x))
        if len(np.unique(x[pick])) >= 3:
            alphas.append(_fit_saturating_params(x[pick], y[pick])[0][2])
    if not alphas:
        return np.nan, np.nan, 0
    low, high = np.percentile(alphas, BOOTSTRAP_PERCENTILES)
    return float(low), float(high), len(alphas)
