"""The responses in memory: ARF, RMF and PHA, validated on construction.

Each is a frozen dataclass holding read-only float64 (or int64) copies of its
arrays; the readers of :mod:`xrmod.responses.reading` build them from files,
tests and engines may build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from xrmod.errors import InputError, ResponseError
from xrmod.responses.validation import (
    _check_ebounds,
    _check_grid,
    _check_specresp,
    _readonly,
    _scale,
    _where,
)


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
