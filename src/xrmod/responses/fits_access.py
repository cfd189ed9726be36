"""Reading FITS files with astropy: opening, finding tables, columns and keywords.

Files are read into memory (gzip and bzip2 archives decompressed first, so a
truncated archive is an error) and closed before the readers return; astropy's
failures and warnings about unreadable headers become
:class:`xrmod.errors.ResponseError`, other warnings are logged. Columns may be
scalar, fixed-length or variable-length arrays (the latter decoded straight
from the heap when astropy allows it).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import logging
import os
import re
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from astropy.io import fits

from xrmod.errors import ResponseError

log = logging.getLogger("xrmod.responses")  # one logger for the package, as before the split

# Element type of a variable-length array column (TFORM 'rPt(max)' / 'rQt(max)').
_VLA_FORM = re.compile(r"\s*\d*([PQ])([A-Z])(?:\(\d*\))?\s*")
# Lines astropy adds around verification messages.
_WARNING_BOILERPLATE = ("Verification reported errors", "Note: astropy.io.fits uses zero-based")
_VLA_DTYPES = {"B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


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
        if not hasattr(hdu, "fileinfo"):  # astropy's _CorruptedHDU: a header it cannot read
            raise ResponseError(f"corrupt FITS file: HDU {i} has no readable header", path=path)
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
    with warnings.catch_warnings(record=True) as caught, contextlib.ExitStack() as files:
        warnings.simplefilter("always")
        try:
            content = _decompressed(path)
            if content is None:  # our own handle: closed here whatever astropy raises
                source: Any = files.enter_context(open(path, "rb"))
                size = os.path.getsize(path)
            else:
                source, size = io.BytesIO(content), len(content)
            hdul = fits.open(source, memmap=False, lazy_load_hdus=False)
        except ResponseError:
            raise
        except Exception as e:  # astropy's parser raises many types on a corrupt header
            raise ResponseError(
                f"not a readable FITS file ({type(e).__name__}: {e})", path=path
            ) from e
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
        except (
            OSError,
            EOFError,
            ValueError,
            TypeError,
            IndexError,
            KeyError,
            AssertionError,  # astropy's Column asserts on a corrupt TTYPE
            fits.VerifyError,  # a corrupt TFORM, found when the table is first read
        ) as e:
            raise ResponseError(
                f"corrupt or truncated FITS file ({type(e).__name__}: {e})", path=path
            ) from e
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
