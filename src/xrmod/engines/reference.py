"""The ``reference`` engine: direct evaluation, the oracle of the native fast path.

For each point (θ, T): the expected counts for the modified ARF A′ are
μ = exposure · Rᵀ (A′ ⊙ S_T), with R the band-restricted RMF and S_T the
photon flux of the source model per energy bin; the data are a Poisson draw
from μ (or μ itself with ``noise = "asimov"``). Each spectrum is fitted twice,
with the original ARF (T1) and with A′ (T1′), by C-statistic with the norm
profiled analytically (n̂ = ΣD / Σf for C-stat without background), so each
fit is a 1-D minimisation in log kT; the bounds are where the profiled
statistic rises by ``error_delta`` above its minimum, as XSPEC's ``error``.
Where the source model jumps in kT (``xrmod.models.KT_JUMPS``) the fit
follows :class:`xrmod.status.Status`'s definition literally
(:func:`xrmod.engines.pieces.fit_pieces`): every smooth piece between jumps
is minimised (bounded Brent, and its edges), the lowest is the best fit, and
the bounds are brentq crossings inside the outermost pieces that reach
C_min + ``error_delta``.

With a background B (scaled by α to the source spectrum) the data have mean
μ + αB, a new background spectrum is drawn too, and the statistic is XSPEC's
W-statistic, written here as the XSPEC manual writes it (its appendix
"Statistics in XSPEC", with t_s = α and t_b = 1 per channel), the norm
profiled by a bounded scalar minimisation.

This is the reference implementation (NumPy/SciPy, a direct model evaluation
and one sparse fold per statistic evaluation, ≈ 0.5 s per grid point). The
compiled fast path (:class:`xrmod.engines.native.NativeEngine`) must reproduce
it; tests and benchmarks import this class directly (it is not selectable in a
configuration).
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize

from xrmod.engines.base import EXTRAS, Engine, UnitResult, simulate
from xrmod.engines.pieces import fit_pieces, smooth_pieces
from xrmod.status import Status, worst

if TYPE_CHECKING:
    from xrmod.grid import WorkUnit
    from xrmod.job import Job

__all__ = ["ReferenceEngine", "cstat", "profiled_cstat", "profiled_wstat", "wstat"]

log = logging.getLogger(__name__)


def cstat(counts: np.ndarray, model: np.ndarray) -> float:
    """XSPEC's C-statistic: 2 Σ [m − D + D (ln D − ln m)], the log term 0 where D = 0."""
    positive = counts > 0
    if np.any(model[positive] <= 0):
        return np.inf  # counts where the model predicts none: impossible, not a warning
    log_term = np.zeros_like(model)
    log_term[positive] = counts[positive] * np.log(counts[positive] / model[positive])
    return float(2.0 * np.sum(model - counts + log_term))


def profiled_cstat(counts: np.ndarray, folded: np.ndarray) -> tuple[float, float]:
    """C-stat minimised over the norm for the model shape *folded*; returns (C, n̂)."""
    norm = counts.sum() / folded.sum()
    return cstat(counts, norm * folded), float(norm)


def wstat(
    counts: np.ndarray, background: np.ndarray, alpha: np.ndarray, model: np.ndarray
) -> float:
    """XSPEC's W-statistic (``cstat`` with a background), the manual's formulas.

    With source rate m = model / t_s, source and background exposures t_s = α,
    t_b = 1: the profiled background rate is
    f = [S + B − (t_s + t_b) m + d] / (2 (t_s + t_b)),
    d = √([(t_s + t_b) m − S − B]² + 4 (t_s + t_b) B m), and
    W = 2 Σ [t_s m + (t_s + t_b) f − S ln(t_s m + t_s f) − B ln(t_b f)
    − S (1 − ln S) − B (1 − ln B)],
    with the manual's special cases for S = 0 and for B = 0.
    """
    s, b, ts = (np.asarray(v, dtype=np.float64) for v in (counts, background, alpha))
    tb = 1.0
    m = np.asarray(model, dtype=np.float64) / ts
    tt = ts + tb
    out = np.empty_like(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        sln = np.where(s > 0, s * np.log(s), 0.0)
        bln = np.where(b > 0, b * np.log(b), 0.0)
        d = np.sqrt((tt * m - s - b) ** 2 + 4.0 * tt * b * m)
        f = (s + b - tt * m + d) / (2.0 * tt)
        general = (
            ts * m + tt * f - s * np.log(ts * m + ts * f) - b * np.log(tb * f) - s + sln - b + bln
        )
        s0 = ts * m - b * np.log(tb / tt)
        low = m < s / tt
        b0 = np.where(
            low,
            -tb * m - s * np.log(ts / tt),
            ts * m + s * (np.log(s) - np.log(ts * m) - 1.0),
        )
    out = np.where(s == 0, s0, np.where(b == 0, b0, general))
    if not np.all(np.isfinite(out)):
        return np.inf
    return float(2.0 * np.sum(out))


def profiled_wstat(
    counts: np.ndarray, background: np.ndarray, alpha: np.ndarray, folded: np.ndarray
) -> tuple[float, float]:
    """W-stat minimised over the norm for the model shape *folded*; returns (W, n̂).

    A bounded scalar minimisation in ln n around the net-count estimate (the
    statistic is convex in n).
    """
    net = max(counts.sum() - np.sum(alpha * background), 0.1 * counts.sum()) / folded.sum()
    res = optimize.minimize_scalar(
        lambda v: wstat(counts, background, alpha, np.exp(v) * folded),
        bounds=(np.log(net) - 12.0, np.log(net) + 5.0),
        method="bounded",
        options={"xatol": 1e-11},
    )
    return float(res.fun), float(np.exp(res.x))


class _Fitter:
    """Fit band counts with one ARF: the best fit and bounds of :class:`xrmod.status.Status`.

    The statistic is profiled over the norm (and a background), in ln kT;
    :func:`xrmod.engines.pieces.fit_pieces` minimises each smooth piece
    between the model's jumps and finds the outermost crossings.
    """

    def __init__(
        self,
        fold,
        arf: np.ndarray,
        log_limits: tuple[float, float],
        delta: float,
        alpha: np.ndarray | None = None,
        jumps: tuple[float, ...] = (),
    ):
        self._fold = fold
        self._arf = arf
        self._delta = delta
        self._alpha = alpha
        #: (a, b) of each smooth piece in ln kT.
        self.pieces = smooth_pieces(log_limits, jumps)

    def statistic(
        self, counts: np.ndarray, log_kt: float, background: np.ndarray | None = None
    ) -> tuple[float, float]:
        folded = self._fold(self._arf, np.exp(log_kt))
        if background is None:
            return profiled_cstat(counts, folded)
        return profiled_wstat(counts, background, self._alpha, folded)

    def fit(
        self, counts: np.ndarray, background: np.ndarray | None = None
    ) -> tuple[np.ndarray, float, float, Status]:
        """[kT_lo, kT_fit, kT_hi], norm, statistic at the minimum, status."""
        fit = fit_pieces(
            lambda x: self.statistic(counts, x, background)[0], self.pieces, self._delta
        )
        if fit.status == Status.FIT_FAILED:
            return np.full(3, np.nan), np.nan, np.nan, Status.FIT_FAILED
        norm = self.statistic(counts, fit.x_min, background)[1]
        status = fit.status
        if fit.open_low or fit.open_high:
            status = worst(status, Status.BOUND_AT_LIMIT)
        return fit.kt(), norm, fit.c_min, status


class ReferenceEngine(Engine):
    """Reference engine (see the module docstring)."""

    name = "reference"

    def prepare(self, job: Job) -> None:
        """Restrict the RMF to the band, load the source model, keep the ARF."""
        from xrmod.models import load_model

        cfg = job.config
        rmf = job.rmf
        self._fold_matrix, rows = rmf.band_response(*cfg.instrument.band)
        self._energ_lo = np.asarray(rmf.energ_lo[rows], dtype=np.float64)
        self._energ_hi = np.asarray(rmf.energ_hi[rows], dtype=np.float64)
        self._rows = rows
        self._arf = np.asarray(job.arf.specresp, dtype=np.float64)
        self._energies = 0.5 * (job.arf.energ_lo + job.arf.energ_hi)
        self._exposure = cfg.instrument.exposure
        src = cfg.source
        self._model = load_model(
            src.model, abundance_table=src.abundance_table, cross_sections=src.cross_sections
        )
        self._model_kwargs = {
            "nH": src.nH,
            "redshift": src.redshift,
            "abundance": src.abundance,
            "norm": 1.0,
        }
        self._norm = src.norm
        self._seed = cfg.library.seed
        self._asimov = cfg.library.noise == "asimov"
        self._log_limits = tuple(float(np.log(v)) for v in cfg.fit.kt_limits)
        self._delta = cfg.fit.error_delta
        self._job = job
        self._background = job.band_background()
        self._simulate = functools.partial(
            simulate, seed=self._seed, asimov=self._asimov, background=self._background
        )
        self._alpha = None if self._background is None else self._background.alpha
        self._jumps = self._model.kt_jumps
        self._original = _Fitter(
            self.fold, self._arf[rows], self._log_limits, self._delta, self._alpha, self._jumps
        )
        log.debug("reference engine: %d band channels, %d energies", *self._fold_matrix.shape)

    def provenance(self) -> dict[str, str]:
        """The XSPEC model library the source spectra came from (:mod:`xrmod.xspec_library`)."""
        from xrmod.xspec_library import provenance

        return provenance()

    def fold(self, arf: np.ndarray, kt: float) -> np.ndarray:
        """Expected counts per band channel for norm 1: exposure · Rᵀ (A ⊙ S_kT)."""
        flux = self._model.photon_flux(self._energ_lo, self._energ_hi, kt, **self._model_kwargs)
        return self._exposure * (self._fold_matrix @ (arf * flux))

    def run_unit(self, unit: WorkUnit) -> UnitResult:
        """Modify the ARF for the unit's θ, then simulate and fit each of its points."""
        grid = self._job.grid
        n = unit.stop - unit.start
        results = np.full((n, 3), np.nan)
        results_mod = np.full((n, 3), np.nan)
        status = np.zeros(n, dtype=np.int8)  # the point and its T1 fit
        status_mod = np.zeros(n, dtype=np.int8)  # the point and its T1′ fit
        extras = {name: np.full(n, np.nan) for name in EXTRAS}

        params = {k: v for k, v in grid.theta_parameters(np.array([unit.theta])).items()}
        modified = self._job.family.apply(self._energies, self._arf, params)
        arf_status = Status(int(modified.status[0]))
        if arf_status != Status.OK:
            status[:] = status_mod[:] = arf_status
            return UnitResult(
                unit.start, unit.stop, results, results_mod, status, status_mod, extras
            )
        arf_mod = modified.values[0, self._rows]
        fitter_mod = _Fitter(
            self.fold, arf_mod, self._log_limits, self._delta, self._alpha, self._jumps
        )

        temps = grid.temperatures
        for i, flat in enumerate(range(unit.start, unit.stop)):
            kt_true = float(temps[flat % len(temps)])
            try:
                counts, bkg = self._simulate(self._norm * self.fold(arf_mod, kt_true), flat)
                extras["counts"][i] = counts.sum()
                if counts.sum() <= 0:
                    status[i] = status_mod[i] = Status.NO_COUNTS
                    continue
                r0, n0, c0, s0 = self._original.fit(counts, bkg)
                r1, n1, c1, s1 = fitter_mod.fit(counts, bkg)
            except Exception:
                log.exception("point %d failed", flat)
                status[i] = status_mod[i] = Status.ERROR
                continue
            results[i], results_mod[i] = r0, r1
            extras["norm"][i], extras["norm_modified"][i] = n0, n1
            extras["cstat"][i], extras["cstat_modified"][i] = c0, c1
            status[i], status_mod[i] = s0, s1
        return UnitResult(unit.start, unit.stop, results, results_mod, status, status_mod, extras)
