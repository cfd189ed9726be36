"""Observations for ``xrmod infer``: one source per row of a CSV file.

Columns (a header line names them; order free; lines starting with ``#``
and blank lines are skipped):

==============  =====================================================
``T_ref``       the trusted instrument's temperature, keV (required)
``T_ref_err``   its 1σ error, keV (optional; 0 when absent)
``T_obs``       the temperature measured with the ARF in question, keV
``T_obs_err``   its symmetric 1σ error, keV — or, instead:
``T_obs_lo``,   the lower and upper *bounds* of its interval, keV
``T_obs_hi``    (XSPEC's ``error`` output), not the error bars
``name``        a label for messages and output (optional)
``band``        the fit band, ``LO-HI`` in keV (optional): the row is
                compared with the library of that band
==============  =====================================================

Column names are matched in any case; other columns (an exposure, a
redshift) are ignored with a warning, but one that looks like a misspelt
column of the table (``T_obs_error``) is an error.

Errors and bounds are at the confidence level ``confidence`` (0.683 by
default; 0.90 for XSPEC's customary 90 % errors), turned into 1σ here.
Every problem names the line of the file: a missing column, a value that is
not a number, a temperature or error that is not positive, bounds on the
wrong side of ``T_obs``.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from xrmod.errors import InputError

__all__ = ["Observations", "parse_band", "read_observations"]

log = logging.getLogger(__name__)

#: A band: two non-negative numbers joined by -, – or :, then optionally keV.
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+]?\d+)?"
_BAND = re.compile(rf"\s*(?P<lo>{_NUMBER})\s*[-–:]\s*(?P<hi>{_NUMBER})\s*(?:keV)?\s*")

_KNOWN = ("name", "band", "T_ref", "T_ref_err", "T_obs", "T_obs_err", "T_obs_lo", "T_obs_hi")


@dataclass(frozen=True)
class Observations:
    """Temperatures of n sources, errors at 1σ (keV).

    ``sigma_lo`` and ``sigma_hi`` are the distances from ``T_obs`` down to
    its lower and up to its upper 1σ bound (equal for a symmetric error).
    ``band`` is (n, 2) keV, NaN where the file gives none; ``lines`` are
    the rows' line numbers in the file, for messages.
    """

    path: str
    names: tuple[str, ...]
    T_ref: np.ndarray
    T_ref_err: np.ndarray
    T_obs: np.ndarray
    sigma_lo: np.ndarray
    sigma_hi: np.ndarray
    band: np.ndarray
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return self.T_ref.size

    @property
    def has_bands(self) -> bool:
        """Whether the file has a ``band`` column."""
        return bool(np.isfinite(self.band).all())

    def label(self, i: int) -> str:
        """``line 4 (A2029)``: where row *i* is, for messages."""
        return f"{self.path}, line {self.lines[i]} ({self.names[i]})"

    def subset(self, rows: np.ndarray) -> Observations:
        """The observations of *rows* (indices or a mask)."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return Observations(
            self.path,
            tuple(self.names[i] for i in idx),
            self.T_ref[idx],
            self.T_ref_err[idx],
            self.T_obs[idx],
            self.sigma_lo[idx],
            self.sigma_hi[idx],
            self.band[idx],
            tuple(self.lines[i] for i in idx),
        )


def read_observations(path: str | os.PathLike, *, confidence: float = 0.6827) -> Observations:
    """Read and check the observations CSV at *path*.

    Parameters
    ----------
    path : path-like
        The CSV file (columns: the module docstring).
    confidence : float
        Confidence level of the errors and bounds in the file (0 < c < 1);
        they are divided by its two-sided Gaussian quantile (1.645 at 0.90).

    Raises
    ------
    xrmod.errors.InputError
        The file cannot be read, a column is missing or unknown, a value is
        not a positive number, bounds do not enclose ``T_obs``; the message
        names the line.
    """
    name = os.path.normpath(os.fspath(path))
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be between 0 and 1 (got {confidence})")
    scale = _sigmas(confidence)
    header_line, header, rows = _read_rows(path, name)
    header = [_canonical(h) for h in header]
    _check_columns(header, f"{name}, line {header_line}")
    names, lines, band = [], [], []
    values: dict[str, list[float]] = {c: [] for c in _KNOWN[2:] if c in header}
    for line, row in rows:
        record = dict(zip(header, row, strict=True))
        where = f"{name}, line {line}"
        for column in values:
            values[column].append(_number(record[column], column, where))
        names.append(record.get("name", "").strip() or f"row {len(names) + 1}")
        band.append(parse_band(record["band"], where) if "band" in record else (math.nan,) * 2)
        lines.append(line)
    if not lines:
        raise InputError(f"{name}: no observations (a header line and no rows)")
    arrays = {c: np.array(v) for c, v in values.items()}
    T_obs = arrays["T_obs"]
    if "T_obs_err" in arrays:
        lo = hi = arrays["T_obs_err"]
    else:
        lo, hi = T_obs - arrays["T_obs_lo"], arrays["T_obs_hi"] - T_obs
    obs = Observations(
        path=name,
        names=tuple(names),
        T_ref=arrays["T_ref"],
        T_ref_err=arrays.get("T_ref_err", np.zeros_like(T_obs)) / scale,
        T_obs=T_obs,
        sigma_lo=lo / scale,
        sigma_hi=hi / scale,
        band=np.array(band, dtype=np.float64).reshape(-1, 2),
        lines=tuple(lines),
    )
    _check_values(obs, arrays)
    return obs


def parse_band(text: str, where: str) -> tuple[float, float]:
    """``"0.5-10"`` (or ``0.5:10``, ``0.5–10 keV``) -> (0.5, 10.0)."""
    match = _BAND.fullmatch(text)
    if match is None:
        raise InputError(f"{where}: band {text!r} is not LO-HI in keV (e.g. 0.5-10)")
    lo, hi = float(match["lo"]), float(match["hi"])
    if not lo < hi:
        raise InputError(f"{where}: band {text!r} needs 0 <= LO < HI")
    return lo, hi


def _sigmas(confidence: float) -> float:
    """The two-sided Gaussian quantile of *confidence* (1.0 at 0.6827, 1.645 at 0.90)."""
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2.0))


def _read_rows(
    path: str | os.PathLike, name: str
) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """The header's line number, its column names, and (line number, fields) per row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = [(i, line) for i, line in enumerate(f, start=1)]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{name}: cannot read the observations ({e})") from e
    content = [(i, line) for i, line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not content:
        raise InputError(f"{name}: empty (expected a header line: T_ref,T_obs,T_obs_err,...)")
    parsed = []
    for i, line in content:
        try:  # one line at a time: a quoted field may not run over into the next
            (fields,) = csv.reader([line.rstrip("\r\n")], strict=True)
        except (csv.Error, ValueError):
            raise InputError(
                f"{name}, line {i}: a quoted field is not closed on its line"
            ) from None
        parsed.append((i, fields))
    header_line, header = parsed[0][0], [h.strip() for h in parsed[0][1]]
    for i, row in parsed[1:]:
        if len(row) != len(header):
            raise InputError(f"{name}, line {i}: {len(row)} fields, the header has {len(header)}")
    return header_line, header, parsed[1:]


def _canonical(column: str) -> str:
    """A known column's own spelling for *column* in any case (``t_ref`` -> ``T_ref``)."""
    return next((k for k in _KNOWN if k.lower() == column.lower()), column)


def _check_columns(header: list[str], name: str) -> None:
    unknown = [h for h in header if h not in _KNOWN]
    for column in unknown:  # a misspelt known column is an error, any other column is not ours
        near = difflib.get_close_matches(
            column.lower(), [k.lower() for k in _KNOWN if k not in header], n=1, cutoff=0.75
        )
        if near:
            meant = _canonical(near[0])
            raise InputError(
                f"{name}: unknown column {column!r} (did you mean {meant!r}? "
                f"columns: {', '.join(_KNOWN)})"
            )
    if unknown:
        log.warning(
            "%s: ignoring column(s) %s (xrmod infer reads %s)",
            name, ", ".join(repr(c) for c in unknown), ", ".join(_KNOWN),
        )  # fmt: skip
    duplicate = {h for h in header if header.count(h) > 1}
    if duplicate:
        raise InputError(f"{name}: column {sorted(duplicate)[0]!r} appears twice")
    for column in ("T_ref", "T_obs"):
        if column not in header:
            raise InputError(f"{name}: no {column} column (found: {', '.join(header)})")
    bounds = [c for c in ("T_obs_lo", "T_obs_hi") if c in header]
    if "T_obs_err" in header and bounds:
        raise InputError(f"{name}: give T_obs_err or T_obs_lo and T_obs_hi, not both")
    if "T_obs_err" not in header and len(bounds) != 2:
        missing = "T_obs_hi" if bounds == ["T_obs_lo"] else "T_obs_lo"
        what = f"no {missing} column" if bounds else "no T_obs_err column"
        raise InputError(
            f"{name}: {what}: T_obs needs its error (T_obs_err) or its bounds "
            "(T_obs_lo and T_obs_hi)"
        )


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {column} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {column} is {text.strip()}")
    return value


def _check_values(obs: Observations, raw: dict[str, np.ndarray]) -> None:
    checks = [
        (obs.T_ref > 0, "T_ref", obs.T_ref, "must be positive (keV)"),
        (obs.T_obs > 0, "T_obs", obs.T_obs, "must be positive (keV)"),
    ]
    if "T_ref_err" in raw:  # the file's values, before the confidence scaling
        checks.append(
            (raw["T_ref_err"] >= 0, "T_ref_err", raw["T_ref_err"], "must not be negative")
        )
    if "T_obs_err" in raw:
        checks.append((raw["T_obs_err"] > 0, "T_obs_err", raw["T_obs_err"], "must be positive"))
    else:
        checks += [
            (
                raw["T_obs_lo"] < obs.T_obs,
                "T_obs_lo",
                raw["T_obs_lo"],
                "must be below T_obs (T_obs_lo and T_obs_hi are bounds, not error bars)",
            ),
            (
                raw["T_obs_hi"] > obs.T_obs,
                "T_obs_hi",
                raw["T_obs_hi"],
                "must be above T_obs (T_obs_lo and T_obs_hi are bounds, not error bars)",
            ),
        ]
    for ok, column, values, rule in checks:
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise InputError(f"{obs.label(i)}: {column} = {values[i]:g} {rule}")
