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

Finished units are buffered in memory and written in batches, by the policy
of every batched writer (:class:`xrmod.library.UnitBatch`): a batch is
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

import contextlib
import hashlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xrmod.engines.base import EXTRAS, UnitResult
from xrmod.errors import InputError
from xrmod.library import (
    FLUSH_BYTES,
    FLUSH_SECONDS,
    UNIT_FIELDS,
    LibraryWriter,
    UnitBatch,
    small_metadata_cache,
    unit_bytes,
)

if TYPE_CHECKING:
    from xrmod.grid import Grid

__all__ = [
    "RANKFILE_FORMAT",
    "MergeReport",
    "RankFileWriter",
    "config_sha256",
    "find_rank_files",
    "merge_block_bytes",
    "merge_rank_files",
    "rank_file_path",
    "rank_log_path",
]

log = logging.getLogger(__name__)

RANKFILE_FORMAT = "xrmod-rankfile"
RANKFILE_VERSION = 2
#: Datasets of a row, in the order of its checksum (fixed by format version 2); their
#: dtypes and shapes are those of the library (:data:`xrmod.library.UNIT_FIELDS`).
_FIELDS = ("results", "results_modified", "status", "status_modified", *EXTRAS)
#: Size of a rank file's chunks of rows (about).
_CHUNK_BYTES = 64 << 10
#: A merge block moves this many bytes of rows per rank file (every block reads every
#: file: few rows a file make a read's fixed cost dominate), within the bounds below.
_BLOCK_BYTES_PER_FILE = 256 << 10
#: Bounds of a merge block's size; the merge holds about three blocks at once.
_BLOCK_BYTES_MIN, _BLOCK_BYTES_MAX = 1 << 20, 64 << 20


def merge_block_bytes(files: int) -> int:
    """Bytes of rows one merge block moves when merging *files* rank files.

    256 KB per file, at least 1 MB, at most 64 MB. Measured (docs/scaling.md):
    64 rank files of a 10⁶-point grid merge in 10.9 s with 1 MB blocks, 2.9 s
    with 16 MB.
    """
    return min(_BLOCK_BYTES_MAX, max(_BLOCK_BYTES_MIN, files * _BLOCK_BYTES_PER_FILE))


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


def _row_checksums(starts: np.ndarray, fields: dict[str, np.ndarray]) -> np.ndarray:
    """CRC-32 of each row: its start (int64), then each field's bytes in :data:`_FIELDS` order.

    One ``zlib.crc32`` call per row over the row's bytes laid end to end, equal
    to chaining the CRC over the start and the fields one after the other.
    """
    n = len(starts)
    parts = [np.ascontiguousarray(starts, dtype=np.int64).view(np.uint8).reshape(n, -1)]
    for name in _FIELDS:
        arr = np.ascontiguousarray(fields[name], dtype=UNIT_FIELDS[name][0])
        parts.append(arr.view(np.uint8).reshape(n, -1))
    rows = np.concatenate(parts, axis=1)
    return np.array([zlib.crc32(r) for r in rows], dtype=np.uint32)


class RankFileWriter:
    """Append one rank's finished units to its rank file (SWMR), buffered and flushed in batches.

    The units wait in a :class:`xrmod.library.UnitBatch` (the policy of every
    batched writer): a batch goes to the file when a unit arrives
    ``flush_seconds`` or more after the last flush, when the buffer is full,
    and on :meth:`flush` and :meth:`close`. Killed outright, a rank loses at
    most the units of ``flush_seconds`` of its work (none that a flush wrote).

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
    flush_seconds, flush_bytes, clock
        When a batch is due (:class:`xrmod.library.UnitBatch`); ``flush_seconds=0``
        writes every unit at once.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        grid: Grid,
        *,
        config_text: str,
        rank: int,
        flush_seconds: float = FLUSH_SECONDS,
        flush_bytes: int = FLUSH_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        import h5py

        self.path = Path(path)
        p = grid.points_per_theta
        k = max(1, _CHUNK_BYTES // (24 * p))  # rows per chunk
        # no chunk cache: a write that fails (a full disk) fails at once, with nothing
        # left dirty in HDF5's cache (HDF5 2.0 crashes closing a file with dirty chunks
        # it cannot write)
        self._file = h5py.File(self.path, "w", libver="latest", rdcc_nbytes=0)
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
        for name in _FIELDS:
            dtype, shape, fill = UNIT_FIELDS[name]
            self._ds[name] = f.create_dataset(
                name,
                shape=(0, p, *shape),
                maxshape=(None, p, *shape),
                dtype=dtype,
                chunks=(k, p, *shape),
                fillvalue=fill,
            )
        self._ds["checksum"] = f.create_dataset(
            "checksum", shape=(0,), maxshape=(None,), dtype=np.uint32, chunks=(max(1024, k),)
        )
        f.swmr_mode = True
        self._batch = UnitBatch(
            p, flush_seconds=flush_seconds, flush_bytes=flush_bytes, clock=clock
        )
        self._n = 0  # rows in the file

    def __enter__(self) -> RankFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the file is closed (a close that failed may leave it open)."""
        return not self._file.id.valid

    @property
    def rows(self) -> int:
        """Units written to the file so far (not counting the buffer)."""
        return self._n

    def write(self, unit: UnitResult) -> None:
        """Add one unit (one whole θ); flush when due."""
        if self._batch.add(unit):
            self.flush()

    def flush(self) -> None:
        """Write the buffered units to the file and flush it (SWMR readers see them)."""
        starts, values = self._batch.take()
        k = starts.size
        if k:
            n = self._n
            rows = slice(n, n + k)
            for ds in self._ds.values():
                ds.resize(n + k, axis=0)
            for name in _FIELDS:
                self._ds[name][rows] = values[name]
            self._ds["checksum"][rows] = _row_checksums(starts, values)
            self._ds["start"][rows] = starts  # marks the rows as used
            self._n += k
        self._file.flush()

    def close(self) -> None:
        """Flush the buffered units and close the rank file."""
        if not self._file.id.valid:
            return
        try:
            self.flush()
        finally:
            self._file.close()


#: What h5py raises reading a damaged or truncated HDF5 file.
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError)
_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _stored_eof(path: Path) -> int | None:
    """End-of-file address an HDF5 file's superblock (version 2 or 3) records, or None.

    The superblock is at 0, 512, 1024, ... bytes; versions 2 and 3 (``libver
    latest``, as rank files are written) hold, after the signature, version,
    sizes of offsets and lengths and flags: the base address, the extension's
    address and the end-of-file address.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        at = 0
        while at + 48 <= size:
            f.seek(at)
            head = f.read(48)
            if head[:8] == _SIGNATURE:
                if head[8] not in (2, 3) or head[9] != 8:
                    return None
                base = int.from_bytes(head[12:20], "little")
                return base + int.from_bytes(head[28:36], "little")
            at = 512 if at == 0 else at * 2
    return None


def _check_not_truncated(path: Path) -> None:
    """Refuse a rank file shorter than its superblock says (a cut copy, a full disk).

    HDF5's SWMR reader does not check this and retries the missing metadata
    for minutes; this check takes a few bytes.
    """
    try:
        size = os.path.getsize(path)
        stored = _stored_eof(path)
    except OSError as e:
        raise unreadable(path, e) from e
    if stored is not None and size < stored:
        raise InputError(
            f"{path}: rank file is not readable (truncated: {size} bytes, its superblock "
            f"records {stored}); remove it (its units are computed again) and run again "
            "with --resume"
        )


def unreadable(path: str | os.PathLike, exc: BaseException) -> InputError:
    """The error for a rank file that cannot be read (damaged, truncated): remove it."""
    text = " ".join(str(exc).split())  # one line (HDF5's messages span several)
    return InputError(
        f"{path}: rank file is not readable ({type(exc).__name__}: {text}); remove it "
        "(its units are computed again) and run again with --resume"
    )


@dataclass(frozen=True)
class MergeReport:
    """What a merge did: units merged and rows dropped as damaged."""

    units: int
    damaged: int


class _RankFileReader:
    """One rank file opened for reading (SWMR: works on a file whose writer died)."""

    #: Rows between two wanted rows that are still read in one go rather than skipped.
    GAP = 64

    def __init__(self, path: Path, grid: Grid, config_text: str):
        import h5py

        self.path = path
        self.file = None
        _check_not_truncated(path)  # before HDF5: its SWMR reader retries for minutes
        try:
            # each chunk is read once: no chunk cache (memory independent of the file size)
            self.file = h5py.File(path, "r", libver="latest", swmr=True, rdcc_nbytes=0)
            small_metadata_cache(self.file)
            self._check(grid, config_text)
        except InputError:
            raise
        except _READ_ERRORS as e:
            if self.file is not None:
                with contextlib.suppress(Exception):
                    self.file.close()
            raise unreadable(path, e) from e

    def _check(self, grid: Grid, config_text: str) -> None:
        """Check the rank file's format and configuration; index its rows."""
        attrs = self.file.attrs
        if attrs.get("format") != RANKFILE_FORMAT:
            self.file.close()
            raise InputError(f"{self.path}: not an xrmod rank file; remove it")
        version = int(attrs.get("format_version", 0))
        if version != RANKFILE_VERSION:
            self.file.close()
            raise InputError(
                f"{self.path}: rank file of format version {version} (an older xrmod, one status "
                f"for both fits); this xrmod merges version {RANKFILE_VERSION} only. Remove "
                "it (its units are computed again), or finish the run with the xrmod that "
                "wrote it"
            )
        if attrs.get("config_sha256") != config_sha256(config_text):
            self.file.close()
            raise InputError(
                f"{self.path}: rank file of a different configuration than the library; remove it"
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
        try:
            for run in np.split(rows, breaks):
                lo, hi = int(run[0]), int(run[-1]) + 1
                sel = run - lo
                for name, chunks in parts.items():
                    chunks.append(f[name][lo:hi][sel])
        except _READ_ERRORS as e:
            raise unreadable(self.path, e) from e
        data = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        fields = {name: data[name] for name in _FIELDS}
        good = _row_checksums(data["start"], fields) == data["checksum"]
        return fields, good

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class _Block:
    """The checked rows of one block of θ, in θ order, ready to be stored."""

    starts: np.ndarray  # (n,) first flat index of each good unit
    values: dict[str, np.ndarray]  # name -> (n, P, ...)
    damaged: list[int]  # θ whose row failed its checksum


def _read_block(
    readers: list[_RankFileReader],
    source: np.ndarray,
    row: np.ndarray,
    t0: int,
    t1: int,
    p: int,
) -> _Block:
    """Task: read θ *t0* to *t1* from the rank files and check their checksums.

    *source* gives each θ's rank file (its index in *readers*, -1: none),
    *row* its row there.
    """
    src = source[t0:t1]
    theta = t0 + np.flatnonzero(src >= 0)
    values = {
        name: np.empty((theta.size, p, *UNIT_FIELDS[name][1]), dtype=UNIT_FIELDS[name][0])
        for name in _FIELDS
    }
    good = np.ones(theta.size, dtype=bool)
    for i in np.unique(src[src >= 0]):
        at = np.flatnonzero(source[theta] == i)  # positions in the block, θ order
        order = np.argsort(row[theta[at]])  # a rank file is read in row order
        fields, ok = readers[int(i)].read(row[theta[at[order]]])
        for name in _FIELDS:
            values[name][at[order]] = fields[name]
        good[at[order]] = ok
    if not good.all():
        values = {name: v[good] for name, v in values.items()}
    return _Block(starts=theta[good] * p, values=values, damaged=theta[~good].tolist())


def _store_block(writer: LibraryWriter, block: _Block, lock: threading.Lock) -> list[int]:
    """Task: write one checked block into the library (status last); the damaged θ."""
    with lock:  # one block writes the library at a time
        writer.write_batch(block.starts, block.values)
    return block.damaged


def merge_rank_files(
    library: str | os.PathLike,
    paths: list[Path],
    grid: Grid,
    *,
    config_text: str,
    block_bytes: int | None = None,
    workers: int = 2,
) -> MergeReport:
    """Merge rank files into the library with dask (threaded scheduler).

    Rows are written at their θ's place in the library; a θ found in no rank
    file is left as it is. Rows whose checksum fails (a unit being written
    when its process died) are dropped and logged. The grid is cut into
    blocks of θ, and each block is a chain of two ``dask.delayed`` tasks:
    read and check its rows from the rank files, then store them in the
    library (through :meth:`xrmod.library.LibraryWriter.write_batch`, under a
    lock: HDF5 writes one block at a time). dask runs a block's store as soon
    as its read is done, so memory stays at a few blocks whatever the grid
    size. The rank files stay open while merging and are not removed here.

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
    block_bytes : int, optional
        Approximate size of the rows one block moves; by default
        :func:`merge_block_bytes` of the number of files. Memory: about three
        blocks, plus 28 bytes per θ of the grid (where each θ is).
    workers : int
        Threads of the dask scheduler.

    Returns
    -------
    MergeReport
    """
    import dask

    p = grid.points_per_theta
    last = grid.theta_shape[-1]
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
        if block_bytes is None:
            block_bytes = merge_block_bytes(len(readers))
        block = max(1, block_bytes // unit_bytes(p))
        if block > last:  # whole rows of the last axis: fewer, longer writes
            block -= block % last

        with LibraryWriter(library, grid) as writer:
            lock = threading.Lock()
            read, store = dask.delayed(_read_block), dask.delayed(_store_block)
            tasks = []
            for t0 in range(0, grid.n_theta, block):
                t1 = min(t0 + block, grid.n_theta)
                if (source[t0:t1] >= 0).any():
                    rows = read(readers, source, row, t0, t1, p, dask_key_name=f"read-{t0}")
                    tasks.append(store(writer, rows, lock, dask_key_name=f"store-{t0}"))
            # No order between blocks is needed: the rank files are removed only
            # after a complete merge, and --resume merges them again first.
            done = dask.compute(*tasks, scheduler="threads", num_workers=workers)
        damaged = [t for part in done for t in part]
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
