"""The interface every engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from xrmod.grid import WorkUnit
    from xrmod.job import BandBackground, Job
    from xrmod.library import UnitResult

__all__ = ["Engine", "simulate"]


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
