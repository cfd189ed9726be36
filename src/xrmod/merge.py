"""Rank files and their merge into the library (the path for serial h5py).

When h5py has no MPI support, each rank appends its finished work units to
its own *rank file* next to the output (``<output>.rank<N>.h5``); at the end
rank 0 merges them into the library with dask (threaded scheduler: h5py
objects do not pickle) and removes them. A run that is interrupted leaves
its rank files behind; ``--resume`` merges them before computing anything.

A rank file is written in HDF5's single-writer/multiple-reader (SWMR) mode,
so it stays readable if its process is killed, and every row carries a
CRC-32 of its contents: a row half-written when the process died is found
and dropped (its θ is computed again), never merged.

Finished units are buffered in memory and written in batches: a batch is
flushed to the file when the first unit after it has waited
``flush_seconds`` (default 2 s) since the previous flush, when the buffer
holds ``flush_bytes`` (default 4 MB), and always when the writer closes
(end of the run, SIGTERM/SIGINT, a fatal error). A SIGKILL therefore loses,
on each rank, the unit in flight and at most ``flush_seconds`` of finished
units; ``flush_seconds=0`` writes every unit at once.

Rank file layout (format ``xrmod-rankfile`` version 2), one row per unit
(one θ, P = R · NT points)::

    /start                  (n,) int64 first flat index of the unit; -1 = unused row
    /results                (n, P, 3) float64
    /results_modified       (n, P, 3) float64
    /status                 (n, P) int8 the point and its T1 fit
    /status_modified        (n, P) int8 its T1' fit
    /<extra>                (n, P) float64 for each name of xrmod.engines.base.EXTRAS
    /checksum               (n,) uint32 CRC-32 of the row
    attrs                   format, format_version, config_sha256, rank, points_per_theta

Version 1 (one status for both fits) is refused with a message: it can only
come from an interrupted run of an older xrmod, whose version-1 library this
xrmod does not resume either.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrmod.engines.base import EXTRAS, UnitResult
from xrmod.errors import InputError
from xrmod.library import _small_metadata_cache

__all__ = [
    "FLUSH_BYTES",
    "FLUSH_SECONDS",
    "RANKFILE_FORMAT",
    "MergeReport",
    "RankFileWriter",
    "config_sha256",
    "find_rank_files",
    "merge_rank_files",
    "rank_file_path",
    "rank_log_path",
]

log = logging.getLogger(__name__)

RANKFILE_FORMAT = "xrmod-rankfile"
RANKFILE_VERSION = 2
#: Default longest wait, in seconds, between a finished unit and its flush to the rank file.
FLUSH_SECONDS = 2.0
#: Default size of a rank file writer's buffer of finished units.
FLUSH_BYTES = 4 << 20
#: Datasets of a row, in checksum order: name -> (dtype, trailing shape after P, fill).
_FIELDS: dict[str, tuple[Any, tuple[int, ...], Any]] = {
    "results": (np.float64, (3,), np.nan),
    "results_modified": (np.float64, (3,), np.nan),
    "status": (np.int8, (), 0),
    "status_modified": (np.int8, (), 0),
    **{name: (np.float64, (), np.nan) for name in EXTRAS},
}
#: The library's datasets in the order a merge writes them: status last (the "done" marker).
_WRITE_ORDER = (*(name for name in _FIELDS if name != "status"), "status")
#: Size of a rank file's chunks of rows (about).
_CHUNK_BYTES = 64 << 10


def rank_file_path(output: str | os.PathLike, rank: int) -> Path:
    """The rank file of *rank* for the library *output*."""
    return Path(f"{output}.rank{rank}.h5")


def rank_log_path(output: str | os.PathLike, rank: int) -> Path:
    """The log file of *rank* for the library *output*."""
    return Path(f"{output}.rank{rank}.log")


def find_rank_files(output: str | os.PathLike) -> list[Path]:
    """Rank files left next to *output* (by any number of ranks), in rank order."""
    out = Path(output)
    directory = out.parent if str(out.parent) else Path(".")
    prefix = f"{out.name}.rank"
    found = []
    for p in directory.glob(f"{out.name}.rank*.h5"):
        middle = p.name[len(prefix) : -len(".h5")]
        if middle.isdigit():
            found.append((int(middle), p))
    return [p for _, p in sorted(found)]


def config_sha256(config_text: str) -> str:
    """SHA-256 of a configuration text: ties rank files to their library."""
    return hashlib.sha256(config_text.encode()).hexdigest()


def _row_bytes(per_theta: int) -> int:
    """Bytes of one rank file row (one θ), checksum and start included."""
    item = sum(np.dtype(dtype).itemsize * int(np.prod(tail)) for dtype, tail, _ in _FIELDS.values())
    return per_theta * item + 8 + 4


def _row_checksums(starts: np.ndarray, fields: dict[str, np.ndarray]) -> np.ndarray:
    """CRC-32 of each row: its start (int64), then each field's bytes in :data:`_FIELDS` order.

    One ``zlib.crc32`` call per row over the row's bytes laid end to end, equal
    to chaining the CRC over the start and the fields one after the other.
    """
    n = len(starts)
    parts = [np.ascontiguousarray(starts, dtype=np.int64).view(np.uint8).reshape(n, -1)]
    for name, (dtype, _, _) in _FIELDS.items():
        arr = np.ascontiguousarray(fields[name], dtype=dtype)
        parts.append(arr.view(np.uint8).reshape(n, -1))
    rows = np.concatenate(parts, axis=1)
    return np.array([zlib.crc32(r) for r in rows], dtype=np.uint32)


class RankFileWriter:
    """Append one rank's finished units to its rank file (SWMR), buffered and flushed in batches.

    A batch goes to the file when a unit arrives ``flush_seconds`` or more
    after the last flush, when the buffer is full, and on :meth:`flush` and
    :meth:`close`. Killed outright, a rank loses at most the units of
    ``flush_seconds`` of its work (none that a flush wrote).

    Parameters
    ----------
    path : path-like
        The rank file (replaced if it exists).
    grid : xrmod.grid.Grid
        The job's grid; every unit must be one whole θ.
    config_text : str
        The job's configuration text (its SHA-256 is stored).
    rank : int
        This rank's number (stored).
    flush_seconds : float
        Longest time a finished unit waits in memory (0: flush every unit).
    flush_bytes : int
        Size of the buffer: a full buffer is flushed (at least one unit).
    clock : callable
        Monotonic time in seconds (for tests).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        grid: Any,
        *,
        config_text: str,
        rank: int,
        flush_seconds: float = FLUSH_SECONDS,
        flush_bytes: int = FLUSH_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        import h5py

        self.path = Path(path)
        p = self._per_theta = grid.points_per_theta
        self._flush_seconds = float(flush_seconds)
        self._clock = clock
        k = max(1, _CHUNK_BYTES // (24 * p))  # rows per chunk
        self._file = h5py.File(self.path, "w", libver="latest")
        f = self._file
        f.attrs["format"] = RANKFILE_FORMAT
        f.attrs["format_version"] = RANKFILE_VERSION
        f.attrs["config_sha256"] = config_sha256(config_text)
        f.attrs["rank"] = rank
        f.attrs["points_per_theta"] = p
        self._ds = {
            "start": f.create_dataset(
                "start",
                shape=(0,),
                maxshape=(None,),
                dtype=np.int64,
                chunks=(max(1024, k),),
                fillvalue=-1,
            )
        }
        for name, (dtype, tail, fill) in _FIELDS.items():
            self._ds[name] = f.create_dataset(
                name,
                shape=(0, p, *tail),
                maxshape=(None, p, *tail),
                dtype=dtype,
                chunks=(k, p, *tail),
                fillvalue=fill,
            )
        self._ds["checksum"] = f.create_dataset(
            "checksum", shape=(0,), maxshape=(None,), dtype=np.uint32, chunks=(max(1024, k),)
        )
        f.swmr_mode = True
        capacity = max(1, int(flush_bytes) // _row_bytes(p))
        self._starts = np.full(capacity, -1, dtype=np.int64)
        self._buffer = {
            name: np.empty((capacity, p, *tail), dtype=dtype)
            for name, (dtype, tail, _) in _FIELDS.items()
        }
        self._pending = 0  # units in the buffer
        self._n = 0  # rows in the file
        self._flushed_at = clock()

    def __enter__(self) -> RankFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rows(self) -> int:
        """Units written to the file so far (not counting the buffer)."""
        return self._n

    def write(self, unit: UnitResult) -> None:
        """Add one unit (one whole θ); flush when due."""
        if unit.stop - unit.start != self._per_theta or unit.start % self._per_theta:
            raise ValueError(f"points {unit.start}..{unit.stop} are not one whole θ")
        fields = {
            "results": unit.results,
            "results_modified": unit.results_modified,
            "status": unit.status,
            "status_modified": unit.status_modified,
            **unit.extras,
        }
        values = [(name, fields[name]) for name in _FIELDS]  # a missing field: nothing changes
        i = self._pending
        for name, value in values:
            self._buffer[name][i] = value
        self._starts[i] = unit.start
        self._pending += 1
        if (
            self._pending == self._starts.size
            or self._clock() - self._flushed_at >= self._flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered units to the file and flush it (SWMR readers see them)."""
        k = self._pending
        if k:
            n = self._n
            rows = slice(n, n + k)
            buffered = {name: buf[:k] for name, buf in self._buffer.items()}
            starts = self._starts[:k]
            for ds in self._ds.values():
                ds.resize(n + k, axis=0)
            for name in _FIELDS:
                self._ds[name][rows] = buffered[name]
            self._ds["checksum"][rows] = _row_checksums(starts, buffered)
            self._ds["start"][rows] = starts  # marks the rows as used
            self._n += k
            self._pending = 0
        self._file.flush()
        self._flushed_at = self._clock()

    def close(self) -> None:
        """Flush the buffered units and close the rank file."""
        if not self._file.id.valid:
            return
        try:
            self.flush()
        finally:
            self._file.close()


@dataclass(frozen=True)
class MergeReport:
    """What a merge did: units merged and rows dropped as damaged."""

    units: int
    damaged: int


class _RankFileReader:
    """One rank file opened for reading (SWMR: works on a file whose writer died)."""

    #: Rows between two wanted rows that are still read in one go rather than skipped.
    GAP = 64

    def __init__(self, path: Path, grid: Any, config_text: str):
        import h5py

        self.path = path
        try:
            # each chunk is read once: no chunk cache (memory independent of the file size)
            self.file = h5py.File(path, "r", libver="latest", swmr=True, rdcc_nbytes=0)
            _small_metadata_cache(self.file)
        except OSError as e:
            raise InputError(f"{path}: rank file is not readable ({e}); remove it") from e
        attrs = self.file.attrs
        if attrs.get("format") != RANKFILE_FORMAT:
            self.file.close()
            raise InputError(f"{path}: not an xrmod rank file; remove it")
        version = int(attrs.get("format_version", 0))
        if version != RANKFILE_VERSION:
            self.file.close()
            raise InputError(
                f"{path}: rank file of format version {version} (an older xrmod, one status "
                f"for both fits); this xrmod merges version {RANKFILE_VERSION} only. Remove "
                "it (its units are computed again), or finish the run with the xrmod that "
                "wrote it"
            )
        if attrs.get("config_sha256") != config_sha256(config_text):
            self.file.close()
            raise InputError(
                f"{path}: rank file of a different configuration than the library; remove it"
            )
        p = grid.points_per_theta
        n = min(self.file[name].shape[0] for name in ("start", *_FIELDS, "checksum"))
        starts = self.file["start"][:n]
        valid = (starts >= 0) & (starts % p == 0) & (starts < grid.size)
        self.rows = np.flatnonzero(valid)
        self.theta = starts[valid] // p

    def read(self, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Fields of *rows* (increasing) and a boolean array: checksum good.

        Reads runs of nearby rows, so memory follows the rows asked for, not
        the span between the first and the last.
        """
        f = self.file
        breaks = np.flatnonzero(np.diff(rows) > self.GAP) + 1
        parts: dict[str, list[np.ndarray]] = {name: [] for name in ("start", *_FIELDS, "checksum")}
        for run in np.split(rows, breaks):
            lo, hi = int(run[0]), int(run[-1]) + 1
            sel = run - lo
            for name, chunks in parts.items():
                chunks.append(f[name][lo:hi][sel])
        data = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        fields = {name: data[name] for name in _FIELDS}
        good = _row_checksums(data["start"], fields) == data["checksum"]
        return fields, good

    def close(self) -> None:
        self.file.close()


def _theta_runs(covered: np.ndarray, t0: int, last: int) -> list[tuple[int, int]]:
    """Runs [a, b) of consecutive covered θ from *t0* on, none crossing a row of the last axis."""
    runs = []
    t, t1 = 0, covered.size
    while t < t1:
        if not covered[t]:
            t += 1
            continue
        end = t + 1
        while end < t1 and covered[end] and (t0 + end) % last != 0:
            end += 1
        runs.append((t0 + t, t0 + end))
        t = end
    return runs


def merge_rank_files(
    library: str | os.PathLike,
    paths: list[Path],
    grid: Any,
    *,
    config_text: str,
    block_bytes: int = 1 << 20,
    workers: int = 2,
) -> MergeReport:
    """Merge rank files into the library with dask (threaded scheduler).

    Rows are written at their θ's place in the library; a θ found in no rank
    file is left as it is. Rows whose checksum fails (a unit being written
    when its process died) are dropped and logged. The library is merged in
    blocks of θ, one dask task each (read the rows, check them, write them),
    so memory stays at a few blocks whatever the grid size. The rank files
    stay open while merging and are not removed here.

    Parameters
    ----------
    library : path-like
        The library to merge into (exists).
    paths : list of path
        Rank files (:func:`find_rank_files`).
    grid : xrmod.grid.Grid
        The library's grid.
    config_text : str
        The library's configuration text: every rank file must belong to it.
    block_bytes : int
        Approximate size of the rows one task moves.
    workers : int
        Threads of the dask scheduler.

    Returns
    -------
    MergeReport
    """
    import dask

    from xrmod.library import _open

    per_theta = grid.points_per_theta
    last = grid.theta_shape[-1]
    d = len(grid.theta_shape)
    readers: list[_RankFileReader] = []
    try:
        for path in paths:
            readers.append(_RankFileReader(Path(path), grid, config_text))
        source = np.full(grid.n_theta, -1, dtype=np.int32)
        row = np.full(grid.n_theta, -1, dtype=np.int64)
        for i, r in enumerate(readers):
            fresh = source[r.theta] < 0  # a θ in two files: identical results, keep one
            source[r.theta[fresh]] = i
            row[r.theta[fresh]] = r.rows[fresh]
        n_units = int(np.count_nonzero(source >= 0))
        if n_units == 0:
            return MergeReport(0, 0)
        block = max(1, block_bytes // _row_bytes(per_theta))
        if block > last:  # whole rows of the last axis: fewer, longer writes
            block -= block % last

        with _open(library, "r+") as f:
            lib = f["LIBRARY"]
            targets = {name: lib[name] for name in _FIELDS}
            lock = threading.Lock()  # one block writes the library at a time

            def merge_block(t0: int, t1: int) -> list[int]:
                """Read, check and write θ t0..t1-1; the damaged θ."""
                src = source[t0:t1]
                ok = src >= 0
                out = {
                    name: np.full((t1 - t0, per_theta, *tail), fill, dtype=dtype)
                    for name, (dtype, tail, fill) in _FIELDS.items()
                }
                bad: list[int] = []
                for i in np.unique(src[ok]):
                    local = np.flatnonzero(src == i)
                    rows = row[t0 + local]
                    order = np.argsort(rows)
                    fields, good = readers[int(i)].read(rows[order])
                    for name in _FIELDS:
                        out[name][local[order]] = fields[name]
                    ok[local[order][~good]] = False
                    bad.extend((t0 + local[order][~good]).tolist())
                runs = _theta_runs(ok, t0, last)
                with lock:
                    for name in _WRITE_ORDER:
                        ds = targets[name]
                        tail = ds.shape[d:]
                        for a, b in runs:
                            prefix = np.unravel_index(a, grid.theta_shape)
                            j = int(prefix[-1])
                            index = (*(int(x) for x in prefix[:-1]), slice(j, j + b - a))
                            ds[index] = out[name][a - t0 : b - t0].reshape(b - a, *tail)
                return bad

            tasks = [
                dask.delayed(merge_block, pure=False)(t0, min(t0 + block, grid.n_theta))
                for t0 in range(0, grid.n_theta, block)
                if (source[t0 : t0 + block] >= 0).any()
            ]
            # No order between blocks is needed: the rank files are removed only
            # after a complete merge, and --resume merges them again first.
            damaged = [
                t
                for part in dask.compute(*tasks, scheduler="threads", num_workers=workers)
                for t in part
            ]
            f.flush()
        if damaged:
            log.warning(
                "%d damaged unit(s) in the rank files (being written when a process died) "
                "were dropped; they are computed again",
                len(damaged),
            )
        return MergeReport(n_units - len(damaged), len(damaged))
    finally:
        for r in readers:
            r.close()
