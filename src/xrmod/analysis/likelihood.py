"""The likelihood of observed temperatures given a distortion θ of the ARF.

A source of true temperature T seen through the ARF in question gives, in
expectation, the library's T1(θ, T): the temperature fitted with the nominal
ARF to a spectrum made with the distorted one. The trusted instrument gives
T_ref ≈ T. For source i, with μ_i = T1(θ, T_ref,i) from the emulator,

    T_obs,i ~ Normal(μ_i, V_i),
    V_i = σ_obs,i(μ_i)² + (∂T1/∂T · σ_ref,i)² + σ_emu,i² + (s · μ_i)²,

where σ_obs is the observation's error (an asymmetric one as Barlow's
linear-σ model, σ(μ) = 2σ₊σ₋/(σ₊+σ₋) + (σ₊−σ₋)/(σ₊+σ₋) · (μ − T_obs), which
is σ₊ one σ₊ above T_obs and σ₋ one σ₋ below, R. Barlow 2004,
arXiv:physics/0406120, §3.4; held at σ₊ or σ₋ beyond the bounds), the
second term is T_ref's error carried through the curve (errors in both
variables, to first order), σ_emu the emulator's own error
(:mod:`xrmod.analysis.emulator`) and s an optional intrinsic scatter, a
fraction of T. The priors are flat over a box: the library's grid, or a
narrower range the user gives. A point next to a failed library node has no
likelihood (−∞).

The baseline "no distortion" model has μ_i = T_ref,i and no emulator: what
the data say if the two instruments agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xrmod.analysis.emulator import Bound, Emulator
from xrmod.analysis.observations import Observations
from xrmod.errors import InputError

__all__ = ["SCATTER", "Likelihood", "Parameter", "linear_sigma"]

log = logging.getLogger(__name__)

#: Name of the intrinsic-scatter parameter (a fraction of the temperature).
SCATTER = "scatter"
#: Default upper end of the scatter's flat prior.
SCATTER_MAX = 0.5
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Parameter:
    """A free parameter and its flat prior [lo, hi]."""

    name: str
    lo: float
    hi: float
    units: str = ""

    @property
    def width(self) -> float:
        """The prior's width, hi − lo."""
        return self.hi - self.lo


def linear_sigma(mu: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Barlow's linear-σ error at model value *mu* of a measurement x (−lo, +hi).

    Linear between the bounds, where it is lo at x − lo and hi at x + hi;
    beyond them it stays at that bound's error rather than shrinking towards
    zero (a point far from the model keeps its stated error: robust to an
    outlier). Symmetric errors (lo = hi) give σ = lo everywhere.
    """
    total = lo + hi
    sigma = 2.0 * lo * hi / total + (hi - lo) / total * (mu - x)
    return np.clip(sigma, np.minimum(lo, hi), np.maximum(lo, hi))


@dataclass(frozen=True)
class _Band:
    """The observations one emulator (one library, one band) predicts."""

    evaluate: Callable[[np.ndarray], Bound] | None  # None: the no-distortion baseline
    obs: Observations


class Likelihood:
    """ln L of a set of observations given θ (and the scatter), vectorised over θ.

    Parameters
    ----------
    emulators : sequence of Emulator, or None
        One per band (the same family and grid): row *i* of *observations*
        goes to ``emulators[band_of[i]]``. None: the no-distortion baseline.
    observations : Observations
        The sources.
    band_of : array of int, optional
        Index of each row's emulator (default: all the first).
    fixed : mapping, optional
        Modifier axes held at a value (not sampled).
    priors : mapping, optional
        ``axis -> (lo, hi)``: a flat prior narrower than the grid.
    scatter : bool
        Fit an intrinsic scatter s (fraction of T), flat prior [0, *scatter_max*].
    fit : str
        Which library fit the observations are compared with (``T1``).
    """

    def __init__(
        self,
        emulators: Sequence[Emulator] | None,
        observations: Observations,
        *,
        band_of: np.ndarray | None = None,
        fixed: Mapping[str, float] | None = None,
        priors: Mapping[str, tuple[float, float]] | None = None,
        scatter: bool = False,
        scatter_max: float = SCATTER_MAX,
        fit: str = "T1",
    ):
        self.observations = observations
        self.baseline = emulators is None
        fixed = dict(fixed or {})
        priors = dict(priors or {})
        band_of = np.zeros(len(observations), int) if band_of is None else np.asarray(band_of)
        if self.baseline:
            self.axis_names: tuple[str, ...] = ()
            self.parameters: list[Parameter] = []
            self._bands = [_Band(None, observations)]
            self._rows = [np.arange(len(observations))]
            self._fixed_values = np.empty(0)
            _refuse_options(fixed, priors)
        else:
            first = emulators[0]
            self.axis_names = first.parameters
            fixed |= _hold_inert(first, fixed, priors)
            self.parameters = _free_parameters(first, fixed, priors)
            self._fixed_values = np.array([fixed.get(n, np.nan) for n in self.axis_names])
            self._bands, self._rows = [], []
            for k, emulator in enumerate(emulators):
                rows = np.flatnonzero(band_of == k)
                obs = observations.subset(rows)
                _check_temperatures(emulator, obs)
                self._bands.append(_Band(emulator.bind(obs.T_ref, fit), obs))
                self._rows.append(rows)
        if scatter:
            if not 0.0 < scatter_max:
                raise InputError(f"the scatter's prior needs a positive upper end ({scatter_max})")
            self.parameters.append(Parameter(SCATTER, 0.0, float(scatter_max)))
        self.scatter = scatter
        #: Modifier axes not sampled: the user's ``fixed`` and the inert ones, with their values.
        self.fixed = fixed
        self._free_axes = [
            i for i, n in enumerate(self.axis_names) if n in {p.name for p in self.parameters}
        ]

    # ------------------------------------------------------------ the model
    @property
    def names(self) -> list[str]:
        """The free parameters, in sampling order."""
        return [p.name for p in self.parameters]

    @property
    def ndim(self) -> int:
        """Number of free parameters."""
        return len(self.parameters)

    @property
    def lower(self) -> np.ndarray:
        """Lower ends of the priors."""
        return np.array([p.lo for p in self.parameters])

    @property
    def upper(self) -> np.ndarray:
        """Upper ends of the priors."""
        return np.array([p.hi for p in self.parameters])

    def theta(self, params: np.ndarray) -> np.ndarray:
        """(n, ndim) free parameters -> (n, P) values of every modifier axis (fixed ones filled)."""
        params = np.atleast_2d(params)
        out = np.broadcast_to(self._fixed_values, (params.shape[0], len(self.axis_names))).copy()
        out[:, self._free_axes] = params[:, : len(self._free_axes)]
        return out

    def moments(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """μ, V and validity of every observation (n, n_obs), rows in file order."""
        params = np.atleast_2d(params)
        n, total = params.shape[0], len(self.observations)
        mu, var = np.empty((n, total)), np.empty((n, total))
        valid = np.empty((n, total), dtype=bool)
        theta = self.theta(params)
        s = params[:, -1:] if self.scatter else 0.0
        for band, rows in zip(self._bands, self._rows, strict=True):
            obs = band.obs
            if band.evaluate is None:
                m = np.broadcast_to(obs.T_ref, (n, obs.T_ref.size))
                slope, error, ok = 1.0, 0.0, np.ones((n, obs.T_ref.size), dtype=bool)
            else:
                b = band.evaluate(theta)
                m, slope, error, ok = b.value, b.slope, b.error, b.valid
            sigma = linear_sigma(m, obs.T_obs, obs.sigma_lo, obs.sigma_hi)
            v = sigma**2 + (slope * obs.T_ref_err) ** 2 + error**2 + (s * m) ** 2
            mu[:, rows], var[:, rows], valid[:, rows] = m, v, ok
        return mu, var, valid

    def log_likelihood(self, params: np.ndarray) -> np.ndarray:
        """Log-likelihood at each row of *params* (n, ndim); −∞ where not valid."""
        mu, var, valid = self.moments(params)
        with np.errstate(invalid="ignore"):
            terms = (self.observations.T_obs - mu) ** 2 / var + np.log(var) + _LOG_2PI
        out = -0.5 * np.sum(np.where(valid, terms, 0.0), axis=1)
        out[~valid.all(axis=1)] = -np.inf
        return out

    def log_prior(self, params: np.ndarray) -> np.ndarray:
        """The log of the flat prior: −Σ ln(width) inside the box, −∞ outside."""
        params = np.atleast_2d(params)
        inside = np.all((params >= self.lower) & (params <= self.upper), axis=1)
        return np.where(inside, -np.sum(np.log(self.upper - self.lower)), -np.inf)

    def log_posterior(self, params: np.ndarray) -> np.ndarray:
        """The log-posterior, ln prior + ln L (unnormalised), −∞ outside the prior."""
        params = np.atleast_2d(params)
        out = self.log_prior(params)
        inside = np.isfinite(out)
        if inside.any():
            out[inside] += self.log_likelihood(params[inside])
        return out

    def prior_transform(self, u: np.ndarray) -> np.ndarray:
        """The unit cube onto the prior box (for nested sampling)."""
        return self.lower + u * (self.upper - self.lower)

    def chi2(self, params: np.ndarray) -> float:
        """Σ (T_obs − μ)² / V at one parameter set."""
        mu, var, _ = self.moments(params)
        return float(np.sum((self.observations.T_obs - mu[0]) ** 2 / var[0]))


def _free_parameters(
    emulator: Emulator, fixed: Mapping[str, float], priors: Mapping[str, tuple[float, float]]
) -> list[Parameter]:
    axes = {a.name: a for a in emulator.axes[:-1]}
    for name in (*fixed, *priors):
        if name not in axes:
            known = ", ".join(axes) or "none"
            raise InputError(f"unknown axis {name!r} (the library's free axes: {known})")
    out = []
    for name, axis in axes.items():
        lo, hi = float(axis.nodes[0]), float(axis.nodes[-1])
        unit = f" {axis.units}" if axis.units else ""
        if name in fixed:
            if not lo <= fixed[name] <= hi:
                raise InputError(
                    f"--fix {name}={fixed[name]:g} is outside the grid [{lo:g}, {hi:g}]{unit}"
                )
            continue
        if name in priors:
            p_lo, p_hi = priors[name]
            if not lo <= p_lo < p_hi <= hi:
                raise InputError(
                    f"prior {name} in [{p_lo:g}, {p_hi:g}] must be a range inside the grid "
                    f"[{lo:g}, {hi:g}]{unit}"
                )
            lo, hi = p_lo, p_hi
        out.append(Parameter(name, lo, hi, axis.units))
    return out


def _hold_inert(
    emulator: Emulator, fixed: Mapping[str, float], priors: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Axes T1 does not depend on (``Emulator.inert``), held at their grid middle, logged."""
    out = {}
    for name in emulator.inert:
        if name in fixed or name in priors:
            continue
        nodes = next(a.nodes for a in emulator.axes if a.name == name)
        out[name] = float(nodes[nodes.size // 2])
        log.info(
            "%s: T1 does not depend on %s anywhere in %s (a constant factor the free norm "
            "absorbs): held at %g, not sampled",
            emulator.family, name, emulator.library, out[name],
        )  # fmt: skip
    return out


def _refuse_options(fixed: Mapping[str, float], priors: Mapping[str, tuple[float, float]]) -> None:
    if fixed or priors:
        raise InputError("the no-distortion baseline has no modifier axes to fix or bound")


def _check_temperatures(emulator: Emulator, obs: Observations) -> None:
    lo, hi = emulator.bounds["kT_true"]
    bad = (obs.T_ref < lo) | (obs.T_ref > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{obs.label(i)}: T_ref = {obs.T_ref[i]:g} keV is outside the library's "
            f"temperatures [{lo:g}, {hi:g}] keV ({emulator.library})"
        )
