"""The ``xspec`` engine: XSPEC itself, through PyXSPEC, inside HEASoft.

The seed pipeline's own path, made batch-safe. PyXSPEC is imported here only,
and only by :meth:`XspecEngine.prepare`: importing this module never needs
HEASoft. XSPEC is one session per process, so one prepared engine owns it at a
time (a second engine taking it over makes the first set the session up
again before its next unit).

* **Per process** (:meth:`~XspecEngine.prepare`): ``Xset.chatter = 0``,
  ``Xset.logChatter = 0``, ``Xset.allowPrompting = False``, the abundance and
  cross-section tables of ``[source]``, ``Fit.statMethod = "cstat"`` (with a
  background XSPEC's cstat is the W-statistic), ``Fit.query = "no"`` (a fit
  that has not converged after ``Fit.nIterations`` stops instead of prompting
  or looping; its error search then finds a new minimum, see below). A
  private scratch directory (``tempfile.mkdtemp``) receives a copy of the
  original ARF and a template source spectrum (zero counts, ``EXPOSURE``,
  ``BACKSCAL`` = ``instrument.backscal``, channels of the RMF), which is loaded
  once with the RMF, the original ARF and the background: the RMF is read
  once per process. The model ``ABS*EMIS`` of the job has nH, redshift and
  abundance frozen at the config's values, kT and norm free, kT's soft and
  hard limits at ``fit.kt_limits``.
* **Per work unit** (one θ): the modified ARF A′ is written to the scratch
  directory (one file per unit) and removed when the unit ends.
* **Per point**: ``Xset.seed`` from the point's flat index
  (:func:`point_seed`), A′ loaded, kT and norm set to the truth,
  ``AllData.fakeit(1, FakeitSettings(background, exposure), applyStats=noise
  != "asimov", noWrite=True)`` (a fake based on the loaded spectrum keeps its
  response, so the RMF is not read again), the band noticed by channel
  number (exactly the channels :meth:`xrmod.responses.RMF.band_channels`
  selects: XSPEC numbers a spectrum's channels from 1 in file order), then
  the fit with the original ARF (T1) and, after swapping the ARF back to A′,
  the fit with A′ (T1′). Each fit starts at the true kT and the simulated
  norm, runs ``Fit.perform()`` and ``Fit.error("stopat N tol maximum R
  <error_delta> <kT index>")``.

What XSPEC 12.9.1 (HEASoft 6.20) really does in its error search
(``XSFit/Fit/FitErrorCalc.cxx``, ``Fit.cxx``; each case seen on real fits):

* Meeting a statistic lower than the best fit by more than the fit's
  critical delta, it sets *new minimum found*, fits again from there, sets
  the parameters to that fit ("New best fit found, fit parameters will be
  set to new values") and, with auto-repeat on (the default), repeats the
  whole search, which starts with a clean error string. So the best fit is
  read after ``Fit.error``, never before (a fit stopped short of its minimum
  otherwise lay outside the bounds and came out ``FIT_FAILED``).
* *non-monotonicity detected*: a trial inside the bracket gave a statistic
  outside the bracket's values ("Apparent non-monotonicity in statistic
  space detected ... check this result using the steppar command"); the bound
  is the bracket's midpoint. Seen where the search steps across one of the
  model's jumps (zbremss at 13.58 keV).
* *search failed in −ve (+ve) direction*: "Identical values of the parameter
  give different values of the statistic", or the trials ran out before the
  statistic came within the tolerance of the target (seen: the bracket
  collapsed onto 6.1417 keV with Δstat 0.988 and 1.002 — the statistic of
  XSPEC's refits is noisy at ~0.01).
* *hit hard lower (upper) limit*, with *search failed* in that direction:
  the bound passes the kT limit (the bound is returned as 0); a best fit
  pegged at a limit gives the same flags on that side.

The outcome of a fit (the definition is :class:`xrmod.status.Status`'s, the
same in every engine; :func:`interpret_error` reads the flags):

=====================================  =====================================
XSPEC's result                         outcome
=====================================  =====================================
no flag                                ``OK`` (after the check below)
hit hard lower (upper) limit, or the   ``BOUND_AT_LIMIT``: that bound NaN,
best fit pegged at a kT limit          the other kept when valid
new minimum found still set after      the profile search below decides;
:data:`NEW_MINIMUM_RETRIES` fits,      ``FIT_FAILED`` (all three values NaN)
non-monotonicity, search failed, a     only where it fails too, or where
minimization problem, reduced          XSPEC gave no best fit
statistic too high, parameter frozen
(not at a limit)
=====================================  =====================================

**The check across jumps.** Where XSPEC's search failed (XSPEC itself asks
for a check with ``steppar``), or a jump of the model lies within
:data:`JUMP_REACH` of the best fit or a bound, the engine computes the fit of
:class:`~xrmod.status.Status` on XSPEC's own profile statistic (kT frozen, the
norm fitted) with :func:`xrmod.engines.pieces.fit_pieces`: the global minimum
over the smooth pieces between the jumps in a window around the fit, and the
outermost crossings of C_min + Δ; ``MODEL_JUMP`` where the best fit sits at a
jump or the confidence region ends at or is split by one. It costs about
2 s per fit (≈ 100 profile evaluations of ~24 ms) and is needed for few fits.

Each fit has its own status (T1: ``status``, T1′: ``status_modified``); any
exception XSPEC raises inside a point makes that point ``ERROR`` in both,
with NaN results, logged, and the unit goes on.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from xrmod.engines.base import Engine, PointResult, UnitResult
from xrmod.engines.pieces import fit_pieces, smooth_pieces
from xrmod.errors import ConfigError, EngineError, XrmodError
from xrmod.models import KT_JUMPS, silence_c_output
from xrmod.responses import write_pha
from xrmod.status import Status

if TYPE_CHECKING:
    from xrmod.grid import WorkUnit
    from xrmod.job import Job
    from xrmod.responses import RMF

__all__ = [
    "ERROR_FLAGS",
    "MISSING_PYXSPEC",
    "NEW_MINIMUM_RETRIES",
    "XspecEngine",
    "band_ignore_ranges",
    "channel_ranges",
    "ignore_ranges",
    "interpret_error",
    "point_seed",
]

log = logging.getLogger(__name__)

#: The message of the :class:`~xrmod.errors.EngineError` raised where PyXSPEC does not import.
MISSING_PYXSPEC = (
    "engine 'xspec' needs PyXSPEC (HEASoft); run inside the xrmod container "
    'or use engine = "native"'
)

#: The nine flags of XSPEC's error string, in order (XSPEC manual, ``tclout error``).
ERROR_FLAGS = (
    "new minimum found",
    "non-monotonicity detected",
    "minimization may have run into problem",
    "hit hard lower limit",
    "hit hard upper limit",
    "parameter was frozen",
    "search failed in -ve direction",
    "search failed in +ve direction",
    "reduced chi-squared too high",
)
_NEW_MINIMUM, _NON_MONOTONIC, _MINIMIZATION, _HARD_LOWER, _HARD_UPPER = range(5)
_FROZEN, _SEARCH_LOWER, _SEARCH_UPPER, _TOO_HIGH = range(5, 9)
_FAILED_FLAGS = (_NEW_MINIMUM, _NON_MONOTONIC, _MINIMIZATION, _TOO_HIGH)

#: Times fit + error run again when the error search found a new minimum.
NEW_MINIMUM_RETRIES = 3
#: ``Fit.nIterations``: Levenberg-Marquardt trials before a fit stops (``Fit.query = "no"``).
FIT_ITERATIONS = 1000
#: ``Fit.criticalDelta``: statistic change that ends a fit (XSPEC's default is 0.01).
FIT_CRITICAL_DELTA = 1.0e-4
#: ``error stopat <trials> <tolerance>``: the bound search's trials and statistic tolerance.
ERROR_TRIALS = 1000
ERROR_TOLERANCE = 1.0e-3
#: ``error maximum <redstat>``: never refuse a bound for a large reduced statistic.
ERROR_MAX_REDUCED = 1.0e6
#: Relative distance to a kT limit within which a best fit counts as pegged there.
PEG_RTOL = 1.0e-6
#: A jump of the source model within this factor (kT) of a fit's best value or bounds
#: makes the engine check XSPEC's answer with the profile search across the jump.
JUMP_REACH = 1.25
#: Half-width (a factor in kT) of the window of that search, doubled while the
#: confidence region reaches its edge.
PROFILE_WINDOW = 1.5
#: Resolution of XSPEC's profile statistic: its refits of the norm scatter by ~0.01
#: (seen in its error search; a best fit this close to C at a jump sits at the jump).
PROFILE_RESOLUTION = 0.02
#: Initial fit step of kT and norm, relative to their starting values.
_STEP = 0.01
#: XSPEC's default hard limits of an additive model's norm.
_NORM_LIMITS = (0.0, 1.0e24)

#: Parameters of the supported model components, in XSPEC's order (its model.dat).
_COMPONENT_PARAMETERS = {
    "tbabs": ("nH",),
    "phabs": ("nH",),
    "wabs": ("nH",),
    "bremss": ("kT",),
    "zbremss": ("kT", "Redshift"),
    "apec": ("kT", "Abundanc", "Redshift"),
}

# The engine whose set-up the (process-wide) XSPEC session holds.
_session_owner: weakref.ref | None = None


def point_seed(seed: int, flat_index: int) -> int:
    """``Xset.seed`` of one point: a positive 31-bit int from ``SeedSequence((seed, flat_index))``.

    The same entropy as the native engine's Poisson stream of that point, so
    a point's draw depends on (seed, flat index) only, never on the rank or
    the order of work (XSPEC's own generator, so not the same draw).
    """
    state = np.random.SeedSequence((int(seed), int(flat_index))).generate_state(1, np.uint32)
    return int(state[0]) % (2**31 - 1) + 1


def channel_ranges(positions: np.ndarray) -> str:
    """XSPEC channel ranges (``"3-7 9 12-20"``) covering the sorted 1-based *positions*."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return ""
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate([positions[:1], positions[breaks + 1]])
    stops = np.concatenate([positions[breaks], positions[-1:]])
    return " ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts, stops, strict=True))


def ignore_ranges(mask: np.ndarray) -> str:
    """The channels to ``ignore`` so that XSPEC fits those of the channel *mask*.

    XSPEC numbers a spectrum's channels from 1 in file order, whatever the
    first channel number (``TLMIN``), so channel column j is XSPEC channel j + 1.
    """
    return channel_ranges(np.flatnonzero(~np.asarray(mask, dtype=bool)) + 1)


def band_ignore_ranges(rmf: RMF, band: tuple[float, float]) -> tuple[str, int]:
    """The channels to ``ignore`` so that XSPEC fits the band, and how many remain.

    The channels kept are those of :meth:`RMF.band_channels` (:func:`ignore_ranges`).
    """
    mask = rmf.band_channels(*band)
    return ignore_ranges(mask), int(mask.sum())


def interpret_error(
    best: float, error: tuple[float, float, str], limits: tuple[float, float]
) -> tuple[np.ndarray, Status]:
    """[kT_lo, kT_fit, kT_hi] and status from a best fit and XSPEC's error result.

    Parameters
    ----------
    best : float
        Best-fit kT (keV).
    error : tuple
        ``Parameter.error`` after ``Fit.error``: (lower bound, upper bound,
        the nine-letter T/F string of :data:`ERROR_FLAGS`).
    limits : tuple of float
        The kT hard limits of the fit (``fit.kt_limits``).

    Returns
    -------
    values : numpy.ndarray
        (3,) float64; NaN where there is no valid value.
    status : Status
        See the module docstring's table.
    """
    nan = np.full(3, np.nan)
    lo, hi, flags = error
    flags = str(flags).strip().upper()
    if len(flags) != len(ERROR_FLAGS) or set(flags) - {"T", "F"}:
        log.error("unreadable XSPEC error string %r", flags)
        return nan, Status.ERROR
    on = {i for i, c in enumerate(flags) if c == "T"}
    best, lo, hi = float(best), float(lo), float(hi)
    if not math.isfinite(best) or on.intersection(_FAILED_FLAGS):
        return nan, Status.FIT_FAILED
    k_lo, k_hi = limits
    pegged_lo = best <= k_lo * (1.0 + PEG_RTOL)
    pegged_hi = best >= k_hi * (1.0 - PEG_RTOL)
    pegged = pegged_lo or pegged_hi
    if _FROZEN in on and not pegged:
        return nan, Status.FIT_FAILED
    out = np.array([lo, best, hi])
    status = Status.OK
    searched = _FROZEN not in on  # XSPEC searches no bound of a frozen (pegged) parameter
    sides = (
        (0, _HARD_LOWER, _SEARCH_LOWER, pegged_lo, searched and k_lo <= lo < best),
        (2, _HARD_UPPER, _SEARCH_UPPER, pegged_hi, searched and best < hi <= k_hi),
    )
    for column, hard, search, at_limit, valid in sides:
        if hard in on or at_limit:
            out[column] = np.nan
            status = Status.BOUND_AT_LIMIT
        elif valid and search not in on:
            continue
        elif pegged:  # the other side of a pegged fit: no bound, the limit is the cause
            out[column] = np.nan
        else:
            return nan, Status.FIT_FAILED
    return out, status


def _write_template(path: Path, rmf: RMF, *, exposure: float, backscal: float) -> None:
    """A source spectrum with zero counts that fakeit replaces (OGIP/92-007, type I).

    It carries what fakeit takes from a loaded spectrum: the channels, the
    response (set after loading), ``EXPOSURE`` and ``BACKSCAL``.
    """
    write_pha(
        path,
        rmf.channels,
        np.zeros(rmf.channels.size),
        exposure=exposure,
        backscal=backscal,
        telescope=rmf.telescope,
        instrument=rmf.instrument,
        overwrite=True,
    )


def _importable(name: str) -> bool:
    """Whether ``import name`` would find a module that is not imported yet."""
    if name in sys.modules:
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _import_xspec() -> ModuleType:
    """PyXSPEC, imported quietly, or EngineError (missing, or another XSPEC loaded here)."""
    from xrmod.xspec_library import loaded_elsewhere

    others = loaded_elsewhere(os.environ.get("HEADAS", "")) if _importable("xspec") else []
    if others:
        raise EngineError(
            f"this process has XSPEC's model library from {others[0]} loaded already (the "
            "native engine's, or Sherpa's); PyXSPEC would be bound to it instead of "
            "HEASoft's: run the xspec engine in a process of its own"
        )
    unset = [name for name in ("HEADAS", "HOME") if not os.environ.get(name)]
    if unset and _importable("xspec"):  # XSPEC aborts the process without them
        raise EngineError(
            f"PyXSPEC needs {' and '.join(unset)} set (HEASoft's headas-init.sh sets "
            "HEADAS; XSPEC keeps its settings in $HOME/.xspec)"
        )
    try:
        with warnings.catch_warnings(), silence_c_output():
            # PyXSPEC 2.0 (HEASoft 6.20) compares with literals using `is`
            warnings.simplefilter("ignore", SyntaxWarning)
            import xspec
    except (ImportError, OSError) as e:
        raise EngineError(f"{MISSING_PYXSPEC} (import xspec: {e})") from e
    except Exception as e:  # std::logic_error when HEADAS is not set, and the like
        raise EngineError(f"PyXSPEC failed to import: {type(e).__name__}: {e}") from e
    return xspec


class XspecEngine(Engine):
    """PyXSPEC engine (see the module docstring).

    Call :meth:`close` (or let the engine be garbage-collected) to remove its
    scratch directory.

    Attributes
    ----------
    error_command : str
        The argument of every ``Fit.error`` call (set by :meth:`prepare`).
    """

    name = "xspec"

    def __init__(self) -> None:
        self._xspec: ModuleType | None = None
        self._scratch: Path | None = None
        self._finalizer: weakref.finalize | None = None
        self._loaded_arf: str | None = None

    # ------------------------------------------------------------------ prepare

    def prepare(self, job: Job) -> None:
        """Import PyXSPEC, configure the session, load the response once.

        Raises
        ------
        xrmod.errors.EngineError
            PyXSPEC does not import here, or XSPEC fails to load the response.
        xrmod.errors.ConfigError
            The model evaluates to zeros (e.g. apec without atomic data).
        """
        xspec = _import_xspec()
        self.close()  # a second prepare starts afresh
        try:
            self._prepare(xspec, job)
        except BaseException:
            self.close()
            raise

    def _prepare(self, xspec: ModuleType, job: Job) -> None:
        from xrmod.models import parse_expression
        from xrmod.responses import write_arf, write_rmf

        cfg = job.config
        src = cfg.source
        self._xspec = xspec
        inputs = self._bind(job)
        absorber, emission = parse_expression(src.model)
        self._expression = f"{absorber}*{emission}"
        names = [*_COMPONENT_PARAMETERS[absorber], *_COMPONENT_PARAMETERS[emission], "norm"]
        self._index = {name: i + 1 for i, name in enumerate(names)}  # XSPEC counts from 1
        # a redshift on a model without one is refused by the config (xrmod.config)
        self._frozen = {"nH": src.nH, "Redshift": src.redshift, "Abundanc": src.abundance}
        self._jumps = KT_JUMPS.get(emission, ())
        self.error_command = (
            f"stopat {ERROR_TRIALS} {ERROR_TOLERANCE:g} maximum {ERROR_MAX_REDUCED:g} "
            f"{inputs.error_delta!r} {self._index['kT']}"
        )
        self._ignore = ignore_ranges(inputs.band_mask)

        scratch = Path(tempfile.mkdtemp(prefix=f"xrmod-xspec-{os.getpid()}-"))
        self._scratch = scratch
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(scratch), ignore_errors=True)
        arf = job.arf
        self._original_arf = str(scratch / "original.arf")
        write_arf(
            self._original_arf,
            arf.energ_lo,
            arf.energ_hi,
            arf.specresp,
            telescope=arf.telescope,
            instrument=arf.instrument,
        )
        rmf = job.rmf
        if rmf.path is not None:
            self._rmf = str(rmf.path)
        else:  # built in memory: XSPEC needs a file
            self._rmf = str(scratch / "response.rmf")
            write_rmf(
                self._rmf,
                rmf.energ_lo,
                rmf.energ_hi,
                rmf.matrix,
                rmf.e_min,
                rmf.e_max,
                first_channel=rmf.first_channel,
                telescope=rmf.telescope,
                instrument=rmf.instrument,
            )
        self._background_file = str(job.background.path) if job.background is not None else ""
        self._template = str(scratch / "template.pha")
        _write_template(
            Path(self._template),
            rmf,
            exposure=inputs.exposure,
            backscal=float(cfg.instrument.backscal),
        )
        self._fake_name = str(scratch / "fake.pha")
        self._activate()
        log.debug(
            "xspec engine: %s, %d band channels, scratch %s",
            self._expression,
            inputs.n_band,
            scratch,
        )

    def _activate(self) -> None:
        """Set the XSPEC session up for this engine: settings, spectrum, response, model.

        What XSPEC prints meanwhile (the tbabs banner on its first evaluation)
        is kept out of the output (logged at DEBUG), as during every point.
        """
        with silence_c_output():
            self._set_up_session()

    def _set_up_session(self) -> None:
        global _session_owner
        xs = self._xspec
        try:
            xs.Xset.chatter = 0
            xs.Xset.logChatter = 0
            xs.Xset.allowPrompting = False
            src = self._job.config.source
            xs.Xset.abund = src.abundance_table
            xs.Xset.xsect = src.cross_sections
            xs.Fit.statMethod = "cstat"
            xs.Fit.query = "no"
            xs.Fit.nIterations = FIT_ITERATIONS
            xs.Fit.criticalDelta = FIT_CRITICAL_DELTA
            xs.AllData.clear()
            xs.AllModels.clear()
            spectrum = xs.Spectrum(self._template)
            spectrum.response = self._rmf  # the one read of the RMF
            spectrum.response.arf = self._original_arf
            self._loaded_arf = self._original_arf
            if self._background_file:
                spectrum.background = self._background_file
            self._model = xs.Model(self._expression)
            for name, value in self._frozen.items():
                if name in self._index:
                    par = self._model(self._index[name])
                    par.values = float(value)
                    par.frozen = True
            self._set_start(float(self.inputs.temperatures[0]))
            self._notice(spectrum)
            noticed = len(spectrum.noticed)
            flux = np.asarray(self._model.values(1), dtype=np.float64)
        except XrmodError:
            raise
        except Exception as e:
            raise EngineError(f"XSPEC could not set up the job: {e}") from e
        if noticed != self.inputs.n_band:
            raise EngineError(
                f"XSPEC notices {noticed} channels in the band, xrmod selects {self.inputs.n_band}"
            )
        if not (np.isfinite(flux).all() and flux.any()):
            raise ConfigError(
                f"{self._expression} evaluates to zeros or non-finite values in XSPEC "
                f"(kT = {self.inputs.temperatures[0]:g} keV); apec needs HEASoft's atomic data",
                path=self._job.config.source_path,
                key="source.model",
            )
        _session_owner = weakref.ref(self)

    def provenance(self) -> dict[str, str]:
        """The XSPEC that fitted: its version and PyXSPEC's, as ``Xset.version`` reports them."""
        if self._xspec is None:
            raise EngineError("the xspec engine is not prepared (call prepare first)")
        pyxspec, version = (str(v) for v in self._xspec.Xset.version)
        headas = os.environ.get("HEADAS", "?")
        return {
            "xspec_models": f"XSPEC {version} from HEASoft, PyXSPEC {pyxspec} ({headas})",
            "xspec_models_origin": "heasoft",
            "xspec_models_version": version,
            "pyxspec_version": pyxspec,
        }

    def close(self) -> None:
        """Release the XSPEC session (if this engine holds it) and remove the scratch directory."""
        global _session_owner
        if _session_owner is not None and _session_owner() is self:
            try:
                self._xspec.AllData.clear()
                self._xspec.AllModels.clear()
            except Exception:
                log.warning("XSPEC failed to clear its data and models", exc_info=True)
            _session_owner = None
        if self._finalizer is not None:
            self._finalizer()  # removes the scratch directory (once)
            self._finalizer = None
        self._loaded_arf = None

    @property
    def scratch(self) -> Path | None:
        """The engine's scratch directory (None before prepare and after close)."""
        return self._scratch if self._finalizer is not None else None

    # ------------------------------------------------------------------ XSPEC steps

    def _set_start(self, kt: float) -> None:
        """Put kT and norm at the simulated truth (every fit's start), kT's limits as configured."""
        lo, hi = self.inputs.kt_limits
        self._model(self._index["kT"]).values = [kt, _STEP * kt, lo, lo, hi, hi]
        n_lo, n_hi = _NORM_LIMITS
        norm = self.inputs.norm
        self._model(self._index["norm"]).values = [norm, _STEP * norm, n_lo, n_lo, n_hi, n_hi]

    def _notice(self, spectrum: Any) -> None:  # an xspec.Spectrum (PyXSPEC is optional)
        spectrum.notice("all")
        if self._ignore:
            spectrum.ignore(self._ignore)

    def _use_arf(self, path: str) -> None:
        if self._loaded_arf != path:
            self._xspec.AllData(1).response.arf = path
            self._loaded_arf = path

    def _fit(self, kt_true: float) -> tuple[np.ndarray, float, float, Status]:
        """Fit the loaded spectrum from the truth: [kT_lo, kT_fit, kT_hi], norm, C, status."""
        xs = self._xspec
        kt = self._model(self._index["kT"])
        norm = self._model(self._index["norm"])
        self._set_start(kt_true)
        for _ in range(NEW_MINIMUM_RETRIES + 1):
            xs.Fit.perform()
            xs.Fit.error(self.error_command)
            error = tuple(kt.error)
            # A search that meets a lower statistic makes that the best fit (XSPEC sets
            # the parameters to it and repeats the search from there): read it after
            best = float(kt.values[0])
            fitted_norm = float(norm.values[0])
            statistic = float(xs.Fit.statistic)
            if not str(error[2]).strip().upper().startswith("T"):
                break
        values, status = interpret_error(best, error, self.inputs.kt_limits)
        if self._check_across_jumps(best, values, status):
            return self._profile_fit(values if status != Status.FIT_FAILED else [best] * 3)
        return values, fitted_norm, statistic, status

    def _check_across_jumps(self, best: float, values: np.ndarray, status: Status) -> bool:
        """Whether XSPEC's answer needs the profile search: a failed search, or a jump near.

        A failed search with a best fit (non-monotonicity, a search that did not
        converge, a new minimum still found after the retries) is what XSPEC
        itself asks to be checked ("use steppar"); a jump of the model within
        :data:`JUMP_REACH` of the best fit or a bound may hide a lower minimum
        or split the confidence region.
        """
        if status == Status.FIT_FAILED:
            return math.isfinite(best)
        known = [v for v in values if math.isfinite(v)]
        lo, hi = min(known) / JUMP_REACH, max(known) * JUMP_REACH
        return any(lo <= jump <= hi for jump in self._jumps)

    def _profile_stat(self, x: float) -> float:
        """XSPEC's statistic at kT = exp(x) with the norm fitted (kT frozen there)."""
        kt = self._model(self._index["kT"])
        kt.values = math.exp(x)
        self._xspec.Fit.perform()
        return float(self._xspec.Fit.statistic)

    def _profile_fit(self, around: Sequence[float]) -> tuple[np.ndarray, float, float, Status]:
        """The fit of :class:`~xrmod.status.Status` on XSPEC's profile statistic.

        :func:`~xrmod.engines.pieces.fit_pieces` over the pieces between the
        model's jumps in a window of ±:data:`PROFILE_WINDOW` (a factor in kT)
        around *around* (XSPEC's best fit and bounds), the window doubled while
        the confidence region reaches one of its edges short of a kT limit.
        """
        x_lo, x_hi = self.inputs.x_limits
        known = [math.log(v) for v in around if math.isfinite(v)]
        width = math.log(PROFILE_WINDOW)
        kt = self._model(self._index["kT"])
        kt.frozen = True
        try:
            while True:
                window = (max(x_lo, min(known) - width), min(x_hi, max(known) + width))
                fit = fit_pieces(
                    self._profile_stat,
                    smooth_pieces(window, self._jumps),
                    self.inputs.error_delta,
                    jump_tolerance=PROFILE_RESOLUTION,
                )
                wider = (fit.open_low and window[0] > x_lo) or (fit.open_high and window[1] < x_hi)
                if fit.status == Status.FIT_FAILED or not wider:
                    break
                width *= 2.0
            if fit.status == Status.FIT_FAILED:
                return np.full(3, np.nan), math.nan, math.nan, Status.FIT_FAILED
            statistic = self._profile_stat(fit.x_min)  # leaves the norm at the best fit's
            norm = float(self._model(self._index["norm"]).values[0])
        finally:
            kt.frozen = False
        status = fit.status
        if fit.open_low or fit.open_high:
            status = Status.worst(status, Status.BOUND_AT_LIMIT)
        log.debug("xspec: profile fit around %s: %s, %s", around, fit.kt(), status.name)
        return fit.kt(), norm, statistic, status

    # ------------------------------------------------------------------ run

    def run_unit(self, unit: WorkUnit) -> UnitResult:
        """Write θ's modified ARF, then simulate and fit each point of the unit."""
        if self._finalizer is None:
            raise EngineError("the xspec engine is not prepared (call prepare first)")
        return super().run_unit(unit)

    def _modified(self, unit: WorkUnit) -> tuple[Status, str | None]:
        """Status of θ's modified ARF and the file it was written to (None unless OK).

        Sets the XSPEC session up for this engine first if another engine took it.
        """
        from xrmod.responses import write_arf

        if _session_owner is None or _session_owner() is not self:
            self._activate()
        status, values = self._modified_arf(unit)
        if values is None:
            return status, None
        arf = self._job.arf
        path = str(self._scratch / f"theta{unit.theta}.arf")
        write_arf(
            path,
            arf.energ_lo,
            arf.energ_hi,
            values,
            telescope=arf.telescope,
            instrument=arf.instrument,
            overwrite=True,
        )
        return Status.OK, path

    def _release(self, state: str) -> None:
        self._loaded_arf = None  # its file goes now: load the next one afresh
        Path(state).unlink(missing_ok=True)

    point_failure = "point %d failed in XSPEC"

    def _fit_point(self, state: str, flat: int) -> PointResult:
        """Simulate and fit one point with θ's ARF file *state*, XSPEC's output kept quiet."""
        try:
            with silence_c_output():
                return self._point(flat, state)
        except Exception:
            self._loaded_arf = None  # unknown after a failure: load again
            raise

    def _point(self, flat: int, arf_path: str) -> PointResult:
        """Simulate and fit one point: the status of its T1 and T1′ fits and their values."""
        xs = self._xspec
        inputs = self.inputs
        kt_true = float(inputs.temperatures[self._job.grid.point_temperature(flat)])
        xs.Xset.seed = point_seed(inputs.seed, flat)
        self._use_arf(arf_path)  # simulate with the modified ARF
        self._set_start(kt_true)
        xs.AllData.fakeit(
            1,
            xs.FakeitSettings(
                background=self._background_file, exposure=inputs.exposure, fileName=self._fake_name
            ),
            applyStats=not inputs.asimov,
            noWrite=True,
        )
        spectrum = xs.AllData(1)
        self._notice(spectrum)
        per_channel = np.asarray(spectrum.values, dtype=np.float64) * float(spectrum.exposure)
        if not inputs.asimov:  # XSPEC holds rates: give the Poisson draws back as integers
            per_channel = np.rint(per_channel)
        counts = float(per_channel.sum())
        if not counts > 0:
            return PointResult.failed(Status.NO_COUNTS, counts=counts)
        self._use_arf(self._original_arf)
        r0, n0, c0, s0 = self._fit(kt_true)
        self._use_arf(arf_path)
        r1, n1, c1, s1 = self._fit(kt_true)
        extras = {"norm": n0, "norm_modified": n1, "cstat": c0, "cstat_modified": c1}
        return PointResult(s0, s1, r0, r1, {**extras, "counts": counts})
