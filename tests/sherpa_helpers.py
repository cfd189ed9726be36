"""Sherpa as an independent peer of xrmod's native engine.

Shared by ``tests/test_sherpa.py`` (agreement) and ``bench/engine.py`` (speed).
Everything on the Sherpa side is Sherpa's own: it reads the RMF and ARF
itself (``sherpa.astro.io``), folds its own ``XSTBabs * XSzbremss`` (XSPEC's
model library, the same functions xrmod calls) through them, and fits with
its own optimisers, statistic and confidence method. From xrmod it takes only
the job's numbers (config values, the grid's θ and temperatures) and the
modified ARF A′ = φθ(A) from ``job.family.apply``.

Sherpa settings and why (DESIGN §8):

- Statistic ``CStat``: XSPEC's ``cstat`` without background,
  2 Σ [m − D + D ln(D / m)].
- Free kT and norm; nH and redshift frozen at the config's values; the kT
  range is the config's ``fit.kt_limits``, as the native engine's.
- Reference fits: ``LevMar`` with ftol = xtol = gtol = 1e-12, then a
  ``NelderMead`` polish with ftol = 1e-12. LevMar alone stops up to ~2.5e-5
  (relative) short of the minimum along the kT–norm valley whatever its
  tolerances (its finite-difference Jacobian meets zbremss's float32
  parameters); the simplex polish brings Asimov fits to ~1e-8 of the truth.
  The simplex starts at 1 % steps around LevMar's answer and is not
  restarted (``finalsimplex = 0``): as precise as Sherpa's default simplex
  (1.2 absolute steps, 9 restarts) here, with a quarter of the evaluations.
- Reference bounds: ``Confidence`` (Sherpa's ``conf``) on kT alone, with
  sigma = sqrt(error_delta) (Δstat = sigma², so error_delta = 1 → sigma = 1),
  eps = 1e-4, serial, the norm re-fitted by the tight LevMar at each trial kT
  (the profile likelihood). Measured against an exact profile root (brentq
  on Sherpa's statistic with the norm re-fitted) on Asimov data at 1, 3 and
  8 keV: the default eps = 1e-2 is off by up to 3e-3 of the half-width,
  eps = 1e-4 by at most 4e-5 (≈ 0.2 s per conf), eps = 1e-6 by 3e-5 at ≈ 2 s:
  below 1e-4 the float32 model's noise, not eps, limits the bounds.
- ``SherpaPeer(job, precise=False)`` uses Sherpa's defaults instead
  (LevMar and conf as shipped): what a Sherpa user runs, for the benchmark.

Sherpa reports its progress through the ``sherpa`` logger (bound values,
"WARNING: The confidence level lies within ..." when the root bracket is
narrower than the float32 model can resolve); those records are caught per
call and kept in :attr:`SherpaFit.log` for diagnostics instead of being
printed. XSPEC's own C-level lines (``set_xsabund`` announces the table) go
through :func:`xrmod.models.silence_c_output`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xrmod.config import parse_config
from xrmod.job import Job, job_from_config
from xrmod.responses import ARF, RMF

#: Set to 1 (CI does) to make a missing Sherpa a test failure instead of a skip.
REQUIRE_ENV = "XRMOD_REQUIRE_SHERPA"


def import_sherpa_xspec() -> Any:
    """``sherpa.astro.xspec``, imported the way DESIGN §8 says; ImportError if unusable."""
    import xspectrampoline_helpers  # noqa: F401  (must precede sherpa.astro.xspec)
    from sherpa.astro import xspec

    for name in ("XSTBabs", "XSzbremss", "set_xsabund", "set_xsxsect"):
        if not hasattr(xspec, name):
            raise ImportError(f"sherpa.astro.xspec has no {name} (Sherpa without XSPEC models?)")
    return xspec


def sherpa_xspec_or_skip() -> Any:
    """``sherpa.astro.xspec`` for a test module; skip it visibly where Sherpa is unusable.

    Not ``pytest.importorskip``: Sherpa built without XSPEC raises a plain
    ImportError (not ModuleNotFoundError), for which importorskip warns on
    pytest >= 8.2 (an error here), and xspectrampoline_helpers must be
    imported first anyway. With ``XRMOD_REQUIRE_SHERPA=1`` (CI) a missing
    Sherpa fails the module instead.
    """
    import os

    import pytest

    try:
        return import_sherpa_xspec()
    except (ImportError, OSError) as exc:
        missing = f"Sherpa with XSPEC models is not importable ({type(exc).__name__}: {exc})"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(
            f"{REQUIRE_ENV}=1 but {missing}; install it as DESIGN.md §8 says "
            "(pip install sherpa==4.19.0 -Csetup-args=-Dxspec-prefix=$HEADAS of xspectrampoline)",
            pytrace=False,
        )
    pytest.skip(f"{missing}; set {REQUIRE_ENV}=1 to make this a failure", allow_module_level=True)


def job_from_text(text: str, *, arf: ARF | None = None, rmf: RMF | None = None) -> Job:
    """A Job from TOML text (``parse_config``), as ``load_job`` builds it from a file.

    Already-read responses can be passed in to save reading the bundled ones again.
    """
    cfg = parse_config(text, source="<test>")
    return job_from_config(cfg, output="unused.h5", arf=arf, rmf=rmf)


@contextlib.contextmanager
def captured_sherpa_log(records: list[str]) -> Iterator[None]:
    """Collect the ``sherpa`` logger's messages into *records* instead of printing them."""

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.levelname}: {record.getMessage()}")

    logger = logging.getLogger("sherpa")
    saved = logger.handlers[:], logger.propagate, logger.level
    # Sherpa attaches its own stream handler to this logger: swap it out too.
    logger.handlers = [_Collect(level=logging.DEBUG)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers, logger.propagate, logger.level = saved


@dataclass
class SherpaFit:
    """One Sherpa fit: [kT_lo, kT_fit, kT_hi] (NaN bounds when not asked), norm, C-stat.

    ``nfev`` counts the optimisers' statistic evaluations plus ``conf``'s
    re-fits; ``log`` holds what Sherpa logged meanwhile.
    """

    bounds: np.ndarray
    norm: float
    stat: float
    nfev: int
    log: list[str] = field(default_factory=list)

    @property
    def kt(self) -> float:
        return float(self.bounds[1])


class SherpaPeer:
    """Sherpa set up for one job: responses, source model, band, statistic, methods.

    Parameters
    ----------
    job : xrmod.job.Job
        Its config gives the responses, exposure, band, model parameters,
        abundance and cross-section tables, kT limits and error_delta.
    precise : bool
        Tight reference settings (module docstring) or Sherpa's defaults.
    cache : {"all", "absorber", "none"}
        Sherpa's per-component cache of recent model values: on for both
        components (Sherpa's default), only for the absorber (its nH is
        frozen, so it is evaluated once, like the native engine's cached
        transmission; the emission is recomputed at every evaluation, with
        no free repeats), or off.
    conf_eps : float
        ``eps`` of the tight ``conf`` (see the module docstring).
    """

    def __init__(
        self, job: Job, *, precise: bool = True, cache: str = "all", conf_eps: float = 1e-4
    ):
        from sherpa.astro.io import read_arf as sherpa_read_arf
        from sherpa.astro.io import read_rmf as sherpa_read_rmf

        from xrmod.models import silence_c_output

        xspec = import_sherpa_xspec()
        cfg = job.config
        src = cfg.source
        if src.model != "tbabs*zbremss":
            raise ValueError(f"SherpaPeer knows tbabs*zbremss only, not {src.model}")
        self.job = job
        self.precise = precise
        self.conf_eps = conf_eps
        self.exposure = cfg.instrument.exposure
        self.norm_true = src.norm
        self.delta = cfg.fit.error_delta
        self.seed = cfg.library.seed
        self._xspec = xspec
        self._tables = (src.abundance_table, src.cross_sections)
        self.activate()
        self.rmf = sherpa_read_rmf(str(cfg.instrument.rmf))
        self.arf = sherpa_read_arf(str(cfg.instrument.arf))
        lo, hi = cfg.instrument.band
        # The EBOUNDS overlap rule of the config (and of RMF.band_channels):
        # a channel is fitted when [E_MIN, E_MAX] overlaps the band by a non-zero width.
        self.band = (self.rmf.e_min < hi) & (self.rmf.e_max > lo)
        self.channels = np.arange(self.rmf.detchans, dtype=np.int64) + int(self.rmf.offset)

        self.absorber = xspec.XSTBabs("tbabs")
        self.absorber.nH = src.nH
        self.absorber.nH.freeze()
        self.emission = xspec.XSzbremss("zbremss")
        self.emission.redshift = src.redshift
        self.emission.redshift.freeze()
        kt_lo, kt_hi = cfg.fit.kt_limits
        self.emission.kT.set(val=float(np.sqrt(kt_lo * kt_hi)), min=kt_lo, max=kt_hi)
        if cache not in ("all", "absorber", "none"):
            raise ValueError(f"cache must be 'all', 'absorber' or 'none', not {cache!r}")
        if cache == "none":
            self.absorber.cache = 0
        if cache != "all":
            self.emission.cache = 0
        self.source = self.absorber * self.emission
        self._theta_arfs: dict[int, Any] = {}
        with silence_c_output():  # tbabs prints a banner on its first evaluation
            self.expected_counts(self.arf, float(src.temperatures[0]))

    def activate(self) -> None:
        """Make the config's abundance and cross-section tables XSPEC's current ones.

        They are process-wide state shared with xrmod's own model calls and
        with other peers, so every evaluation and fit here sets them first.
        """
        from xrmod.models import silence_c_output

        abund, xsect = self._tables
        if (self._xspec.get_xsabund(), self._xspec.get_xsxsect()) != (abund, xsect):
            with silence_c_output():  # XSPEC announces each table on stdout
                self._xspec.set_xsabund(abund)
                self._xspec.set_xsxsect(xsect)

    # ------------------------------------------------------------ inputs

    def theta_arf(self, theta: int) -> Any:
        """Sherpa DataARF of A′ = φθ(A) for flat θ index *theta* (A as Sherpa read it)."""
        if theta not in self._theta_arfs:
            from sherpa.astro.instrument import create_arf

            grid = self.job.grid
            mid = 0.5 * (self.arf.energ_lo + self.arf.energ_hi)
            params = grid.theta_parameters(np.array([theta]))
            modified = self.job.family.apply(mid, self.arf.specresp, params)
            if int(modified.status[0]) != 1:
                raise ValueError(f"θ {theta} gives an invalid ARF (status {modified.status[0]})")
            self._theta_arfs[theta] = create_arf(
                self.arf.energ_lo, self.arf.energ_hi, specresp=modified.values[0]
            )
        return self._theta_arfs[theta]

    def _pha(
        self, counts: np.ndarray, arf: Any, background: np.ndarray | None = None
    ) -> tuple[Any, Any]:
        from sherpa.astro.data import DataPHA
        from sherpa.astro.instrument import Response1D

        inst = self.job.config.instrument
        pha = DataPHA("xrmod", self.channels, counts, exposure=self.exposure)
        if background is not None:  # Sherpa scales it by its own EXPOSURE x BACKSCAL x AREASCAL
            bkg = self.job.background
            pha.backscal = inst.backscal
            pha.set_background(
                DataPHA(
                    "xrmod-bkg",
                    self.channels,
                    np.asarray(background, dtype=np.float64),
                    exposure=bkg.exposure,
                    backscal=bkg.backscal,
                    areascal=bkg.areascal,
                )
            )
        pha.set_rmf(self.rmf)
        pha.set_arf(arf)
        pha.mask = self.band.copy()  # exactly the band channels, no energy-filter rounding
        return pha, Response1D(pha)(self.source)

    def expected_counts(self, arf: Any, kt: float, norm: float | None = None) -> np.ndarray:
        """μ per channel (all channels) from Sherpa's folding of its own model evaluation."""
        self.activate()
        self.emission.kT = kt
        self.emission.norm = self.norm_true if norm is None else norm
        pha, model = self._pha(np.zeros(self.channels.size), arf)
        return np.asarray(pha.eval_model(model), dtype=np.float64)

    def spectra(self, mu: np.ndarray, flat_index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The engine's data for grid point *flat_index* from Sherpa's μ (all channels).

        Returns (source counts, background counts or None). With the job's
        background B (its file) the source mean is μ + αB, α = exposure ·
        backscal / (EXPOSURE · BACKSCAL · AREASCAL of the file). Asimov: the
        means. Poisson: the engine's stream ``SeedSequence((seed, flat_index))``
        over the band channels (DESIGN §5), the source first, then a new
        background; outside the band the source has 0 counts (not fitted) and
        the background its file's.
        """
        job = self.job
        bkg = job.background
        mean = mu
        if bkg is not None:
            inst = job.config.instrument
            alpha = inst.exposure * inst.backscal / (bkg.exposure * bkg.backscal * bkg.areascal)
            mean = mu + alpha * bkg.counts
        background = None if bkg is None else np.array(bkg.counts)
        if job.config.library.noise == "asimov":
            return mean, background
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, flat_index)))
        counts = np.zeros_like(mean)
        counts[self.band] = rng.poisson(mean[self.band])
        if background is not None:
            background[self.band] = rng.poisson(bkg.counts[self.band])
        return counts, background

    # ------------------------------------------------------------ fitting

    def _methods(self) -> tuple[list[Any], Any]:
        from sherpa.estmethods import Confidence
        from sherpa.optmethods import LevMar, NelderMead

        conf = Confidence()
        conf.config.update(sigma=math.sqrt(self.delta), parallel=False)
        if not self.precise:
            return [LevMar()], conf
        levmar = LevMar()
        levmar.config.update(ftol=1e-12, xtol=1e-12, gtol=1e-12)
        simplex = NelderMead()
        simplex.config.update(ftol=1e-12, finalsimplex=0)
        conf.config.update(eps=self.conf_eps)
        return [levmar, simplex], conf

    def fit(
        self,
        counts: np.ndarray,
        arf: Any,
        *,
        bounds: bool = True,
        start_kt: float | None = None,
        background: np.ndarray | None = None,
        kt_range: tuple[float, float] | None = None,
    ) -> SherpaFit:
        """Fit *counts* (all channels) with *arf*; kT bounds by ``conf`` when *bounds*.

        The fit starts from kT = *start_kt* (default: the geometric middle of
        the kT limits) and the norm that matches the counts at that kT. With
        *background* counts (all channels; the job's background file gives
        their exposure and scales) the statistic is Sherpa's ``WStat``. With
        *kt_range* = (min, max) kT is kept in that range for this fit (one
        smooth piece of the model between its jumps) instead of the config's limits.
        """
        if kt_range is not None:
            saved = (self.emission.kT.val, self.emission.kT.min, self.emission.kT.max)
            lo, hi = kt_range
            start = math.sqrt(lo * hi) if start_kt is None else min(max(start_kt, lo), hi)
            self.emission.kT.set(val=start, min=lo, max=hi)
            try:
                return self.fit(counts, arf, bounds=bounds, start_kt=start, background=background)
            finally:
                self.emission.kT.set(val=saved[0], min=saved[1], max=saved[2])
        from sherpa.fit import Fit
        from sherpa.optmethods import NelderMead
        from sherpa.stats import CStat, WStat

        self.activate()
        pha, model = self._pha(np.asarray(counts, dtype=np.float64), arf, background)
        kt_lo, kt_hi = self.job.config.fit.kt_limits
        kt0 = float(np.sqrt(kt_lo * kt_hi)) if start_kt is None else float(start_kt)
        # Start the norm where the model matches the band counts at kt0.
        self.emission.kT = kt0
        self.emission.norm = 1.0
        unit = float(np.sum(pha.eval_model_to_fit(model)))
        self.emission.norm = float(np.sum(counts[self.band])) / unit
        methods, conf = self._methods()
        log: list[str] = []
        nfev = 0
        with captured_sherpa_log(log):
            stat = CStat() if background is None else WStat()
            fitter = Fit(pha, model, stat, methods[0], conf)
            for method in methods:
                if isinstance(method, NelderMead):  # 1 % steps around LevMar's answer
                    free = [self.emission.kT.val, self.emission.norm.val]
                    method.config["step"] = 0.01 * np.abs(np.array(free))
                fitter.method = method
                result = fitter.fit()
                nfev += int(result.nfev)
            if not result.succeeded:
                raise RuntimeError(f"Sherpa fit failed: {result.message}")
            kt, norm, stat = self.emission.kT.val, self.emission.norm.val, float(result.statval)
            lo = hi = math.nan
            if bounds:
                # The bounds are re-fits of the norm: use the (tight) LevMar for them.
                fitter.method = methods[0]
                errors = fitter.est_errors(parlist=(self.emission.kT,))
                nfev += int(errors.nfits)
                lo_d, hi_d = errors.parmins[0], errors.parmaxes[0]
                lo = math.nan if lo_d is None else kt + lo_d
                hi = math.nan if hi_d is None else kt + hi_d
                # conf leaves the parameters at the best fit; check it did not move.
                if abs(self.emission.kT.val - kt) > 1e-9 * kt:
                    raise RuntimeError("Sherpa conf moved the best fit (found a new minimum)")
        return SherpaFit(np.array([lo, kt, hi]), float(norm), stat, nfev, log)

    def profile(self, counts: np.ndarray, arf: Any, kt: float) -> float:
        """Sherpa's C-stat of *counts* with kT frozen at *kt* and the norm fitted.

        The profile likelihood in kT, evaluated by Sherpa alone (its model,
        fold, statistic and the tight LevMar on the norm): independent of
        xrmod's closed-form profile.
        """
        from sherpa.fit import Fit
        from sherpa.stats import CStat

        self.activate()
        pha, model = self._pha(np.asarray(counts, dtype=np.float64), arf)
        saved = self.emission.kT.val
        self.emission.kT.val = kt
        self.emission.kT.freeze()
        try:
            self.emission.norm = 1.0
            unit = float(np.sum(pha.eval_model_to_fit(model)))
            self.emission.norm = float(np.sum(counts[self.band])) / unit
            log: list[str] = []
            with captured_sherpa_log(log):
                result = Fit(pha, model, CStat(), self._methods()[0][0]).fit()
            if not result.succeeded:
                raise RuntimeError(f"Sherpa norm fit at kT = {kt} failed: {result.message}")
            return float(result.statval)
        finally:
            self.emission.kT.thaw()
            self.emission.kT.val = saved
