"""``xrmod infer``: the distortion θ that explains observed temperatures, and which family does.

For each library (or each set of libraries of one family and grid, one per
band) the posterior over θ under :class:`~xrmod.analysis.likelihood.Likelihood`
is sampled with emcee (differential-evolution moves, which cross between
modes better than the stretch move; walkers started at the best of many
prior draws, then polished by a bounded optimiser): the best θ, medians and
68 %/95 % credible intervals, χ² and its p-value at the best θ, and the
posterior predictive of every observation. With ``evidence`` the marginal
likelihood ln Z is computed by nested sampling (dynesty), for every family
and for the no-distortion baseline, and the families are ranked by it:
ln B = ln Z₁ − ln Z₂ reads, on the Jeffreys scale as Trotta (2008,
Contemp. Phys. 49, 71) words it, |ln B| < 1 inconclusive, < 2.5 weak,
< 5 moderate, ≥ 5 strong. Without evidence the ranking uses the BIC.

The evidence depends on the prior volume: a family whose grid spans a wider
box pays for it (Occam's razor), so compare libraries whose grids span what
is physically plausible.

Examples
--------
>>> from xrmod.analysis.inference import infer  # doctest: +SKIP
>>> result = infer(["gauss.h5", "tilt.h5"], "clusters.csv", scatter=True)
>>> print(result.format())
>>> result.as_dict()["ranking"][0]["family"]
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xrmod.analysis.emulator import Emulator, load_emulator
from xrmod.analysis.likelihood import SCATTER_MAX, Likelihood
from xrmod.analysis.observations import Observations, read_observations
from xrmod.errors import InputError

__all__ = ["InferenceResult", "ModelResult", "group_by_band", "infer", "select_bands", "strength"]

log = logging.getLogger(__name__)

#: Credible levels reported per parameter.
LEVELS = (0.68, 0.95)
#: Prior draws from which the walkers start (the best of them).
_PRIOR_DRAWS = 4000
#: Posterior samples used for the predictive.
_PREDICTIVE_DRAWS = 2000


@dataclass
class ModelResult:
    """The posterior of one family (one library, or one per band) given the observations."""

    family: str
    libraries: list[str]
    likelihood: Likelihood = field(repr=False)
    samples: np.ndarray = field(repr=False)
    best: np.ndarray
    best_log_likelihood: float
    sampler: dict[str, Any]
    evidence: dict[str, float] | None = None
    bands: list[list[float] | None] = field(default_factory=list)
    emulators: list[Emulator] = field(default_factory=list, repr=False)
    #: Index into :attr:`emulators` (and :attr:`bands`) of each observation's library.
    band_of: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)

    @property
    def names(self) -> list[str]:
        """The free parameters."""
        return self.likelihood.names

    @property
    def label(self) -> str:
        """``gaussian (lib.h5)``."""
        return f"{self.family} ({', '.join(os.path.basename(p) for p in self.libraries)})"

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per parameter: best, median, 68 % and 95 % credible intervals, prior, units."""
        out = {}
        for j, p in enumerate(self.likelihood.parameters):
            x = self.samples[:, j]
            entry: dict[str, Any] = {
                "best": float(self.best[j]),
                "median": float(np.median(x)),
                "units": p.units,
                "prior": [p.lo, p.hi],
            }
            for level in LEVELS:
                q = np.quantile(x, [0.5 - level / 2, 0.5 + level / 2])
                entry[f"ci{round(level * 100)}"] = [float(q[0]), float(q[1])]
            out[p.name] = entry
        return out

    def goodness_of_fit(self) -> dict[str, Any]:
        """χ², degrees of freedom and p-value at the best θ; AIC and BIC."""
        from scipy.stats import chi2 as chi2_dist

        n, k = len(self.likelihood.observations), self.likelihood.ndim
        chi2 = self.likelihood.chi2(self.best)
        dof = n - k
        return {
            "chi2": chi2,
            "dof": dof,
            "p_value": float(chi2_dist.sf(chi2, dof)) if dof > 0 else None,
            "log_likelihood": self.best_log_likelihood,
            "aic": 2 * k - 2 * self.best_log_likelihood,
            "bic": k * math.log(n) - 2 * self.best_log_likelihood,
        }

    def predictive(self, seed: int = 0) -> list[dict[str, Any]]:
        """Per observation, the posterior predictive of T_obs: median, 68 % and 95 %, p-value.

        ``p_value`` is the fraction of replicated T_obs above the observed
        one: near 0 or 1 flags an observation the model does not explain.
        """
        draws = self._draws(seed)
        mu, var, _ = self.likelihood.moments(draws)
        rng = np.random.default_rng(seed)
        replica = mu + np.sqrt(var) * rng.standard_normal(mu.shape)
        obs = self.likelihood.observations
        q = np.quantile(replica, [0.025, 0.16, 0.5, 0.84, 0.975], axis=0)
        model = np.quantile(mu, [0.16, 0.5, 0.84], axis=0)
        return [
            {
                "name": obs.names[i],
                "T_ref": float(obs.T_ref[i]),
                "T_obs": float(obs.T_obs[i]),
                "median": float(q[2, i]),
                "ci68": [float(q[1, i]), float(q[3, i])],
                "ci95": [float(q[0, i]), float(q[4, i])],
                "model_median": float(model[1, i]),
                "model_ci68": [float(model[0, i]), float(model[2, i])],
                "p_value": float(np.mean(replica[:, i] > obs.T_obs[i])),
            }
            for i in range(len(obs))
        ]

    def curve(self, kT: np.ndarray, band: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
        """The posterior of T1/kT_true along *kT* (keV) for the library of *band*.

        Returns ``kT``, ``median`` and the 68 % and 95 % bands (``lo68``,
        ``hi68``, ``lo95``, ``hi95``) of the emulated ratio over posterior
        draws (the model's curve, without observation noise), and ``best``
        at the best parameters.
        """
        kT = np.asarray(kT, dtype=np.float64)
        evaluate = self.emulators[band].bind(kT, "T1")
        draws = self.likelihood.theta(self._draws(seed))
        ratio = evaluate(draws).value / kT
        with warnings.catch_warnings():  # "All-NaN slice": no valid draw at some kT, NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            q = np.nanquantile(ratio, [0.025, 0.16, 0.5, 0.84, 0.975], axis=0)
        best = evaluate(self.likelihood.theta(self.best[None, :])).value[0] / kT
        keys = ("lo95", "lo68", "median", "hi68", "hi95")
        return {"kT": kT, "best": best, **dict(zip(keys, q, strict=True))}

    def _draws(self, seed: int) -> np.ndarray:
        """Posterior samples for the predictive: a random subset, or all repeated when few."""
        rng = np.random.default_rng(seed)
        n = self.samples.shape[0]
        if n >= _PREDICTIVE_DRAWS:
            return self.samples[rng.choice(n, _PREDICTIVE_DRAWS, replace=False)]
        return self.samples[rng.choice(n, _PREDICTIVE_DRAWS, replace=True)]

    def as_dict(self, seed: int = 0) -> dict[str, Any]:
        """Everything about this model as JSON types."""
        return {
            "family": self.family,
            "libraries": self.libraries,
            "bands": self.bands,
            "parameters": self.summary(),
            "fixed": dict(self.likelihood.fixed),
            "goodness_of_fit": self.goodness_of_fit(),
            "evidence": self.evidence,
            "sampler": self.sampler,
            "predictive": self.predictive(seed),
        }


@dataclass
class InferenceResult:
    """The models, best first, the no-distortion baseline and the observations."""

    models: list[ModelResult]
    baseline: dict[str, Any]
    observations: Observations
    seconds: float
    seed: int = 0

    @property
    def best(self) -> ModelResult:
        """The first model of the ranking."""
        return self.models[0]

    def ranking(self) -> list[dict[str, Any]]:
        """The models, best first: evidence (or BIC), Bayes factor against the best, wording."""
        by_evidence = all(m.evidence is not None for m in self.models)
        top = self.models[0]
        top_bic = top.goodness_of_fit()["bic"]
        out = []
        for m in self.models:
            gof = m.goodness_of_fit()
            entry: dict[str, Any] = {
                "library": m.libraries[0] if len(m.libraries) == 1 else m.libraries,
                "libraries": m.libraries,
                "family": m.family,
                "criterion": "evidence" if by_evidence else "bic",
                "bic": gof["bic"],
                "aic": gof["aic"],
                "chi2": gof["chi2"],
                "dof": gof["dof"],
            }
            if by_evidence:
                assert m.evidence is not None and top.evidence is not None
                log_b = top.evidence["log_z"] - m.evidence["log_z"]
                entry |= {
                    "log_evidence": m.evidence["log_z"],
                    "log_evidence_err": m.evidence["log_z_err"],
                    "log_bayes_factor_best": log_b,
                }
            else:  # exp(−ΔBIC / 2) approximates the Bayes factor
                log_b = (gof["bic"] - top_bic) / 2.0
                entry["log_bayes_factor_best"] = log_b
            entry["strength"] = strength(log_b) if m is not top else "best"
            out.append(entry)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The whole result as JSON types (``xrmod infer --json``)."""
        models = [m.as_dict(self.seed) for m in self.models]
        best = models[0]
        return {
            "observations": {"file": self.observations.path, "rows": len(self.observations)},
            "ranking": self.ranking(),
            "baseline": self.baseline,
            "best_model": {"family": best["family"], "libraries": best["libraries"]},
            "parameters": best["parameters"],
            "goodness_of_fit": best["goodness_of_fit"],
            "predictive": best["predictive"],
            "models": models,
            "seconds": self.seconds,
        }

    def format(self) -> str:
        """The result as text for the command line."""
        lines = [f"{len(self.observations)} observations from {self.observations.path}"]
        for m in self.models:
            lines += ["", *_format_model(m)]
        lines += ["", *self._format_ranking()]
        lines.append(f"\n({self.seconds:.1f} s)")
        return "\n".join(lines)

    def _format_ranking(self) -> list[str]:
        ranking = self.ranking()
        lines = []
        if len(self.models) > 1:
            lines.append("ranking (best first):")
            for i, r in enumerate(ranking, start=1):
                names = ", ".join(os.path.basename(p) for p in r["libraries"])
                if r["criterion"] == "evidence":
                    score = f"ln Z = {r['log_evidence']:.2f} ± {r['log_evidence_err']:.2f}"
                else:
                    score = f"BIC = {r['bic']:.2f}"
                rel = "" if i == 1 else f", ln B(best vs this) = {r['log_bayes_factor_best']:.2f}"
                lines.append(f"  {i}. {r['family']} ({names}): {score}{rel} [{r['strength']}]")
            second = ranking[1]
            lines.append(
                f"the data prefer {ranking[0]['family']} over {second['family']}: "
                f"ln B = {second['log_bayes_factor_best']:.2f} ({second['strength']})"
            )
        base = self.baseline
        if base.get("log_bayes_factor_best") is not None:
            lines.append(
                f"against no distortion (T_obs = T_ref): ln B = "
                f"{base['log_bayes_factor_best']:.2f} ({base['strength']}), "
                f"chi2 = {base['chi2']:.1f} for {base['dof']} dof"
            )
        return lines


def strength(log_b: float) -> str:
    """Trotta's wording of a Bayes factor ln B ≥ 0 in favour of the better model."""
    if log_b < 1.0:
        return "inconclusive"
    if log_b < 2.5:
        return "weak"
    if log_b < 5.0:
        return "moderate"
    return "strong"


# ---------------------------------------------------------------- the run
def infer(
    libraries: Sequence[str | os.PathLike],
    observations: str | os.PathLike | Observations,
    *,
    scatter: bool = False,
    scatter_max: float = SCATTER_MAX,
    priors: Mapping[str, tuple[float, float]] | None = None,
    fixed: Mapping[str, float] | None = None,
    confidence: float = 0.6827,
    walkers: int | None = None,
    steps: int = 3000,
    seed: int = 0,
    evidence: bool = True,
    live_points: int = 400,
    emulator: str | None = None,
    bands: Sequence[str] | None = None,
) -> InferenceResult:
    """Sample the posterior of θ for each family and rank the families.

    Parameters
    ----------
    libraries : sequence of path-like
        Libraries built on the response whose ARF is in question. With a
        ``band`` column in the observations, libraries of the same family
        and grid are one model, one library per band (their ``instrument.band``).
    observations : path-like or Observations
        The CSV of :mod:`xrmod.analysis.observations`.
    scatter, scatter_max : bool, float
        Fit an intrinsic fractional scatter, flat prior [0, scatter_max].
    priors : mapping, optional
        ``axis -> (lo, hi)`` narrower flat priors (inside the grid).
    fixed : mapping, optional
        ``axis -> value``: axes not sampled.
    confidence : float
        Confidence level of the observations' errors.
    walkers, steps : int
        emcee's ensemble size (default max(64, 8 × parameters)) and steps.
    seed : int
        Seeds every random draw: the same inputs give the same result.
    evidence : bool
        Compute ln Z by nested sampling (dynesty) and rank by it; else by BIC.
    live_points : int
        dynesty's live points (ln Z's error falls as 1/√live_points).
    emulator : str, optional
        ``spline`` or ``mlp``: build that kind; by default a library's saved
        emulator when it is up to date, else a new spline one.
    bands : sequence of str, optional
        Use only the observations of these bands (``"0.5-10"``; the CSV's
        ``band`` column), e.g. to ask what one band alone says.

    Raises
    ------
    xrmod.errors.InputError
        A bad observation file (naming the line), a T_ref outside a
        library's temperatures, an unknown axis, bands that do not match.
    """
    start = time.perf_counter()
    obs = (
        observations
        if isinstance(observations, Observations)
        else (read_observations(observations, confidence=confidence))
    )
    if bands:
        obs = select_bands(obs, bands)
    if not libraries:
        raise InputError("no library to infer from")
    if steps < 100:
        raise InputError(f"--steps must be at least 100 (got {steps})")
    emulators = [_emulator(path, emulator) for path in libraries]
    groups = group_by_band(emulators, obs)
    models = []
    for i, (members, band_of) in enumerate(groups):
        like = Likelihood(
            members,
            obs,
            band_of=band_of,
            fixed=fixed,
            priors=priors,
            scatter=scatter,
            scatter_max=scatter_max,
        )
        log.info("sampling %s (%d parameters)", members[0].family, like.ndim)
        model = _sample(like, members, walkers=walkers, steps=steps, seed=seed + i)
        model.band_of = band_of
        if evidence:
            model.evidence = nested_evidence(like, live_points=live_points, seed=seed + i)
        models.append(model)
    models.sort(key=_rank_key)
    baseline = _baseline(obs, models[0], scatter, scatter_max, evidence, live_points, seed)
    return InferenceResult(models, baseline, obs, time.perf_counter() - start, seed)


def select_bands(obs: Observations, bands: Sequence[str]) -> Observations:
    """The observations whose ``band`` is one of *bands* (``"LO-HI"`` keV)."""
    from xrmod.analysis.observations import parse_band

    if not obs.has_bands:
        raise InputError(f"{obs.path}: no band column to select bands from")
    wanted = [parse_band(b, "--band") for b in bands]
    keep = np.zeros(len(obs), dtype=bool)
    for band in wanted:
        keep |= np.all(np.isclose(obs.band, band), axis=1)
    if not keep.any():
        raise InputError(f"{obs.path}: no observation in the band(s) {', '.join(bands)}")
    return obs.subset(keep)


def group_by_band(
    emulators: Sequence[Emulator], obs: Observations
) -> list[tuple[list[Emulator], np.ndarray]]:
    """The models: lists of emulators (one per band) and each row's index into its list.

    Without a band column every library is a model of its own and sees
    every row. With one, libraries of one family and grid form a model, and
    each row goes to the library whose band matches its ``band``.
    """
    if not obs.has_bands:
        return [([e], np.zeros(len(obs), int)) for e in emulators]
    groups: dict[tuple, list[Emulator]] = {}
    for e in emulators:
        groups.setdefault(_grid_key(e), []).append(e)
    out = []
    for members in groups.values():
        bands = [_library_band(e) for e in members]
        band_of = np.full(len(obs), -1)
        for k, band in enumerate(bands):
            same = [j for j in range(k) if np.allclose(bands[j], band)]
            if same:
                raise InputError(
                    f"{members[same[0]].library} and {members[k].library}: two libraries of "
                    f"one family and grid for the band {band[0]:g}-{band[1]:g} keV"
                )
            band_of[np.all(np.isclose(obs.band, band), axis=1)] = k
        if (band_of < 0).any():
            i = int(np.flatnonzero(band_of < 0)[0])
            have = ", ".join(f"{b[0]:g}-{b[1]:g}" for b in bands)
            raise InputError(
                f"{obs.label(i)}: no {members[0].family} library for the band "
                f"{obs.band[i, 0]:g}-{obs.band[i, 1]:g} keV (libraries' bands: {have})"
            )
        out.append((members, band_of))
    return out


def _grid_key(e: Emulator) -> tuple:
    return (
        e.family,
        tuple((a.name, tuple(np.round(a.nodes, 12))) for a in e.axes[:-1]),
        tuple(sorted(e.fixed.items())),
    )


def _library_band(e: Emulator) -> np.ndarray:
    band = e.provenance.get("band")
    if band is None:
        raise InputError(f"{e.library}: the library does not record its band")
    return np.asarray(band, dtype=np.float64)


def _emulator(path: str | os.PathLike, kind: str | None) -> Emulator:
    emulator = load_emulator(path) if kind is None else Emulator.from_library(path, kind=kind)
    if emulator.provenance.get("noise") == "poisson":
        scale = emulator.error_scale("T1")
        log.warning(
            "%s has Poisson noise: its scatter is the emulator's error (%.2g of the library's "
            "width) and, shared by every observation, can bias the posterior; for inference "
            'build the library with noise = "asimov" (the expected bias itself)',
            path, scale,
        )  # fmt: skip
    return emulator


def _rank_key(m: ModelResult) -> float:
    if m.evidence is not None:
        return -m.evidence["log_z"]
    return m.goodness_of_fit()["bic"]


# ---------------------------------------------------------------- emcee
def _sample(
    like: Likelihood, members: Sequence[Emulator], *, walkers: int | None, steps: int, seed: int
) -> ModelResult:
    """The posterior of *like* by emcee, from walkers at the best prior draws."""
    import emcee

    t0 = time.perf_counter()
    libraries = [e.library for e in members]
    bands = [e.provenance.get("band") for e in members]
    if like.ndim == 0:
        return ModelResult(
            members[0].family,
            libraries,
            like,
            np.empty((1, 0)),
            np.empty(0),
            float(like.log_likelihood(np.empty((1, 0)))[0]),
            {"kind": "none (no free parameter)"},
            bands=bands,
            emulators=list(members),
        )
    rng = np.random.default_rng(seed)
    n_walkers = walkers or max(64, 8 * like.ndim)
    if n_walkers < 2 * like.ndim or n_walkers % 2:
        raise InputError(f"--walkers must be even and at least {2 * like.ndim} (got {n_walkers})")
    start = _starting_points(like, n_walkers, rng)
    moves = [(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)]
    sampler = emcee.EnsembleSampler(
        n_walkers, like.ndim, like.log_posterior, moves=moves, vectorize=True
    )
    sampler.random_state = np.random.RandomState(seed).get_state()
    sampler.run_mcmc(start, steps, progress=False)
    tau = sampler.get_autocorr_time(tol=0)
    tau_max = float(np.nanmax(tau)) if np.isfinite(tau).any() else float(steps)
    discard = min(int(3 * tau_max), steps // 2)
    thin = max(1, int(tau_max / 2))
    samples = sampler.get_chain(discard=discard, thin=thin, flat=True)
    best, _ = _best(like, sampler.get_chain(flat=True), sampler.get_log_prob(flat=True))
    if steps < 50 * tau_max:
        log.warning(
            "%s: %d steps are %.0f autocorrelation times (tau = %.0f); 50 or more are "
            "advised: raise --steps",
            members[0].family,
            steps,
            steps / tau_max,
            tau_max,
        )
    info = {
        "kind": "emcee (DE + snooker moves)",
        "walkers": n_walkers,
        "steps": steps,
        "discarded": discard,
        "thin": thin,
        "samples": int(samples.shape[0]),
        "autocorrelation_time": [float(t) for t in tau],
        "acceptance_fraction": float(np.mean(sampler.acceptance_fraction)),
        "seconds": time.perf_counter() - t0,
    }
    return ModelResult(
        members[0].family,
        libraries,
        like,
        samples,
        best,
        float(like.log_likelihood(best[None, :])[0]),
        info,
        bands=bands,
        emulators=list(members),
    )


def _starting_points(like: Likelihood, n: int, rng: np.random.Generator) -> np.ndarray:
    """The *n* best of many prior draws (distinct; spread over every mode they find)."""
    draws = like.prior_transform(rng.uniform(size=(_PRIOR_DRAWS, like.ndim)))
    lp = like.log_posterior(draws)
    finite = np.isfinite(lp)
    if finite.sum() < n:
        raise InputError(
            "the likelihood is -inf almost everywhere in the prior box (failed library "
            "nodes everywhere?): narrow --prior to where the library has values"
        )
    order = np.argsort(lp[finite])[::-1]
    return draws[finite][order[:n]]


def _best(like: Likelihood, chain: np.ndarray, log_prob: np.ndarray) -> tuple[np.ndarray, float]:
    """The maximum of the posterior: the chain's best point, polished by a bounded optimiser."""
    from scipy.optimize import minimize

    i = int(np.argmax(log_prob))
    x0, lp0 = chain[i], float(log_prob[i])

    def cost(x: np.ndarray) -> float:
        value = float(like.log_posterior(x[None, :])[0])
        return -value if np.isfinite(value) else 1e300

    res = minimize(cost, x0, method="Powell", bounds=list(zip(like.lower, like.upper, strict=True)))
    if res.success and -res.fun > lp0:
        return np.asarray(res.x), float(-res.fun)
    return x0, lp0


# ---------------------------------------------------------------- evidence
def nested_evidence(like: Likelihood, *, live_points: int = 400, seed: int = 0) -> dict[str, float]:
    """The evidence ln Z of *like* over its prior box (dynesty's static nested sampling)."""
    if like.ndim == 0:
        return {"log_z": float(like.log_likelihood(np.empty((1, 0)))[0]), "log_z_err": 0.0}
    import dynesty

    t0 = time.perf_counter()

    def loglike(x: np.ndarray) -> float:
        value = float(like.log_likelihood(x[None, :])[0])
        return value if np.isfinite(value) else -1e300

    # Uniform sampling in multi-ellipsoids, not bootstrapped but enlarged by 1.5 in
    # volume: on these posteriors (ridges where a bump's position trades with its
    # amplitude) as accurate as dynesty's random walks and slices, 3-4x fewer calls.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = dynesty.NestedSampler(
            loglike,
            like.prior_transform,
            like.ndim,
            nlive=live_points,
            bootstrap=0,
            enlarge=1.5,
            rstate=np.random.default_rng(seed),
        )
        sampler.run_nested(dlogz=0.1, print_progress=False)
    for message in sorted({str(w.message) for w in caught}):
        log.warning("dynesty: %s", message)
    res = sampler.results
    return {
        "log_z": float(res.logz[-1]),
        "log_z_err": float(res.logzerr[-1]),
        "likelihood_calls": int(np.sum(res.ncall)),
        "seconds": time.perf_counter() - t0,
    }


def _baseline(
    obs: Observations,
    best: ModelResult,
    scatter: bool,
    scatter_max: float,
    evidence: bool,
    live_points: int,
    seed: int,
) -> dict[str, Any]:
    """The no-distortion model (T_obs = T_ref) against the best family."""
    like = Likelihood(None, obs, scatter=scatter, scatter_max=scatter_max)
    params = np.zeros((1, like.ndim))
    if like.ndim:  # the scatter alone: its best value on a fine grid
        grid = np.linspace(0.0, scatter_max, 2001)[:, None]
        params = grid[[int(np.argmax(like.log_likelihood(grid)))]]
    log_l = float(like.log_likelihood(params)[0])
    kind = "the scatter's best value on a grid" if like.ndim else "none (no free parameter)"
    fit = ModelResult("none", [], like, params, params[0], log_l, {"kind": kind})
    gof = fit.goodness_of_fit()
    out: dict[str, Any] = {
        "family": "none",
        "description": "no distortion: T_obs = T_ref",
        **{key: gof[key] for key in ("chi2", "dof", "bic", "aic")},
    }
    if evidence and best.evidence is not None:
        ev = nested_evidence(like, live_points=live_points, seed=seed)
        out["log_evidence"], out["log_evidence_err"] = ev["log_z"], ev["log_z_err"]
        log_b = best.evidence["log_z"] - ev["log_z"]
    else:
        log_b = (out["bic"] - best.goodness_of_fit()["bic"]) / 2.0
    out["log_bayes_factor_best"] = log_b
    out["strength"] = (
        strength(log_b) if log_b >= 0 else f"favours no distortion ({strength(-log_b)})"
    )
    return out


def _format_model(m: ModelResult) -> list[str]:
    lines = [f"{m.label}:"]
    summary = m.summary()
    if summary:
        head = f"  {'parameter':<10} {'best':>10} {'median':>10}"
        lines.append(f"{head} {'68 % interval':>22} {'95 % interval':>22}")
    for name, s in summary.items():
        unit = f" {s['units']}" if s["units"] else ""
        ci68 = f"[{s['ci68'][0]:.4g}, {s['ci68'][1]:.4g}]"
        ci95 = f"[{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}]"
        lines.append(
            f"  {name:<10} {s['best']:>10.4g} {s['median']:>10.4g} {ci68:>22} {ci95:>22}{unit}"
        )
    if m.likelihood.fixed:
        held = ", ".join(f"{k} = {v:g}" for k, v in m.likelihood.fixed.items())
        lines.append(f"  held fixed: {held}")
    gof = m.goodness_of_fit()
    p = f", p = {gof['p_value']:.3g}" if gof["p_value"] is not None else ""
    lines.append(f"  chi2 = {gof['chi2']:.2f} for {gof['dof']} dof{p} at the best parameters")
    if m.evidence is not None:
        lines.append(f"  ln Z = {m.evidence['log_z']:.2f} ± {m.evidence['log_z_err']:.2f}")
    s = m.sampler
    if "walkers" in s:
        lines.append(
            f"  emcee: {s['walkers']} walkers x {s['steps']} steps, acceptance "
            f"{s['acceptance_fraction']:.2f}, max autocorrelation "
            f"{max(s['autocorrelation_time']):.0f} steps, {s['samples']} samples kept"
        )
    return lines
