"""The three output paths of a run (``--writer``), behind one interface.

- ``direct`` (one process): units written into the library in batches.
- ``mpio`` (h5py built with MPI): every rank opens the library with the
  ``mpio`` driver (creation and closing collective) and writes its own units
  with independent I/O, in batches.
- ``merge`` (serial h5py): each rank appends its units to a rank file, in
  batches; rank 0 merges them into the library with dask and removes them
  (:mod:`xrmod.merge`). Rank 0 imports dask in a background thread while it
  sets up, so neither the loop nor the merge waits for it.

Batches follow one policy (:class:`xrmod.library.UnitBatch`): written at
least every ``XRMOD_FLUSH_SECONDS`` seconds (default 2, at most 60: larger
values are clamped with a warning) and every 4 MB. A rank killed outright
(SIGKILL) loses its unit in flight and the units of its batch: those it
finished in the last ``XRMOD_FLUSH_SECONDS`` seconds, and never more than a
full batch (4 MB: 4 MB / :func:`xrmod.library.unit_bytes` units, ~4,600 units
of 10 points).
The run loop calls the same :class:`Writer` methods whatever the path; the
collective ones use the agreement helpers, so an error on one rank is
raised on every rank.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from xrmod.driver.comm import Comm, Serial, agree, comm_self, on_root
from xrmod.errors import InputError, RunError
from xrmod.library import FLUSH_SECONDS, LibraryWriter, create_library
from xrmod.merge import RankFileWriter, merge_rank_files, rank_file_path

if TYPE_CHECKING:
    from xrmod.engines.base import UnitResult
    from xrmod.job import Job

__all__ = [
    "FLUSH_ENV",
    "MAX_FLUSH_SECONDS",
    "WRITERS",
    "DirectWriter",
    "MergeWriter",
    "MpioWriter",
    "Writer",
    "flush_seconds",
    "make_writer",
    "mark_complete",
    "now",
    "set_attrs",
]

log = logging.getLogger("xrmod.driver")

#: Values of ``--writer``.
WRITERS = ("auto", "mpio", "merge")
#: Environment variable: longest time, in seconds, a rank keeps finished units in memory
#: before writing them (merge and mpio writers).
FLUSH_ENV = "XRMOD_FLUSH_SECONDS"
#: Largest interval ``XRMOD_FLUSH_SECONDS`` may set; larger values are clamped to it.
MAX_FLUSH_SECONDS = 60.0


def flush_seconds(*, warn: bool = True) -> float:
    """``$XRMOD_FLUSH_SECONDS``: longest time finished units wait in a writer's batch.

    A value above :data:`MAX_FLUSH_SECONDS` (60 s) is clamped to it, with a
    warning (when *warn*): a rank killed outright loses what its batch holds,
    and the interval is what bounds it.

    Raises
    ------
    xrmod.errors.InputError
        The value is not a number >= 0.
    """
    value = os.environ.get(FLUSH_ENV, "").strip()
    if not value:
        return FLUSH_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise InputError(f"{FLUSH_ENV} must be a number of seconds >= 0, got {value!r}")
    if seconds > MAX_FLUSH_SECONDS:
        if warn:
            log.warning(
                "%s=%s is more than %g s: using %g s (a rank killed outright loses the "
                "units finished since its last write)",
                FLUSH_ENV,
                value,
                MAX_FLUSH_SECONDS,
                MAX_FLUSH_SECONDS,
            )
        seconds = MAX_FLUSH_SECONDS
    return seconds


def now() -> str:
    """The time, as the library's attributes record it (UTC, ISO 8601)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def set_attrs(path: Path, **attrs: Any) -> None:
    """Set root attributes of the library *path* (serial HDF5: rank 0 alone)."""
    import h5py

    with h5py.File(path, "r+") as f:
        for key, value in attrs.items():
            f.attrs[key] = value


def mark_complete(path: Path, *, n_ranks: int, writer: str) -> None:
    """Record the end of a complete run in the library *path*: ranks, writer, end time."""
    set_attrs(path, n_ranks=n_ranks, writer=writer, end_time=now())


def _create(job: Job, attrs: Mapping[str, Any], comm: Comm | None = None) -> None:
    create_library(
        job.output,
        job.grid,
        family=job.family.name,
        units=job.family.units,
        attrs=attrs,
        comm=comm,
    )


class Writer(ABC):
    """How this rank's finished units reach the library; one subclass per output path.

    The run calls, in order: :meth:`prepare`, :meth:`create` (a new library),
    :meth:`open`, :meth:`write` for each unit, :meth:`finish`, :meth:`close`,
    then on rank 0 :meth:`collect` and :meth:`mark_complete`; :meth:`abort`
    last, whatever happened. *Collective* methods are called by every rank
    at the same point.

    Parameters
    ----------
    job : xrmod.job.Job
        The job.
    comm : Comm
        The ranks of the run.
    flush_seconds : float
        Longest time a finished unit waits in a batch (batched writers).
    """

    #: The value of ``--writer`` (and of the library's ``writer`` attribute).
    name: ClassVar[str]

    def __init__(self, job: Job, comm: Comm, *, flush_seconds: float):
        self.job = job
        self.comm = comm
        self.flush_seconds = flush_seconds
        self._sink: Any = None  # the LibraryWriter or RankFileWriter of this rank

    def prepare(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Collective, before the output is touched: check what this path needs."""

    def create(self, attrs: Mapping[str, Any]) -> None:
        """Collective: create the empty library with root attributes *attrs*."""
        on_root(self.comm, _create, self.job, attrs)

    def open(self) -> None:
        """Collective: open this rank's output."""
        self._sink = agree(self.comm, self._open_sink)

    @abstractmethod
    def _open_sink(self) -> Any:
        """The output of this rank, opened."""

    def write(self, unit: UnitResult) -> None:
        """On this rank: store one finished unit (now, or in a batch)."""
        self._sink.write(unit)

    def finish(self) -> None:
        """On this rank, as soon as its loop ends: write the batch, close the output."""
        self._sink.close()

    def close(self, complete: bool) -> None:  # noqa: B027  (optional hook, not abstract)
        """Collective, after every rank has finished (*complete*: every unit computed)."""

    def collect(self, written: int, *, failed: bool) -> float:
        """Rank 0, after :meth:`close`: bring the ranks' units into the library; seconds.

        *written* units were given to the writers of all ranks; *failed*: the
        run stopped on a fatal error (whose message is the one reported).
        """
        return 0.0

    def mark_complete(self) -> None:
        """Rank 0, after a complete run: record its end in the library."""
        mark_complete(self.job.output, n_ranks=self.comm.size, writer=self.name)

    def abort(self) -> None:
        """On this rank: close the output if still open, keeping the batch; never raises."""
        if self._sink is not None:
            with contextlib.suppress(Exception):
                self._sink.close()


class DirectWriter(Writer):
    """One process writes its finished units into the library, in batches."""

    name = "direct"

    def _open_sink(self) -> LibraryWriter:
        # batched like the other writers: one write per dataset per batch, not per unit
        return LibraryWriter(self.job.output, self.job.grid, flush_seconds=self.flush_seconds)


class MpioWriter(Writer):
    """Every rank writes its units into the library through MPI-IO (parallel h5py)."""

    name = "mpio"

    def __init__(self, job: Job, comm: Comm, *, flush_seconds: float):
        super().__init__(job, comm, flush_seconds=flush_seconds)
        self._io_comm = comm_self() if isinstance(comm, Serial) else comm

    def create(self, attrs: Mapping[str, Any]) -> None:
        """Collective: every rank creates the library with the same arguments (MPI-IO)."""
        agree(self.comm, _create, self.job, attrs, self._io_comm)

    def _open_sink(self) -> LibraryWriter:
        # batched: one MPI-IO write per dataset per batch
        return LibraryWriter(
            self.job.output, self.job.grid, comm=self._io_comm, flush_seconds=self.flush_seconds
        )

    def finish(self) -> None:
        """Write the batch; the file is closed collectively, by :meth:`close`."""
        self._sink.flush()

    def close(self, complete: bool) -> None:
        """Collective: set the end time of a complete run, close the file on every rank."""
        end = self.comm.bcast(now() if self.comm.rank == 0 else None)
        agree(self.comm, self._close, end if complete else None)

    def _close(self, end_time: str | None) -> None:
        try:
            if end_time is not None:
                self._sink.set_attrs(end_time=end_time)
        finally:  # every rank closes, whatever set_attrs did
            self._sink.close()

    def mark_complete(self) -> None:
        """Nothing: :meth:`close` set the end time collectively."""

    def abort(self) -> None:
        """Nothing: closing is collective, one rank alone must not try."""


class MergeWriter(Writer):
    """Every rank writes a rank file; rank 0 merges them into the library at the end."""

    name = "merge"

    def __init__(self, job: Job, comm: Comm, *, flush_seconds: float):
        super().__init__(job, comm, flush_seconds=flush_seconds)
        self._importing: threading.Thread | None = None

    def prepare(self) -> None:
        """Collective: dask must be there; rank 0 starts importing it."""
        on_root(self.comm, _need_dask)
        if self.comm.rank == 0:  # the merge's import, while rank 0 sets up
            self._importing = _import_in_background("dask.threaded")

    def open(self) -> None:
        """Collective: each rank creates its rank file; rank 0's dask import is done after."""
        super().open()
        if self._importing is not None:  # not during the loop: rank 0 would start late
            self._importing.join()

    def _open_sink(self) -> RankFileWriter:
        return RankFileWriter(
            rank_file_path(self.job.output, self.comm.rank),
            self.job.grid,
            config_text=self.job.config.text,
            rank=self.comm.rank,
            flush_seconds=self.flush_seconds,
        )

    def collect(self, written: int, *, failed: bool) -> float:
        """Rank 0: merge the rank files into the library, then remove them; seconds.

        Rank 0's own rank file is left out if it failed to close and is still
        open (a full disk): HDF5 would read it through the half-closed handle;
        it is kept, and ``--resume`` merges it in a new process.

        Raises
        ------
        xrmod.errors.RunError
            The merge found fewer units than the ranks wrote (the rank files
            are kept for ``--resume``); not raised when the run *failed*: the
            rank files are kept, and the failure is the error reported.
        """
        path = self.job.output
        files = [rank_file_path(path, rank) for rank in range(self.comm.size)]
        files = [p for p in files if p.exists()]
        if self._sink is not None and not self._sink.closed:
            files = [p for p in files if p != self._sink.path]
        start = time.perf_counter()
        report = merge_rank_files(path, files, self.job.grid, config_text=self.job.config.text)
        seconds = time.perf_counter() - start
        if report.units != written:
            if failed:
                return seconds
            raise RunError(
                f"merge found {report.units} units in the rank files, the ranks wrote "
                f"{written}; the rank files are kept: run again with --resume"
            )
        for p in files:
            p.unlink()
        log.info("merged %d units from %d rank files in %.2f s", report.units, len(files), seconds)
        return seconds


_WRITERS = {cls.name: cls for cls in (DirectWriter, MpioWriter, MergeWriter)}


def _choose(requested: str, size: int) -> str:
    import h5py

    if requested not in WRITERS:
        raise InputError(f"--writer must be one of {', '.join(WRITERS)}, got {requested!r}")
    parallel = bool(h5py.get_config().mpi)
    if requested == "mpio" and not parallel:
        raise InputError(
            "--writer mpio needs h5py built with MPI (h5py.get_config().mpi is False); "
            "use --writer merge, or install parallel h5py (see README: Running on a cluster)"
        )
    if requested == "auto":
        if size == 1:
            return "direct"
        return "mpio" if parallel else "merge"
    return requested


def make_writer(requested: str, job: Job, comm: Comm) -> Writer:
    """The writer of a run: *requested* (one of :data:`WRITERS`) for this h5py and rank count.

    ``$XRMOD_FLUSH_SECONDS`` is checked here, for every writer, so a bad
    value is refused the same way on one rank as on many.
    """
    name = _choose(requested, comm.size)
    return _WRITERS[name](job, comm, flush_seconds=flush_seconds(warn=comm.rank == 0))


def _need_dask() -> None:
    """The merge writer's dependency, checked before the run (without importing it)."""
    if importlib.util.find_spec("dask") is None:
        raise InputError(
            "the merge writer needs dask (pip install dask), or use h5py built with MPI"
        )


def _import_in_background(name: str) -> threading.Thread:
    """Import module *name* in a daemon thread (an import error shows up at the real import)."""

    def target() -> None:
        try:
            importlib.import_module(name)
        except Exception:  # the merge imports it again and reports
            log.debug("background import of %s failed", name, exc_info=True)

    thread = threading.Thread(target=target, name=f"xrmod-import-{name}", daemon=True)
    thread.start()
    return thread
