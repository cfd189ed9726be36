"""Checks of response contents: energy grids, effective areas, channel bounds, pairs of files.

Every check raises :class:`xrmod.errors.ResponseError` naming the file (or
``<in-memory ...>``) and the extension concerned. The readers, the writers
and the constructors of :mod:`xrmod.responses.types` share them, so a file
and an object built in memory are held to the same rules.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from xrmod.errors import ResponseError

if TYPE_CHECKING:
    from xrmod.responses.types import ARF, PHA, RMF

log = logging.getLogger("xrmod.responses")  # one logger for the package, as before the split

#: Relative tolerance when comparing energy grids of different files (float32 files).
GRID_RTOL = 1e-5
#: Absolute tolerance (keV) for the same comparison, for edges at or near 0 keV.
GRID_ATOL = 1e-9
#: How far above 1 a row of an RMF paired with an ARF may sum (float32 rounding).
ROW_SUM_TOL = 1e-3


def _readonly(values: Any, dtype: Any) -> np.ndarray:
    """Return a read-only 1-D copy of ``values`` as ``dtype``."""
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


def _where(path: str | None, kind: str) -> str:
    """Name a response for messages: its path, or what it is when built in memory."""
    return path if path is not None else f"<in-memory {kind}>"


def _scale(value: Any, name: str, n: int, where: str) -> float | np.ndarray:
    """Validate a BACKSCAL/AREASCAL value: a finite scalar or one finite value per channel."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        if not np.isfinite(arr):
            raise ResponseError(
                f"{name.upper()} is not finite: {value}", path=where, extension="SPECTRUM"
            )
        return float(arr)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ResponseError(
            f"{name.upper()} column must hold {n} finite values, got shape {arr.shape}",
            path=where,
            extension="SPECTRUM",
        )
    return _readonly(arr, np.float64)


def _check_grid(
    energ_lo: Any, energ_hi: Any, *, path: str, extension: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check an energy grid: 1-D, finite, ≥ 0, bins of positive width, increasing, no overlap."""
    lo = _readonly(energ_lo, np.float64)
    hi = _readonly(energ_hi, np.float64)
    if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
        raise ResponseError(
            f"ENERG_LO and ENERG_HI must be 1-D of equal non-zero length, "
            f"got shapes {lo.shape} and {hi.shape}",
            path=path,
            extension=extension,
        )
    for name, arr in (("ENERG_LO", lo), ("ENERG_HI", hi)):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if bad.size:
            i = int(bad[0])
            raise ResponseError(
                f"{name} must be finite and >= 0; bin {i} has {arr[i]!r} ({bad.size} bad bins)",
                path=path,
                extension=extension,
            )
    bad = np.flatnonzero(hi <= lo)
    if bad.size:
        i = int(bad[0])
        raise ResponseError(
            f"energies are not increasing: bin {i} has ENERG_HI {hi[i]:.9g} <= "
            f"ENERG_LO {lo[i]:.9g} keV",
            path=path,
            extension=extension,
        )
    # Next bin starts where this one ends; allow float32 rounding of shared edges.
    bad = np.flatnonzero(lo[1:] < hi[:-1] - GRID_RTOL * hi[:-1])
    if bad.size:
        i = int(bad[0])
        raise ResponseError(
            f"energies are not increasing: bin {i + 1} starts at ENERG_LO {lo[i + 1]:.9g} keV, "
            f"before bin {i} ends (ENERG_HI {hi[i]:.9g} keV)",
            path=path,
            extension=extension,
        )
    return lo, hi


def _check_specresp(
    resp: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, path: str, extension: str
) -> None:
    """Raise unless every effective area value is finite and non-negative."""
    for problem, bad in (
        ("not finite", ~np.isfinite(resp)),
        ("negative", resp < 0),
    ):
        idx = np.flatnonzero(bad)
        if idx.size:
            i = int(idx[0])
            raise ResponseError(
                f"SPECRESP is {problem} in {idx.size} bin(s); first: bin {i} "
                f"({lo[i]:.6g}-{hi[i]:.6g} keV) = {resp[i]!r}",
                path=path,
                extension=extension,
            )


def _check_ebounds(
    e_min: Any, e_max: Any, *, path: str, extension: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check channel bounds: 1-D, equal length, finite (order is not imposed, cf. XMM RGS)."""
    lo = _readonly(e_min, np.float64)
    hi = _readonly(e_max, np.float64)
    if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
        raise ResponseError(
            f"E_MIN and E_MAX must be 1-D of equal non-zero length, "
            f"got shapes {lo.shape} and {hi.shape}",
            path=path,
            extension=extension,
        )
    for name, arr in (("E_MIN", lo), ("E_MAX", hi)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ResponseError(
                f"{name} is not finite for channel index {int(bad[0])}",
                path=path,
                extension=extension,
            )
    return lo, hi


def check_compatible(arf: ARF, rmf: RMF) -> None:
    """Check that an ARF and an RMF share one energy grid and that the RMF is a redistribution.

    Edges are compared with ``rtol = GRID_RTOL`` (float32 files written by
    different tools differ in the last digits). The RMF's rows must sum to
    at most 1 (+ ``ROW_SUM_TOL``) and hold no negative value.

    Raises
    ------
    xrmod.errors.ResponseError
        Naming both files, with the two bin counts or the first differing bin;
        naming the RMF, with the row that sums above 1 or holds a negative value.
    """
    a = _where(arf.path, "ARF")
    r = _where(rmf.path, "RMF")
    if arf.n_energy != rmf.n_energy:
        raise ResponseError(
            f"ARF {a} has {arf.n_energy} energy bins but RMF {r} has {rmf.n_energy}: "
            "they do not belong together"
        )
    differs = ~(
        np.isclose(arf.energ_lo, rmf.energ_lo, rtol=GRID_RTOL, atol=GRID_ATOL)
        & np.isclose(arf.energ_hi, rmf.energ_hi, rtol=GRID_RTOL, atol=GRID_ATOL)
    )
    bad = np.flatnonzero(differs)
    if bad.size:
        i = int(bad[0])
        raise ResponseError(
            f"ARF {a} and RMF {r} have different energy grids: first differing bin {i} is "
            f"{arf.energ_lo[i]:.7g}-{arf.energ_hi[i]:.7g} keV in the ARF, "
            f"{rmf.energ_lo[i]:.7g}-{rmf.energ_hi[i]:.7g} keV in the RMF "
            f"({bad.size} bins differ)"
        )
    _check_redistribution(rmf, r)


def _check_redistribution(rmf: RMF, where: str) -> None:
    """Refuse a matrix that cannot go with an ARF: a row above 1 or a negative value.

    A row summing above 1 (beyond :data:`ROW_SUM_TOL`) means the file holds an
    effective area already (an RSP, ``HDUCLAS3 = FULL``): with the ARF the area
    would count twice. A negative value makes expected counts negative.
    """
    matrix = rmf.matrix
    negative = np.flatnonzero(matrix.data < 0)
    if negative.size:
        row = int(np.searchsorted(matrix.indptr, negative[0], side="right") - 1)
        raise ResponseError(
            f"RMF {where} has {negative.size} negative value(s) (first in row {row}, "
            f"{rmf.energ_lo[row]:.6g}-{rmf.energ_hi[row]:.6g} keV): a redistribution matrix "
            "is a probability, >= 0"
        )
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    above = np.flatnonzero(sums > 1.0 + ROW_SUM_TOL)
    if above.size:
        i = int(above[np.argmax(sums[above])])
        raise ResponseError(
            f"RMF {where}: {above.size} row(s) sum above 1 (largest {sums[i]:.6g} in row {i}, "
            f"{rmf.energ_lo[i]:.6g}-{rmf.energ_hi[i]:.6g} keV): the matrix seems to include "
            "an effective area (an RSP), which the ARF would count twice; give a "
            "redistribution matrix (rows summing to <= 1)"
        )


def check_background(pha: PHA, rmf: RMF) -> None:
    """Check that a spectrum (e.g. the background) has the RMF's channels.

    Raises
    ------
    xrmod.errors.ResponseError
        When the channel counts differ (naming both files).
    """
    p = _where(pha.path, "PHA")
    r = _where(rmf.path, "RMF")
    if pha.n_channel != rmf.n_channel:
        raise ResponseError(
            f"spectrum {p} has {pha.n_channel} channels but RMF {r} has {rmf.n_channel}"
        )
    if not np.array_equal(pha.channels, rmf.channels):
        log.warning(
            "channel numbers of %s (from %d) and of %s (from %d) differ; matched by position",
            p,
            pha.channels[0],
            r,
            rmf.channels[0],
        )
