"""``xrmod info``: a library's provenance, axes, progress and failures, as text or JSON.

:func:`summary` reads a library once into a plain dict (JSON types only);
:func:`format_summary` prints that dict as ``xrmod info`` shows it and
``xrmod info --json`` dumps it, so the two forms cannot disagree. It reads a
library that ``xrmod-gen`` is still writing (without HDF5 file locking, see
:func:`xrmod.library.read_library_file`) and says how far the run is.

Keys of the summary (``xrmod info --json``)
--------------------------------------------
``path``
    The library, as given (normalised).
``format``, ``format_version``, ``xrmod_version``
    The file format and the xrmod that wrote it.
``state``
    ``"complete"`` (an end time is recorded and every point is computed),
    ``"being written"`` (a process on this machine has the library or one of
    its rank files open for writing) or ``"incomplete"`` (neither: an
    interrupted run, which ``xrmod-gen --resume`` continues, or one running on
    another machine; see ``writing``).
``family``
    The modifier family.
``axes``
    The modifier axes in the library's order (the leading dimensions of
    every dataset): a list of ``{"name", "units", "values"}``.
``temperatures``
    ``{"units": "keV", "values": [...]}``: the true temperatures.
``realizations``
    Noise realizations per (θ, kT_true): 1, or the length of the
    ``realization`` dimension.
``dims``, ``shape``
    Dimension names (the axes, ``realization`` when there are several,
    ``kT_true``) and lengths of the per-point datasets.
``points``
    ``{"total", "done", "not_computed", "in_rank_files"}``: grid points, those
    computed in the library (status not 0), those not (status 0), and of the
    latter those a running or interrupted multi-rank run has finished into its
    rank files but not merged yet.
``status``
    Points per status code, per fit: ``{"T1": [...], "T1'": [...]}``, each a
    list, by code, of ``{"code", "name", "description", "count"}`` with the
    name and description of :class:`xrmod.status.Status` (``name`` null for a
    code this xrmod does not know). A format version 1 library has one status
    for both fits (the worse), under the key ``"both"``.
``engine``, ``model``, ``seed``, ``noise``, ``exposure``, ``band``, ``error_delta``
    The run's provenance as the root attributes record it (null when
    absent): ``exposure`` in s, ``band`` as [lo, hi] keV.
``writer``, ``n_ranks``
    How the last run wrote the library (``direct``, ``mpio``, ``merge``) and
    on how many MPI ranks.
``responses``
    ``{"arf", "rmf", "background"}``, each ``{"path", "sha256"}`` or null
    (no background).
``times``
    ``{"start", "end"}``: ISO 8601 UTC; ``end`` is null until a run completes.
``writing``
    What says whether the library is still being written:
    ``{"processes", "last_write", "seconds_since_last_write", "rank_files"}``:
    the ids of the processes writing it (Linux ``/proc``; empty elsewhere or
    when none), the newest modification time of the library and its rank
    files, and each rank file as ``{"path", "units", "points", "usable",
    "note"}``.
``attributes``
    Every root attribute but the config text and the status-code table, as
    stored (the keys above pick from these).
``config``
    The configuration text of the last run.
``integrity``
    The library's checksums (:mod:`xrmod.integrity`): ``{"recorded",
    "algorithm", "full", "checked", "damaged"}``: whether checksums are
    recorded (not by an xrmod older than them, nor during a run), whether
    every dataset was read (``xrmod info --verify``) or only the axes,
    temperatures and status datasets (the default, a few bytes per point),
    the datasets verified, and one message per damaged block.
``emulators``
    The emulators saved in the library (``xrmod emulate``): a list of
    ``{"kind", "created", "library_sha256", "accuracy"}``, ``accuracy``
    their leave-one-out RMS error of T1 in σ (null when not measured). Their
    freshness is checked when one is loaded, not here.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from xrmod.errors import InputError
from xrmod.integrity import ROOT_ATTR as _CHECKSUMS
from xrmod.integrity import verify_library
from xrmod.library import STATUS_DATASETS, STATUS_FITS, decode_attr, read_library_file
from xrmod.status import Status

__all__ = ["describe", "format_summary", "plain_value", "summary"]

log = logging.getLogger(__name__)

#: Root attributes holding a file path (shown normalised).
_PATHS = ("arf", "rmf", "background", "config_path")
#: Root attributes holding an interval [lo, hi] (shown ``lo–hi``).
_INTERVALS = ("band",)
#: Units of root attributes.
_UNITS = {"band": "keV", "exposure": "s"}
#: Root attributes not listed with the others (the config text comes last, in full).
_NOT_LISTED = ("config", "status_codes", _CHECKSUMS)
#: Root attributes the summary lifts to keys of their own.
_PROVENANCE = (
    "engine",
    "model",
    "seed",
    "noise",
    "exposure",
    "band",
    "error_delta",
    "writer",
    "n_ranks",
)
#: Key of the status counts of a format-1 library (one status for both fits).
BOTH_FITS = "both"

#: Reading a library while its writer changes its metadata (the root attributes at
#: the start and end of a run): attempts, and the first wait between two (doubled
#: each time: 0.05 + 0.1 + ... = 1.55 s in all).
_ATTEMPTS = 6
_FIRST_WAIT = 0.05
#: A library modified less than this many seconds ago may be changing under a reader.
_RECENT = 10.0
#: Elements of a status dataset read at once.
_BLOCK = 1 << 24
#: The signature that opens an HDF5 superblock (at 0, 512, 1024, ... bytes).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------- reading
def summary(path: str | os.PathLike, *, verify: bool = False) -> dict[str, Any]:
    """Everything ``xrmod info`` shows about a library, as a plain dict.

    The dict holds JSON types only (``json.dumps`` takes it as it is); its
    keys are listed in this module's docstring. The library is read without
    HDF5 file locking, so a library that ``xrmod-gen`` is writing can be
    summarised (``state`` says so); a read that fails while its writer
    changes the file's metadata is tried again for about 1.5 s.

    Parameters
    ----------
    path : str or os.PathLike
        An xrmod library, of format version 1 or 2.
    verify : bool
        Verify the checksums of every dataset (key ``integrity``); by default
        only those of the axes, temperatures and status datasets.

    Returns
    -------
    dict
        The summary.

    Raises
    ------
    xrmod.errors.InputError
        *path* is not a readable HDF5 file or not an xrmod library, or it
        kept changing while being read.

    Examples
    --------
    >>> from xrmod.analysis import summary
    >>> s = summary("library.h5")  # doctest: +SKIP
    >>> [(a["name"], len(a["values"])) for a in s["axes"]]  # doctest: +SKIP
    [('mu', 6), ('sigma', 3), ('amp', 5)]
    >>> s["points"]["done"], s["points"]["total"], s["state"]  # doctest: +SKIP
    (720, 720, 'complete')
    """
    name = os.path.normpath(os.fspath(path))
    wait = _FIRST_WAIT
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return _summary(path, name, verify=True) if verify else _summary(path, name)
        except (OSError, KeyError, RuntimeError, InputError) as e:
            if isinstance(e, InputError) and not isinstance(e.__cause__, OSError):
                raise  # not an xrmod library: nothing a second look changes
            writers = _writing_processes([path])
            if "truncated file" in str(e) and not writers:  # no writer will make it whole
                if isinstance(e, InputError):
                    raise
                raise InputError(f"{name}: damaged: the file is truncated ({_error(e)})") from e
            changing = writers or _modified_within(path, _RECENT)
            if not (changing and (_has_hdf5_signature(path) or _empty(path))):
                if isinstance(e, InputError):
                    raise
                raise InputError(f"{name}: not a readable xrmod library ({_error(e)})") from e
            if attempt == _ATTEMPTS:
                by = f" by process {', '.join(map(str, writers))}" if writers else ""
                raise InputError(
                    f"{name}: the library is being written{by} and its metadata changed "
                    f"while it was read, {_ATTEMPTS} times over {_total_wait():.1f} s (last "
                    f"error: {_error(e)}); try again in a moment"
                ) from e
            log.debug("%s: read failed (%s), trying again in %.2f s", name, _error(e), wait)
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _summary(path: str | os.PathLike, name: str, verify: bool = False) -> dict[str, Any]:
    with read_library_file(path, locking=False) as f:
        attrs = {str(k): plain_value(decode_attr(v)) for k, v in f.attrs.items()}
        params, lib = f["PARAMS"], f["LIBRARY"]
        family = str(decode_attr(params.attrs["family"]))
        axes = [
            {
                "name": axis,
                "units": str(decode_attr(params[axis].attrs.get("units", ""))),
                "values": params[axis][()].tolist(),
            }
            for axis in (str(a) for a in decode_attr(params.attrs["axes"]))
        ]
        temps = lib["temps"][()].tolist()
        realizations = int(lib["realization"].shape[0]) if "realization" in lib else 1
        shape = [int(n) for n in lib["status"].shape]
        counts, done_theta = _count_codes(lib["status"], len(axes))  # status: the done marker
        if "status_modified" in lib:
            per_fit = {
                STATUS_FITS[d]: counts if d == "status" else _count_codes(lib[d], len(axes))[0]
                for d in STATUS_DATASETS
            }
        else:  # format version 1: one status for both fits, the worse
            per_fit = {BOTH_FITS: counts}
        emulators = _emulators(f)
        integrity = verify_library(f, full=verify).as_dict()
    dims = [a["name"] for a in axes] + (["realization"] if realizations > 1 else []) + ["kT_true"]
    total = int(np.prod(shape))
    not_computed = counts.get(int(Status.NOT_COMPUTED), 0)
    rank_files, in_rank_files = _rank_files(path, attrs.get("config", ""), done_theta)
    writers = _writing_processes([path, *(p["path"] for p in rank_files)])
    mtimes = [_mtime(p) for p in [path, *(r["path"] for r in rank_files)]]
    last = max((m for m in mtimes if m is not None), default=None)
    end = attrs.get("end_time") or None
    if writers:
        state = "being written"
    elif end and not_computed == 0 and not rank_files:
        state = "complete"
    else:
        state = "incomplete"
    return {
        "path": name,
        "format": attrs.get("format"),
        "format_version": attrs.get("format_version"),
        "xrmod_version": attrs.get("xrmod_version"),
        "state": state,
        "family": family,
        "axes": axes,
        "temperatures": {"units": "keV", "values": temps},
        "realizations": realizations,
        "dims": dims,
        "shape": shape,
        "points": {
            "total": total,
            "done": total - not_computed,
            "not_computed": not_computed,
            "in_rank_files": in_rank_files,
        },
        "status": {fit: _status_list(c) for fit, c in per_fit.items()},
        **{key: attrs.get(key) for key in _PROVENANCE},
        "responses": {key: _response(attrs, key) for key in ("arf", "rmf", "background")},
        "times": {"start": attrs.get("start_time") or None, "end": end},
        "writing": {
            "processes": writers,
            "last_write": None if last is None else _iso(last),
            "seconds_since_last_write": None if last is None else round(time.time() - last, 1),
            "rank_files": rank_files,
        },
        "attributes": {k: v for k, v in sorted(attrs.items()) if k not in _NOT_LISTED},
        "config": str(attrs.get("config", "")),
        "emulators": emulators,
        "integrity": integrity,
    }


def _emulators(f: Any) -> list[dict[str, Any]]:
    """The emulators saved in the library's ``/EMULATORS`` group (not checked)."""
    import json

    from xrmod.analysis.emulator import EMULATORS_GROUP

    out = []
    for kind, group in f.get(EMULATORS_GROUP, {}).items():
        accuracy = json.loads(decode_attr(group.attrs.get("accuracy", "null")))
        out.append(
            {
                "kind": kind,
                "created": str(decode_attr(group.attrs.get("created", ""))),
                "library_sha256": str(decode_attr(group.attrs.get("library_sha256", ""))),
                "accuracy": accuracy["rms"]["T1"] if accuracy else None,
            }
        )
    return out


def plain_value(value: Any) -> Any:
    """An attribute value in JSON types: numbers, strings, lists; NaN as None."""
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _count_codes(ds: Any, n_axes: int) -> tuple[dict[int, int], np.ndarray]:
    """Points per code of a status dataset, and which θ have a point done.

    Read in slabs of the leading axis of about :data:`_BLOCK` points, so
    memory does not follow the library's size.
    """
    shape = ds.shape
    per_theta = int(np.prod(shape[n_axes:]))
    rows = max(1, _BLOCK // max(1, int(np.prod(shape[1:]))))
    counts: dict[int, int] = {}
    done = []
    for lo in range(0, shape[0], rows):
        block = ds[lo : lo + rows]
        codes, n = np.unique(block, return_counts=True)
        for code, c in zip(codes.tolist(), n.tolist(), strict=True):
            counts[code] = counts.get(code, 0) + c
        done.append((block.reshape(-1, per_theta) != Status.NOT_COMPUTED).any(axis=1))
    return counts, np.concatenate(done) if done else np.zeros(0, bool)


def _status_list(counts: dict[int, int]) -> list[dict[str, Any]]:
    out = []
    for code in sorted(counts):
        try:
            status = Status(code)
            name, description = status.name, status.description
        except ValueError:
            name, description = None, "unknown code (a newer xrmod?)"
        out.append({"code": code, "name": name, "description": description, "count": counts[code]})
    return out


def _response(attrs: dict[str, Any], key: str) -> dict[str, Any] | None:
    path = attrs.get(key)
    if not path:
        return None
    return {"path": path, "sha256": attrs.get(f"{key}_sha256") or None}


def _rank_files(
    path: str | os.PathLike, config_text: str, done_theta: np.ndarray
) -> tuple[list[dict[str, Any]], int]:
    """The rank files next to the library, and the points they hold that it does not."""
    import h5py

    from xrmod.merge import RANKFILE_FORMAT, config_sha256, find_rank_files

    found, theta_sets = [], []
    for rank_file in find_rank_files(path):
        entry: dict[str, Any] = {
            "path": str(rank_file),
            "units": 0,
            "points": 0,
            "usable": False,
            "note": "",
        }
        try:
            with h5py.File(rank_file, "r", libver="latest", swmr=True, locking=False) as f:
                if decode_attr(f.attrs.get("format")) != RANKFILE_FORMAT:
                    entry["note"] = "not an xrmod rank file"
                elif decode_attr(f.attrs.get("config_sha256")) != config_sha256(config_text):
                    entry["note"] = "of another configuration (a resume refuses it)"
                else:
                    per_theta = int(f.attrs["points_per_theta"])
                    starts = f["start"][()]
                    valid = starts[(starts >= 0) & (starts % per_theta == 0)] // per_theta
                    valid = valid[valid < done_theta.size]
                    entry.update(units=int(valid.size), points=int(valid.size) * per_theta)
                    entry["usable"] = True
                    theta_sets.append((valid, per_theta))
        except (OSError, KeyError) as e:
            entry["note"] = f"unreadable ({_error(e)})"
        found.append(entry)
    extra = 0
    for theta, per_theta in theta_sets:
        extra += int((~done_theta[np.unique(theta)]).sum()) * per_theta
    return found, extra


def _writing_processes(paths: list[str | os.PathLike]) -> list[int]:
    """Ids of the other processes that have one of *paths* open for writing (Linux /proc).

    A writer's file lock would say the same for the serial writer only:
    MPI-IO and SWMR rank files hold none, and clusters often turn locks off.
    """
    targets = set()
    for p in paths:
        try:
            targets.add(os.path.realpath(p))
        except OSError:
            continue
    proc = Path("/proc")
    if not targets or not proc.is_dir():
        return []
    me = os.getpid()
    found = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(fd) not in targets:
                    continue
                flags = (entry / "fdinfo" / fd.name).read_text().split("flags:", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if int(flags, 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.add(int(entry.name))
    return sorted(found)


def _mtime(path: str | os.PathLike) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _modified_within(path: str | os.PathLike, seconds: float) -> bool:
    mtime = _mtime(path)
    return mtime is not None and time.time() - mtime < seconds


def _empty(path: str | os.PathLike) -> bool:
    """Whether *path* is an empty file (a library that a writer has only just created)."""
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return False


def _has_hdf5_signature(path: str | os.PathLike) -> bool:
    """Whether *path* starts an HDF5 superblock at 0, 512, 1024, ... bytes (a user block)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset + len(_HDF5_SIGNATURE) <= size:
                f.seek(offset)
                if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def _total_wait() -> float:
    return _FIRST_WAIT * (2 ** (_ATTEMPTS - 1) - 1)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if not isinstance(e, InputError) else str(e)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- text
def _number(value: Any) -> str:
    """A number as written by hand: ``10``, ``0.5``, ``5e-05``, never numpy's ``10.``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(float(value), ".15g")


def _attr(key: str, value: Any) -> str:
    """A root attribute's value (as :func:`summary` holds it) as ``xrmod info`` prints it."""
    if value is None:
        text = "none"
    elif isinstance(value, str):
        if not value:
            return "none"
        text = os.path.normpath(value) if key in _PATHS else value
    elif isinstance(value, list):
        items = [v if isinstance(v, str) else _number(v) for v in value]
        text = ("–" if key in _INTERVALS and len(items) == 2 else ", ").join(items)
    elif isinstance(value, (int, float)):
        text = _number(value)
    else:
        text = str(value)
    unit = _UNITS.get(key)
    return f"{text} {unit}" if unit else text


def _axis(values: list[float], unit: str) -> str:
    """An axis: its value when it has one, else how many values from where to where."""
    if len(values) == 1:
        text = _number(values[0])
    else:
        text = f"{len(values)} values {_number(min(values))} .. {_number(max(values))}"
    return f"{text} {unit}".rstrip()


def _age(seconds: float) -> str:
    """A duration as a person says it: 4 s, 12 min, 3 h, 2 days."""
    for limit, unit, size in ((90, "s", 1), (5400, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{max(0, round(seconds / size))} {unit}"
    return f"{round(seconds / 86400)} days"


def _progress(s: dict[str, Any]) -> str:
    """The progress line: how far a run is, and whether it is still going."""
    points, writing = s["points"], s["writing"]
    done, total = points["done"], points["total"]
    if s["state"] == "complete":
        return f"complete, {done} of {total} points computed"
    percent = f" ({100 * done / total:.0f}%)" if total else ""
    text = f"{done} of {total} points computed{percent}"
    usable = [r for r in writing["rank_files"] if r["usable"]]
    if usable:
        text += (
            f", {points['in_rank_files']} more in {len(usable)} rank file"
            f"{'s' if len(usable) > 1 else ''} (merged into the library at the end)"
        )
    stale = [r for r in writing["rank_files"] if not r["usable"]]
    for r in stale:
        text += f"; {os.path.normpath(r['path'])}: {r['note']}"
    age = writing["seconds_since_last_write"]
    last = "" if age is None else f"last write {_age(age)} ago"
    no_end = "no end time yet" if s["times"]["end"] is None else f"end time {s['times']['end']}"
    if s["state"] == "being written":
        who = ", ".join(map(str, writing["processes"]))
        many = "es" if len(writing["processes"]) > 1 else ""
        return f"being written by process{many} {who}: {text}; {no_end}, {last}".rstrip(", ")
    return (
        f"incomplete: {text}; {no_end}, and no process on this machine is writing it"
        f"{f' ({last})' if last else ''}: an interrupted run, which xrmod-gen --resume "
        "continues, or one running elsewhere"
    )


def integrity_text(found: dict[str, Any]) -> str:
    """The ``integrity`` line of ``xrmod info``, from a summary's ``integrity`` key."""
    from xrmod.integrity import IntegrityReport

    keys = ("recorded", "full", "checked", "damaged")
    return IntegrityReport(**{k: found[k] for k in keys}).text()


def format_summary(s: dict[str, Any]) -> str:
    """The text of ``xrmod info``: a :func:`summary` as lines for a person.

    Numbers are printed as written by hand (``band: 0.5–10 keV``), paths
    normalised, a one-value axis as its value.
    """
    lines = [s["path"]]
    lines.extend(f"  {key}: {_attr(key, value)}" for key, value in s["attributes"].items())
    lines.append(f"  family: {s['family']}")
    lines.append("  axes (in order):")
    for axis in s["axes"]:
        lines.append(f"    {axis['name']}: {_axis(axis['values'], axis['units'])}")
    if s["realizations"] > 1:
        lines.append(f"    realization: {s['realizations']}")
    lines.append(f"    temps: {_axis(s['temperatures']['values'], s['temperatures']['units'])}")
    lines.append(f"  points: {s['points']['total']}, shape {tuple(s['shape'])}")
    lines.append(f"  progress: {_progress(s)}")
    if "integrity" in s:
        lines.append(f"  integrity: {integrity_text(s['integrity'])}")
    if BOTH_FITS in s["status"]:
        lines.append("  status (format version 1: one status for both fits, the worse):")
        for e in s["status"][BOTH_FITS]:
            lines.append(f"    status {e['code']:>3}: {e['count']:>8}  {e['description']}")
    else:
        fits = list(s["status"])
        per_fit = {fit: {e["code"]: e for e in s["status"][fit]} for fit in fits}
        lines.append("  status per fit (points with each code):")
        lines.append(f"    {'':11}{''.join(f'{fit:>9}' for fit in fits)}")
        for code in sorted(set().union(*per_fit.values())):
            cells = "".join(
                f"{per_fit[fit][code]['count'] if code in per_fit[fit] else 0:>9}" for fit in fits
            )
            entry = next(per_fit[fit][code] for fit in fits if code in per_fit[fit])
            lines.append(f"    status {code:>3}: {cells}  {entry['description']}")
    for e in s.get("emulators", []):
        accuracy = "" if e["accuracy"] is None else f", T1 RMS {e['accuracy']:.3g} sigma"
        lines.append(f"  emulator: {e['kind']} (saved {e['created']}{accuracy})")
    lines.append("  config:")
    lines.extend(f"    {line}".rstrip() for line in s["config"].splitlines())
    return "\n".join(lines)


def describe(path: str | os.PathLike) -> str:
    """Human-readable summary of a library: provenance, axes, progress, failures.

    The text form of :func:`summary` (:func:`format_summary`). Reads format
    versions 1 and 2, and libraries still being written.

    Raises
    ------
    xrmod.errors.InputError
        *path* is not a readable HDF5 file or not an xrmod library.

    Examples
    --------
    >>> from xrmod.analysis import describe
    >>> print(describe("library.h5"))  # doctest: +SKIP
    """
    return format_summary(summary(path))
