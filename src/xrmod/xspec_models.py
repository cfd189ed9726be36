"""XSPEC's model functions called from Python: one lock, tables, energy grids, quiet C output.

:mod:`xrmod.xspec_library` chooses and loads the model library
(``libXSFunctions``, HEASoft's or xspectrampoline's copy) and binds a
function by its calling convention; this module is what every call goes
through, and :mod:`xrmod.models` builds the source models on it.

Calling conventions (as in Sherpa's XSPEC bindings): the energy grid is one
array of ``n + 1`` bin edges in keV (:func:`energy_grid`); C-interface models
(``C_tbabs``, ``C_apec``) take and return float64, Fortran ones (``xsphab_``,
``xsabsw_``, ``xsbrms_``, ``xszbrm_``) float32 (:func:`call`). An additive
model returns photons/cm²/s per bin for norm = 1.

The library has process-wide state (abundance and cross-section tables, model
data caches) and is not thread-safe: callers hold :data:`LOCK` around
:func:`set_tables` and :func:`call`, and set the tables a model asks for
before evaluating it. XSPEC writes banners and messages to the C-level stdout
and stderr (the tbabs banner on first use, a line per table change):
:func:`silence_c_output` keeps them out of the command line's output and logs
them at DEBUG level instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from xrmod.errors import ConfigError, EngineError, ResponseError
from xrmod.xspec_library import ModelLibrary, load_library

__all__ = [
    "LOCK",
    "MIN_ENERGY",
    "apec_data_problem",
    "call",
    "called",
    "energy_grid",
    "library",
    "set_tables",
    "silence_c_output",
]

logger = logging.getLogger(__name__)

#: Replacement for a lowest ENERG_LO of exactly 0 keV, in keV. Sherpa does the
#: same when it reads a response (``[ogip] minimum_energy`` in sherpa.rc).
MIN_ENERGY = 1.0e-10

# Relative gap between ENERG_HI[i] and ENERG_LO[i+1] above which the bins are
# not contiguous (Sherpa: sao_fcmp with DBL_EPSILON), and the largest overlap
# tolerated as rounding of float32 FITS columns.
_GAP_RTOL = np.finfo(np.float64).eps
_OVERLAP_RTOL = 1.0e-6

#: Held around every use of the library (its tables and caches are process-wide).
LOCK = threading.RLock()
# The functions already called once (their first call prints banners).
_CALLED: set[str] = set()


# --------------------------------------------------------------------------- output


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None)


def _flush_c_streams() -> None:
    with contextlib.suppress(OSError, AttributeError):
        _libc().fflush(None)


@contextlib.contextmanager
def silence_c_output(fds: Sequence[int] = (1, 2)) -> Iterator[None]:
    """Redirect C-level stdout/stderr into a scratch file for the duration.

    XSPEC's libraries print through C stdio and C++ streams straight to file
    descriptors 1 and 2, past ``sys.stdout``. This swaps those descriptors at
    the OS level (``os.dup2``), flushes the C stdio buffers before restoring
    them (output to a file or pipe is block-buffered and would otherwise
    appear later), and logs what was caught at DEBUG level. Python's own
    streams are flushed first and are not redirected when they are not
    attached to these descriptors. Descriptors that are closed are left alone.

    Parameters
    ----------
    fds : sequence of int
        The file descriptors to redirect (stdout and stderr by default).
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _flush_c_streams()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in fds:
                try:
                    saved.append((fd, os.dup(fd)))
                except OSError:
                    continue
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            _flush_c_streams()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            caught = sink.read().decode(errors="replace").strip()
            if caught:
                logger.debug("XSPEC printed:\n%s", caught)


# --------------------------------------------------------------------------- library


def library() -> ModelLibrary:
    """XSPEC's model library, loaded once (:mod:`xrmod.xspec_library` chooses the copy)."""
    return load_library()


@functools.cache
def _function(symbol: str) -> Any:
    try:
        return library().model(symbol)
    except AttributeError as exc:
        raise EngineError(f"XSPEC's model library at {library().headas} has no {symbol}") from exc


def _table_names(filename: str) -> list[str]:
    """Table names listed in a file of XSPEC's manager directory (``name: values``)."""
    try:
        path = Path(library().string("FGDATD")) / filename
        lines = path.read_text().splitlines()
    except OSError:
        return []
    names: dict[str, None] = {}
    for line in lines:
        head, sep, _ = line.partition(":")
        name = head.strip().lower()
        if sep and name.isalpha() and name not in ("elts", "references"):
            names[name] = None
    return list(names)


def set_tables(abund: str, xsect: str) -> None:
    """Make *abund* and *xsect* the library's tables (caller holds :data:`LOCK`).

    The tables are read back from the library each time rather than
    remembered: another user of the same library in this process (Sherpa's
    ``set_xsabund``, PyXSPEC) may have changed them.
    """
    lib = library()
    for name, getter, setter, key, listing in (
        (abund, "FGSOLR", "FPSOLR", "source.abundance_table", "abundances.dat"),
        (xsect, "FGXSCT", "FPXSCT", "source.cross_sections", "crosssections.dat"),
    ):
        if lib.string(getter).strip().lower() == name:
            continue
        ierr = ctypes.c_int(0)
        func = getattr(lib.functions, setter)
        func.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        func.restype = None
        with silence_c_output():
            func(name.encode(), ctypes.byref(ierr))
        if ierr.value != 0:
            known = ", ".join(_table_names(listing)) or f"see {listing}"
            raise ConfigError(f"XSPEC has no table {name!r} (known: {known})", key=key)


def apec_data_problem(lib: ModelLibrary) -> str | None:
    """Why apec cannot run here (no AtomDB files), or None when the files are there.

    Mirrors XSPEC's ``getApedFileNames``: the version is the ``APECROOT``
    model string if set, else the ATOMDB version; the files are
    ``<modelData>/apec_v<version>_coco.fits`` (or ``<modelData>/<version>``,
    or ``<version>`` as a path) with ``_line.fits`` beside. Checked before
    the first call because apec without its files returns zeros once and
    crashes the process on the next call (XSPEC 12.15).
    """
    version = lib.string("FGMSTR", b"APECROOT").strip()
    if not version or version == "$$NOT$$":
        version = lib.string("FGATDV").strip()
    datadir = lib.string("FGMODF")  # ends with a "/"
    for root in (f"{datadir}apec_v{version}", f"{datadir}{version}", version):
        if Path(root + "_coco.fits").is_file() and Path(root + "_line.fits").is_file():
            return None
    return f"no AtomDB files apec_v{version}_coco.fits / _line.fits in {os.path.normpath(datadir)}"


# --------------------------------------------------------------------------- calls


def energy_grid(energ_lo: ArrayLike, energ_hi: ArrayLike) -> tuple[np.ndarray, np.ndarray | None]:
    """XSPEC's edge array for the bins, and where the bins sit in its output.

    Contiguous bins give ``ENERG_LO`` plus the last ``ENERG_HI``; a gap between
    two bins gets an extra bin that is dropped after the call (Sherpa does the
    same). A lowest edge of 0 keV becomes :data:`MIN_ENERGY`.
    """
    lo = np.asarray(energ_lo, dtype=np.float64)
    hi = np.asarray(energ_hi, dtype=np.float64)
    if lo.ndim == 1 and hi.shape == lo.shape and lo.size and lo[0] > 0.0:
        # Fast path, the usual response grid: contiguous, ascending, finite.
        edges = np.append(lo, hi[-1])
        if np.isfinite(edges[-1]) and np.array_equal(lo[1:], hi[:-1]):
            if (edges[1:] > edges[:-1]).all():
                return edges, None
    lo = np.array(lo, dtype=np.float64, ndmin=1)
    if lo.ndim != 1 or hi.shape != lo.shape or lo.size == 0:
        raise ResponseError(
            f"energy bins need 1-D ENERG_LO and ENERG_HI of one length, got shapes "
            f"{lo.shape} and {hi.shape}"
        )
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ResponseError("energy bins have non-finite ENERG_LO or ENERG_HI values")
    if (hi <= lo).any():
        i = int(np.flatnonzero(hi <= lo)[0])
        raise ResponseError(f"energy bin {i} has ENERG_HI {hi[i]} <= ENERG_LO {lo[i]}")
    if lo[0] < 0.0:
        raise ResponseError(f"energy bins start below 0 keV (ENERG_LO[0] = {lo[0]})")
    if lo[0] == 0.0:
        if hi[0] <= MIN_ENERGY:
            raise ResponseError(
                f"first energy bin [0, {hi[0]}] keV is too narrow to replace 0 by {MIN_ENERGY}"
            )
        lo[0] = MIN_ENERGY
        logger.debug("ENERG_LO[0] = 0 replaced by %g keV", MIN_ENERGY)
    step = lo[1:] - hi[:-1]
    scale = np.maximum(np.abs(lo[1:]), np.abs(hi[:-1]))
    if (step < -_OVERLAP_RTOL * scale).any():
        i = int(np.flatnonzero(step < -_OVERLAP_RTOL * scale)[0])
        raise ResponseError(
            f"energy bins {i} and {i + 1} overlap or are not ascending: "
            f"ENERG_HI[{i}] = {hi[i]}, ENERG_LO[{i + 1}] = {lo[i + 1]}"
        )
    edges = np.append(lo, hi[-1])
    gaps = np.flatnonzero(step > _GAP_RTOL * scale)
    if gaps.size == 0:
        return edges, None
    edges = np.insert(edges, gaps + 1, hi[gaps])
    index = np.arange(lo.size)
    return edges, index + np.searchsorted(gaps, index, side="left")


def call(symbol: str, edges: np.ndarray, params: Sequence[float]) -> np.ndarray:
    """Evaluate the model function *symbol* on *edges*, as float64 (n + 1 edges, n bins).

    The caller holds :data:`LOCK` and has set the tables the model reads. A
    trailing underscore names a Fortran function (float32 arguments), else it
    is a C one (float64). Its first call in the process is silenced (banners).
    """
    func = _function(symbol)
    n = edges.size - 1
    if symbol.endswith("_"):
        # A fresh float32 copy per call: xszbrm_ scales the edges in place and back.
        ear = edges.astype(np.float32)
        par = np.asarray(params, dtype=np.float32)
        out = np.zeros(n, dtype=np.float32)
        err = np.zeros(n, dtype=np.float32)
    else:
        ear = np.array(edges, dtype=np.float64)
        par = np.asarray(params, dtype=np.float64)
        out = np.zeros(n, dtype=np.float64)
        err = np.zeros(n, dtype=np.float64)
    if symbol in _CALLED:
        func(ear, par, out, err)
    else:
        with silence_c_output():
            func(ear, par, out, err)
        _CALLED.add(symbol)
    return out.astype(np.float64)


def called(symbol: str) -> bool:
    """Whether *symbol* was called in this process already (its first-use banners are out)."""
    return symbol in _CALLED
