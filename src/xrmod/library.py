"""The HDF5 library file: layout, writer and readers (what a resume checks: xrmod.resume).

Layout (format ``xrmod-library`` version 2; DESIGN §4)::

    /PARAMS/<axis>              1-D values of each modifier axis
    /PARAMS attrs               axes (ordered names = leading dims of results), family, units
    /LIBRARY/temps              (NT,) true temperatures, keV
    /LIBRARY/realization        (R,) only when realizations > 1
    /LIBRARY/results            (N1, ..., Nd, [R,] NT, 3) [kT_lo, kT_fit, kT_hi], ORIGINAL ARF (T1)
    /LIBRARY/results_modified   same shape, MODIFIED ARF (T1')
    /LIBRARY/status             (N1, ..., Nd, [R,] NT) int8: the point and its T1 fit
                                (0 not computed, 1 ok, <0 failure: xrmod.status.Status)
    /LIBRARY/status_modified    same shape and chunks, int8: its T1' fit
    /LIBRARY/norm, norm_modified, cstat, cstat_modified, counts   extras, same dims as status
    checksums                   when a run ended: a CRC-32 per block of rows of every
                                dataset above (attrs crc32, crc32_rows; root attr
                                checksums), verified by info and --resume: xrmod.integrity

A failure of the point itself (the modified ARF negative −1 or non-finite
−2, no counts −5, an unexpected error −10, not yet computed 0) is in both
status datasets; a fit's own outcome (ok, −3, −4, −6) only in its own.
Version 1 (xrmod before the per-fit status) had one ``status`` for both
fits, the worse of the two, and no ``status_modified``: :mod:`xrmod.analysis`
still reads it, a resume refuses it.

Failed and not-yet-computed points hold NaN, never zeros. Every dataset is
chunked in whole θ: consecutive θ along the last modifier axis, up to
:data:`CHUNK_POINTS` points a chunk (a block of units from the shared counter
fills one), and its chunks are allocated when the library is created:
writing results afterwards changes no HDF5 metadata, so a process killed
while writing cannot corrupt the file, and parallel HDF5 (which needs early
allocation) writes the same layout. A unit's
``status`` is written after everything else of it (``status_modified``
included): a point whose ``status`` is not 0 has all its data on disk, which
is what a resume relies on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from xrmod.engines.base import EXTRAS, UnitResult
from xrmod.status import Status

if TYPE_CHECKING:
    import h5py

    from xrmod.grid import Grid

__all__ = [
    "CHUNK_POINTS",
    "FLUSH_BYTES",
    "FLUSH_SECONDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RESULT_COLUMNS",
    "STATUS_DATASETS",
    "STATUS_FITS",
    "UNIT_FIELDS",
    "LibraryWriter",
    "UnitBatch",
    "count_status",
    "create_library",
    "decode_attr",
    "pending_units",
    "read_library_file",
    "small_metadata_cache",
    "theta_runs",
    "unit_bytes",
    "unit_fields",
]

FORMAT_NAME = "xrmod-library"
FORMAT_VERSION = 2
RESULT_COLUMNS = ("kT_lo", "kT_fit", "kT_hi")
#: The status datasets: name -> description. ``status`` is written last (the "done" marker).
STATUS_DATASETS = {
    "status": "status of the point and of its fit with the ORIGINAL ARF (T1)",
    "status_modified": "status of the point and of its fit with the MODIFIED ARF (T1')",
}
#: Which fit each status dataset describes, as ``xrmod info`` labels it.
STATUS_FITS = {"status": "T1", "status_modified": "T1'"}


def _point_shape(grid: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in grid.shape)


#: Points of a chunk (at most, unless one θ has more): whole θ, consecutive along the
#: last modifier axis. docs/scaling.md: with one θ a chunk (10 points of the usual
#: grid) a 10⁶-point library took 150 MB for 90 MB of data, 1.1-2.5 s to create and
#: 1.5 s to summarise (``xrmod info``); with 4096-point chunks 86 MB, 0.2 s, 0.15 s.
CHUNK_POINTS = 4096


def _chunks(grid: Any, trailing: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Chunk shape: whole θ, consecutive along the last modifier axis.

    As many θ as fit in :data:`CHUNK_POINTS` points (at least one); the other
    modifier axes are 1.
    """
    shape = _point_shape(grid)
    d = len(grid.axis_names)
    per_chunk = max(1, min(shape[d - 1], CHUNK_POINTS // grid.points_per_theta))
    return (1,) * (d - 1) + (per_chunk,) + shape[d:] + trailing


def _early_dcpl() -> Any:
    """A dataset-creation property list that allocates every chunk at creation."""
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


#: Metadata cache of a library opened serially: HDF5's default grows to 32 MB (several
#: times that in memory) as a writer visits the chunk index of a large grid.
_METADATA_CACHE_BYTES = 1 << 20


def _open(path: str | os.PathLike, mode: str, comm: Any = None) -> Any:
    """An h5py file: MPI-IO on *comm* when given (collective), else serial, no chunk cache.

    Without a chunk cache every write goes to the file in program order, so
    writing ``status`` last means a point marked done has its results on disk.
    Serially the metadata cache is kept small, so memory does not follow the
    grid size.
    """
    import h5py

    if comm is not None:
        return h5py.File(path, mode, driver="mpio", comm=comm)
    f = h5py.File(path, mode, rdcc_nbytes=0)
    small_metadata_cache(f)
    return f


def small_metadata_cache(f: Any) -> None:
    """Cap the metadata cache of the serial h5py file *f* at 1 MB.

    HDF5's default grows to 32 MB as a reader or writer visits the chunk
    index of a large file; capped, memory does not follow the file's size.
    """
    config = f.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = config.max_size = _METADATA_CACHE_BYTES
    config.min_size = min(config.min_size, _METADATA_CACHE_BYTES)
    f.id.set_mdc_config(config)


def create_library(
    path: str | os.PathLike,
    grid: Any,
    *,
    family: str,
    units: Mapping[str, str],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
    comm: Any = None,
) -> None:
    """Create an empty library for *grid*: every point not computed, results NaN.

    Parameters
    ----------
    path : path-like
        The HDF5 file to create.
    grid : xrmod.grid.Grid
        The grid; its axis order becomes the order of the result dimensions.
    family : str
        Modifier family name (stored in ``/PARAMS`` attrs).
    units : mapping
        Unit of each axis (stored as the axis dataset's ``units`` attribute).
    attrs : mapping
        Provenance written as root attributes (config text, engine, model, seed, ...).
    overwrite : bool
        Replace an existing file; otherwise an existing file is an error.
    comm : mpi4py.MPI.Comm, optional
        Create the file with parallel HDF5 (h5py built with MPI): every rank of
        *comm* must call this with the same arguments (creation is collective).

    The library is made as ``PATH.creating`` in the same directory and renamed
    to *path* once complete, so a failure (a full disk) never leaves a
    half-made library: the partial file is removed.

    Raises
    ------
    xrmod.errors.OutputError
        *path* exists (without *overwrite*), or the file system refused the
        file (no space, quota, permission): the message names it.
    """
    from xrmod.errors import OutputError
    from xrmod.output import creating_path, os_error_message

    root = comm is None or comm.rank == 0
    if not overwrite and os.path.exists(path):
        raise OutputError(f"{path} exists; use --resume to continue it, or --overwrite")
    temporary = creating_path(path)
    # a disk too small is refused before HDF5 writes: a parallel HDF5 build whose
    # file failed to close can crash at exit (after MPI_Finalize) over the open file
    short = None
    if root:
        space, fits = _space(path, grid)
        short = None if fits else space
    if comm is not None:
        short = comm.bcast(short, root=0)
    if short is not None:
        raise OutputError(
            f"{os_error_message(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)}"
            f" ({short}); nothing was computed"
        )
    try:
        _create_skeleton(temporary, grid, family=family, units=units, attrs=attrs, comm=comm)
        if root:  # the close was collective: every rank has finished with the file
            os.replace(temporary, path)
    except OSError as e:
        if root:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        message = os_error_message(OSError(e.errno, os.strerror(e.errno or 0)), path)
        if message is None:
            raise
        if e.errno == errno.ENOSPC:
            message += f" ({_space(path, grid)[0]})"
        raise OutputError(
            f"{message}; nothing was computed, and the partial file was removed"
        ) from e


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _space(path: str | os.PathLike, grid: Any) -> tuple[str, bool]:
    """What a library of *grid* needs at *path* and what is free there; whether it fits.

    Where the free space cannot be read it is taken to fit: the creation itself
    then says what is wrong.
    """
    need = library_bytes(grid)
    text = f"the library needs about {_mb(need)}"
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return text, True
    return f"{text}, {_mb(free)} are free there", free >= need


def library_bytes(grid: Any) -> int:
    """Size of a new library of *grid* on disk, about (its chunks are all allocated)."""
    per_theta = grid.points_per_theta
    return grid.n_theta * (unit_bytes(per_theta) - 8) + 64 * 1024


def _create_skeleton(
    path: str | os.PathLike,
    grid: Any,
    *,
    family: str,
    units: Mapping[str, str],
    attrs: Mapping[str, Any],
    comm: Any = None,
) -> None:
    """Write the empty library of :func:`create_library` at *path* (replaced if it exists)."""
    shape = _point_shape(grid)
    with _open(path, "w", comm) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["status_codes"] = json.dumps({int(s): s.description for s in Status})

        params = f.create_group("PARAMS")
        params.attrs["axes"] = list(grid.axis_names)
        params.attrs["family"] = family
        for name, values in grid.axes:
            ds = params.create_dataset(name, data=np.asarray(values, dtype=np.float64))
            ds.attrs["units"] = units.get(name, "")

        lib = f.create_group("LIBRARY")
        temps = lib.create_dataset("temps", data=np.asarray(grid.temperatures, np.float64))
        temps.attrs["units"] = "keV"
        dims = [*grid.axis_names]
        if grid.realizations > 1:
            lib.create_dataset("realization", data=np.arange(grid.realizations))
            dims.append("realization")
        dims.append("temps")

        for name in ("results", "results_modified"):
            ds = lib.create_dataset(
                name,
                shape=(*shape, 3),
                dtype=np.float64,
                chunks=_chunks(grid, (3,)),
                fillvalue=np.nan,
                dcpl=_early_dcpl(),
            )
            ds.attrs["columns"] = list(RESULT_COLUMNS)
            ds.attrs["dims"] = [*dims, "column"]
            ds.attrs["units"] = "keV"
        lib["results"].attrs["description"] = "fit with the ORIGINAL ARF (T1)"
        lib["results_modified"].attrs["description"] = "fit with the MODIFIED ARF (T1')"

        for name, description in STATUS_DATASETS.items():
            status = lib.create_dataset(
                name,
                shape=shape,
                dtype=np.int8,
                chunks=_chunks(grid),
                fillvalue=0,
                dcpl=_early_dcpl(),
            )
            status.attrs["dims"] = dims
            status.attrs["codes"] = json.dumps({int(s): s.description for s in Status})
            status.attrs["description"] = description
        for name, description in EXTRAS.items():
            ds = lib.create_dataset(
                name,
                shape=shape,
                dtype=np.float64,
                chunks=_chunks(grid),
                fillvalue=np.nan,
                dcpl=_early_dcpl(),
            )
            ds.attrs["dims"] = dims
            ds.attrs["description"] = description


# --------------------------------------------------------------------------- writing units
#: Default longest time, in seconds, a finished unit waits in a batched writer's memory.
FLUSH_SECONDS = 2.0
#: Default size, in bytes, of a batched writer's buffer of finished units.
FLUSH_BYTES = 4 << 20
#: What a work unit stores, per dataset of the library: name -> (dtype, shape of a point's
#: value, fill value). In the order a unit is written: ``status`` last (the "done" marker).
UNIT_FIELDS: dict[str, tuple[type, tuple[int, ...], float]] = {
    "results": (np.float64, (3,), np.nan),
    "results_modified": (np.float64, (3,), np.nan),
    **{name: (np.float64, (), np.nan) for name in EXTRAS},
    "status_modified": (np.int8, (), 0),
    "status": (np.int8, (), 0),
}


def unit_fields(unit: UnitResult) -> dict[str, np.ndarray]:
    """A unit's values by dataset name, checked against :data:`UNIT_FIELDS`.

    Raises
    ------
    KeyError
        The unit has an extra the library has no dataset for, or lacks one.
    """
    values = {
        "results": unit.results,
        "results_modified": unit.results_modified,
        "status": unit.status,
        "status_modified": unit.status_modified,
        **unit.extras,
    }
    unknown = sorted(set(values) - set(UNIT_FIELDS))
    if unknown:
        raise KeyError(f"the library has no dataset {unknown[0]!r} for this unit's extras")
    missing = [name for name in UNIT_FIELDS if name not in values]
    if missing:
        raise KeyError(f"the unit has no values for the library's dataset {missing[0]!r}")
    return values


def unit_bytes(per_theta: int) -> int:
    """Bytes one whole-θ unit of *per_theta* points takes in a batch (values and start)."""
    item = sum(
        np.dtype(dtype).itemsize * int(np.prod(shape)) for dtype, shape, _ in UNIT_FIELDS.values()
    )
    return per_theta * item + 8


def theta_runs(theta: np.ndarray, last: int) -> list[tuple[int, int]]:
    """Runs ``[a, b)`` of consecutive θ in *theta* (increasing), each within a row of the last axis.

    *last* is the length of the last modifier axis: a run lies within one
    row of it, so that it is one hyperslab of the library's datasets.
    """
    theta = np.asarray(theta, dtype=np.int64)
    if not theta.size:
        return []
    breaks = np.flatnonzero((np.diff(theta) != 1) | (theta[1:] % last == 0)) + 1
    firsts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [theta.size]])
    return [(int(theta[i]), int(theta[j - 1]) + 1) for i, j in zip(firsts, ends, strict=True)]


class UnitBatch:
    """Finished whole-θ units kept in memory until a batch is due: the batched writers' policy.

    A batch is due when a unit arrives ``flush_seconds`` or more after the
    last :meth:`take` (0: every unit at once), and when the buffer is full
    (``flush_bytes``, at least one unit). The writer then takes the batch
    and writes it with one write per dataset. Units are copied into arrays
    allocated once, so the memory is fixed however long the run.

    Parameters
    ----------
    per_theta : int
        Points of one θ (of one unit).
    flush_seconds : float
        Longest time a finished unit waits, counted from the last take.
    flush_bytes : int
        Size of the buffer (:func:`unit_bytes` per unit).
    clock : callable
        Monotonic time in seconds (for tests).
    """

    def __init__(
        self,
        per_theta: int,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        flush_bytes: int = FLUSH_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.per_theta = int(per_theta)
        self.flush_seconds = float(flush_seconds)
        self._clock = clock
        # with no wait every unit is due at once: a buffer of one unit
        capacity = max(1, int(flush_bytes) // unit_bytes(self.per_theta))
        if self.flush_seconds <= 0:
            capacity = 1
        self._starts = np.empty(capacity, dtype=np.int64)
        self._values = {
            name: np.empty((capacity, self.per_theta, *shape), dtype=dtype)
            for name, (dtype, shape, _) in UNIT_FIELDS.items()
        }
        self._n = 0
        self._taken_at = clock()

    def __len__(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        """Units the buffer holds."""
        return self._starts.size

    def add(self, unit: UnitResult) -> bool:
        """Copy *unit* (one whole θ) into the batch; whether the batch is due now.

        A unit refused (not one whole θ, or values the library cannot store)
        raises before the batch changes.
        """
        p = self.per_theta
        if unit.stop - unit.start != p or unit.start % p:
            raise ValueError(f"points {unit.start}..{unit.stop} are not one whole θ")
        values = unit_fields(unit)
        i = self._n
        for name, buffer in self._values.items():
            buffer[i] = values[name]
        self._starts[i] = unit.start
        self._n += 1
        return self._n == self.capacity or self._clock() - self._taken_at >= self.flush_seconds

    def take(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The batch: starts (n,) and values by dataset (n, P, ...); the batch is empty again.

        The arrays are views of the buffer, valid until the next :meth:`add`.
        """
        n, self._n = self._n, 0
        self._taken_at = self._clock()
        return self._starts[:n], {name: buffer[:n] for name, buffer in self._values.items()}


class _BlockWriter:
    """Write runs of whole θ of one dataset through h5py's low level, in few H5Dwrite calls.

    h5py's ``ds[index] = values`` costs ~0.2 ms a call in selection handling.
    Here a long run is one regular hyperslab written on its own, and the
    short runs of a batch are one union of hyperslabs written at once (HDF5
    maps an irregular selection chunk by chunk, ~3x the cost per θ of a
    regular one, but saves a call per run).
    """

    #: Runs of at least this many θ are written alone (measured: the break-even is ~4).
    LONG_RUN = 4

    def __init__(self, ds: Any, n_lead: int):
        from h5py import h5s

        self.dtype = ds.dtype
        self._id = ds.id
        self._n_lead = n_lead
        self._space = self._id.get_space()
        self._tail = self._space.shape[n_lead:]
        self._memory = h5s.create_simple((1,) * n_lead + self._tail)  # the last write's shape

    def _count(self, n: int) -> tuple[int, ...]:
        return (1,) * (self._n_lead - 1) + (n, *self._tail)

    def _write(self, arr: np.ndarray) -> None:
        from h5py import h5s

        if self._memory.shape != arr.shape:
            self._memory = h5s.create_simple(arr.shape)
        self._id.write(self._memory, self._space, arr)

    def write_many(self, runs: list[tuple[tuple[int, ...], int]], values: np.ndarray) -> None:
        """Store *values* (one row a θ, in run order) at *runs*.

        A run is (leading index of its first θ, θ in it along the last
        leading axis); runs in increasing order (HDF5 maps a memory buffer to
        a selection in file order).
        """
        from h5py import h5s

        arr = np.ascontiguousarray(values, dtype=self.dtype).reshape(-1, *self._tail)
        zeros = (0,) * len(self._tail)
        short: list[tuple[tuple[int, ...], int, int]] = []
        offset = 0
        for lead, n in runs:
            if n >= self.LONG_RUN or len(runs) == 1:  # a buffer of the selection's own shape
                self._space.select_hyperslab((*lead, *zeros), self._count(n))
                self._write(arr[offset : offset + n].reshape(self._count(n)))
            else:
                short.append((lead, n, offset))
            offset += n
        if short:
            for i, (lead, n, _) in enumerate(short):
                op = h5s.SELECT_OR if i else h5s.SELECT_SET
                self._space.select_hyperslab((*lead, *zeros), self._count(n), op=op)
            rows = np.concatenate([np.arange(o, o + n) for _, n, o in short])
            self._write(arr if rows.size == len(arr) else arr[rows])


class LibraryWriter:
    """Write finished work units into an existing library.

    Use as a context manager. Whole-θ units go through a :class:`UnitBatch`
    and are written together, one write per dataset; a part of a θ (a
    resumed chunk) is written at once. Either way a unit's ``status`` lands
    last (after ``status_modified``), so a crash never leaves a point marked
    done without its results; it loses the unit in flight and the batch.

    Parameters
    ----------
    path : path-like
        The library (made by :func:`create_library`).
    grid : xrmod.grid.Grid
        Its grid.
    comm : mpi4py.MPI.Comm, optional
        Open with parallel HDF5 on *comm* (collective: every rank opens, and
        every rank must call :meth:`set_attrs` and :meth:`close` alike). Each
        rank then writes its own units with independent I/O; two ranks must
        never write the same θ.
    flush_seconds : float
        0 (default): each unit is written as it comes. Otherwise whole-θ
        units wait in memory (under MPI-IO a batch costs a quarter of a
        write per unit) until a batch is due (:class:`UnitBatch`), and on
        :meth:`flush` / :meth:`close`.
    flush_bytes, clock
        The batch's size and clock (:class:`UnitBatch`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        grid: Grid,
        *,
        comm: Any = None,
        flush_seconds: float = 0.0,
        flush_bytes: int = FLUSH_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.grid = grid
        self._parallel = comm is not None
        self._file = _open(path, "r+", comm)
        self._lib = self._file["LIBRARY"]
        self._per_theta = grid.points_per_theta
        d = len(grid.axis_names)
        self._blocks = {name: _BlockWriter(self._lib[name], d) for name in UNIT_FIELDS}
        self._pending = UnitBatch(
            self._per_theta, flush_seconds=flush_seconds, flush_bytes=flush_bytes, clock=clock
        )

    def __enter__(self) -> LibraryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lead(self, theta: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(theta, self.grid.theta_shape))

    def _region(self, start: int, stop: int) -> tuple[tuple[int, ...], slice]:
        theta = start // self._per_theta
        if (stop - 1) // self._per_theta != theta:
            raise ValueError(f"points {start}..{stop} cross a θ boundary")
        offset = theta * self._per_theta
        return self._lead(theta), slice(start - offset, stop - offset)

    def _put(self, name: str, index: tuple[int, ...], sl: slice, values: np.ndarray) -> None:
        """Write points *sl* of the θ at *index*: read its chunk, merge, write it back."""
        ds = self._lib[name]
        tail = ds.shape[len(index) :]  # ([R,] NT[, 3])
        extra = ds.shape[len(self.grid.shape) :]  # (3,) for results, () otherwise
        block = ds[index].reshape(self._per_theta, *extra)
        block[sl] = np.asarray(values, dtype=ds.dtype)
        ds[index] = block.reshape(tail)

    def write(self, unit: UnitResult) -> None:
        """Store one unit: a whole θ through the batch (now when due), a part of one at once."""
        p = self._per_theta
        if unit.stop - unit.start == p and unit.start % p == 0:
            if self._pending.add(unit):
                self.flush()
            return
        values = unit_fields(unit)
        self.flush()  # keep the order of writes
        index, sl = self._region(unit.start, unit.stop)
        for name in UNIT_FIELDS:
            self._put(name, index, sl, values[name])
        if not self._parallel:  # H5Fflush is collective under MPI-IO
            self._file.flush()

    def write_batch(self, starts: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        """Store whole-θ units given as arrays: one write per dataset, ``status`` last.

        Parameters
        ----------
        starts : (n,) int array
            First flat index of each unit (whole θ, in any order, each once).
        values : mapping
            For each name of :data:`UNIT_FIELDS`, the units' values (n, P, ...).

        Independent under MPI-IO (each rank writes its own units); the file
        is not flushed here.
        """
        starts = np.asarray(starts, dtype=np.int64)
        if not starts.size:
            return
        order = None if (np.diff(starts) > 0).all() else np.argsort(starts, kind="stable")
        theta = (starts if order is None else starts[order]) // self._per_theta
        if theta.size == 1:  # the direct writer: one unit at a time
            runs = [(self._lead(int(theta[0])), 1)]
        else:
            last = self.grid.theta_shape[-1]
            runs = [(self._lead(a), b - a) for a, b in theta_runs(theta, last)]
        for name in UNIT_FIELDS:
            block = values[name] if order is None else values[name][order]
            self._blocks[name].write_many(runs, block)

    def flush(self) -> None:
        """Write the batched units (one write per dataset, ``status`` last).

        Independent under MPI-IO (each rank flushes its own units).
        """
        starts, values = self._pending.take()
        if not starts.size:
            return
        self.write_batch(starts, values)
        if not self._parallel:
            self._file.flush()

    def set_attrs(self, **attrs: Any) -> None:
        """Set root attributes (e.g. the end time); collective under MPI-IO."""
        for key, value in attrs.items():
            self._file.attrs[key] = value

    def close(self) -> None:
        """Write what is batched, flush and close the file (collective under MPI-IO)."""
        if self._file.id.valid:
            try:
                self.flush()
            finally:
                self._file.close()


def _status_blocks(path: str | os.PathLike, grid: Any, name: str = "status"):
    """Yield (first θ, (n, P) block of the status dataset *name*), one leading index at a time."""
    import h5py

    per_theta = grid.points_per_theta
    with h5py.File(path, "r") as f:
        status = f["LIBRARY"][name]
        if status.shape != _point_shape(grid):
            from xrmod.errors import InputError

            raise InputError(
                f"{path}: {name} has shape {status.shape}, the grid has {_point_shape(grid)}"
            )
        step = grid.n_theta // grid.theta_shape[0]
        for i in range(grid.theta_shape[0]):
            yield i * step, status[i].reshape(-1, per_theta)


def pending_units(path: str | os.PathLike, grid: Any) -> np.ndarray:
    """θ work units of *grid* with a point not yet computed (status 0) in the library.

    Reads the status dataset one leading index at a time (memory stays small).
    ``status`` is the "done" marker: a unit's other datasets are written before it.
    """
    pending = []
    for first, block in _status_blocks(path, grid):
        pending.append(first + np.flatnonzero((block == Status.NOT_COMPUTED).any(axis=1)))
    return np.concatenate(pending).astype(np.int64)


def count_status(path: str | os.PathLike, grid: Any, name: str = "status") -> dict[int, int]:
    """Points per code in the status dataset *name* (``status``: T1, ``status_modified``: T1′)."""
    counts: dict[int, int] = {}
    for _, block in _status_blocks(path, grid, name):
        codes, n = np.unique(block, return_counts=True)
        for code, c in zip(codes.tolist(), n.tolist(), strict=True):
            counts[code] = counts.get(code, 0) + c
    return counts


def decode_attr(value: Any) -> Any:
    """An attribute value as Python reads it: bytes decoded, string arrays as lists of str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    return value


def read_library_file(
    path: str | os.PathLike, doing: str = "", *, locking: bool | None = None
) -> h5py.File:
    """Open the library at *path* for reading, checking that it is one.

    *doing* starts the error messages after the path (``"cannot resume, "``).
    *locking* is h5py's: ``None`` follows HDF5 (``HDF5_USE_FILE_LOCKING``);
    ``False`` opens a library that ``xrmod-gen`` holds open for writing, which
    HDF5 otherwise refuses ("unable to lock file"), and never stops a writer
    from opening it meanwhile. A library's chunks are allocated when it is
    created, so what such a reader sees is consistent but for the root
    attributes set at the start and end of a run (:func:`xrmod.analysis.summary`
    retries then).

    Raises
    ------
    xrmod.errors.InputError
        *path* is not a readable HDF5 file, or not an xrmod library.
    """
    import h5py

    from xrmod.errors import InputError

    name = os.path.normpath(os.fspath(path))
    try:
        f = h5py.File(path, "r", locking=locking)
    except OSError as e:
        if "truncated file" in str(e):  # HDF5's words: the file is shorter than it records
            raise InputError(
                f"{name}: {doing}damaged: the file is truncated ({e}); restore it from a "
                "copy, or compute it again with xrmod-gen --overwrite (or another output)"
            ) from e
        raise InputError(f"{name}: {doing}not a readable HDF5 file ({e})") from e
    if decode_attr(f.attrs.get("format")) != FORMAT_NAME:
        f.close()
        raise InputError(
            f"{name}: {doing}not an xrmod library (no format attribute '{FORMAT_NAME}')"
        )
    return f
