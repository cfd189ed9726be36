"""The interface every engine implements, and the result of a work unit."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from xrmod.status import Status

if TYPE_CHECKING:
    from xrmod.grid import WorkUnit
    from xrmod.job import BandBackground, Job

__all__ = ["EXTRAS", "Engine", "UnitResult", "simulate"]

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
    rng = np.random.default_rng(np.random.SeedSequence((seed, flat_index)))
    counts = rng.poisson(mean).astype(np.float64)
    if bkg_mean is None:
        return counts, None
    return counts, rng.poisson(bkg_mean).astype(np.float64)


class Engine(ABC):
    """Simulate and fit the points of work units.

    An engine is prepared once per process (responses loaded, tables built),
    then runs any number of work units in any order. The result of a point
    depends only on the job and the point's flat index, never on which
    process ran it or in what order.
    """

    #: Name used in ``library.engine``.
    name: ClassVar[str]

    @abstractmethod
    def prepare(self, job: Job) -> None:
        """Do the once-per-process work for *job*."""

    @abstractmethod
    def run_unit(self, unit: WorkUnit) -> UnitResult:
        """Compute every point of *unit*; failures become status codes, not exceptions."""

    def provenance(self) -> dict[str, str]:
        """What computed the fits, for the library's root attributes (after :meth:`prepare`).

        The keys ``xspec_models`` (one line), ``xspec_models_origin`` and
        ``xspec_models_version`` say which XSPEC evaluated the source model; a
        library is continued (``--resume``) only by the same.
        """
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Release what :meth:`prepare` acquired (scratch files); the driver calls it last."""
