"""A library as a lazy :class:`xarray.Dataset`: named dimensions, units, provenance.

The HDF5 layout (:mod:`xrmod.library`) stores the three numbers of a fit as
one ``results`` array with a ``column`` axis; here they are the variables an
analysis asks for by name: ``T1``, ``T1_lo``, ``T1_hi`` (the fit with the
nominal ARF) and ``T1_modified``, ``T1_modified_lo``, ``T1_modified_hi`` (with
the modified ARF, T1′), beside ``status``, ``status_modified`` and the extras.
The dimensions are the modifier axes in library order, ``realization`` when
there are several, and ``kT_true``. Every variable is a dask array over the
open HDF5 file, so a library larger than memory opens at once and
``.sel(...)`` reads only the chunks it touches; ``ds.close()`` (or a ``with``
block) closes the file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from xrmod.library import decode_attr, read_library_file

if TYPE_CHECKING:
    import h5py
    import xarray

__all__ = ["FIT_VARIABLES", "open_library"]

#: Variables made from the ``results`` datasets: (dataset, column) of each.
FIT_VARIABLES = {
    "T1": ("results", "kT_fit"),
    "T1_lo": ("results", "kT_lo"),
    "T1_hi": ("results", "kT_hi"),
    "T1_modified": ("results_modified", "kT_fit"),
    "T1_modified_lo": ("results_modified", "kT_lo"),
    "T1_modified_hi": ("results_modified", "kT_hi"),
}

_LONG_NAMES = {
    "T1": "temperature fitted with the nominal ARF",
    "T1_lo": "lower bound of T1",
    "T1_hi": "upper bound of T1",
    "T1_modified": "temperature fitted with the modified ARF (T1')",
    "T1_modified_lo": "lower bound of T1'",
    "T1_modified_hi": "upper bound of T1'",
    "status": "status code of the fit of T1 (xrmod.status.Status)",
    "status_modified": "status code of the fit of T1' (xrmod.status.Status)",
}

#: Dimension name of the library's temperature axis.
KT_TRUE = "kT_true"


def open_library(path: str | os.PathLike) -> xarray.Dataset:
    """Open a library as a lazy :class:`xarray.Dataset`.

    Parameters
    ----------
    path : str or os.PathLike
        An xrmod library (any format version; a version 1 library has no
        ``status_modified``).

    Returns
    -------
    xarray.Dataset
        Dimensions: the modifier axes, ``realization`` (when the library has
        several), ``kT_true``. Coordinates carry their ``units``; variables
        ``T1``, ``T1_lo``, ``T1_hi``, ``T1_modified``, ``T1_modified_lo``,
        ``T1_modified_hi`` (keV), ``status``, ``status_modified`` and the
        extras (``cstat``, ``norm``, ``counts``, ...); the dataset's
        attributes are the library's provenance and ``family``. The HDF5 file
        stays open until ``ds.close()``.

    Raises
    ------
    xrmod.errors.InputError
        *path* is not a readable xrmod library.

    Examples
    --------
    >>> ds = xrmod.open_library("library.h5")  # doctest: +SKIP
    >>> bias = ds.T1 / ds.kT_true
    >>> bias.sel(mu=6.4, sigma=0.3, method="nearest").compute()
    """
    import xarray as xr

    f = _open(path)
    try:
        ds = xr.Dataset(_variables(f), coords=_coordinates(f), attrs=_provenance(f))
    except BaseException:
        f.close()
        raise
    ds.set_close(f.close)
    return ds


def _open(path: str | os.PathLike) -> h5py.File:
    """The library file, read as h5py would; without HDF5's file lock if a writer holds it.

    Not without the lock always: HDF5 refuses to open a file twice in one
    process with different locking flags, and a user's own ``h5py.File`` of
    the library beside the dataset uses the lock.
    """
    from xrmod.errors import InputError

    try:
        return read_library_file(path)
    except InputError as e:
        if "lock" not in str(e):
            raise
    return read_library_file(path, locking=False)  # a library still being written


def _coordinates(f: h5py.File) -> dict[str, Any]:
    import xarray as xr

    params, lib = f["PARAMS"], f["LIBRARY"]
    coords = {}
    for axis in (str(a) for a in params.attrs["axes"]):
        units = str(decode_attr(params[axis].attrs.get("units", "")))
        coords[axis] = xr.Variable(axis, params[axis][()], {"units": units})
    if "realization" in lib:
        coords["realization"] = xr.Variable("realization", lib["realization"][()])
    coords[KT_TRUE] = xr.Variable(
        KT_TRUE, lib["temps"][()], {"units": "keV", "long_name": "true plasma temperature"}
    )
    return coords


def _dims(ds: h5py.Dataset) -> list[str]:
    return [KT_TRUE if d == "temps" else str(d) for d in ds.attrs["dims"]]


def _lazy(ds: h5py.Dataset) -> Any:
    import dask.array as da
    import numpy as np

    meta = np.empty((0,) * ds.ndim, dtype=ds.dtype)  # so that dask reads nothing to learn it
    # "auto": blocks of ~128 MB made of whole HDF5 chunks (one θ a chunk would be a task a θ)
    return da.from_array(ds, chunks="auto", lock=True, meta=meta)


def _variables(f: h5py.File) -> dict[str, Any]:
    lib = f["LIBRARY"]
    data: dict[str, Any] = {}
    for name, (source, column) in FIT_VARIABLES.items():
        ds = lib[source]
        columns = [str(c) for c in ds.attrs["columns"]]
        units = str(decode_attr(ds.attrs.get("units", "keV")))
        attrs = {"units": units, "long_name": _LONG_NAMES[name]}
        data[name] = (_dims(ds)[:-1], _lazy(ds)[..., columns.index(column)], attrs)
    for name, ds in lib.items():
        if name in ("temps", "realization") or name.startswith("results"):
            continue
        attrs = {k: decode_attr(v) for k, v in ds.attrs.items() if k != "dims"}
        if name in _LONG_NAMES:
            attrs["long_name"] = _LONG_NAMES[name]
        data[name] = (_dims(ds), _lazy(ds), attrs)
    return data


def _provenance(f: h5py.File) -> dict[str, Any]:
    attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
    attrs["family"] = str(decode_attr(f["PARAMS"].attrs["family"]))
    return attrs
