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
it. It is registered for checks only (:data:`xrmod.engines.ENGINES`): ``xrmod
check-engines`` and the tests run it, a configuration cannot name it. The fits
search ``fit.kt_limits`` from the lowest kT at which the band has counts
(:mod:`xrmod.engines.source`), as the native engine's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize

from xrmod.engines.base import Engine, PointResult
from xrmod.engines.pieces import fit_pieces, smooth_pieces
from xrmod.engines.source import BandSource
from xrmod.status import Status

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
        fold: Callable[[np.ndarray, float], np.ndarray],
        arf: np.ndarray,
        log_limits: tuple[float, float],
        delta: float,
        alpha: np.ndarray | None = None,
        jumps: tuple[float, ...] = (),
    ):
        self._fold = fold
        #: The ARF on the band's energies.
        self.arf = arf
        self._delta = delta
        self._alpha = alpha
        #: (a, b) of each smooth piece in ln kT.
        self.pieces = smooth_pieces(log_limits, jumps)

    def statistic(
        self, counts: np.ndarray, log_kt: float, background: np.ndarray | None = None
    ) -> tuple[float, float]:
        folded = self._fold(self.arf, np.exp(log_kt))
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
            status = Status.worst(status, Status.BOUND_AT_LIMIT)
        return fit.kt(), norm, fit.c_min, status


class ReferenceEngine(Engine[_Fitter]):
    """Reference engine (see the module docstring)."""

    name = "reference"

    def prepare(self, job: Job) -> None:
        """Restrict the RMF to the band, load the source model, keep the ARF."""
        inputs = self._bind(job)
        self._fold_matrix = inputs.fold_matrix
        self._source = BandSource.from_job(job)
        self._log_limits = self._source.fit_limits(inputs, source_path=job.config.source_path)
        self._alpha = None if inputs.background is None else inputs.background.alpha
        self._jumps = self._source.model.kt_jumps
        self._original = self._fitter(inputs.arf[inputs.rows])
        log.debug("reference engine: %d band channels, %d energies", *self._fold_matrix.shape)

    def provenance(self) -> dict[str, str]:
        """The XSPEC model library the source spectra came from (:mod:`xrmod.xspec_library`)."""
        from xrmod.xspec_library import provenance

        return provenance()

    def fold(self, arf: np.ndarray, kt: float) -> np.ndarray:
        """Expected counts per band channel for norm 1: exposure · Rᵀ (A ⊙ S_kT)."""
        flux = self._source.flux(kt)
        return self.inputs.exposure * (self._fold_matrix @ (arf * flux))

    def _fitter(self, arf_rows: np.ndarray) -> _Fitter:
        """The fits with the ARF *arf_rows* (on the band's energies)."""
        inputs = self.inputs
        return _Fitter(
            self.fold, arf_rows, self._log_limits, inputs.error_delta, self._alpha, self._jumps
        )

    def _modified(self, unit: WorkUnit) -> tuple[Status, _Fitter | None]:
        """Status of θ's modified ARF, and the fits with it."""
        status, arf = self._modified_arf(unit)
        if arf is None:
            return status, None
        return Status.OK, self._fitter(arf[self.inputs.rows])

    def _fit_point(self, state: _Fitter, flat: int) -> PointResult:
        """Simulate point *flat* with θ's ARF, then fit it with the original and with θ's."""
        inputs = self.inputs
        kt_true = float(inputs.temperatures[self._job.grid.point_temperature(flat)])
        counts, bkg = inputs.simulate(inputs.norm * self.fold(state.arf, kt_true), flat)
        total = counts.sum()
        if total <= 0:
            return PointResult.failed(Status.NO_COUNTS, counts=total)
        r0, n0, c0, s0 = self._original.fit(counts, bkg)
        r1, n1, c1, s1 = state.fit(counts, bkg)
        extras = {"norm": n0, "norm_modified": n1, "cstat": c0, "cstat_modified": c1}
        return PointResult(s0, s1, r0, r1, {**extras, "counts": total})
