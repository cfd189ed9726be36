"""``xrmod info``: a library's provenance, axes, completion and failures as plain text."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from xrmod.library import STATUS_DATASETS, STATUS_FITS, decode_attr, read_library_file
from xrmod.status import Status

__all__ = ["describe"]

#: Root attributes holding a file path (shown normalised).
_PATHS = ("arf", "rmf", "background", "config_path")
#: Root attributes holding an interval [lo, hi] (shown ``lo–hi``).
_INTERVALS = ("band",)
#: Units of root attributes.
_UNITS = {"band": "keV", "exposure": "s"}
#: Root attributes not listed with the others (the config text comes last, in full).
_NOT_LISTED = ("config", "status_codes")


def _number(value: Any) -> str:
    """A number as written by hand: ``10``, ``0.5``, ``5e-05``, never numpy's ``10.``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(float(value), ".15g")


def _attr(key: str, value: Any) -> str:
    """A root attribute's value as ``xrmod info`` prints it."""
    value = decode_attr(value)
    if isinstance(value, str):
        if not value:
            return "none"
        text = os.path.normpath(value) if key in _PATHS else value
    elif isinstance(value, list):
        text = ", ".join(value)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        numbers = [_number(v) for v in value.ravel()]
        if key in _INTERVALS and len(numbers) == 2:
            text = "–".join(numbers)
        else:
            text = ", ".join(numbers)
    elif isinstance(value, (int, float, np.number, np.bool_)):
        text = _number(value)
    else:
        text = str(value)
    unit = _UNITS.get(key)
    return f"{text} {unit}" if unit else text


def _axis(values: np.ndarray, unit: str) -> str:
    """An axis: its value when it has one, else how many values from where to where."""
    if values.size == 1:
        text = _number(values[0])
    else:
        text = f"{values.size} values {_number(values.min())} .. {_number(values.max())}"
    return f"{text} {unit}".rstrip()


def _description(code: int) -> str:
    try:
        return Status(code).description
    except ValueError:
        return "unknown code (a newer xrmod?)"


def describe(path: str | os.PathLike) -> str:
    """Human-readable summary of a library: provenance, axes, completion, failures.

    Numbers are printed as written by hand (``band: 0.5–10 keV``), paths
    normalised, a one-value axis as its value. Reads format versions 1 and 2.

    Raises
    ------
    xrmod.errors.InputError
        *path* is not a readable HDF5 file or not an xrmod library.
    """
    lines = [os.path.normpath(os.fspath(path))]
    with read_library_file(path) as f:
        for key in sorted(f.attrs):
            if key not in _NOT_LISTED:
                lines.append(f"  {key}: {_attr(key, f.attrs[key])}")
        params = f["PARAMS"]
        lines.append(f"  family: {decode_attr(params.attrs['family'])}")
        lines.append("  axes (in order):")
        for axis in params.attrs["axes"]:
            unit = decode_attr(params[axis].attrs.get("units", ""))
            lines.append(f"    {axis}: {_axis(params[axis][()], unit)}")
        lines.append(f"    temps: {_axis(f['LIBRARY/temps'][()], 'keV')}")
        lib = f["LIBRARY"]
        status = lib["status"][()]
        lines.append(f"  points: {status.size}, shape {status.shape}")
        if "status_modified" not in lib:  # format version 1: one status for both fits
            lines.append("  status (format version 1: one status for both fits, the worse):")
            codes, counts = np.unique(status, return_counts=True)
            for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
                lines.append(f"    status {code:>3}: {count:>8}  {_description(code)}")
        else:
            per_fit = {}
            for dataset in STATUS_DATASETS:
                codes, counts = np.unique(lib[dataset][()], return_counts=True)
                per_fit[dataset] = dict(zip(codes.tolist(), counts.tolist(), strict=True))
            heads = "".join(f"{STATUS_FITS[dataset]:>9}" for dataset in STATUS_DATASETS)
            lines.append("  status per fit (points with each code):")
            lines.append(f"    {'':11}{heads}")
            for code in sorted(set().union(*per_fit.values())):
                cells = "".join(f"{per_fit[d].get(code, 0):>9}" for d in STATUS_DATASETS)
                lines.append(f"    status {code:>3}: {cells}  {_description(code)}")
        lines.append("  config:")
        config = str(decode_attr(f.attrs.get("config", "")))
        lines.extend(f"    {line}".rstrip() for line in config.splitlines())
    return "\n".join(lines)
