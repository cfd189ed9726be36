"""Writers of OGIP ARF, RMF and PHA files that XSPEC reads.

Values are written as float64 (a round trip is exact), with the OGIP
identification keywords and checksums; the inputs pass the same checks as
a file being read (:mod:`xrmod.responses.validation`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse
from astropy.io import fits

from xrmod.errors import ResponseError
from xrmod.responses.validation import _check_ebounds, _check_grid, _check_specresp


def _ogip_header(
    header: fits.Header,
    *,
    extname: str,
    hduclas2: str,
    hduvers: str,
    telescope: str,
    instrument: str,
    filter_name: str,
    hduclas1: tuple[str, str] = ("RESPONSE", "dataset relates to spectral response"),
    hduclas2_comment: str = "OGIP CAL/GEN/92-002",
) -> None:
    """Set the OGIP identification keywords shared by ARF, MATRIX, EBOUNDS and SPECTRUM."""
    header["EXTNAME"] = (extname, "name of this binary table extension")
    header["TELESCOP"] = (telescope, "mission/satellite name")
    header["INSTRUME"] = (instrument, "instrument/detector name")
    header["FILTER"] = (filter_name, "filter in use")
    header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
    header["HDUCLAS1"] = hduclas1
    header["HDUCLAS2"] = (hduclas2, hduclas2_comment)
    header["HDUVERS"] = (hduvers, "version of the HDUCLAS2 format")


def _primary(telescope: str, instrument: str) -> fits.PrimaryHDU:
    """Primary HDU without data, carrying TELESCOP/INSTRUME and the creator."""
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = telescope
    primary.header["INSTRUME"] = instrument
    primary.header["CREATOR"] = ("xrmod", "software that wrote this file")
    return primary


def _write(hdul: fits.HDUList, path: str, overwrite: bool) -> None:
    """Write with checksums; an existing file without ``overwrite`` is a ResponseError."""
    if os.path.exists(path) and not overwrite:
        raise ResponseError("file exists; pass overwrite=True to replace it", path=path)
    try:
        hdul.writeto(path, overwrite=overwrite, checksum=True)
    except OSError as e:
        raise ResponseError(f"cannot write file ({e})", path=path) from e


def write_arf(
    path: str | os.PathLike[str],
    energ_lo: Any,
    energ_hi: Any,
    specresp: Any,
    *,
    telescope: str = "UNKNOWN",
    instrument: str = "UNKNOWN",
    filter_name: str = "NONE",
    overwrite: bool = False,
) -> None:
    """Write an OGIP ARF (CAL/GEN/92-002, HDUCLAS2 ``SPECRESP``, HDUVERS 1.1.0) that XSPEC reads.

    Columns ``ENERG_LO``, ``ENERG_HI`` (keV) and ``SPECRESP`` (cm**2) are
    written as float64, so a round trip is exact.

    Parameters
    ----------
    path : path-like
        Output file.
    energ_lo, energ_hi : array_like
        Energy bin edges in keV, increasing.
    specresp : array_like
        Effective area in cm², finite and non-negative.
    telescope, instrument, filter_name : str
        Keywords ``TELESCOP``, ``INSTRUME``, ``FILTER``.
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    xrmod.errors.ResponseError
        Invalid grid or area, existing file without ``overwrite``, write failure.
    """
    name = os.fspath(path)
    lo, hi = _check_grid(energ_lo, energ_hi, path=name, extension="SPECRESP")
    resp = np.asarray(specresp, dtype=np.float64)
    if resp.shape != lo.shape:
        raise ResponseError(
            f"SPECRESP has shape {resp.shape}, the energy grid {lo.shape}",
            path=name,
            extension="SPECRESP",
        )
    _check_specresp(resp, lo, hi, path=name, extension="SPECRESP")
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ENERG_LO", format="D", unit="keV", array=lo),
            fits.Column(name="ENERG_HI", format="D", unit="keV", array=hi),
            fits.Column(name="SPECRESP", format="D", unit="cm**2", array=resp),
        ]
    )
    _ogip_header(
        table.header,
        extname="SPECRESP",
        hduclas2="SPECRESP",
        hduvers="1.1.0",
        telescope=telescope,
        instrument=instrument,
        filter_name=filter_name,
    )
    table.header["ARFVERSN"] = ("1992a", "obsolete OGIP version keyword")
    _write(fits.HDUList([_primary(telescope, instrument), table]), name, overwrite)


def write_pha(
    path: str | os.PathLike[str],
    channels: Any,
    counts: Any,
    *,
    exposure: float,
    backscal: float = 1.0,
    areascal: float = 1.0,
    background_file: str = "none",
    response_file: str = "none",
    ancillary_file: str = "none",
    telescope: str = "UNKNOWN",
    instrument: str = "UNKNOWN",
    filter_name: str = "NONE",
    overwrite: bool = False,
) -> None:
    """Write a type I OGIP spectrum (OGIP/92-007, extension ``SPECTRUM``) that XSPEC reads.

    ``COUNTS`` is written as float64 (``POISSERR = T``), so non-integer
    (e.g. Asimov) counts round-trip exactly; ``BACKSCAL``, ``AREASCAL``,
    ``BACKFILE``, ``RESPFILE`` and ``ANCRFILE`` are keywords, and ``TLMIN1``/
    ``TLMAX1`` give the channel numbering (0- or 1-based, as the RMF's).

    Raises
    ------
    xrmod.errors.ResponseError
        Counts not finite or of another length than the channels, EXPOSURE
        or a scale not > 0, existing file without ``overwrite``, write failure.
    """
    name = os.fspath(path)
    chan = np.asarray(channels, dtype=np.int32)
    data = np.asarray(counts, dtype=np.float64)
    if chan.ndim != 1 or data.shape != chan.shape or not np.all(np.isfinite(data)):
        raise ResponseError(
            f"COUNTS (shape {data.shape}) must be finite, one per CHANNEL ({chan.shape})",
            path=name,
            extension="SPECTRUM",
        )
    for key, value in (("EXPOSURE", exposure), ("BACKSCAL", backscal), ("AREASCAL", areascal)):
        if not (np.isfinite(value) and value > 0):
            raise ResponseError(f"{key} must be > 0, got {value}", path=name, extension="SPECTRUM")
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="CHANNEL", format="J", array=chan),
            fits.Column(name="COUNTS", format="D", unit="count", array=data),
        ]
    )
    h = table.header
    _ogip_header(
        h,
        extname="SPECTRUM",
        hduclas2="TOTAL",
        hduvers="1.2.1",
        telescope=telescope,
        instrument=instrument,
        filter_name=filter_name,
        hduclas1=("SPECTRUM", "PHA dataset (OGIP/92-007)"),
        hduclas2_comment="gross spectrum",
    )
    h["HDUCLAS3"] = ("COUNT", "PHA data stored as counts")
    h["EXPOSURE"] = (float(exposure), "exposure time (s)")
    h["BACKSCAL"] = (float(backscal), "background scaling factor")
    h["AREASCAL"] = (float(areascal), "area scaling factor")
    h["CORRSCAL"] = (0.0, "correction scaling factor")
    h["BACKFILE"] = (background_file, "background spectrum")
    h["CORRFILE"] = ("none", "correction spectrum")
    h["RESPFILE"] = (response_file, "redistribution matrix")
    h["ANCRFILE"] = (ancillary_file, "ancillary response")
    h["CHANTYPE"] = ("PI", "channel type")
    h["DETCHANS"] = (int(chan.size), "number of channels")
    if chan.size:
        h["TLMIN1"] = (int(chan.min()), "first channel number")
        h["TLMAX1"] = (int(chan.max()), "last channel number")
    h["POISSERR"] = (True, "Poisson errors apply")
    h["SYS_ERR"] = (0.0, "no systematic error")
    h["GROUPING"] = (0, "no grouping")
    h["QUALITY"] = (0, "all channels good")
    _write(fits.HDUList([_primary(telescope, instrument), table]), name, overwrite)


def write_rmf(
    path: str | os.PathLike[str],
    energ_lo: Any,
    energ_hi: Any,
    matrix: Any,
    e_min: Any,
    e_max: Any,
    *,
    first_channel: int = 1,
    telescope: str = "UNKNOWN",
    instrument: str = "UNKNOWN",
    filter_name: str = "NONE",
    chantype: str = "PI",
    overwrite: bool = False,
) -> None:
    """Write an OGIP RMF (CAL/GEN/92-002): ``MATRIX`` (``RSP_MATRIX``) and ``EBOUNDS``.

    Each matrix row is stored as its runs of consecutive non-zero channels:
    ``N_GRP`` runs, with variable-length columns ``F_CHAN``, ``N_CHAN`` (32-bit
    integers) and ``MATRIX`` (float64). A row of zeros has ``N_GRP = 0``.
    ``TLMIN`` of ``F_CHAN`` and of ``CHANNEL`` is ``first_channel``;
    ``HDUCLAS3`` is ``REDIST`` when no row sums above 1, else ``FULL``.

    Parameters
    ----------
    path : path-like
        Output file.
    energ_lo, energ_hi : array_like
        Energy bin edges in keV, increasing, shape (n_energy,).
    matrix : array_like or scipy sparse array
        Shape (n_energy, n_channel), finite and non-negative.
    e_min, e_max : array_like
        Channel energy bounds in keV, shape (n_channel,) (``EBOUNDS``).
    first_channel : int
        Number of the first channel (``TLMIN``; 0 or 1 usually).
    telescope, instrument, filter_name, chantype : str
        Keywords ``TELESCOP``, ``INSTRUME``, ``FILTER``, ``CHANTYPE``.
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    xrmod.errors.ResponseError
        Inconsistent shapes, invalid values, existing file without
        ``overwrite``, write failure.
    """
    name = os.fspath(path)
    lo, hi = _check_grid(energ_lo, energ_hi, path=name, extension="MATRIX")
    e_min, e_max = _check_ebounds(e_min, e_max, path=name, extension="EBOUNDS")
    csr = scipy.sparse.csr_array(matrix, dtype=np.float64, copy=True)
    n_energy, n_channel = lo.size, e_min.size
    if csr.shape != (n_energy, n_channel):
        raise ResponseError(
            f"matrix has shape {csr.shape}, expected (n_energy, n_channel) = "
            f"({n_energy}, {n_channel})",
            path=name,
            extension="MATRIX",
        )
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if not np.all(np.isfinite(csr.data)) or np.any(csr.data < 0):
        raise ResponseError(
            "matrix values must be finite and non-negative", path=name, extension="MATRIX"
        )
    first_channel = int(first_channel)

    # Groups: runs of consecutive column indices within a row.
    indices = csr.indices.astype(np.int64)
    row_nnz = np.diff(csr.indptr).astype(np.int64)
    entry_row = np.repeat(np.arange(n_energy, dtype=np.int64), row_nnz)
    starts_group = np.ones(indices.size, dtype=bool)
    starts_group[1:] = (indices[1:] != indices[:-1] + 1) | (entry_row[1:] != entry_row[:-1])
    group_start = np.flatnonzero(starts_group)
    n_chan = np.diff(np.append(group_start, indices.size))
    f_chan = indices[group_start] + first_channel
    n_grp = np.bincount(entry_row[group_start], minlength=n_energy)
    split_groups = np.cumsum(n_grp)[:-1]
    split_values = csr.indptr[1:-1]
    max_row_sum = float(np.max(csr.sum(axis=1))) if csr.nnz else 0.0

    matrix_hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ENERG_LO", format="D", unit="keV", array=lo),
            fits.Column(name="ENERG_HI", format="D", unit="keV", array=hi),
            fits.Column(name="N_GRP", format="J", array=n_grp.astype(np.int32)),
            fits.Column(
                name="F_CHAN", format="PJ()", array=np.split(f_chan.astype(np.int32), split_groups)
            ),
            fits.Column(
                name="N_CHAN", format="PJ()", array=np.split(n_chan.astype(np.int32), split_groups)
            ),
            fits.Column(name="MATRIX", format="PD()", array=np.split(csr.data, split_values)),
        ]
    )
    header = matrix_hdu.header
    _ogip_header(
        header,
        extname="MATRIX",
        hduclas2="RSP_MATRIX",
        hduvers="1.3.0",
        telescope=telescope,
        instrument=instrument,
        filter_name=filter_name,
    )
    header["HDUCLAS3"] = (
        "REDIST" if max_row_sum <= 1.0 + 1e-6 else "FULL",
        "REDIST: no effective area; FULL: with it",
    )
    header["RMFVERSN"] = ("1992a", "obsolete OGIP version keyword")
    header["CHANTYPE"] = (chantype, "channel type (PHA or PI)")
    header["DETCHANS"] = (n_channel, "total number of detector channels")
    header["LO_THRES"] = (0.0, "lower threshold used to construct the matrix")
    header["TLMIN4"] = (first_channel, "first channel number (F_CHAN)")
    header["TLMAX4"] = (first_channel + n_channel - 1, "last channel number (F_CHAN)")

    ebounds = fits.BinTableHDU.from_columns(
        [
            fits.Column(
                name="CHANNEL",
                format="J",
                array=np.arange(first_channel, first_channel + n_channel, dtype=np.int32),
            ),
            fits.Column(name="E_MIN", format="D", unit="keV", array=e_min),
            fits.Column(name="E_MAX", format="D", unit="keV", array=e_max),
        ]
    )
    _ogip_header(
        ebounds.header,
        extname="EBOUNDS",
        hduclas2="EBOUNDS",
        hduvers="1.2.0",
        telescope=telescope,
        instrument=instrument,
        filter_name=filter_name,
    )
    ebounds.header["CHANTYPE"] = (chantype, "channel type (PHA or PI)")
    ebounds.header["DETCHANS"] = (n_channel, "total number of detector channels")
    ebounds.header["TLMIN1"] = (first_channel, "first channel number")
    ebounds.header["TLMAX1"] = (first_channel + n_channel - 1, "last channel number")
    _write(fits.HDUList([_primary(telescope, instrument), matrix_hdu, ebounds]), name, overwrite)
