"""OGIP instrument responses (ARF, RMF) and spectra (PHA), read and written with astropy.

Formats:

* ARF and RMF follow OGIP memo CAL/GEN/92-002 (George et al. 1992, with the
  92-002a addendum): an ARF is a ``SPECRESP`` table of effective area per
  energy bin; an RMF is a ``MATRIX`` (or ``SPECRESP MATRIX``) table holding, per
  energy bin, ``N_GRP`` groups of consecutive channels (``F_CHAN``, ``N_CHAN``)
  and their compressed ``MATRIX`` values, plus an ``EBOUNDS`` table giving the
  nominal energy range of every channel.
* PHA spectra follow OGIP/92-007 (Arnaud et al.): a ``SPECTRUM`` table with
  ``CHANNEL`` and ``COUNTS`` or ``RATE`` columns and keywords ``EXPOSURE``,
  ``BACKSCAL``, ``AREASCAL``, ``POISSERR``.

Readers are general (scalar, fixed-length or variable-length group columns,
rows with several or no groups, any ``TLMIN`` channel offset), copy everything
they need into memory and close the file before returning. Every problem found
in a file raises :class:`xrmod.errors.ResponseError` naming the file and the
extension or column concerned; errors raised by astropy are chained.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import logging
import os
import re
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
from astropy.io import fits

from xrmod.errors import InputError, ResponseError

__all__ = [
    "ARF",
    "PHA",
    "RMF",
    "check_background",
    "check_compatible",
    "file_sha256",
    "read_arf",
    "read_pha",
    "read_rmf",
    "write_arf",
    "write_pha",
    "write_rmf",
]

log = logging.getLogger(__name__)

#: Relative tolerance when comparing energy grids of different files (float32 files).
GRID_RTOL = 1e-5
#: Absolute tolerance (keV) for the same comparison, for edges at or near 0 keV.
GRID_ATOL = 1e-9

_MATRIX_NAMES = ("MATRIX", "SPECRESP MATRIX")
# Element type of a variable-length array column (TFORM 'rPt(max)' / 'rQt(max)').
_VLA_FORM = re.compile(r"\s*\d*([PQ])([A-Z])(?:\(\d*\))?\s*")
# Lines astropy adds around verification messages.
_WARNING_BOILERPLATE = ("Verification reported errors", "Note: astropy.io.fits uses zero-based")
_VLA_DTYPES = {"B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


# --------------------------------------------------------------------------- types


def _readonly(values: Any, dtype: Any) -> np.ndarray:
    """Return a read-only 1-D copy of ``values`` as ``dtype``."""
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


def _where(path: str | None, kind: str) -> str:
    """Name a response for messages: its path, or what it is when built in memory."""
    return path if path is not None else f"<in-memory {kind}>"


@dataclass(frozen=True, eq=False)
class ARF:
    """Ancillary response: effective area per energy bin (OGIP CAL/GEN/92-002, ``SPECRESP``).

    Arrays are float64 copies and read-only; they are validated on construction
    (increasing energy bins, finite non-negative area).

    Attributes
    ----------
    energ_lo, energ_hi : numpy.ndarray
        Energy bin edges in keV (columns ``ENERG_LO``, ``ENERG_HI``). A first
        edge of 0 keV is legal and kept as is.
    specresp : numpy.ndarray
        Effective area in cm² (column ``SPECRESP``).
    path : str or None
        File the ARF was read from; None when built in memory.
    telescope, instrument : str
        Keywords ``TELESCOP`` and ``INSTRUME``.
    exposure : float or None
        Keyword ``EXPOSURE`` (s) when the file has one.
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    path: str | None = None
    telescope: str = "UNKNOWN"
    instrument: str = "UNKNOWN"
    exposure: float | None = None

    def __post_init__(self) -> None:
        where = _where(self.path, "ARF")
        lo, hi = _check_grid(self.energ_lo, self.energ_hi, path=where, extension="SPECRESP")
        resp = _readonly(self.specresp, np.float64)
        if resp.shape != lo.shape:
            raise ResponseError(
                f"SPECRESP has shape {resp.shape}, the energy grid {lo.shape}",
                path=where,
                extension="SPECRESP",
            )
        _check_specresp(resp, lo, hi, path=where, extension="SPECRESP")
        object.__setattr__(self, "energ_lo", lo)
        object.__setattr__(self, "energ_hi", hi)
        object.__setattr__(self, "specresp", resp)

    @property
    def energies(self) -> np.ndarray:
        """Energy bin mid-points (keV), the E of the modifier formulas."""
        return 0.5 * (self.energ_lo + self.energ_hi)

    @property
    def n_energy(self) -> int:
        """Number of energy bins."""
        return int(self.energ_lo.size)


@dataclass(frozen=True, eq=False)
class RMF:
    """Redistribution matrix with its channel energy bounds (OGIP CAL/GEN/92-002).

    Attributes
    ----------
    energ_lo, energ_hi : numpy.ndarray
        Energy bin edges in keV, shape (n_energy,) (``MATRIX`` columns
        ``ENERG_LO``, ``ENERG_HI``).
    matrix : scipy.sparse.csr_array
        Shape (n_energy, n_channel), float64, canonical CSR with read-only
        buffers: row i is the probability that a photon of energy bin i is
        recorded in each channel (expanded from ``N_GRP``, ``F_CHAN``,
        ``N_CHAN``, ``MATRIX``). Column j is channel ``channels[j]``.
    channels : numpy.ndarray
        Channel numbers, shape (n_channel,) (``EBOUNDS`` column ``CHANNEL``).
    e_min, e_max : numpy.ndarray
        Nominal channel energy bounds in keV (``EBOUNDS`` columns ``E_MIN``,
        ``E_MAX``). Not necessarily increasing (e.g. XMM RGS).
    first_channel : int
        Channel number of matrix column 0: ``TLMIN`` of the ``F_CHAN`` column
        (OGIP default 1 when absent; 0 for XMM-Newton, 1 for Chandra).
    path : str or None
        File the RMF was read from; None when built in memory.
    telescope, instrument : str
        Keywords ``TELESCOP`` and ``INSTRUME``.
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    matrix: scipy.sparse.csr_array
    channels: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    first_channel: int = 1
    path: str | None = None
    telescope: str = "UNKNOWN"
    instrument: str = "UNKNOWN"

    def __post_init__(self) -> None:
        where = _where(self.path, "RMF")
        lo, hi = _check_grid(self.energ_lo, self.energ_hi, path=where, extension="MATRIX")
        channels = _readonly(self.channels, np.int64)
        e_min, e_max = _check_ebounds(self.e_min, self.e_max, path=where, extension="EBOUNDS")
        if not (channels.ndim == 1 and channels.shape == e_min.shape):
            raise ResponseError(
                f"CHANNEL has shape {channels.shape}, E_MIN/E_MAX {e_min.shape}",
                path=where,
                extension="EBOUNDS",
            )
        matrix = scipy.sparse.csr_array(self.matrix, dtype=np.float64, copy=True)
        if matrix.shape != (lo.size, channels.size):
            raise ResponseError(
                f"matrix has shape {matrix.shape}, expected (n_energy, n_channel) = "
                f"({lo.size}, {channels.size})",
                path=where,
                extension="MATRIX",
            )
        matrix.sum_duplicates()  # canonical: sorted indices, no duplicates
        if not np.all(np.isfinite(matrix.data)):
            raise ResponseError("matrix has non-finite values", path=where, extension="MATRIX")
        for buf in (matrix.data, matrix.indices, matrix.indptr):
            buf.setflags(write=False)
        object.__setattr__(self, "energ_lo", lo)
        object.__setattr__(self, "energ_hi", hi)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "e_min", e_min)
        object.__setattr__(self, "e_max", e_max)
        object.__setattr__(self, "first_channel", int(self.first_channel))

    @property
    def energies(self) -> np.ndarray:
        """Energy bin mid-points (keV)."""
        return 0.5 * (self.energ_lo + self.energ_hi)

    @property
    def n_energy(self) -> int:
        """Number of energy bins (matrix rows)."""
        return int(self.energ_lo.size)

    @property
    def n_channel(self) -> int:
        """Number of channels (matrix columns, ``DETCHANS``)."""
        return int(self.channels.size)

    def band_channels(self, lo: float, hi: float) -> np.ndarray:
        """Select the channels whose ``EBOUNDS`` interval overlaps the band [lo, hi] keV.

        A channel is selected when ``E_MIN < hi`` and ``E_MAX > lo``: it
        overlaps the band by a non-zero width (touching an end is not enough).

        Parameters
        ----------
        lo, hi : float
            Band limits in keV, ``lo < hi``.

        Returns
        -------
        numpy.ndarray
            Boolean mask of shape (n_channel,), True for the selected channels.
        """
        lo = float(lo)
        hi = float(hi)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise InputError(f"a band needs finite lo < hi in keV, got [{lo}, {hi}]")
        return (self.e_min < hi) & (self.e_max > lo)

    def band_response(self, lo: float, hi: float) -> tuple[scipy.sparse.csr_array, np.ndarray]:
        """The response restricted to the band, laid out for folding.

        Returns
        -------
        fold : scipy.sparse.csr_array
            (channels in band) × (energies that reach them): expected counts per
            band channel are ``fold @ (A ⊙ S)[rows]``.
        rows : numpy.ndarray
            Indices of the energy bins kept (those with a non-zero response in the band).
        """
        matrix = self.matrix[:, self.band_channels(lo, hi)].tocsr()
        rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
        return matrix[rows].T.tocsr(), rows


@dataclass(frozen=True, eq=False)
class PHA:
    """A type I OGIP spectrum (OGIP/92-007, extension ``SPECTRUM``), e.g. a background.

    Attributes
    ----------
    channels : numpy.ndarray
        Channel numbers (column ``CHANNEL``).
    counts : numpy.ndarray
        Counts per channel, float64: column ``COUNTS``, or ``RATE`` × ``EXPOSURE``.
    exposure : float
        Keyword ``EXPOSURE`` (s), > 0.
    backscal : float or numpy.ndarray
        ``BACKSCAL`` keyword, or per-channel column; 1 when absent.
    areascal : float or numpy.ndarray
        ``AREASCAL`` keyword, or per-channel column; 1 when absent.
    path : str or None
        File the spectrum was read from; None when built in memory.
    poisserr : bool
        Keyword ``POISSERR``: Poisson errors apply (when absent: True unless
        the file has a ``STAT_ERR`` column).
    """

    channels: np.ndarray
    counts: np.ndarray
    exposure: float
    backscal: float | np.ndarray = 1.0
    areascal: float | np.ndarray = 1.0
    path: str | None = None
    poisserr: bool = True

    def __post_init__(self) -> None:
        where = _where(self.path, "PHA")
        channels = _readonly(self.channels, np.int64)
        counts = _readonly(self.counts, np.float64)
        if channels.ndim != 1 or counts.shape != channels.shape:
            raise ResponseError(
                f"COUNTS has shape {counts.shape}, CHANNEL {channels.shape}",
                path=where,
                extension="SPECTRUM",
            )
        if not np.all(np.isfinite(counts)):
            raise ResponseError("counts are not all finite", path=where, extension="SPECTRUM")
        exposure = float(self.exposure)
        if not (np.isfinite(exposure) and exposure > 0):
            raise ResponseError(
                f"EXPOSURE must be > 0, got {exposure}", path=where, extension="SPECTRUM"
            )
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "exposure", exposure)
        for name in ("backscal", "areascal"):
            object.__setattr__(self, name, _scale(getattr(self, name), name, channels.size, where))
        object.__setattr__(self, "poisserr", bool(self.poisserr))

    @property
    def n_channel(self) -> int:
        """Number of channels."""
        return int(self.channels.size)


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


# --------------------------------------------------------------------------- validation


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
    """Check that an ARF and an RMF share one energy grid.

    Edges are compared with ``rtol = GRID_RTOL`` (float32 files written by
    different tools differ in the last digits).

    Raises
    ------
    xrmod.errors.ResponseError
        Naming both files, with the two bin counts or the first differing bin.
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


# --------------------------------------------------------------------------- FITS access


def _data_nbytes(header: fits.Header) -> int:
    """Size in bytes of an HDU's data (FITS standard 4.4.1), without the final padding."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    elems = 1
    for k in range(1, naxis + 1):
        elems *= int(header.get(f"NAXIS{k}", 0))
    bitpix = abs(int(header.get("BITPIX", 8)))
    return bitpix // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + elems)


def _check_truncation(hdul: fits.HDUList, size: int, path: str) -> None:
    """Raise when an HDU's data run past the end of the file (``size`` bytes)."""
    for i, hdu in enumerate(hdul):
        end = hdul.fileinfo(i)["datLoc"] + _data_nbytes(hdu.header)
        if end > size:
            raise ResponseError(
                f"file is truncated: the data end at byte {end}, the file has {size} bytes",
                path=path,
                extension=hdu.name,
            )


def _decompressed(path: str) -> bytes | None:
    """The content of a gzip or bzip2 file (as astropy would read it), None for other files.

    Decompressing here, instead of letting astropy stream it, makes a
    truncated archive an error rather than a file with fewer extensions.
    """
    with open(path, "rb") as f:
        magic = f.read(3)
    if magic[:2] == b"\x1f\x8b":
        opener: Any = gzip.open
    elif magic == b"BZh":
        opener = bz2.open
    else:
        return None
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise ResponseError(f"corrupt or truncated compressed file ({e})", path=path) from e


@contextlib.contextmanager
def _open_fits(path: str, kind: str) -> Iterator[fits.HDUList]:
    """Open a FITS file in memory (no memmap), turning every failure into a ResponseError.

    Astropy warnings raised while reading are caught: an unreadable header
    (truncation, corruption) becomes an error, anything else (non-standard
    keywords, extra padding...) is logged as a warning.
    """
    if not os.path.exists(path):
        raise ResponseError(f"{kind} file not found", path=path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            content = _decompressed(path)
            source: Any = path if content is None else io.BytesIO(content)
            size = os.path.getsize(path) if content is None else len(content)
            hdul = fits.open(source, memmap=False, lazy_load_hdus=False)
        except ResponseError:
            raise
        except (OSError, EOFError, ValueError) as e:
            raise ResponseError(f"not a readable FITS file ({e})", path=path) from e
        try:
            with hdul:
                for w in caught:
                    text = str(w.message)
                    if text.startswith("Error validating header"):
                        raise ResponseError(
                            "corrupt or truncated FITS file: " + " ".join(text.split()),
                            path=path,
                        )
                _check_truncation(hdul, size, path)
                yield hdul
        except ResponseError:
            raise
        except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError) as e:
            raise ResponseError(f"corrupt or truncated FITS file ({e})", path=path) from e
    reported = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if "truncated" in text or text.startswith(_WARNING_BOILERPLATE) or text in reported:
            continue  # truncation is an error raised above; boilerplate says nothing
        reported.add(text)
        log.warning("%s: %s: %s", path, w.category.__name__, text)


def _find_table(
    hdul: fits.HDUList, path: str, names: tuple[str, ...], hduclas: tuple[str, str]
) -> tuple[int, fits.BinTableHDU]:
    """Return (index, HDU) of the first binary table named one of ``names``.

    Falls back to the first table whose keyword ``hduclas[0]`` equals
    ``hduclas[1]`` (OGIP HDUCLASn), for files with unusual extension names.
    """
    tables = [(i, h) for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU)]
    found = [(i, h) for i, h in tables if h.name.strip().upper() in names]
    if not found:
        key, value = hduclas
        found = [(i, h) for i, h in tables if str(h.header.get(key, "")).strip().upper() == value]
    if not found:
        also = f" (or {' or '.join(names[1:])})" if len(names) > 1 else ""
        raise ResponseError(
            f"extension missing{also}; the file has: "
            + ", ".join(h.name or f"HDU {i}" for i, h in enumerate(hdul)),
            path=path,
            extension=names[0],
        )
    if len(found) > 1:
        log.info("%s: %d %s extensions, using the first", path, len(found), names[0])
    i, hdu = found[0]
    if hdu.data is None or len(hdu.data) == 0:
        raise ResponseError("table has no rows", path=path, extension=hdu.name)
    return i, hdu


def _col_index(hdu: fits.BinTableHDU, name: str) -> int | None:
    """0-based index of a column, matched case-insensitively; None when absent."""
    for k, col in enumerate(hdu.columns.names):
        if col.strip().upper() == name:
            return k
    return None


def _require(hdu: fits.BinTableHDU, name: str, path: str) -> int:
    """0-based index of a required column, or a ResponseError naming it."""
    k = _col_index(hdu, name)
    if k is None:
        raise ResponseError(
            f"required column {name} missing (columns: {', '.join(hdu.columns.names)})",
            path=path,
            extension=hdu.name,
        )
    return k


def _scalar_column(hdu: fits.BinTableHDU, name: str, path: str, dtype: Any) -> np.ndarray:
    """One value per row of a required numeric column, as a ``dtype`` copy."""
    k = _require(hdu, name, path)
    values = np.asarray(hdu.data.field(k))
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise ResponseError(
            f"column {name} must hold one number per row, got {values.dtype} of shape "
            f"{values.shape}",
            path=path,
            extension=hdu.name,
        )
    return np.array(values, dtype=dtype)


def _check_unit(hdu: fits.BinTableHDU, name: str, path: str) -> None:
    """Raise when an energy column declares a unit other than keV (``TUNITn``)."""
    k = _col_index(hdu, name)
    unit = hdu.header.get(f"TUNIT{k + 1}") if k is not None else None
    if unit is not None and str(unit).strip().lower() not in ("", "kev"):
        raise ResponseError(
            f"column {name} is in {str(unit).strip()!r}, OGIP responses use keV",
            path=path,
            extension=hdu.name,
        )


def _keyword(hdul: fits.HDUList, hdu: fits.BinTableHDU, key: str) -> Any:
    """A keyword from the extension header, else the primary header; None when absent."""
    for header in (hdu.header, hdul[0].header):
        if key in header:
            return header[key]
    return None


def _keyword_str(hdul: fits.HDUList, hdu: fits.BinTableHDU, key: str) -> str:
    """A string keyword (``TELESCOP``, ``INSTRUME``), ``"UNKNOWN"`` when absent or blank."""
    value = _keyword(hdul, hdu, key)
    text = str(value).strip() if value is not None else ""
    return text or "UNKNOWN"


def _keyword_float(hdul: fits.HDUList, hdu: fits.BinTableHDU, key: str, path: str) -> float | None:
    """A numeric keyword as float; None when absent."""
    value = _keyword(hdul, hdu, key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise ResponseError(
            f"keyword {key} is not a number: {value!r}", path=path, extension=hdu.name
        ) from e


def _row_arrays(
    hdu: fits.BinTableHDU, name: str, path: str, dtype: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated per-row values of a required column and the number of values per row.

    Handles scalar columns (one value per row), fixed-length array columns
    (``rX``: r values per row) and variable-length array columns (``PX()`` /
    ``QX()``).
    """
    k = _require(hdu, name, path)
    n = len(hdu.data)
    tform = str(hdu.header.get(f"TFORM{k + 1}", ""))
    m = _VLA_FORM.fullmatch(tform.upper())
    if m is None:
        values = np.asarray(hdu.data.field(k))
        if values.dtype.kind not in "biuf":
            raise ResponseError(
                f"column {name} is not numeric (TFORM {tform.strip()})",
                path=path,
                extension=hdu.name,
            )
        values = values.reshape(n, -1)
        return np.array(values.ravel(), dtype=dtype), np.full(n, values.shape[1], np.int64)
    code = m.group(2)
    if code not in _VLA_DTYPES:
        raise ResponseError(
            f"column {name} has unsupported element type (TFORM {tform.strip()})",
            path=path,
            extension=hdu.name,
        )
    fast = _vla_from_heap(hdu, k, name, path, _VLA_DTYPES[code])
    if fast is not None:
        flat, lengths = fast
        scale = hdu.header.get(f"TSCAL{k + 1}", 1)
        zero = hdu.header.get(f"TZERO{k + 1}", 0)
        if scale != 1 or zero != 0:
            flat = flat.astype(np.float64) * scale + zero
        return np.asarray(flat, dtype=dtype), lengths
    # Public path, one array per row (slower on large files).
    rows = hdu.data.field(k)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=n)
    flat = np.concatenate([np.asarray(r, dtype=dtype).ravel() for r in rows] or [[]])
    return flat.astype(dtype, copy=False), lengths


def _vla_from_heap(
    hdu: fits.BinTableHDU, k: int, name: str, path: str, elem: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """Decode a variable-length column straight from its descriptors and the heap.

    The (count, byte offset) descriptors of column k sit in the raw table rows;
    the values in the heap (FITS standard 7.3.5). This is vectorised, about ten
    times faster than astropy's one-array-per-row view. Returns None when the
    heap cannot be reached through this astropy version (the caller then uses
    the public per-row path).
    """
    try:
        heap = hdu.data._get_heap_data()  # bytes from THEAP on (astropy internal API)
    except (AttributeError, TypeError):  # pragma: no cover - depends on astropy version
        return None
    if not isinstance(heap, np.ndarray):  # pragma: no cover - depends on astropy version
        return None
    heap = heap.view(np.uint8)
    raw = hdu.data.view(np.ndarray)  # raw rows: a P/Q field holds the descriptors
    desc = np.asarray(raw[raw.dtype.names[k]]).reshape(len(raw), -1)
    if desc.shape[1] != 2:  # pragma: no cover - astropy layout not understood
        return None
    counts = desc[:, 0].astype(np.int64)
    offsets = desc[:, 1].astype(np.int64)
    size = np.dtype(elem).itemsize
    if np.any(counts < 0) or np.any(offsets < 0) or np.any(offsets + counts * size > heap.size):
        raise ResponseError(
            f"column {name}: array descriptors point outside the heap (corrupt file)",
            path=path,
            extension=hdu.name,
        )
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=elem), counts
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    if np.all(offsets % size == 0):
        elements = heap[: heap.size - heap.size % size].view(elem)
        flat = elements[np.repeat(offsets // size, counts) + within]
    else:  # unaligned descriptors: gather bytes
        nbytes = counts * size
        byte_within = np.arange(total * size, dtype=np.int64) - np.repeat(
            np.cumsum(nbytes) - nbytes, nbytes
        )
        flat = heap[np.repeat(offsets, nbytes) + byte_within].view(elem)
    return flat, counts


def _take_leading(flat: np.ndarray, lengths: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """From rows concatenated in ``flat`` (``lengths`` values each) keep the first ``keep[i]``."""
    if np.array_equal(lengths, keep):
        return flat
    within = np.arange(flat.size, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return flat[within < np.repeat(keep, lengths)]


# --------------------------------------------------------------------------- readers


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


# --------------------------------------------------------------------------- writers


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
