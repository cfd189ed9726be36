"""A library as an :class:`xarray.Dataset`: labelled dimensions, coordinates, attributes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from xrmod.library import decode_attr

if TYPE_CHECKING:
    import xarray

__all__ = ["open_library"]


def open_library(path: str | os.PathLike) -> xarray.Dataset:
    """Open a library as an :class:`xarray.Dataset` with labelled dimensions.

    Every ``/LIBRARY`` dataset becomes a data variable over its ``dims``
    attribute (the modifier axes in library order, ``realization`` when there
    are several, ``temps``, and ``column`` for the results); the axes'
    values are the coordinates; the root attributes and ``family`` are the
    dataset's attributes. Reads the whole library into memory. Needs xarray
    (``pip install xrmod[xarray]``).
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
            attrs = {k: decode_attr(v) for k, v in ds.attrs.items() if k != "dims"}
            data[name] = (dims, ds[()], attrs)
        attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
        attrs["family"] = str(f["PARAMS"].attrs["family"])
    return xr.Dataset(data, coords=coords, attrs=attrs)
