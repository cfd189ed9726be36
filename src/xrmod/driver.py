"""Run a job: schedule work units, call the engine, write the library.

This version runs in one process; the MPI scheduler (shared counter, parallel
HDF5, rank files) lives here too when it lands, and nowhere else.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from xrmod.engines import get_engine
from xrmod.errors import InputError
from xrmod.job import Job
from xrmod.library import LibraryWriter, create_library
from xrmod.status import Status

__all__ = ["run"]

log = logging.getLogger(__name__)


class _Progress:
    """A tqdm bar on a terminal; otherwise a log line every 10 % of the points."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.done = 0
        self.failed = 0
        self._next_log = 0.1
        self._start = time.perf_counter()
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="pt", smoothing=0.05, dynamic_ncols=True)

    def update(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed
        if self._bar is not None:
            self._bar.update(n)
            if failed:
                self._bar.set_postfix(failed=self.failed)
            return
        if self.done >= self._next_log * self.total or self.done == self.total:
            elapsed = time.perf_counter() - self._start
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info(
                "%d/%d points (%.0f%%), %.1f points/s, ETA %.0f s, %d failed",
                self.done,
                self.total,
                100 * self.done / self.total,
                rate,
                eta,
                self.failed,
            )
            self._next_log = (int(10 * self.done / self.total) + 1) / 10

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _check_output(path: Path, overwrite: bool) -> None:
    """Refuse to clobber a library or to start work that cannot be written."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; use --overwrite to replace it")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise InputError(f"{path}: directory {directory} is not writable")


def run(job: Job, *, overwrite: bool = False, progress: bool = True) -> int:
    """Compute every point of *job* and write the library; return the exit code.

    Points that fail are recorded with their status code; the run goes on and
    still exits 0 (the status dataset says which points failed).
    """
    _check_output(job.output, overwrite)
    engine = get_engine(job.config.library.engine)
    engine.prepare(job)
    grid = job.grid
    create_library(
        job.output,
        grid,
        family=job.family.name,
        units=job.family.units,
        attrs=job.provenance(n_ranks=1),
        overwrite=overwrite,
    )
    log.info("writing %s (%d points)", job.output, grid.size)
    bar = _Progress(grid.size, progress)
    counts: dict[int, int] = {}
    try:
        with LibraryWriter(job.output, grid) as writer:
            for k in range(grid.n_units()):
                result = engine.run_unit(grid.unit(k))
                writer.write(result)
                codes, n = np.unique(result.status, return_counts=True)
                for code, c in zip(codes.tolist(), n.tolist(), strict=True):
                    counts[code] = counts.get(code, 0) + c
                bar.update(result.stop - result.start, int(np.sum(result.status < 0)))
            writer.set_attrs(end_time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    finally:
        bar.close()
    for code, c in sorted(counts.items()):
        if code < 0:
            log.warning("%d points: status %d (%s)", c, code, Status(code).description)
    log.info("done: %s", job.output)
    return 0
