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

Rank file layout (format ``xrmod-rankfile`` version 1), one row per unit
(one θ, P = R · NT points)::

    /start                  (n,) int64 first flat index of the unit; -1 = unused row
    /results                (n, P, 3) float64
    /results_modified       (n, P, 3) float64
    /status                 (n, P) int8
    /<extra>                (n, P) float64 for each name of xrmod.library.EXTRAS
    /checksum               (n,) uint32 CRC-32 of the row
    attrs                   format, format_version, config_sha256, rank, points_per_theta
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrmod.errors import InputError
from xrmod.library import EXTRAS, UnitResult, _BlockWriter

__all__ = [
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
RANKFILE_VERSION = 1
#: Datasets of a row, in checksum order: name -> (dtype, trailing shape after P, fill).
_FIELDS: dict[str, tuple[Any, tuple[int, ...], Any]] = {
    "results": (np.float64, (3,), np.nan),
    "results_modified": (np.float64, (3,), np.nan),
    "status": (np.int8, (), 0),
    **{name: (np.float64, (), np.nan) for name in EXTRAS},
}


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


def _row_checksum(start: int, fields: dict[str, np.ndarray]) -> int:
    crc = zlib.crc32(np.int64(start).tobytes())
    for name, (dtype, _, _) in _FIELDS.items():
        crc = zlib.crc32(np.ascontiguousarray(fields[name], dtype=dtype).tobytes(), crc)
    return crc


class RankFileWriter:
    """Append one rank's finished units to its rank file (SWMR, flushed per unit).

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
    """

    def __init__(self, path: str | os.PathLike, grid: Any, *, config_text: str, rank: int):
        import h5py

        self.path = Path(path)
        self._per_theta = grid.points_per_theta
        # rows per chunk: a few kB per chunk, so a flush writes little
        self._rows_per_chunk = max(1, 4096 // (24 * self._per_theta))
        self._file = h5py.File(self.path, "w", libver="latest")
        f = self._file
        f.attrs["format"] = RANKFILE_FORMAT
        f.attrs["format_version"] = RANKFILE_VERSION
        f.attrs["config_sha256"] = config_sha256(config_text)
        f.attrs["rank"] = rank
        f.attrs["points_per_theta"] = self._per_theta
        k, p = self._rows_per_chunk, self._per_theta
        self._ds = {
            "start": f.create_dataset(
                "start",
                shape=(0,),
                maxshape=(None,),
                dtype=np.int64,
                chunks=(64 * k,),
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
            "checksum", shape=(0,), maxshape=(None,), dtype=np.uint32, chunks=(64 * k,)
        )
        f.swmr_mode = True
        self._blocks = {name: _BlockWriter(ds, 1) for name, ds in self._ds.items()}
        self._n = 0
        self._capacity = 0

    def __enter__(self) -> RankFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, unit: UnitResult) -> None:
        """Append one unit (one whole θ) and flush."""
        if unit.stop - unit.start != self._per_theta or unit.start % self._per_theta:
            raise ValueError(f"points {unit.start}..{unit.stop} are not one whole θ")
        fields = {
            "results": unit.results,
            "results_modified": unit.results_modified,
            "status": unit.status,
            **unit.extras,
        }
        n = self._n
        if n == self._capacity:  # grow several chunks' worth of rows at a time
            self._capacity += 16 * self._rows_per_chunk
            for name, ds in self._ds.items():
                ds.resize(self._capacity, axis=0)
                self._blocks[name].refresh()
        for name in _FIELDS:
            self._blocks[name].write((n,), fields[name])
        self._blocks["checksum"].write((n,), _row_checksum(unit.start, fields))
        self._blocks["start"].write((n,), unit.start)  # marks the row as used
        self._n += 1
        self._file.flush()

    def close(self) -> None:
        """Flush and close the rank file."""
        if self._file.id.valid:
            self._file.close()


@dataclass(frozen=True)
class MergeReport:
    """What a merge did: units merged and rows dropped as damaged."""

    units: int
    damaged: int


class _ThetaRows:
    """A library dataset seen as (n_theta, P[, 3]) rows for ``dask.array.store``.

    Only rows marked in *covered* are written; a run of consecutive θ along
    the last modifier axis becomes one HDF5 write.
    """

    def __init__(self, ds: Any, grid: Any, covered: np.ndarray):
        self._ds = ds
        self._theta_shape = grid.theta_shape
        self._covered = covered
        self._last = grid.theta_shape[-1]
        d = len(grid.theta_shape)
        self.shape = (grid.n_theta, grid.points_per_theta, *ds.shape[len(grid.shape) :])
        self._tail = ds.shape[d:]
        self.dtype = ds.dtype
        self.ndim = len(self.shape)

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        rows = key[0] if isinstance(key, tuple) else key
        t0, t1, _ = rows.indices(self.shape[0])
        mask = self._covered[t0:t1]
        t = t0
        while t < t1:
            if not mask[t - t0]:
                t += 1
                continue
            end = t + 1  # extend the run while covered and on the same last-axis row
            while end < t1 and mask[end - t0] and end % self._last != 0:
                end += 1
            prefix = np.unravel_index(t, self._theta_shape)
            j = int(prefix[-1])
            index = (*(int(i) for i in prefix[:-1]), slice(j, j + end - t))
            self._ds[index] = value[t - t0 : end - t0].reshape(end - t, *self._tail)
            t = end


class _RankFileReader:
    """One rank file opened for reading (SWMR: works on a file whose writer died)."""

    def __init__(self, path: Path, grid: Any, config_text: str):
        import h5py

        self.path = path
        try:
            self.file = h5py.File(path, "r", libver="latest", swmr=True)
        except OSError as e:
            raise InputError(f"{path}: rank file is not readable ({e}); remove it") from e
        attrs = self.file.attrs
        if attrs.get("format") != RANKFILE_FORMAT:
            self.file.close()
            raise InputError(f"{path}: not an xrmod rank file; remove it")
        if attrs.get("config_sha256") != config_sha256(config_text):
            self.file.close()
            raise InputError(
                f"{path}: rank file of a different configuration than the library; remove it"
            )
        p = grid.points_per_theta
        starts = self.file["start"][()]
        n = min(self.file[name].shape[0] for name in (*_FIELDS, "checksum"))
        starts = starts[:n]
        valid = (starts >= 0) & (starts % p == 0) & (starts < grid.size)
        self.rows = np.flatnonzero(valid)
        self.theta = starts[valid] // p

    def read(self, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Fields of *rows* (increasing) and a boolean array: checksum good."""
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        sel = rows - lo
        f = self.file
        fields = {name: f[name][lo:hi][sel] for name in _FIELDS}
        starts = f["start"][lo:hi][sel]
        sums = f["checksum"][lo:hi][sel]
        good = np.array(
            [
                _row_checksum(int(starts[i]), {k: v[i] for k, v in fields.items()}) == sums[i]
                for i in range(rows.size)
            ],
            dtype=bool,
        )
        return fields, good

    def close(self) -> None:
        self.file.close()


def merge_rank_files(
    library: str | os.PathLike,
    paths: list[Path],
    grid: Any,
    *,
    config_text: str,
    block_bytes: int = 8 << 20,
) -> MergeReport:
    """Merge rank files into the library with dask (threaded scheduler).

    Rows are written at their θ's place in the library; a θ found in no rank
    file is left as it is. Rows whose checksum fails (a unit being written
    when its process died) are dropped and logged. The rank files stay open
    while merging and are not removed here.

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
        Approximate size of the block each dask task moves.

    Returns
    -------
    MergeReport
    """
    import dask
    import dask.array as da

    from xrmod.library import _open

    per_theta = grid.points_per_theta
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
        covered = source >= 0
        n_units = int(covered.sum())
        if n_units == 0:
            return MergeReport(0, 0)
        damaged: list[int] = []
        guard = threading.Lock()
        block = max(1, block_bytes // (24 * per_theta))

        def load(t0: int, t1: int) -> dict[str, np.ndarray]:
            out = {
                name: np.full((t1 - t0, per_theta, *tail), fill, dtype=dtype)
                for name, (dtype, tail, fill) in _FIELDS.items()
            }
            src = source[t0:t1]
            for i in np.unique(src[src >= 0]):
                local = np.flatnonzero(src == i)
                rows = row[t0 + local]
                order = np.argsort(rows)
                fields, good = readers[int(i)].read(rows[order])
                for name in _FIELDS:
                    out[name][local[order]] = fields[name]
                bad = t0 + local[order][~good]
                if bad.size:
                    with guard:
                        covered[bad] = False  # written by no store below
                        damaged.extend(bad.tolist())
            return out

        with _open(library, "r+") as f:
            lib = f["LIBRARY"]
            targets = {name: _ThetaRows(lib[name], grid, covered) for name in _FIELDS}
            sources, dests, regions = [], [], []
            for t0 in range(0, grid.n_theta, block):
                t1 = min(t0 + block, grid.n_theta)
                if not covered[t0:t1].any():
                    continue
                loaded = dask.delayed(load, pure=True)(t0, t1)
                for name, (dtype, tail, _) in _FIELDS.items():
                    arr = da.from_delayed(
                        loaded[name], shape=(t1 - t0, per_theta, *tail), dtype=dtype
                    )
                    sources.append(arr)
                    dests.append(targets[name])
                    regions.append((slice(t0, t1),) + (slice(None),) * (arr.ndim - 1))
            # No order between datasets is needed: the rank files are removed only
            # after a complete merge, and --resume merges them again first.
            da.store(sources, dests, regions=regions, lock=threading.Lock(), scheduler="threads")
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
