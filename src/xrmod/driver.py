"""Run a job on one process or on many MPI ranks.

``xrmod-gen CONFIG`` runs serially; ``mpirun -n N xrmod-gen CONFIG`` runs on N
ranks (with mpi4py; this is the only module of xrmod that imports it, and only
when an MPI launcher started the process). Every rank, rank 0 included,
computes: work units (one θ with all its points) are handed out by a shared
counter in an MPI RMA window on rank 0 (atomic fetch-and-add), so no rank
idles while another has a backlog and no rank is lost to coordination. Each
rank reserves its next unit while computing the current one, and a small
thread on rank 0 keeps MPI progressing while rank 0 computes, so a fetch never
waits for rank 0's unit to finish. No collective call happens between the
first unit and the last.

Output paths (``--writer``; ``auto`` picks by ``h5py.get_config().mpi``):

- ``direct`` (one process): units written straight into the library.
- ``mpio`` (h5py built with MPI): every rank opens the library with the
  ``mpio`` driver (creation and attributes collective) and writes its own
  units with independent I/O.
- ``merge`` (serial h5py): each rank appends its units to a rank file
  (buffered, flushed at least every ``XRMOD_FLUSH_SECONDS`` seconds, default
  2); rank 0 merges them into the library with dask and removes them
  (:mod:`xrmod.merge`). Rank 0 imports dask in a background thread while it
  sets up (engine, library), so neither the loop nor the merge waits for it.

All three give identical datasets: a point's result depends only on the job
and its flat index.

Failure policy: an exception escaping the engine for one unit marks that
unit's points ``Status.ERROR`` (NaN results), logs the traceback to the rank's
log ``<output>.rank<N>.log``, and the run goes on. A fatal error on any rank
(bad config or engine set-up on one rank, an unwritable output, a failed
write) stops every rank at the next unit boundary and ends the run on every
rank with one message naming the rank and host; the collective calls of all
ranks stay the same, so nothing hangs. A rank that dies outright is ended,
with the whole job, by the MPI launcher.

SIGTERM and SIGINT (a batch system's time limit, Ctrl-C) stop the handing out
of units; every rank finishes and writes the unit in flight, the library (or
the merged rank files) keeps everything finished, and the run exits with
128 + signal number and a message saying how to resume. Killed outright
(SIGKILL, a node failure), a rank loses its unit in flight and, with the
``merge`` and ``mpio`` writers, at most the last ``XRMOD_FLUSH_SECONDS``
seconds of its finished units (still in its buffer: both write in batches);
the serial direct writer loses only the unit in flight. ``--resume`` computes
them again.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from xrmod.engines import get_engine
from xrmod.engines.base import UnitResult
from xrmod.errors import EXIT_INTERNAL, EXIT_RUN, InputError, RunError, XrmodError
from xrmod.job import Job, load_job
from xrmod.library import (
    LibraryWriter,
    adopt_config,
    check_same_config,
    check_same_provenance,
    check_same_responses,
    count_status,
    create_library,
    pending_units,
    stored_config_text,
)
from xrmod.merge import (
    FLUSH_SECONDS,
    RankFileWriter,
    find_rank_files,
    merge_rank_files,
    rank_file_path,
    rank_log_path,
)
from xrmod.status import Status

__all__ = ["WRITERS", "generate", "run", "world_rank"]

log = logging.getLogger(__name__)

#: Values of ``--writer``.
WRITERS = ("auto", "mpio", "merge")
#: Environment variables set by MPI launchers (Open MPI, MPICH/Hydra, PMIx, Slurm's srun).
_LAUNCH_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
#: Environment variable: longest time, in seconds, a rank keeps finished units in memory
#: before writing them (merge and mpio writers).
FLUSH_ENV = "XRMOD_FLUSH_SECONDS"


# --------------------------------------------------------------------------- ranks
def world_rank() -> int:
    """The rank of this process as its MPI launcher numbered it (0 without a launcher)."""
    for name in _RANK_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _launcher_size() -> int:
    for name in _SIZE_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


class _Serial:
    """The communicator of a run without MPI (same calls as an mpi4py ``Comm``)."""

    rank = 0
    size = 1

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def Barrier(self) -> None:
        return None


def _world() -> Any:
    """``MPI.COMM_WORLD`` when an MPI launcher started us and mpi4py is there, else serial."""
    if not any(name in os.environ for name in _LAUNCH_MARKERS):
        return _Serial()
    try:
        from mpi4py import MPI
    except ImportError as e:
        if _launcher_size() > 1:
            raise InputError(
                f"started by an MPI launcher on {_launcher_size()} ranks, but mpi4py is not "
                "installed: pip install 'xrmod[mpi]', or run xrmod-gen without mpirun"
            ) from e
        return _Serial()
    return MPI.COMM_WORLD


def _host() -> str:
    return socket.gethostname()


def _error_info(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) of an exception, for sending to the other ranks."""
    if isinstance(exc, XrmodError):
        return str(exc), exc.exit_code
    return f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL


def _raise_if_any(comm: Any, error: tuple[str, int] | None) -> None:
    """Collective: if any rank reports an error, raise one :class:`RunError` on every rank."""
    reports = comm.allgather(None if error is None else (comm.rank, _host(), *error))
    failed = [r for r in reports if r is not None]
    if not failed:
        return
    rank, host, message, code = failed[0]
    if comm.size > 1 and (len(failed) < comm.size or len({r[2] for r in failed}) > 1):
        message = f"rank {rank} ({host}): {message}"
    raise RunError(message, exit_code=code)


def _agree(comm: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *func* on every rank; an exception on any rank is raised on every rank.

    Serially the original exception propagates unchanged.
    """
    try:
        value = func(*args, **kwargs)
    except Exception as exc:
        if comm.size == 1:
            raise
        if not isinstance(exc, XrmodError):
            log.error("rank %d (%s): unexpected error", comm.rank, _host(), exc_info=True)
        try:
            _raise_if_any(comm, _error_info(exc))
        except RunError as run_error:
            raise run_error from exc
    _raise_if_any(comm, None)
    return value


def _on_root(comm: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *func* on rank 0 only, give its value to every rank; errors reach every rank."""
    value = _agree(comm, lambda: func(*args, **kwargs) if comm.rank == 0 else None)
    return comm.bcast(value, root=0)


# --------------------------------------------------------------------------- counters
class _LocalCounter:
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


class _SharedCounter(_LocalCounter):
    """Counters in an MPI RMA window on rank 0, updated with atomic one-sided operations.

    Slots (int64): next unit position, points done, points failed, ranks
    finished. Creating and closing are collective; in between every operation
    is one-sided (passive target, one ``Lock_all`` epoch), so no rank ever
    waits for another in the loop. A rank reserves its next unit while it
    computes the current one (a non-blocking ``Rget_accumulate`` that also
    reports the points just finished), which hides the latency of the fetch.
    The loop ends when a rank is handed a position past the end, so every
    reserved unit before the end is computed; after a stop, reserved units
    simply stay not computed (``--resume`` does them).
    """

    _NEXT, _POINTS, _FAILED, _LEFT = range(4)

    def __init__(self, comm: Any):
        from mpi4py import MPI

        self._mpi = MPI
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
        origin = np.array([1, *self._unreported], dtype=np.int64)
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
        k = self._complete()
        if k is None:  # the first unit: nothing reserved yet
            self._reserve()
            k = self._complete()
        self._reserve()
        return int(k)

    def stop_all(self, n: int) -> None:
        self._fetch_add(self._NEXT, n)

    def add_done(self, points: int, failed: int) -> None:
        self._unreported += (points, failed)  # sent with the next reservation

    def leave(self) -> None:
        self._complete()
        if self._unreported.any():
            self._reserve()
            self._complete()
        self._fetch_add(self._LEFT, 1)

    def read(self) -> tuple[int, int, int]:
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


# --------------------------------------------------------------------------- progress
def _terminal_size(stream: Any) -> tuple[int, int]:
    """(columns, lines) of the terminal *stream* writes to; 0 where unknown."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


class _Progress:
    """Rank 0's progress: a tqdm bar on a terminal, else a log line every 5 % of the points."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self._shown = (0, 0)
        self._next_log = 0.05
        self._start = time.perf_counter()
        self._last = 0.0
        self._bar = None
        if enabled and total and sys.stderr.isatty():
            from tqdm import tqdm

            # a terminal that reports no size (some ptys) would hide the bar: assume 80x24
            size = {"dynamic_ncols": True} if all(_terminal_size(sys.stderr)) else {}
            self._bar = tqdm(
                total=total,
                unit="pt",
                smoothing=0.05,
                file=sys.stderr,
                **(size or {"ncols": 80, "nrows": 24}),
            )

    def show(self, done: int, failed: int, *, force: bool = False) -> None:
        """Display *done* points (of which *failed*) finished by all ranks."""
        if (done, failed) == self._shown or not self.total:
            return
        now = time.perf_counter()
        if self._bar is not None:
            if force or now - self._last > 0.1 or done == self.total:
                self._bar.update(done - self._shown[0])
                if failed:
                    self._bar.set_postfix(failed=failed, refresh=False)
                self._shown, self._last = (done, failed), now
            return
        self._shown = (done, failed)
        if done >= self._next_log * self.total or done == self.total:
            elapsed = now - self._start
            rate = done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            log.info(
                "%d/%d points (%.0f%%), %.1f points/s, ETA %.0f s, %d failed",
                done,
                self.total,
                100 * done / self.total,
                rate,
                eta,
                failed,
            )
            self._next_log = (int(20 * done / self.total) + 1) / 20

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------- signals
class _StopRequest:
    """SIGTERM/SIGINT handlers that only record the signal (the loop acts on it)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- logging
class _AtLeast(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


#: ``extra`` of rank 0's report of the whole run: the console's, not a rank log's.
_SUMMARY = {"xrmod_summary": True}
#: ``extra`` of a failed unit's traceback: the rank log's, not the console's.
_RANK_ONLY = {"xrmod_rank_only": True}


def _not_summary(record: logging.LogRecord) -> bool:
    return not getattr(record, "xrmod_summary", False)


def _not_rank_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "xrmod_rank_only", False)


class _RankLog:
    """Warnings and errors of this rank (failed units' tracebacks) to ``<output>.rank<N>.log``.

    The file is created only when there is something to write. A failed unit's
    traceback goes there only; on ranks other than 0 the console shows only
    critical records: rank 0 reports for all.
    """

    def __init__(self, output: Path, rank: int):
        self.path = rank_log_path(output, rank)
        self._logger = logging.getLogger("xrmod")
        self._handler: logging.Handler | None = None
        directory = self.path.parent
        if directory.is_dir() and os.access(directory, os.W_OK):
            self._handler = logging.FileHandler(self.path, delay=True)
            self._handler.setLevel(logging.WARNING)
            self._handler.addFilter(_not_summary)
            self._handler.setFormatter(
                logging.Formatter(
                    f"%(asctime)s rank {rank} {_host()} %(levelname)s %(name)s: %(message)s"
                )
            )
            self._logger.addHandler(self._handler)
        # the console: rank 0 without failed units' tracebacks, other ranks critical only
        self._filter = _AtLeast(logging.CRITICAL) if rank != 0 else _not_rank_only
        self._quiet = list(logging.getLogger().handlers)
        for h in self._quiet:
            h.addFilter(self._filter)

    @property
    def written(self) -> bool:
        """Whether this run wrote to the rank log."""
        return self._handler is not None and self._handler.stream is not None

    def close(self) -> None:
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler.close()
        for h in self._quiet:
            h.removeFilter(self._filter)


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class _Plan:
    """What rank 0 found about the output before the run."""

    create: bool
    pending: np.ndarray | None  # unit numbers to compute; None = all
    merged: int  # units recovered from an interrupted run's rank files


def _choose_writer(requested: str, size: int) -> str:
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


def _check_directory(path: Path) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise InputError(f"{path}: directory {directory} is not writable")


def _plan(job: Job, *, overwrite: bool, resume: bool) -> _Plan:
    """Rank 0: check the output, recover leftovers of an interrupted run, list pending units."""
    path = job.output
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    _check_directory(path)
    leftovers = find_rank_files(path)
    if not path.exists():
        if leftovers and not overwrite:
            names = ", ".join(str(p) for p in leftovers)
            raise InputError(f"rank files without their library {path}: {names}; remove them")
        for p in leftovers:
            p.unlink()
        if resume:
            log.info("%s does not exist yet: starting a new library", path)
        return _Plan(create=True, pending=None, merged=0)
    if overwrite:
        path.unlink()
        for p in leftovers:
            p.unlink()
        return _Plan(create=True, pending=None, merged=0)
    if not resume:
        raise InputError(
            f"{path} exists; use --resume to continue it, or --overwrite to replace it"
        )
    check_same_config(path, job.config)
    provenance = job.provenance()
    check_same_responses(path, provenance)
    merged = 0
    if leftovers:  # written by the library's last run, tied to its config text
        start = time.perf_counter()
        report = merge_rank_files(path, leftovers, job.grid, config_text=stored_config_text(path))
        merged = report.units
        log.info(
            "merged %d unit(s) from %d rank file(s) of an interrupted run in %.2f s",
            report.units,
            len(leftovers),
            time.perf_counter() - start,
        )
        for p in leftovers:
            p.unlink()
    adopt_config(path, provenance)  # this run's rank files are tied to its config text
    pending = pending_units(path, job.grid)
    import h5py

    with h5py.File(path, "r+") as f:
        f.attrs["resumed"] = int(f.attrs.get("resumed", 0)) + 1
        f.attrs["resume_time"] = _now()
    log.info("resuming %s: %d of %d units still to compute", path, pending.size, job.grid.n_units())
    return _Plan(create=False, pending=pending, merged=merged)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- the loop
def _compute(engine: Any, unit: Any, k: int, rank: int) -> UnitResult:
    """The engine's result for *unit*; an exception makes its points ERROR, logged, not raised."""
    try:
        result = engine.run_unit(unit)
        if (result.start, result.stop) != (unit.start, unit.stop):
            raise ValueError(
                f"engine returned points {result.start}..{result.stop} for unit "
                f"{unit.start}..{unit.stop}"
            )
        return result
    except Exception:
        log.error(
            "unit %d (θ %d, points %d..%d) failed on rank %d (%s); its points get status %d",
            k,
            unit.theta,
            unit.start,
            unit.stop - 1,
            rank,
            _host(),
            int(Status.ERROR),
            exc_info=True,
            extra=_RANK_ONLY,
        )
        return UnitResult.failed(unit.start, unit.stop, Status.ERROR)


@dataclass
class _Outcome:
    """One rank's account of its loop, gathered on every rank afterwards."""

    rank: int
    host: str
    units: int = 0
    points: int = 0
    compute_s: float = 0.0
    write_s: float = 0.0
    wait_s: float = 0.0  # in the shared counter: waiting for the next unit
    signum: int | None = None
    fatal: tuple[str, int] | None = None
    logged: bool = False


def _loop(
    *,
    comm: Any,
    job: Job,
    engine: Any,
    writer: Any,
    counter: Any,
    units: Sequence[int],
    stop: _StopRequest,
    progress: _Progress | None,
    finish: Callable[[], None] | None = None,
) -> _Outcome:
    """Take units from the counter until none are left, a signal, or a fatal error.

    *finish* (closing a rank file, or writing the mpio writer's batch) runs as
    soon as this rank's loop ends, before rank 0 waits for the others; an
    error there is fatal.
    """
    grid = job.grid
    n = len(units)
    out = _Outcome(rank=comm.rank, host=_host())
    try:
        while True:
            if stop.signum is not None:
                out.signum = stop.signum
                log.warning(
                    "rank %d: %s received, stopping after the units in flight",
                    comm.rank,
                    signal.Signals(stop.signum).name,
                )
                counter.stop_all(n)
                break
            t = time.perf_counter()
            i = counter.take()
            out.wait_s += time.perf_counter() - t
            if i >= n:
                break
            k = int(units[i])
            unit = grid.unit(k)
            t0 = time.perf_counter()
            result = _compute(engine, unit, k, comm.rank)
            t1 = time.perf_counter()
            writer.write(result)
            out.write_s += time.perf_counter() - t1
            out.compute_s += t1 - t0
            out.units += 1
            out.points += unit.size
            failed = (result.status < 0) | (result.status_modified < 0)  # either fit
            counter.add_done(unit.size, int(np.count_nonzero(failed)))
            if progress is not None:
                progress.show(*counter.read()[:2])
    except Exception as exc:
        log.error("rank %d (%s): fatal error, stopping the run", comm.rank, _host(), exc_info=True)
        out.fatal = _error_info(exc)
        counter.stop_all(n)
    if finish is not None:
        t = time.perf_counter()
        try:
            finish()
        except Exception as exc:
            log.error("rank %d (%s): closing the writer failed", comm.rank, _host(), exc_info=True)
            out.fatal = out.fatal or _error_info(exc)
        out.write_s += time.perf_counter() - t
    counter.leave()
    if progress is not None:  # rank 0 keeps the display going until every rank is done
        while True:
            done, failed, left = counter.read()
            progress.show(done, failed)
            if left >= comm.size:
                break
            time.sleep(0.1)
        progress.show(done, failed, force=True)
    if out.signum is None:
        out.signum = stop.signum
    return out


# --------------------------------------------------------------------------- entry points
def generate(
    config: str | os.PathLike | None = None,
    *,
    output: str | None = None,
    check: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    writer: str = "auto",
    progress: bool = True,
) -> int:
    """Load and check a job on every rank, then run it (``xrmod-gen``); return the exit code.

    A configuration error found on any rank ends every rank with one message.
    """
    comm = _world()
    job = _agree(comm, load_job, config, output=output)
    if comm.rank == 0:
        log.info("%s", job.summary())
        if comm.size > 1:
            log.info("%d MPI ranks", comm.size)
    if check:
        return 0
    return run(
        job,
        overwrite=overwrite,
        resume=resume,
        writer=writer,
        progress=progress,
        comm=comm,
    )


def run(
    job: Job,
    *,
    overwrite: bool = False,
    resume: bool = False,
    writer: str = "auto",
    progress: bool = True,
    comm: Any = None,
) -> int:
    """Compute the points of *job* still to do and write the library; return the exit code.

    Parameters
    ----------
    job : xrmod.job.Job
        The job (every rank passes the same).
    overwrite : bool
        Replace an existing library (and stale rank files).
    resume : bool
        Continue an existing library made from the same configuration: merge
        the rank files an interrupted run left, then compute only the units
        with points not yet computed (status 0).
    writer : {"auto", "mpio", "merge"}
        Output path; ``auto``: one process writes directly, several use
        ``mpio`` when h5py has MPI, else ``merge``.
    progress : bool
        Progress bar on a terminal; log lines otherwise or when False.
    comm : mpi4py.MPI.Comm, optional
        The ranks to run on; default ``MPI.COMM_WORLD`` when started by an
        MPI launcher, else one process.

    Returns
    -------
    int
        0 when done (failed points are in the status dataset), 128 + signal
        number when stopped by SIGTERM/SIGINT.

    Raises
    ------
    xrmod.errors.XrmodError
        Bad input (exit code 2), or :class:`~xrmod.errors.RunError` on every
        rank for a fatal error on any rank.
    """
    comm = _world() if comm is None else comm
    rank_log = _RankLog(job.output, comm.rank)
    try:
        return _run(
            job,
            comm,
            rank_log,
            overwrite=overwrite,
            resume=resume,
            writer=writer,
            progress=progress,
        )
    finally:
        rank_log.close()


def _run(
    job: Job,
    comm: Any,
    rank_log: _RankLog,
    *,
    overwrite: bool,
    resume: bool,
    writer: str,
    progress: bool,
) -> int:
    with _StopRequest() as stop:  # a signal during set-up stops the run before its first unit
        grid = job.grid
        kind = _agree(comm, _choose_writer, writer, comm.size)
        importing = None
        if kind == "merge":
            _on_root(comm, _need_dask)
            if comm.rank == 0:  # the merge's import, while rank 0 sets up (done before the loop)
                importing = _import_in_background("dask.threaded")
        plan = _on_root(comm, _plan, job, overwrite=overwrite, resume=resume)
        if plan.pending is not None and plan.pending.size == 0:
            if comm.rank == 0:
                log.info("%s: every point is computed already; nothing to do", job.output)
                _finish_attrs(job.output, comm.size, kind)
            return 0
        engine = _agree(comm, _prepared_engine, job)
        identity = engine.provenance()  # which XSPEC: the same on every rank
        if not plan.create:
            _on_root(comm, check_same_provenance, job.output, identity)
        mpio_comm = (
            (_comm_self() if isinstance(comm, _Serial) else comm) if kind == "mpio" else None
        )
        if plan.create:
            attrs = comm.bcast(
                {**job.provenance(n_ranks=comm.size), **identity, "writer": kind}
                if comm.rank == 0
                else None
            )
            if kind == "mpio":  # collective creation: every rank, same arguments
                _agree(comm, _create, job, attrs, mpio_comm)
            else:
                _on_root(comm, _create, job, attrs, None)
        else:
            _on_root(comm, _set_attrs, job.output, n_ranks=comm.size, writer=kind)
        sink = _agree(comm, _open_writer, kind, job, comm, mpio_comm)
        if importing is not None:  # not during the loop: rank 0 would start late
            importing.join()

        units: Sequence[int] = range(grid.n_units()) if plan.pending is None else plan.pending
        total = grid.points_per_theta * len(units)
        if comm.rank == 0:
            log.info(
                "writing %s: %d points in %d units on %d rank(s), writer %s",
                job.output,
                total,
                len(units),
                comm.size,
                kind,
            )
        counter = _SharedCounter(comm) if comm.size > 1 else _LocalCounter()
        bar = _Progress(total, progress) if comm.rank == 0 else None
        start = time.perf_counter()
        try:
            outcome = _loop(
                comm=comm,
                job=job,
                engine=engine,
                writer=sink,
                counter=counter,
                units=units,
                stop=stop,
                progress=bar,
                finish=sink.close if kind != "mpio" else sink.flush,
            )
            # from here on every rank makes the same collective calls, whatever happened
            outcome.logged = rank_log.written
            outcomes: list[_Outcome] = comm.allgather(outcome)
            elapsed = time.perf_counter() - start
            signum = next((o.signum for o in outcomes if o.signum is not None), None)
            fatal = next(((o.rank, o.host, *o.fatal) for o in outcomes if o.fatal), None)
            finished = sum(o.units for o in outcomes)
            complete = fatal is None and signum is None and finished == len(units)
            if kind == "mpio":
                end = comm.bcast(_now() if comm.rank == 0 else None)
                if complete:
                    sink.set_attrs(end_time=end)
                sink.close()
            if bar is not None:
                bar.close()
            result = _on_root(
                comm,
                _conclude,
                job,
                kind=kind,
                comm_size=comm.size,
                complete=complete,
                outcomes=outcomes,
                elapsed=elapsed,
                total=total,
                signum=signum,
            )
        finally:
            counter.close()
            _close_engine(engine)
            if bar is not None:
                bar.close()
            if kind != "mpio":  # normally closed already; after an exception keep what is
                with contextlib.suppress(Exception):  # buffered, without hiding the exception
                    sink.close()
    if fatal is not None:
        rank, host, message, code = fatal
        where = f"rank {rank} ({host}): " if comm.size > 1 else ""
        raise RunError(
            f"{where}{message}; every finished unit is in {job.output}: continue with --resume",
            exit_code=code if code != EXIT_INTERNAL else EXIT_RUN,
        )
    return result


def _comm_self() -> Any:
    from mpi4py import MPI

    return MPI.COMM_SELF


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


def _flush_seconds() -> float:
    """``$XRMOD_FLUSH_SECONDS``: longest time finished units wait in a rank file's buffer."""
    value = os.environ.get(FLUSH_ENV, "").strip()
    if not value:
        return FLUSH_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise InputError(f"{FLUSH_ENV} must be a number of seconds >= 0, got {value!r}")
    return seconds


def _prepared_engine(job: Job) -> Any:
    engine = get_engine(job.config.library.engine)
    engine.prepare(job)
    return engine


def _close_engine(engine: Any) -> None:
    """Let the engine release its scratch files; a failure there is logged, not raised."""
    try:
        engine.close()
    except Exception:
        log.warning("closing the %s engine failed", engine.name, exc_info=True)


def _create(job: Job, attrs: dict[str, Any], comm: Any) -> None:
    create_library(
        job.output,
        job.grid,
        family=job.family.name,
        units=job.family.units,
        attrs=attrs,
        comm=comm,
    )


def _set_attrs(path: Path, **attrs: Any) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        for key, value in attrs.items():
            f.attrs[key] = value


def _open_writer(kind: str, job: Job, comm: Any, mpio_comm: Any) -> Any:
    if kind == "mpio":  # batched too: one MPI-IO write per dataset per batch
        return LibraryWriter(job.output, job.grid, comm=mpio_comm, flush_seconds=_flush_seconds())
    if kind == "merge":
        return RankFileWriter(
            rank_file_path(job.output, comm.rank),
            job.grid,
            config_text=job.config.text,
            rank=comm.rank,
            flush_seconds=_flush_seconds(),
        )
    return LibraryWriter(job.output, job.grid)


def _finish_attrs(path: Path, n_ranks: int, kind: str) -> None:
    _set_attrs(path, n_ranks=n_ranks, writer=kind, end_time=_now())


def _resume_command(job: Job, comm_size: int) -> str:
    args = ["xrmod-gen"]
    if job.config.source_path not in ("", "<default>"):
        args.append(str(job.config.source_path))
    args += ["-o", str(job.output), "--resume"]
    prefix = f"mpirun -n {comm_size} " if comm_size > 1 else ""
    return prefix + " ".join(shlex.quote(a) for a in args)


def _conclude(
    job: Job,
    *,
    kind: str,
    comm_size: int,
    complete: bool,
    outcomes: list[_Outcome],
    elapsed: float,
    total: int,
    signum: int | None,
) -> int:
    """Rank 0 after every rank has stopped: merge, check, report; the exit code."""
    path = job.output
    merge_s = 0.0
    if kind == "merge":
        files = [rank_file_path(path, o.rank) for o in outcomes]
        files = [p for p in files if p.exists()]
        start = time.perf_counter()
        report = merge_rank_files(path, files, job.grid, config_text=job.config.text)
        merge_s = time.perf_counter() - start
        written = sum(o.units for o in outcomes)
        if report.units != written:
            raise RunError(
                f"merge found {report.units} units in the rank files, the ranks wrote "
                f"{written}; the rank files are kept: run again with --resume"
            )
        for p in files:
            p.unlink()
        log.info("merged %d units from %d rank files in %.2f s", report.units, len(files), merge_s)
    counts = count_status(path, job.grid)
    missing = counts.get(int(Status.NOT_COMPUTED), 0)
    if complete and missing:
        raise RunError(f"{path}: {missing} points missing after a complete run (a bug: report it)")
    if complete and kind != "mpio":
        _finish_attrs(path, comm_size, kind)
    points = sum(o.points for o in outcomes)
    rate = points / elapsed if elapsed > 0 else float("inf")
    log.info(
        "%d points in %.1f s (%.1f points/s) on %d rank(s); compute %.1f s, write %.2f s "
        "(slowest rank), merge %.2f s; waiting for units %.2f s (most on a rank)",
        points,
        elapsed,
        rate,
        comm_size,
        max(o.compute_s for o in outcomes),
        max(o.write_s for o in outcomes),
        merge_s,
        max(o.wait_s for o in outcomes),
    )
    counts_modified = count_status(path, job.grid, "status_modified")
    for code in sorted(set(counts) | set(counts_modified)):
        if code < 0:
            log.warning(
                "status %d (%s): %d points for T1, %d for T1'",
                code,
                Status(code).description,
                counts.get(code, 0),
                counts_modified.get(code, 0),
                extra=_SUMMARY,
            )
    logs = [str(rank_log_path(path, o.rank)) for o in outcomes if o.logged]
    if logs:
        log.warning("rank logs: %s", ", ".join(logs), extra=_SUMMARY)
    if signum is not None:
        name = signal.Signals(signum).name
        log.warning(
            "interrupted by %s: %d of %d points of this run done, %d not yet computed; "
            "every finished unit is in %s. To continue: %s",
            name,
            points,
            total,
            missing,
            path,
            _resume_command(job, comm_size),
            extra=_SUMMARY,
        )
        return 128 + signum
    log.info("done: %s", path)
    return 0
