"""Readers of OGIP ARF, RMF and PHA files, and the checksum that identifies a file.

Readers are general (scalar, fixed-length or variable-length group columns,
rows with several or no groups, any ``TLMIN`` channel offset), copy everything
they need into memory and close the file before returning. Every problem found
in a file raises :class:`xrmod.errors.ResponseError` naming the file and the
extension or column concerned; errors raised by astropy are chained.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

import numpy as np
import scipy.sparse
from astropy.io import fits

from xrmod.errors import ResponseError
from xrmod.responses.fits_access import (
    _check_unit,
    _col_index,
    _find_table,
    _keyword,
    _keyword_float,
    _keyword_str,
    _open_fits,
    _require,
    _row_arrays,
    _scalar_column,
    _take_leading,
)
from xrmod.responses.types import ARF, PHA, RMF
from xrmod.responses.validation import _check_ebounds, _check_grid, _check_specresp

log = logging.getLogger("xrmod.responses")  # one logger for the package, as before the split

_MATRIX_NAMES = ("MATRIX", "SPECRESP MATRIX")


def read_arf(path: str | os.PathLike[str]) -> ARF:
    """Read an OGIP ARF (CAL/GEN/92-002): extension ``SPECRESP``.

    Parameters
    ----------
    path : path-like
        The FITS file.

    Returns
    -------
    ARF

    Raises
    ------
    xrmod.errors.ResponseError
        File missing, not FITS, truncated; extension or column missing;
        energies not increasing; ``SPECRESP`` negative or not finite.
    """
    name = os.fspath(path)
    with _open_fits(name, "ARF") as hdul:
        _, hdu = _find_table(hdul, name, ("SPECRESP",), ("HDUCLAS2", "SPECRESP"))
        lo = _scalar_column(hdu, "ENERG_LO", name, np.float64)
        hi = _scalar_column(hdu, "ENERG_HI", name, np.float64)
        resp = _scalar_column(hdu, "SPECRESP", name, np.float64)
        for col in ("ENERG_LO", "ENERG_HI"):
            _check_unit(hdu, col, name)
        lo, hi = _check_grid(lo, hi, path=name, extension=hdu.name)
        _check_specresp(resp, lo, hi, path=name, extension=hdu.name)
        telescope = _keyword_str(hdul, hdu, "TELESCOP")
        instrument = _keyword_str(hdul, hdu, "INSTRUME")
        exposure = _keyword_float(hdul, hdu, "EXPOSURE", name)
    return ARF(
        lo,
        hi,
        resp,
        path=name,
        telescope=telescope,
        instrument=instrument,
        exposure=exposure,
    )


def read_rmf(path: str | os.PathLike[str]) -> RMF:
    """Read an OGIP RMF (CAL/GEN/92-002): ``MATRIX`` or ``SPECRESP MATRIX``, and ``EBOUNDS``.

    Every row i holds ``N_GRP`` groups; group g covers channels ``F_CHAN[g]``
    to ``F_CHAN[g] + N_CHAN[g] - 1`` and takes the next ``N_CHAN[g]`` values of
    the row's ``MATRIX`` array (values beyond ``sum(N_CHAN)`` are padding).
    Channel c is matrix column ``c - first_channel``, ``first_channel`` being
    ``TLMIN`` of ``F_CHAN`` (1 when absent, per OGIP). ``F_CHAN``/``N_CHAN``
    may be scalar, fixed- or variable-length columns, ``MATRIX`` fixed- or
    variable-length.

    Parameters
    ----------
    path : path-like
        The FITS file.

    Returns
    -------
    RMF

    Raises
    ------
    xrmod.errors.ResponseError
        File missing, not FITS, truncated; extension or column missing;
        inconsistent groups, channels or ``DETCHANS``; energies not increasing.
    """
    name = os.fspath(path)
    t0 = time.perf_counter()
    with _open_fits(name, "RMF") as hdul:
        _, hdu = _find_table(hdul, name, _MATRIX_NAMES, ("HDUCLAS2", "RSP_MATRIX"))
        _, ebounds = _find_table(hdul, name, ("EBOUNDS",), ("HDUCLAS2", "EBOUNDS"))
        channels = _scalar_column(ebounds, "CHANNEL", name, np.int64)
        e_min = _scalar_column(ebounds, "E_MIN", name, np.float64)
        e_max = _scalar_column(ebounds, "E_MAX", name, np.float64)
        for col in ("E_MIN", "E_MAX"):
            _check_unit(ebounds, col, name)
        e_min, e_max = _check_ebounds(e_min, e_max, path=name, extension=ebounds.name)

        ext = hdu.name
        lo = _scalar_column(hdu, "ENERG_LO", name, np.float64)
        hi = _scalar_column(hdu, "ENERG_HI", name, np.float64)
        for col in ("ENERG_LO", "ENERG_HI"):
            _check_unit(hdu, col, name)
        lo, hi = _check_grid(lo, hi, path=name, extension=ext)

        n_channel = channels.size
        detchans = _keyword(hdul, hdu, "DETCHANS")
        if detchans is not None and int(detchans) != n_channel:
            raise ResponseError(
                f"DETCHANS = {int(detchans)} but EBOUNDS has {n_channel} channels",
                path=name,
                extension=ext,
            )
        k_fchan = _require(hdu, "F_CHAN", name)
        tlmin = hdu.header.get(f"TLMIN{k_fchan + 1}")
        first_channel = int(tlmin) if tlmin is not None else 1
        if channels[0] != first_channel:
            log.warning(
                "%s: EBOUNDS starts at channel %d but F_CHAN's first channel is %d%s",
                name,
                channels[0],
                first_channel,
                "" if tlmin is not None else " (no TLMIN: OGIP default)",
            )
        matrix = _build_matrix(hdu, name, n_channel, first_channel, tlmin is not None)
        telescope = _keyword_str(hdul, hdu, "TELESCOP")
        instrument = _keyword_str(hdul, hdu, "INSTRUME")
    rmf = RMF(
        lo,
        hi,
        matrix,
        channels,
        e_min,
        e_max,
        first_channel=first_channel,
        path=name,
        telescope=telescope,
        instrument=instrument,
    )
    log.debug(
        "read RMF %s: %d energies x %d channels, %d non-zeros in %.3f s",
        name,
        rmf.n_energy,
        rmf.n_channel,
        rmf.matrix.nnz,
        time.perf_counter() - t0,
    )
    return rmf


def _build_matrix(
    hdu: fits.BinTableHDU, path: str, n_channel: int, first_channel: int, has_tlmin: bool
) -> scipy.sparse.csr_array:
    """Expand the compressed MATRIX table (N_GRP, F_CHAN, N_CHAN, MATRIX) into CSR."""
    ext = hdu.name
    n_energy = len(hdu.data)
    n_grp = _scalar_column(hdu, "N_GRP", path, np.int64)
    if np.any(n_grp < 0):
        i = int(np.flatnonzero(n_grp < 0)[0])
        raise ResponseError(f"N_GRP is negative in row {i}", path=path, extension=ext)
    groups = []
    for col in ("F_CHAN", "N_CHAN"):
        flat, lengths = _row_arrays(hdu, col, path, np.int64)
        short = np.flatnonzero(lengths < n_grp)
        if short.size:
            i = int(short[0])
            raise ResponseError(
                f"column {col} has {lengths[i]} entries in row {i} but N_GRP = {n_grp[i]}",
                path=path,
                extension=ext,
            )
        groups.append(_take_leading(flat, lengths, n_grp))
    f_chan, n_chan = groups
    group_row = np.repeat(np.arange(n_energy, dtype=np.int64), n_grp)
    if np.any(n_chan < 0):
        i = int(group_row[np.flatnonzero(n_chan < 0)[0]])
        raise ResponseError(f"N_CHAN is negative in row {i}", path=path, extension=ext)
    row_nnz = np.bincount(group_row, weights=n_chan, minlength=n_energy).astype(np.int64)

    values, lengths = _row_arrays(hdu, "MATRIX", path, np.float64)
    short = np.flatnonzero(lengths < row_nnz)
    if short.size:
        i = int(short[0])
        raise ResponseError(
            f"column MATRIX has {lengths[i]} values in row {i} but N_CHAN sums to {row_nnz[i]}",
            path=path,
            extension=ext,
        )
    values = _take_leading(values, lengths, row_nnz)
    if not np.all(np.isfinite(values)):
        i = int(np.repeat(np.arange(n_energy), row_nnz)[np.flatnonzero(~np.isfinite(values))[0]])
        raise ResponseError(
            f"column MATRIX has non-finite values (first in row {i})", path=path, extension=ext
        )
    if np.any(values < 0):
        log.warning("%s: MATRIX has %d negative values", path, int(np.sum(values < 0)))

    # Column index of every value: group start + position within the group.
    start = f_chan - first_channel
    within = np.arange(values.size, dtype=np.int64) - np.repeat(np.cumsum(n_chan) - n_chan, n_chan)
    cols = np.repeat(start, n_chan) + within
    below = np.flatnonzero(start < 0)
    if below.size:
        g = int(below[0])
        origin = "TLMIN" if has_tlmin else "no TLMIN: OGIP default"
        raise ResponseError(
            f"F_CHAN = {f_chan[g]} in row {group_row[g]} is below the first channel "
            f"{first_channel} ({origin})",
            path=path,
            extension=ext,
        )
    over = np.flatnonzero(start + n_chan > n_channel)
    if over.size:
        g = int(over[0])
        raise ResponseError(
            f"group F_CHAN = {f_chan[g]}, N_CHAN = {n_chan[g]} in row {group_row[g]} runs past "
            f"the last channel {first_channel + n_channel - 1} (DETCHANS = {n_channel})",
            path=path,
            extension=ext,
        )
    indptr = np.concatenate([[0], np.cumsum(row_nnz)])
    matrix = scipy.sparse.csr_array(
        (values, cols, indptr), shape=(n_energy, n_channel), dtype=np.float64
    )
    matrix.sum_duplicates()  # no-op unless groups were unordered or overlapping
    return matrix


def read_pha(path: str | os.PathLike[str]) -> PHA:
    """Read a type I OGIP PHA spectrum (OGIP/92-007): extension ``SPECTRUM``.

    Counts come from column ``COUNTS``, else from ``RATE`` × ``EXPOSURE``.
    ``QUALITY`` and ``GROUPING`` are not applied.

    Parameters
    ----------
    path : path-like
        The FITS file.

    Returns
    -------
    PHA

    Raises
    ------
    xrmod.errors.ResponseError
        File missing, not FITS, truncated; no ``SPECTRUM`` extension; no
        ``CHANNEL`` column; neither ``COUNTS`` nor ``RATE``; no positive
        ``EXPOSURE``; a type II (multi-spectrum) file.
    """
    name = os.fspath(path)
    with _open_fits(name, "PHA") as hdul:
        _, hdu = _find_table(hdul, name, ("SPECTRUM",), ("HDUCLAS1", "SPECTRUM"))
        ext = hdu.name
        if str(hdu.header.get("HDUCLAS4", "")).strip().upper() == "TYPE:II":
            raise ResponseError(
                "type II PHA (several spectra per file) is not supported", path=name, extension=ext
            )
        channels = _scalar_column(hdu, "CHANNEL", name, np.int64)
        exposure = _keyword_float(hdul, hdu, "EXPOSURE", name)
        if exposure is None or not exposure > 0:
            raise ResponseError(
                f"keyword EXPOSURE must be > 0, got {exposure}", path=name, extension=ext
            )
        if _col_index(hdu, "COUNTS") is not None:
            counts = _scalar_column(hdu, "COUNTS", name, np.float64)
        elif _col_index(hdu, "RATE") is not None:
            counts = _scalar_column(hdu, "RATE", name, np.float64) * exposure
        else:
            raise ResponseError(
                f"neither COUNTS nor RATE column (columns: {', '.join(hdu.columns.names)})",
                path=name,
                extension=ext,
            )
        scales = {}
        for key in ("BACKSCAL", "AREASCAL"):
            if _col_index(hdu, key) is not None:
                scales[key] = _scalar_column(hdu, key, name, np.float64)
            else:
                value = _keyword_float(hdul, hdu, key, name)
                scales[key] = 1.0 if value is None else value
        poisserr = _keyword(hdul, hdu, "POISSERR")
        if poisserr is None:
            poisserr = _col_index(hdu, "STAT_ERR") is None
    return PHA(
        channels,
        counts,
        exposure,
        backscal=scales["BACKSCAL"],
        areascal=scales["AREASCAL"],
        path=name,
        poisserr=bool(poisserr),
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, recorded in the library to identify responses."""
    name = os.fspath(path)
    digest = hashlib.sha256()
    try:
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise ResponseError(f"cannot read file ({e.strerror or e})", path=name) from e
    return digest.hexdigest()
