"""The run: set up on every rank, hand out the units, write them, conclude.

Every rank, rank 0 included, computes: work units (one θ with all its
points) are handed out by the shared counter (:mod:`xrmod.driver.counter`),
so no rank idles while another has a backlog. No collective call happens
between the first unit and the last. Before and after the loop every step
that can fail is agreed on (:func:`~xrmod.driver.comm.agree`): an error on
one rank is raised on every rank, and every rank makes the same collective
calls whatever happened, so nothing hangs.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrmod.driver.comm import Comm, agree, error_info, host, on_root, world
from xrmod.driver.console import RANK_ONLY, SUMMARY, Progress, RankLog
from xrmod.driver.counter import Counter, make_counter
from xrmod.driver.writers import Writer, make_writer, mark_complete, now, set_attrs
from xrmod.engines import get_engine
from xrmod.engines.base import Engine, UnitResult
from xrmod.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_RUN,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    InputError,
    OutputError,
    RunError,
    XrmodError,
)
from xrmod.grid import WorkUnit
from xrmod.integrity import check_library, seal_library, unseal_library
from xrmod.job import Job, load_job
from xrmod.library import count_status, pending_units
from xrmod.merge import find_rank_files, merge_rank_files, rank_log_path
from xrmod.output import OutputLock, check_output_path, os_error_message
from xrmod.resume import (
    adopt_config,
    check_same_config,
    check_same_provenance,
    check_same_responses,
    stored_config_text,
)
from xrmod.status import Status

__all__ = ["generate", "run"]

log = logging.getLogger("xrmod.driver")

#: Exit code of a run stopped by each signal the driver handles.
_EXIT_BY_SIGNAL = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


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
    force_unlock: bool = False,
) -> int:
    """Load and check a job on every rank, then run it (``xrmod-gen``); return the exit code.

    A configuration error found on any rank ends every rank with one message;
    so does an output where no file can be made (checked with ``check`` too).
    """
    comm = world()
    job = agree(comm, load_job, config, output=output)
    if comm.rank == 0:
        log.info("%s", job.summary())
        if comm.size > 1:
            log.info("%d MPI ranks", comm.size)
    if check:
        on_root(comm, check_output_path, job.output)
        return EXIT_OK
    return run(
        job,
        overwrite=overwrite,
        resume=resume,
        writer=writer,
        progress=progress,
        comm=comm,
        force_unlock=force_unlock,
    )


def run(
    job: Job,
    *,
    overwrite: bool = False,
    resume: bool = False,
    writer: str = "auto",
    progress: bool = True,
    comm: Comm | None = None,
    force_unlock: bool = False,
) -> int:
    """Compute the points of *job* still to do and write the library; return the exit code.

    Rank 0 first checks that a file can be made at the output, then takes its
    lock (``OUTPUT.lock``, :class:`xrmod.output.OutputLock`) for the whole
    run: another run on the same output is refused (exit 2) on every rank.

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
    force_unlock : bool
        Take the output's lock even when another run's lock is there
        (``--force-unlock``: a lock from another host whose run has ended).

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
    comm = world() if comm is None else comm
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    held: list[OutputLock] = []
    on_root(comm, _lock_output, job.output, held, force=force_unlock)
    try:
        rank_log = RankLog(job.output, comm.rank)
        try:
            # a signal during set-up stops the run before its first unit
            with StopRequest() as stop:
                return _run(job, comm, stop, rank_log, overwrite, resume, writer, progress)
        finally:
            rank_log.close()
    finally:
        for lock in held:  # rank 0's, after every rank is done with the output
            lock.release()


def _lock_output(path: Path, held: list[OutputLock], *, force: bool) -> None:
    """Rank 0: check that a file can be made at *path*, then take its lock (into *held*)."""
    check_output_path(path)
    held.append(OutputLock.acquire(path, force=force))


# --------------------------------------------------------------------------- signals
class StopRequest:
    """SIGTERM/SIGINT handlers that only record the signal (the loop acts on it)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in _EXIT_BY_SIGNAL:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- set-up
@dataclass(frozen=True)
class Plan:
    """What rank 0 found about the output before the run."""

    create: bool
    pending: np.ndarray | None  # unit numbers to compute; None = all
    merged: int  # units recovered from an interrupted run's rank files


def _plan(job: Job, *, overwrite: bool, resume: bool) -> Plan:
    """Rank 0: check the output, recover leftovers of an interrupted run, list pending units."""
    path = job.output
    leftovers = find_rank_files(path)
    if not path.exists():
        if leftovers and not overwrite:
            names = ", ".join(str(p) for p in leftovers)
            raise InputError(f"rank files without their library {path}: {names}; remove them")
        for p in leftovers:
            p.unlink()
        if resume:
            log.info("%s does not exist yet: starting a new library", path)
        return Plan(create=True, pending=None, merged=0)
    if overwrite:
        path.unlink()
        for p in leftovers:
            p.unlink()
        return Plan(create=True, pending=None, merged=0)
    if not resume:
        raise InputError(
            f"{path} exists; use --resume to continue it, or --overwrite to replace it"
        )
    check_same_config(path, job.config)
    provenance = job.provenance()
    check_same_responses(path, provenance)
    check_library(path, "cannot resume, ")  # what it keeps must be what was written
    unseal_library(path)  # written from here on: new checksums when the run ends
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
        f.attrs["resume_time"] = now()
    log.info("resuming %s: %d of %d units still to compute", path, pending.size, job.grid.n_units())
    return Plan(create=False, pending=pending, merged=merged)


def _readable_plan(job: Job, *, overwrite: bool, resume: bool) -> Plan:
    """:func:`_plan`, with what HDF5 raises on a damaged library turned into a clear error.

    h5py raises OSError, RuntimeError, KeyError or ValueError when a file is
    truncated or damaged ("Can't decode global heap prefix"): resuming from it
    is refused (exit 2) naming the library, instead of an internal error. A
    write refused by the file system (no space, no permission) is named as such.
    """
    try:
        return _plan(job, overwrite=overwrite, resume=resume)
    except XrmodError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        message = os_error_message(e, job.output)
        if message is not None:
            raise OutputError(f"{message}; nothing was computed: then run again") from e
        if not resume:
            raise
        text = " ".join(str(e).split())
        raise InputError(
            f"{job.output}: the library is not readable ({type(e).__name__}: {text}); cannot "
            "resume it. If it is damaged, move it aside and compute it again (or use "
            "--overwrite)"
        ) from e


def _prepared_engine(job: Job, prepared: list[Engine]) -> Engine:
    """The job's engine, prepared; added to *prepared* (closed after the run, come what may)."""
    engine = get_engine(job.config.library.engine)
    engine.prepare(job)
    prepared.append(engine)
    return engine


def _close_engine(engine: Engine) -> None:
    """Let the engine release its scratch files; a failure there is logged, not raised."""
    try:
        engine.close()
    except Exception:
        log.warning("closing the %s engine failed", engine.name, exc_info=True)


def _library_attrs(job: Job, n_ranks: int, identity: dict[str, str], writer: str) -> dict:
    """Root attributes of a new library: the job's provenance, the engine's, the writer."""
    return {**job.provenance(n_ranks=n_ranks), **identity, "writer": writer}


# --------------------------------------------------------------------------- the run
def _run(
    job: Job,
    comm: Comm,
    stop: StopRequest,
    rank_log: RankLog,
    overwrite: bool,
    resume: bool,
    writer_name: str,
    progress: bool,
) -> int:
    writer = agree(comm, make_writer, writer_name, job, comm)
    writer.prepare()
    plan = on_root(comm, _readable_plan, job, overwrite=overwrite, resume=resume)
    if plan.pending is not None and plan.pending.size == 0:
        if comm.rank == 0:
            log.info("%s: every point is computed already; nothing to do", job.output)
        on_root(comm, mark_complete, job.output, n_ranks=comm.size, writer=writer.name)
        on_root(comm, seal_library, job.output)
        return EXIT_OK
    prepared: list[Engine] = []
    try:
        engine = agree(comm, _prepared_engine, job, prepared)
        return _run_engine(job, comm, stop, rank_log, engine, writer, plan, progress)
    finally:
        for engine in prepared:
            _close_engine(engine)


def _run_engine(
    job: Job,
    comm: Comm,
    stop: StopRequest,
    rank_log: RankLog,
    engine: Engine,
    writer: Writer,
    plan: Plan,
    progress: bool,
) -> int:
    identity = agree(comm, engine.provenance)  # which XSPEC: the same on every rank
    if plan.create:
        writer.create(on_root(comm, _library_attrs, job, comm.size, identity, writer.name))
    else:
        on_root(comm, check_same_provenance, job.output, identity)
        on_root(comm, set_attrs, job.output, n_ranks=comm.size, writer=writer.name)
    grid = job.grid
    units: Sequence[int] = range(grid.n_units()) if plan.pending is None else plan.pending
    total = grid.points_per_theta * len(units)
    try:
        writer.open()
        if comm.rank == 0:
            log.info(
                "writing %s: %d points in %d units on %d rank(s), writer %s",
                job.output,
                total,
                len(units),
                comm.size,
                writer.name,
            )
        counter = make_counter(comm, len(units), engine.units_per_group)
        bar = Progress(total, progress) if comm.rank == 0 else None
        try:
            start = time.perf_counter()
            outcome = _loop(
                comm=comm,
                job=job,
                engine=engine,
                writer=writer,
                counter=counter,
                units=units,
                stop=stop,
                progress=bar,
            )
            # from here on every rank makes the same collective calls, whatever happened
            outcome.logged = rank_log.written
            outcomes: list[Outcome] = comm.allgather(outcome)
            elapsed = time.perf_counter() - start
            signum = next((o.signum for o in outcomes if o.signum is not None), None)
            fatal = next(((o.rank, o.host, *o.fatal) for o in outcomes if o.fatal), None)
            finished = sum(o.units for o in outcomes)
            complete = fatal is None and signum is None and finished == len(units)
            if bar is not None:
                bar.close()
            try:
                writer.close(complete)
                code = on_root(
                    comm,
                    _conclude,
                    job,
                    writer,
                    complete=complete,
                    failed=fatal is not None,
                    outcomes=outcomes,
                    elapsed=elapsed,
                    total=total,
                    signum=signum,
                )
            except RunError as exc:  # raised on every rank alike
                if fatal is None and exc.exit_code not in (EXIT_INTERNAL, EXIT_RUN):
                    raise
                # the output failed after the loop: a run failure (4), like one during it
                fatal = fatal or (0, "", str(exc), EXIT_INTERNAL)
        finally:
            counter.close()
            if bar is not None:
                bar.close()
    finally:
        writer.abort()  # normally closed already; after an error keep what is batched
    if fatal is not None:
        rank, where, message, error_code = fatal
        prefix = f"rank {rank} ({where}): " if comm.size > 1 and where else ""
        raise RunError(
            f"{prefix}{message}; every finished unit is in {job.output}: continue with --resume",
            exit_code=EXIT_RUN if error_code == EXIT_INTERNAL else error_code,
        )
    return code


# --------------------------------------------------------------------------- the loop
def _compute(engine: Engine, unit: WorkUnit, k: int, rank: int) -> UnitResult:
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
            host(),
            int(Status.ERROR),
            exc_info=True,
            extra=RANK_ONLY,
        )
        return UnitResult.failed(unit.start, unit.stop, Status.ERROR)


@dataclass
class Outcome:
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
    comm: Comm,
    job: Job,
    engine: Engine,
    writer: Writer,
    counter: Counter,
    units: Sequence[int],
    stop: StopRequest,
    progress: Progress | None,
) -> Outcome:
    """Take units from the counter until none are left, a signal, or a fatal error.

    The writer's :meth:`~xrmod.driver.writers.Writer.finish` (closing a rank
    file, writing a batch) runs as soon as this rank's loop ends, before
    rank 0 waits for the others; an error there is fatal. A fatal error is
    recorded in the outcome, not raised: every rank goes on to the same
    collective calls.
    """
    grid = job.grid
    n = len(units)
    out = Outcome(rank=comm.rank, host=host())
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
        log.error("rank %d (%s): fatal error, stopping the run", comm.rank, host(), exc_info=True)
        out.fatal = error_info(exc)
        counter.stop_all(n)
    t = time.perf_counter()
    try:
        writer.finish()
    except Exception as exc:
        log.error("rank %d (%s): closing the writer failed", comm.rank, host(), exc_info=True)
        out.fatal = out.fatal or error_info(exc)
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


# --------------------------------------------------------------------------- conclusion
def _resume_command(job: Job, comm_size: int) -> str:
    args = ["xrmod-gen"]
    if job.config.source_path not in ("", "<default>"):
        args.append(str(job.config.source_path))
    args += ["-o", str(job.output), "--resume"]
    prefix = f"mpirun -n {comm_size} " if comm_size > 1 else ""
    return prefix + " ".join(shlex.quote(a) for a in args)


def _conclude(
    job: Job,
    writer: Writer,
    *,
    complete: bool,
    failed: bool,
    outcomes: list[Outcome],
    elapsed: float,
    total: int,
    signum: int | None,
) -> int:
    """Rank 0 after every rank has stopped: collect, check, report; the exit code."""
    path = job.output
    comm_size = len(outcomes)
    merge_s = writer.collect(sum(o.units for o in outcomes), failed=failed)
    counts = count_status(path, job.grid)
    missing = counts.get(int(Status.NOT_COMPUTED), 0)
    if complete and missing:
        raise RunError(f"{path}: {missing} points missing after a complete run (a bug: report it)")
    if complete:
        writer.mark_complete()
    if complete or (signum is not None and not failed):
        seal_library(path)  # after the last write: what --resume and info verify
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
                extra=SUMMARY,
            )
    logs = [str(rank_log_path(path, o.rank)) for o in outcomes if o.logged]
    if logs:
        log.warning("rank logs: %s", ", ".join(logs), extra=SUMMARY)
    if signum is not None:
        log.warning(
            "interrupted by %s: %d of %d points of this run done, %d not yet computed; "
            "every finished unit is in %s. To continue: %s",
            signal.Signals(signum).name,
            points,
            total,
            missing,
            path,
            _resume_command(job, comm_size),
            extra=SUMMARY,
        )
        return _EXIT_BY_SIGNAL[signum]
    if failed:  # the fatal error is the message: no "done" line before it
        return EXIT_RUN
    log.info("done: %s", path)
    return EXIT_OK
