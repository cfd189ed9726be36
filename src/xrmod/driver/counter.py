"""The shared counter that hands out work units, and counts what is done.

Every rank takes its next unit from the counter (a position in the list of
units to compute) and reports the points it finished; rank 0 reads the
totals for the progress display. Serially the counter is a list
(:class:`LocalCounter`); on several ranks it lives in an MPI RMA window on
rank 0 (:class:`SharedCounter`), updated with one-sided atomic operations,
so no rank waits for another in the loop.

One fetch hands out a block of consecutive positions (:func:`units_per_fetch`):
one on up to :data:`RANKS_PER_COUNTER` ranks, more beyond, so that the one
counter on rank 0 is never the bottleneck (docs/scaling.md: the counter
serves a fetch in microseconds, a unit takes milliseconds; at one unit per
fetch it saturates at a few hundred to a few thousand ranks). A block is a run of consecutive
θ, which the batched writers store in one write per dataset.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any, Protocol

import numpy as np

from xrmod.driver.comm import Comm

__all__ = [
    "RANKS_PER_COUNTER",
    "UNITS_PER_FETCH_ENV",
    "Counter",
    "LocalCounter",
    "SharedCounter",
    "make_counter",
    "units_per_fetch",
]

#: Ranks one shared counter serves at one unit per fetch. docs/scaling.md: a fetch is
#: served in 4-5 µs here (one node); 4 ms units (10 points) keep 50 ranks at
#: utilisation 0.07, 0.26 if a network's fetch takes 4x as long, and the library's
#: small writes under MPI-IO (one per dataset per block) within 8 Lustre stripes.
RANKS_PER_COUNTER = 50
#: A rank should get at least this many fetches: blocks stay small next to a rank's share.
_MIN_FETCHES_PER_RANK = 8
#: Environment variable: units per fetch, overriding :func:`units_per_fetch` (tests, tuning).
UNITS_PER_FETCH_ENV = "XRMOD_UNITS_PER_FETCH"


class Counter(Protocol):
    """What the run loop asks of a counter."""

    def take(self) -> int:
        """The next position in the list of units (past the end: none left)."""
        ...

    def stop_all(self, n: int) -> None:
        """Move the counter past the end: no rank takes another unit."""
        ...

    def add_done(self, points: int, failed: int) -> None:
        """Count finished points (for the progress display)."""
        ...

    def leave(self) -> None:
        """Count this rank as finished."""
        ...

    def read(self) -> tuple[int, int, int]:
        """(points done, points failed, ranks finished)."""
        ...

    def close(self) -> None:
        """Collective: free what the counter holds."""
        ...


def units_per_fetch(n_ranks: int, n_units: int | None = None, group: int = 1) -> int:
    """Units one fetch from the shared counter hands out on *n_ranks* ranks.

    1 up to :data:`RANKS_PER_COUNTER` ranks, then ⌈n_ranks / RANKS_PER_COUNTER⌉,
    so the counter's load stays that of :data:`RANKS_PER_COUNTER` ranks; never
    so many that a rank would get fewer than 8 fetches of *n_units*. Rounded
    up to a multiple of *group* (the engine's :attr:`~xrmod.engines.base.Engine.
    units_per_group`: consecutive units it computes faster together) where
    every rank still gets at least 4 blocks. ``$XRMOD_UNITS_PER_FETCH``
    overrides it.
    """
    value = os.environ.get(UNITS_PER_FETCH_ENV, "").strip()
    if value:
        from xrmod.errors import InputError

        if not value.isdigit() or int(value) < 1:
            raise InputError(f"{UNITS_PER_FETCH_ENV} must be an integer >= 1, got {value!r}")
        return int(value)
    k = math.ceil(n_ranks / RANKS_PER_COUNTER)
    if n_units is not None:
        k = min(k, n_units // (_MIN_FETCHES_PER_RANK * n_ranks))
    k = max(1, k)
    if group > 1 and (n_units is None or n_units >= 4 * group * n_ranks):
        k = group * math.ceil(k / group)
    return k


def make_counter(comm: Comm, n_units: int | None = None, group: int = 1) -> Counter:
    """Collective: the counter of a run on *comm* handing out *n_units* positions.

    *group*: see :func:`units_per_fetch`.
    """
    if comm.size == 1:
        return LocalCounter()
    return SharedCounter(comm, block=units_per_fetch(comm.size, n_units, group))


class LocalCounter:
    """The shared counter of a run without MPI."""

    def __init__(self) -> None:
        self._values = [0, 0, 0, 0]  # next unit, points done, points failed, ranks finished

    def take(self) -> int:
        """The next position in the list of units."""
        self._values[0] += 1
        return self._values[0] - 1

    def stop_all(self, n: int) -> None:
        """Move the counter past the end: no rank takes another unit."""
        self._values[0] += n

    def add_done(self, points: int, failed: int) -> None:
        """Count finished points (for the progress display)."""
        self._values[1] += points
        self._values[2] += failed

    def leave(self) -> None:
        """Count this rank as finished."""
        self._values[3] += 1

    def read(self) -> tuple[int, int, int]:
        """(points done, points failed, ranks finished)."""
        return self._values[1], self._values[2], self._values[3]

    def close(self) -> None:
        """Nothing to free."""


class SharedCounter:
    """Counters in an MPI RMA window on rank 0, updated with atomic one-sided operations.

    Slots (int64): next unit position, points done, points failed, ranks
    finished. Creating and closing are collective; in between every operation
    is one-sided (passive target, one ``Lock_all`` epoch), so no rank ever
    waits for another in the loop. A rank reserves its next unit while it
    computes the current one (a non-blocking ``Rget_accumulate`` that also
    reports the points just finished), which hides the latency of the fetch.
    A fetch reserves *block* consecutive positions, handed out one by one
    before the next fetch. The loop ends when a rank is handed a position
    past the end, so every reserved unit before the end is computed; after a
    stop, reserved units simply stay not computed (``--resume`` does them).
    """

    _NEXT, _POINTS, _FAILED, _LEFT = range(4)

    def __init__(self, comm: Comm, block: int = 1):
        from mpi4py import MPI

        self._mpi = MPI
        self.block = int(block)
        self._next = self._end = 0  # positions of the current block not yet handed out
        self._comm = comm
        self._int64 = MPI.INT64_T
        self._win = MPI.Win.Allocate(4 * 8 if comm.rank == 0 else 0, 8, comm=comm)
        if comm.rank == 0:
            self._win.Lock(0, MPI.LOCK_EXCLUSIVE)
            np.frombuffer(self._win.tomemory(), dtype=np.int64)[:] = 0
            self._win.Unlock(0)
        self._unreported = np.zeros(2, dtype=np.int64)  # points, failed since the last report
        self._pending: tuple[Any, np.ndarray, np.ndarray] | None = None
        # Passive-target RMA may need the target to enter MPI to progress (MPICH
        # does): a thread on rank 0 pokes MPI every 2 ms while rank 0 computes.
        self._pump_comm = comm.Dup()
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None
        if comm.rank == 0 and MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self._pump = threading.Thread(target=self._progress, name="xrmod-mpi-progress")
            self._pump.daemon = True
            self._pump.start()
        comm.Barrier()
        self._win.Lock_all()

    def _progress(self) -> None:
        MPI = self._mpi
        while not self._stop.wait(0.002):
            self._pump_comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)

    def _reserve(self) -> None:
        """Start fetching the next position, reporting the points finished since the last."""
        origin = np.array([self.block, *self._unreported], dtype=np.int64)
        result = np.zeros(3, dtype=np.int64)
        request = self._win.Rget_accumulate(
            [origin, self._int64],
            [result, self._int64],
            0,
            (self._NEXT, 3, self._int64),
            self._mpi.SUM,
        )
        self._unreported[:] = 0
        self._pending = (request, origin, result)  # buffers live until completion

    def _complete(self) -> int | None:
        if self._pending is None:
            return None
        request, _, result = self._pending
        request.Wait()
        self._pending = None
        return int(result[0])

    def _fetch_add(self, slot: int, value: int) -> int:
        got = np.zeros(1, dtype=np.int64)
        origin = np.array([value], dtype=np.int64)
        self._win.Fetch_and_op([origin, self._int64], [got, self._int64], 0, slot, self._mpi.SUM)
        self._win.Flush(0)
        return int(got[0])

    def take(self) -> int:
        """The next position of this rank's block.

        At the block's end: the reserved block's first position, and reserve
        the next (reporting the points done since).
        """
        if self._next < self._end:
            self._next += 1
            return self._next - 1
        k = self._complete()
        if k is None:  # the first unit: nothing reserved yet
            self._reserve()
            k = self._complete()
        self._reserve()
        self._next, self._end = int(k) + 1, int(k) + self.block
        return int(k)

    def stop_all(self, n: int) -> None:
        """Move the counter past the end: no rank takes another unit.

        This rank drops the rest of its block and its reserved block; another
        rank still computes the rest of its block and the block it reserved
        before the stop (at most 2 blocks: 2 units up to
        :data:`RANKS_PER_COUNTER` ranks).
        """
        self._complete()  # reserved before the stop: not handed out
        self._next = self._end
        self._fetch_add(self._NEXT, n)

    def add_done(self, points: int, failed: int) -> None:
        """Count finished points; sent to rank 0 with the next reservation."""
        self._unreported += (points, failed)  # sent with the next reservation

    def leave(self) -> None:
        """Report the points not yet sent, then count this rank as finished."""
        self._complete()
        if self._unreported.any():
            self._reserve()
            self._complete()
        self._fetch_add(self._LEFT, 1)

    def read(self) -> tuple[int, int, int]:
        """(points done, points failed, ranks finished), as rank 0's window holds them."""
        got = np.zeros(3, dtype=np.int64)
        self._win.Get_accumulate(
            [np.zeros(3, np.int64), self._int64],
            [got, self._int64],
            0,
            (self._POINTS, 3, self._int64),
            self._mpi.NO_OP,
        )
        self._win.Flush(0)
        return int(got[0]), int(got[1]), int(got[2])

    def close(self) -> None:
        """Collective: end the epoch, stop the progress thread, free the window."""
        self._complete()
        self._win.Unlock_all()
        self._stop.set()
        if self._pump is not None:
            self._pump.join()
        self._comm.Barrier()
        self._win.Free()
        self._pump_comm.Free()
