"""Helpers of the bad-input campaign (tests/test_bad_input.py).

The command line run in-process under a timeout, the checks every outcome
must pass (exit 2 with one message naming the file, or a library whose
every point carries a documented status), a small synthetic response that
fits in milliseconds, and a TOML writer for mutated configurations.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits

from xrmod.cli import gen_main, main
from xrmod.responses import write_arf, write_pha, write_rmf
from xrmod.status import Status

#: Examples per property in the campaign profile (set XRMOD_CAMPAIGN_EXAMPLES=N).
CAMPAIGN_ENV = "XRMOD_CAMPAIGN_EXAMPLES"
#: Where the campaign writes its counts as JSON (set by the person running it).
REPORT_ENV = "XRMOD_CAMPAIGN_REPORT"
#: Seconds one in-process run may take before it counts as a hang.
RUN_TIMEOUT = 60

#: (category, outcome) -> number of cases, written to $XRMOD_CAMPAIGN_REPORT at the end.
COUNTS: collections.Counter[tuple[str, str]] = collections.Counter()


def examples(default: int) -> int:
    """Examples for one property: *default*, or the campaign's number when it is set."""
    value = os.environ.get(CAMPAIGN_ENV)
    return int(value) if value else default


def write_report() -> None:
    """Write the outcome counts as JSON to $XRMOD_CAMPAIGN_REPORT (no-op when unset)."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    rows = [{"category": c, "outcome": o, "n": n} for (c, o), n in sorted(COUNTS.items())]
    Path(path).write_text(json.dumps(rows, indent=1))


# --------------------------------------------------------------------------- running


class Hang(BaseException):
    """A run exceeded RUN_TIMEOUT (a BaseException: the CLI must not turn it into exit 1)."""


@dataclass
class Outcome:
    """Exit code and standard error of one in-process run."""

    code: int
    stderr: str


def run_cli(argv: Sequence[str], *, gen: bool = True, timeout: float = RUN_TIMEOUT) -> Outcome:
    """Run ``xrmod-gen`` (or ``xrmod``) in this process; a run over *timeout* s raises Hang."""
    err = io.StringIO()

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"{' '.join(argv)} took more than {timeout} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = (gen_main if gen else main)(list(argv))
            except SystemExit as e:  # argparse
                code = e.code if isinstance(e.code, int) else 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(int(code), err.getvalue())


def check_input_error(outcome: Outcome, *names: str) -> None:
    """Exit 2 with one ``error:`` line that names one of *names* (a file or a key)."""
    text = outcome.stderr
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    assert outcome.code == 2, f"exit {outcome.code}: {text}"
    lines = [line for line in text.splitlines() if "error:" in line]
    assert len(lines) == 1, text
    if names:
        assert any(n in lines[0] for n in names), f"{lines[0]!r} names none of {names}"


#: Statuses a finished library may hold: every documented one but "not computed" and "error".
FINAL = {s for s in Status if s not in (Status.NOT_COMPUTED, Status.ERROR)}


def check_library(path: Path) -> collections.Counter[str]:
    """A complete library: every point has a final documented status; failed fits hold NaN.

    Returns the statuses found (by name), for the campaign's counts.
    """
    found: collections.Counter[str] = collections.Counter()
    with h5py.File(path, "r") as f:
        assert "end_time" in f.attrs, "library not marked complete (no end_time)"
        for name, results in (("status", "results"), ("status_modified", "results_modified")):
            status = f["LIBRARY"][name][()]
            values = f["LIBRARY"][results][()]
            codes = set(np.unique(status).tolist())
            assert codes <= {int(s) for s in FINAL}, f"{name} holds {codes}"
            ok = status == Status.OK
            assert np.isfinite(values[ok]).all(), f"{results}: an OK point holds NaN"
            failed = status < 0
            hard = np.isin(status, [int(s) for s in FINAL if s not in _PARTIAL])
            assert np.isnan(values[hard & failed]).all(), f"{results}: a failed fit holds numbers"
            found.update(Status(int(c)).name for c in status.ravel())
    return found


#: Failure codes that keep kT_fit (and one bound): see xrmod.status.Status.
_PARTIAL = {Status.OK, Status.BOUND_AT_LIMIT, Status.MODEL_JUMP}


def check_run(outcome: Outcome, library: Path, *names: str) -> str:
    """Either a clear input error or a complete library; return the outcome's label."""
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert "internal error" not in outcome.stderr, outcome.stderr
    if outcome.code == 2:
        check_input_error(outcome, *names)
        return "exit 2"
    assert outcome.code == 0, f"exit {outcome.code}: {outcome.stderr}"
    statuses = check_library(library)
    failed = sorted(s for s in statuses if s != "OK")
    return "library: " + ("all OK" if not failed else "status " + ", ".join(failed))


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class Response:
    """A small synthetic response: energy grid, ARF, RMF, channel bounds."""

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    matrix: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray


def small_response(n_energy: int = 240, n_channel: int = 200) -> Response:
    """0.1-12 keV, a bell-shaped ARF (~400 cm^2), Gaussian redistribution (rows sum to <= 1)."""
    edges = np.geomspace(0.1, 12.0, n_energy + 1)
    lo, hi = edges[:-1], edges[1:]
    mid = 0.5 * (lo + hi)
    arf = 400.0 * np.exp(-0.5 * (np.log(mid / 1.5) / 0.9) ** 2) + 5.0
    chan = np.linspace(0.1, 12.0, n_channel + 1)
    c_mid = 0.5 * (chan[:-1] + chan[1:])
    sigma = 0.03 + 0.04 * np.sqrt(mid)
    matrix = np.exp(-0.5 * ((c_mid[None, :] - mid[:, None]) / sigma[:, None]) ** 2)
    matrix[matrix < 1e-6] = 0.0
    matrix *= 0.98 / matrix.sum(axis=1, keepdims=True)
    return Response(lo, hi, arf, matrix, chan[:-1], chan[1:])


def write_response(directory: Path, resp: Response, *, background: bool = True) -> dict[str, Path]:
    """Write ``resp`` as small.arf / small.rmf (and a background small.pha) with xrmod's writers."""
    paths = {"arf": directory / "small.arf", "rmf": directory / "small.rmf"}
    write_arf(paths["arf"], resp.energ_lo, resp.energ_hi, resp.specresp, overwrite=True)
    write_rmf(
        paths["rmf"],
        resp.energ_lo,
        resp.energ_hi,
        resp.matrix,
        resp.e_min,
        resp.e_max,
        first_channel=1,
        overwrite=True,
    )
    if background:
        n = resp.e_min.size
        paths["background"] = directory / "small.pha"
        write_pha(
            paths["background"],
            np.arange(1, n + 1),
            np.full(n, 3.0),
            exposure=20000.0,
            backscal=5.0,
            overwrite=True,
        )
    return paths


def write_raw_arf(path: Path, lo: Any, hi: Any, resp: Any) -> Path:
    """An ARF written with astropy alone: any values, even those xrmod's writer refuses."""
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ENERG_LO", format="D", unit="keV", array=np.asarray(lo)),
            fits.Column(name="ENERG_HI", format="D", unit="keV", array=np.asarray(hi)),
            fits.Column(name="SPECRESP", format="D", unit="cm**2", array=np.asarray(resp)),
        ],
        name="SPECRESP",
    )
    table.header["HDUCLAS1"] = "RESPONSE"
    table.header["HDUCLAS2"] = "SPECRESP"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    return path


def write_raw_pha(path: Path, channels: Any, counts: Any, **keywords: Any) -> Path:
    """A PHA written with astropy alone: any counts and keywords (None leaves one out)."""
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="CHANNEL", format="J", array=np.asarray(channels, dtype=np.int32)),
            fits.Column(name="COUNTS", format="D", array=np.asarray(counts, dtype=np.float64)),
        ],
        name="SPECTRUM",
    )
    header = {"HDUCLASS": "OGIP", "HDUCLAS1": "SPECTRUM", "EXPOSURE": 20000.0, "BACKSCAL": 1.0}
    header.update(keywords)
    for key, value in header.items():
        if value is not None:
            table.header[key] = value
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    return path


# --------------------------------------------------------------------------- configs


def tiny_config(paths: dict[str, Path] | None, output: Path, **sections: dict[str, Any]) -> dict:
    """A config of 2 points (1 gaussian x 2 amp, 1 kT) as a dict; *sections* update it."""
    doc: dict[str, Any] = {
        "library": {"output": str(output), "noise": "asimov", "seed": 7},
        "instrument": {"exposure": 20000.0, "band": [0.5, 8.0]},
        "source": {"model": "tbabs*zbremss", "norm": 1.0e-3, "temperatures": [3.0]},
        "modifier": {
            "family": "gaussian",
            "axes": {"mu": 1.5, "sigma": 0.5, "amp": [0.0, 0.1]},
        },
        "fit": {"error_delta": 1.0},
    }
    if paths is not None:
        doc["instrument"].update({"arf": str(paths["arf"]), "rmf": str(paths["rmf"])})
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return doc


def toml_value(value: Any) -> str:
    """One TOML value (inline tables for dicts); NaN and infinities as TOML spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (ASCII escapes)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted key."""
    bare = key and all((c.isalnum() and c.isascii()) or c in "-_" for c in key)
    return key if bare else json.dumps(key)


def to_toml(doc: dict[str, Any]) -> str:
    """A document of tables (sections) holding values; non-dict top-level values go first."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(name)}]")
            lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    """Write *doc* as TOML to *path*."""
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


Mutation = Callable[[dict[str, Any]], None]
