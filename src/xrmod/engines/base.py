"""The interface every engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from xrmod.grid import WorkUnit
    from xrmod.job import Job
    from xrmod.library import UnitResult

__all__ = ["Engine"]


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
