"""Checksums of a finished library: recorded when a run ends, verified before it is trusted.

When a run ends (complete, or stopped by SIGTERM/SIGINT) rank 0 reads the
library back and records a CRC-32 (``zlib.crc32``) of every dataset under
``/PARAMS`` and ``/LIBRARY``, per *block* of rows along the dataset's first
axis (its bytes in C order; about 4 MB a block, at most 4096 blocks). They
depend on the datasets' values only, so a library computed on 1, 2 or 3
ranks, by either writer, records the same checksums.

Where they are stored:

- each dataset's attributes ``crc32`` (uint32, one per block) and
  ``crc32_rows`` (rows of the first axis per block; 0 for a scalar);
- the root attribute ``checksums``, JSON: ``{"algorithm": "crc32",
  "datasets": [...]}`` (no time: two runs of one job record the same).
  A library without it was written by an older xrmod, or is being
  written (``--resume`` removes the checksums before it writes into a
  library, and records new ones at the end).

Verification (:func:`verify_library`) recomputes them. *Quick* verification
reads the axes, temperatures and both status datasets (what progress and
``--resume`` rely on: a few bytes per point); *full* verification reads
every dataset. ``xrmod info`` verifies quickly, ``xrmod info --verify``
fully; ``xrmod-gen --resume`` fully, and refuses a damaged library.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ALGORITHM",
    "QUICK_DATASETS",
    "IntegrityReport",
    "check_library",
    "seal_library",
    "unseal_library",
    "verify_library",
]

#: The checksum recorded (the root attribute ``checksums`` names it).
ALGORITHM = "crc32"
#: Root attribute listing the checksummed datasets (JSON).
ROOT_ATTR = "checksums"
#: Per-dataset attributes: the checksums and the rows of the first axis per block.
CRC_ATTR = "crc32"
ROWS_ATTR = "crc32_rows"
#: Groups whose datasets are checksummed.
GROUPS = ("PARAMS", "LIBRARY")
#: Datasets a quick verification reads (besides every dataset of ``/PARAMS``).
QUICK_DATASETS = (
    "LIBRARY/temps",
    "LIBRARY/realization",
    "LIBRARY/status",
    "LIBRARY/status_modified",
)
#: Size of a block, in bytes (about), and the most blocks a dataset has.
BLOCK_BYTES = 4 << 20
MAX_BLOCKS = 4096


def _rows_per_block(ds: Any) -> int:
    """Rows of the first axis per block of dataset *ds* (0: a scalar, one block)."""
    if not ds.shape:
        return 0
    row = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    total = row * ds.shape[0]
    target = max(BLOCK_BYTES, -(-total // MAX_BLOCKS))
    return max(1, target // row)


def _block_checksums(ds: Any, rows: int) -> np.ndarray:
    """CRC-32 of each block of *rows* rows of *ds* (its bytes in C order)."""
    if rows == 0 or not ds.shape:
        return np.array([zlib.crc32(np.ascontiguousarray(ds[()]).tobytes())], dtype=np.uint32)
    n = ds.shape[0]
    out = [zlib.crc32(np.ascontiguousarray(ds[lo : lo + rows])) for lo in range(0, n, rows)]
    return np.array(out or [zlib.crc32(b"")], dtype=np.uint32)


def _datasets(f: Any) -> list[str]:
    names = []
    for group in GROUPS:
        if group in f:
            names += [f"{group}/{k}" for k, v in f[group].items() if hasattr(v, "dtype")]
    return names


def seal_library(path: str | os.PathLike) -> None:
    """Record the checksums of every dataset of the library *path* (serial; rank 0 alone)."""
    import h5py

    with h5py.File(path, "r+") as f:
        names = _datasets(f)
        for name in names:
            ds = f[name]
            rows = _rows_per_block(ds)
            ds.attrs[CRC_ATTR] = _block_checksums(ds, rows)
            ds.attrs[ROWS_ATTR] = rows
        f.attrs[ROOT_ATTR] = json.dumps({"algorithm": ALGORITHM, "datasets": names})


def unseal_library(path: str | os.PathLike) -> None:
    """Remove the library's checksums: it is about to be written (``--resume``)."""
    import h5py

    with h5py.File(path, "r+") as f:
        if ROOT_ATTR not in f.attrs:
            return
        del f.attrs[ROOT_ATTR]
        for name in _datasets(f):
            for key in (CRC_ATTR, ROWS_ATTR):
                if key in f[name].attrs:
                    del f[name].attrs[key]


@dataclass
class IntegrityReport:
    """What a verification found.

    Attributes
    ----------
    recorded : bool
        The library records checksums (False: an older xrmod, or a run in progress).
    full : bool
        Every dataset was read (False: the quick check).
    checked : list of str
        Datasets verified.
    damaged : list of str
        One message per damaged block or missing dataset (empty: none).
    """

    recorded: bool
    full: bool
    checked: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No damage found (also when no checksums are recorded)."""
        return not self.damaged

    def text(self) -> str:
        """One line, as ``xrmod info`` prints it."""
        if not self.recorded:
            return "no checksums recorded (an older xrmod, or a run not finished)"
        if self.damaged:
            more = f" (and {len(self.damaged) - 3} more)" if len(self.damaged) > 3 else ""
            return "damaged: " + "; ".join(self.damaged[:3]) + more
        if self.full:
            return f"{ALGORITHM} checksums of all {len(self.checked)} datasets verified"
        return (
            f"{ALGORITHM} checksums of {len(self.checked)} datasets verified (axes, "
            "temperatures, status); xrmod info --verify checks the results too"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON types only (``xrmod info --json``: key ``integrity``)."""
        return {
            "recorded": self.recorded,
            "algorithm": ALGORITHM if self.recorded else None,
            "full": self.full,
            "checked": self.checked,
            "damaged": self.damaged,
        }


def verify_library(f_or_path: Any, *, full: bool = True) -> IntegrityReport:
    """Recompute the library's checksums and compare them with those recorded.

    Parameters
    ----------
    f_or_path : h5py.File or path-like
        The library (an open file is read as it is).
    full : bool
        Read every dataset; False: only ``/PARAMS`` and :data:`QUICK_DATASETS`.

    Returns
    -------
    IntegrityReport
    """
    import h5py

    if not isinstance(f_or_path, h5py.File):
        with h5py.File(f_or_path, "r", locking=False) as f:
            return verify_library(f, full=full)
    f = f_or_path
    raw = f.attrs.get(ROOT_ATTR)
    if raw is None:
        return IntegrityReport(recorded=False, full=full)
    try:
        recorded = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        names = [str(n) for n in recorded["datasets"]]
    except (ValueError, KeyError, TypeError):
        return IntegrityReport(True, full, damaged=["the root attribute 'checksums' is unreadable"])
    report = IntegrityReport(recorded=True, full=full)
    for name in names:
        if not full and not (name.startswith("PARAMS/") or name in QUICK_DATASETS):
            continue
        ds = f.get(name)
        if ds is None or CRC_ATTR not in ds.attrs or ROWS_ATTR not in ds.attrs:
            report.damaged.append(f"dataset {name} or its checksums missing")
            continue
        stored = np.asarray(ds.attrs[CRC_ATTR], dtype=np.uint32).ravel()
        rows = int(ds.attrs[ROWS_ATTR])
        try:
            found = _block_checksums(ds, rows)
        except (OSError, RuntimeError) as e:  # HDF5 cannot read it (a damaged chunk index)
            report.damaged.append(f"dataset {name} unreadable ({e})")
            continue
        report.checked.append(name)
        if found.shape != stored.shape:
            report.damaged.append(
                f"dataset {name} has {found.size} blocks, {stored.size} checksums recorded"
            )
            continue
        for k in np.flatnonzero(found != stored).tolist():
            last = min((k + 1) * rows, ds.shape[0]) - 1
            span = f" (rows {k * rows}-{last} of its first axis)" if rows else ""
            report.damaged.append(f"dataset {name} block {k}{span} checksum mismatch")
    return report


def check_library(path: str | os.PathLike, doing: str = "") -> IntegrityReport:
    """Verify the library *path* fully; raise if damaged.

    *doing* starts the error message after the path (``"cannot resume, "``).

    Raises
    ------
    xrmod.errors.InputError
        A checksum differs or a dataset is unreadable; the message names the
        dataset and block, and what to do.
    """
    from xrmod.errors import InputError

    report = verify_library(path, full=True)
    if not report.ok:
        raise InputError(
            f"{path}: {doing}the library is damaged: {report.text()[len('damaged: ') :]}. "
            "Restore it from a copy, or compute it again with --overwrite (or another output)"
        )
    return report
