"""The HDF5 library file: layout, writer and readers.

Layout (format ``xrmod-library`` version 1; DESIGN §4)::

    /PARAMS/<axis>              1-D values of each modifier axis
    /PARAMS attrs               axes (ordered names = leading dims of results), family, units
    /LIBRARY/temps              (NT,) true temperatures, keV
    /LIBRARY/realization        (R,) only when realizations > 1
    /LIBRARY/results            (N1, ..., Nd, [R,] NT, 3) [kT_lo, kT_fit, kT_hi], ORIGINAL ARF (T1)
    /LIBRARY/results_modified   same shape, MODIFIED ARF (T1')
    /LIBRARY/status             (N1, ..., Nd, [R,] NT) int8: 0 not computed, 1 ok, <0 failure
    /LIBRARY/norm, norm_modified, cstat, cstat_modified, counts   extras, same dims as status

Failed and not-yet-computed points hold NaN, never zeros. Every dataset is
chunked so that one θ (one work unit) fills whole chunks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrmod.status import Status

__all__ = [
    "EXTRAS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RESULT_COLUMNS",
    "LibraryWriter",
    "UnitResult",
    "create_library",
    "describe",
    "open_library",
]

FORMAT_NAME = "xrmod-library"
FORMAT_VERSION = 1
RESULT_COLUMNS = ("kT_lo", "kT_fit", "kT_hi")
#: Per-point extras written beside the results: name -> description.
EXTRAS = {
    "norm": "fitted norm, original ARF",
    "norm_modified": "fitted norm, modified ARF",
    "cstat": "C-statistic at the best fit, original ARF",
    "cstat_modified": "C-statistic at the best fit, modified ARF",
    "counts": "simulated counts in the fit band",
}


@dataclass(frozen=True)
class UnitResult:
    """Results of one work unit: points ``start`` to ``stop`` (flat indices).

    ``results`` and ``results_modified`` are (n, 3) [kT_lo, kT_fit, kT_hi];
    ``status`` is (n,) int8; ``extras`` maps each name of :data:`EXTRAS` to (n,).
    """

    start: int
    stop: int
    results: np.ndarray
    results_modified: np.ndarray
    status: np.ndarray
    extras: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        n = self.stop - self.start
        for name, arr, shape in (
            ("results", self.results, (n, 3)),
            ("results_modified", self.results_modified, (n, 3)),
            ("status", self.status, (n,)),
            *((name, arr, (n,)) for name, arr in self.extras.items()),
        ):
            if np.shape(arr) != shape:
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected {shape}")


def _point_shape(grid: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in grid.shape)


def _chunks(grid: Any, trailing: tuple[int, ...] = ()) -> tuple[int, ...]:
    """One chunk = all points of one θ (the leading modifier axes are 1)."""
    shape = _point_shape(grid)
    d = len(grid.axis_names)
    return (1,) * d + shape[d:] + trailing


def create_library(
    path: str | os.PathLike,
    grid: Any,
    *,
    family: str,
    units: Mapping[str, str],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
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
    """
    import h5py

    shape = _point_shape(grid)
    with h5py.File(path, "w" if overwrite else "w-") as f:
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
            )
            ds.attrs["columns"] = list(RESULT_COLUMNS)
            ds.attrs["dims"] = [*dims, "column"]
            ds.attrs["units"] = "keV"
        lib["results"].attrs["description"] = "fit with the ORIGINAL ARF (T1)"
        lib["results_modified"].attrs["description"] = "fit with the MODIFIED ARF (T1')"

        status = lib.create_dataset(
            "status", shape=shape, dtype=np.int8, chunks=_chunks(grid), fillvalue=0
        )
        status.attrs["dims"] = dims
        status.attrs["codes"] = json.dumps({int(s): s.description for s in Status})
        for name, description in EXTRAS.items():
            ds = lib.create_dataset(
                name, shape=shape, dtype=np.float64, chunks=_chunks(grid), fillvalue=np.nan
            )
            ds.attrs["dims"] = dims
            ds.attrs["description"] = description


class LibraryWriter:
    """Write finished work units into an existing library (serial h5py).

    Use as a context manager; each :meth:`write` lands one unit and flushes,
    so a crash loses at most the unit in flight.
    """

    def __init__(self, path: str | os.PathLike, grid: Any):
        import h5py

        self.grid = grid
        self._file = h5py.File(path, "r+")
        self._lib = self._file["LIBRARY"]
        self._per_theta = int(np.prod(_point_shape(grid)[len(grid.axis_names) :]))

    def __enter__(self) -> LibraryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _region(self, start: int, stop: int) -> tuple[tuple[int, ...], slice]:
        theta = start // self._per_theta
        if (stop - 1) // self._per_theta != theta:
            raise ValueError(f"points {start}..{stop} cross a θ boundary")
        index = tuple(int(i) for i in np.unravel_index(theta, self.grid.theta_shape))
        offset = theta * self._per_theta
        return index, slice(start - offset, stop - offset)

    def _put(self, name: str, index: tuple[int, ...], sl: slice, values: np.ndarray) -> None:
        ds = self._lib[name]
        tail = ds.shape[len(index) :]  # ([R,] NT[, 3])
        extra = ds.shape[len(self.grid.shape) :]  # (3,) for results, () otherwise
        values = np.asarray(values, dtype=ds.dtype)
        if sl.start == 0 and sl.stop == self._per_theta:
            ds[index] = values.reshape(tail)
            return
        block = ds[index].reshape(self._per_theta, *extra)  # a chunked θ: read, merge, write
        block[sl] = values
        ds[index] = block.reshape(tail)

    def write(self, unit: UnitResult) -> None:
        """Store one unit's results, status and extras, then flush."""
        index, sl = self._region(unit.start, unit.stop)
        self._put("results", index, sl, unit.results)
        self._put("results_modified", index, sl, unit.results_modified)
        self._put("status", index, sl, unit.status)
        for name, values in unit.extras.items():
            self._put(name, index, sl, values)
        self._file.flush()

    def set_attrs(self, **attrs: Any) -> None:
        """Set root attributes (e.g. the end time)."""
        for key, value in attrs.items():
            self._file.attrs[key] = value

    def close(self) -> None:
        """Flush and close the file."""
        if self._file.id.valid:
            self._file.close()


def open_library(path: str | os.PathLike):
    """Open a library as an :class:`xarray.Dataset` with labelled dimensions.

    Needs xarray (``pip install xrmod[xarray]``).
    """
    import h5py
    import xarray as xr

    with h5py.File(path, "r") as f:
        axes = [str(a) for a in f["PARAMS"].attrs["axes"]]
        coords: dict[str, Any] = {a: f["PARAMS"][a][()] for a in axes}
        lib = f["LIBRARY"]
        coords["temps"] = lib["temps"][()]
        if "realization" in lib:
            coords["realization"] = lib["realization"][()]
        coords["column"] = [str(c) for c in lib["results"].attrs["columns"]]
        data = {}
        for name, ds in lib.items():
            if name in ("temps", "realization"):
                continue
            dims = [str(d) for d in ds.attrs["dims"]]
            data[name] = (dims, ds[()], {k: _plain(v) for k, v in ds.attrs.items() if k != "dims"})
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        attrs["family"] = str(f["PARAMS"].attrs["family"])
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    return value


def describe(path: str | os.PathLike) -> str:
    """Human-readable summary of a library: provenance, axes, completion, failures."""
    import h5py

    path = Path(path)
    lines = [f"{path}"]
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        from xrmod.errors import InputError

        raise InputError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        if f.attrs.get("format") != FORMAT_NAME:
            from xrmod.errors import InputError

            raise InputError(f"{path}: not an xrmod library (no format attribute '{FORMAT_NAME}')")
        for key in sorted(f.attrs):
            if key in ("config", "status_codes"):
                continue
            lines.append(f"  {key}: {_plain(f.attrs[key])}")
        params = f["PARAMS"]
        lines.append(f"  family: {params.attrs['family']}")
        lines.append("  axes (in order):")
        for name in params.attrs["axes"]:
            v = params[name][()]
            unit = params[name].attrs.get("units", "")
            lines.append(f"    {name}: {v.size} values {v.min():g} .. {v.max():g} {unit}".rstrip())
        temps = f["LIBRARY/temps"][()]
        lines.append(f"    temps: {temps.size} values {temps.min():g} .. {temps.max():g} keV")
        status = f["LIBRARY/status"][()]
        total = status.size
        lines.append(f"  points: {total}, shape {status.shape}")
        codes, counts = np.unique(status, return_counts=True)
        for code, count in zip(codes, counts, strict=True):
            lines.append(f"    status {int(code):>3}: {count:>8}  {Status(int(code)).description}")
        lines.append("  config:")
        lines.extend("    " + line for line in str(_plain(f.attrs.get("config", ""))).splitlines())
    return "\n".join(lines)
