"""The interface every engine implements, and the result of a work unit."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from xrmod import _random
from xrmod.status import Status

if TYPE_CHECKING:
    from xrmod.grid import WorkUnit
    from xrmod.job import BandBackground, EngineInputs, Job

__all__ = ["EXTRAS", "Engine", "PointResult", "UnitResult", "simulate"]

#: What an engine makes for one unit's θ and its points' fits use (:meth:`Engine._modified`).
State = TypeVar("State")

#: Per-point extras every engine returns beside the results: name -> description.
EXTRAS = {
    "norm": "fitted norm, original ARF",
    "norm_modified": "fitted norm, modified ARF",
    "cstat": "C-statistic at the best fit, original ARF",
    "cstat_modified": "C-statistic at the best fit, modified ARF",
    "counts": "simulated counts in the fit band",
}


@dataclass(frozen=True)
class UnitResult:
    """Results of one work unit: points ``start`` to ``stop`` (flat indices).

    ``results`` and ``results_modified`` are (n, 3) [kT_lo, kT_fit, kT_hi];
    ``status`` is (n,) int8, the status of each point and of its fit with the
    original ARF (T1), ``status_modified`` (n,) int8 that of its fit with the
    modified ARF (T1′) — a failure of the point itself is in both;
    ``extras`` maps each name of :data:`EXTRAS` to (n,).
    """

    start: int
    stop: int
    results: np.ndarray
    results_modified: np.ndarray
    status: np.ndarray
    status_modified: np.ndarray
    extras: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        n = self.stop - self.start
        for name, arr, shape in (
            ("results", self.results, (n, 3)),
            ("results_modified", self.results_modified, (n, 3)),
            ("status", self.status, (n,)),
            ("status_modified", self.status_modified, (n,)),
            *((name, arr, (n,)) for name, arr in self.extras.items()),
        ):
            if np.shape(arr) != shape:
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected {shape}")

    @classmethod
    def failed(cls, start: int, stop: int, status: int = Status.NOT_COMPUTED) -> UnitResult:
        """Points *start* to *stop* all NaN, both statuses *status*.

        With the default (0, not computed) it is the empty result an engine
        fills point by point; with a failure code it is a whole failed unit.
        """
        n = stop - start
        return cls(
            start,
            stop,
            np.full((n, 3), np.nan),
            np.full((n, 3), np.nan),
            np.full(n, status, dtype=np.int8),
            np.full(n, status, dtype=np.int8),
            {name: np.full(n, np.nan) for name in EXTRAS},
        )

    def put(self, i: int, point: PointResult) -> None:
        """Store *point* as the unit's point *i* (flat index ``start + i``)."""
        self.status[i], self.status_modified[i] = point.status, point.status_modified
        if point.results is not None:
            self.results[i] = point.results
        if point.results_modified is not None:
            self.results_modified[i] = point.results_modified
        for name, value in point.extras.items():
            self.extras[name][i] = value


@dataclass(frozen=True)
class PointResult:
    """The outcome of one point: each fit's status, its values and the extras.

    ``results`` and ``results_modified`` are [kT_lo, kT_fit, kT_hi] of the T1
    and T1′ fits; what is not given stays NaN (a failed point, or a fit that
    found no values).
    """

    status: Status
    status_modified: Status
    results: ArrayLike | None = None
    results_modified: ArrayLike | None = None
    extras: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def failed(cls, status: Status, **extras: float) -> PointResult:
        """A point that failed as a whole (both fits *status*), with the *extras* it has."""
        return cls(status, status, extras=extras)


def simulate(
    expected: np.ndarray,
    flat_index: int,
    *,
    seed: int,
    asimov: bool,
    background: BandBackground | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The spectrum of one point, as fakeit makes it: (source-region counts, background counts).

    Without a background: a Poisson draw from *expected* (or *expected* itself
    for Asimov data) and None. With one, the source spectrum has mean
    expected + α B and a new background spectrum is drawn with mean B (XSPEC's
    fakeit also simulates a new background); Asimov data are those means.
    Draws come from ``default_rng(SeedSequence((seed, flat_index)))``, source
    first: a point's data depend on nothing else. Engines bind the job's
    settings once (``functools.partial``) and call it with (expected, flat_index).
    """
    mean = expected if background is None else expected + background.alpha * background.counts
    bkg_mean = None if background is None else background.counts
    if asimov:
        return mean, bkg_mean
    if bkg_mean is None:  # the same draws as NumPy's, compiled (xrmod._random)
        mean = np.ascontiguousarray(mean, dtype=np.float64)
        if not (mean >= 0).all() or not np.isfinite(mean).all():
            raise ValueError("expected counts must be finite and >= 0")
        counts = np.empty_like(mean)
        _random.poisson(mean, seed, flat_index, counts)
        return counts, None
    rng = np.random.default_rng(np.random.SeedSequence((seed, flat_index)))
    counts = rng.poisson(mean).astype(np.float64)
    return counts, rng.poisson(bkg_mean).astype(np.float64)


class Engine(ABC, Generic[State]):
    """Simulate and fit the points of work units.

    An engine is prepared once per process (responses loaded, tables built),
    then runs any number of work units in any order. The result of a point
    depends only on the job and the point's flat index, never on which
    process ran it or in what order.

    :meth:`run_unit` is the same for every engine: θ's modified ARF
    (:meth:`_modified`: its status and what the fits need, the *state*), then
    each point (:meth:`_fit_point`), then :meth:`_release` of the state. A θ
    whose ARF fails (or whose set-up raises: ERROR, logged) fails every point
    of the unit with that status; a point that raises is ERROR, logged, and
    the unit goes on. An engine implements the three hooks, or
    :meth:`run_unit` itself.
    """

    #: Name used in ``library.engine``.
    name: ClassVar[str]
    #: Consecutive work units this engine computes faster on one rank than apart (set
    #: by :meth:`prepare`); the shared counter hands them out together where it can.
    units_per_group: int = 1
    #: The log message of a point that raised (``%d``: its flat index).
    point_failure: ClassVar[str] = "point %d failed"

    #: The job's inputs (:meth:`xrmod.job.Job.engine_inputs`), set by :meth:`_bind`.
    inputs: EngineInputs

    @abstractmethod
    def prepare(self, job: Job) -> None:
        """Do the once-per-process work for *job*."""

    def _bind(self, job: Job) -> EngineInputs:
        """Keep *job* and its engine inputs: the first step of every :meth:`prepare`."""
        self._job = job
        self.inputs = job.engine_inputs()
        return self.inputs

    def _modified_arf(self, unit: WorkUnit) -> tuple[Status, np.ndarray | None]:
        """θ's modified ARF on all the ARF's energies, or the status of its failure (and None)."""
        params = dict(self._job.grid.theta_parameters(np.array([unit.theta])))
        modified = self._job.family.apply(self.inputs.energies, self.inputs.arf, params)
        status = Status(int(modified.status[0]))
        return (status, modified.values[0]) if status == Status.OK else (status, None)

    def run_unit(self, unit: WorkUnit) -> UnitResult:
        """Compute every point of *unit*; failures become status codes, not exceptions."""
        log = logging.getLogger(type(self).__module__)
        try:
            status, state = self._modified(unit)
        except Exception:
            log.exception("θ %d of points %d..%d failed", unit.theta, unit.start, unit.stop)
            status, state = Status.ERROR, None
        if status != Status.OK:
            return UnitResult.failed(unit.start, unit.stop, status)
        result = UnitResult.failed(unit.start, unit.stop)
        try:
            self._fit_points(state, result)
        finally:
            self._release(state)
        return result

    def _fit_points(self, state: State, result: UnitResult) -> None:
        """Simulate and fit every point of *result* into it: one :meth:`_fit_point` each.

        An engine that runs a whole unit's points at once overrides this.
        """
        log = logging.getLogger(type(self).__module__)
        for i, flat in enumerate(range(result.start, result.stop)):
            try:
                point = self._fit_point(state, flat)
            except Exception:
                log.exception(self.point_failure, flat)
                point = PointResult.failed(Status.ERROR)
            result.put(i, point)

    def _modified(self, unit: WorkUnit) -> tuple[Status, State | None]:
        """The status of θ's modified ARF and what the fits of its points need (None unless OK)."""
        raise NotImplementedError(f"{type(self).__name__} implements run_unit itself")

    def _fit_point(self, state: State, flat: int) -> PointResult:
        """Simulate and fit point *flat* (of the unit *state* was made for)."""
        raise NotImplementedError(f"{type(self).__name__} implements run_unit itself")

    def _release(self, state: State) -> None:
        """Release what :meth:`_modified` made for a unit, once its points are done."""

    def provenance(self) -> dict[str, str]:
        """What computed the fits, for the library's root attributes (after :meth:`prepare`).

        The keys ``xspec_models`` (one line), ``xspec_models_origin`` and
        ``xspec_models_version`` say which XSPEC evaluated the source model; a
        library is continued (``--resume``) only by the same.
        """
        return {}

    def close(self) -> None:
        """Release what :meth:`prepare` acquired (scratch files); the driver calls it last."""
