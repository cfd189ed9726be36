"""``xrmod check-engines``: run a few grid points through several engines and compare.

The same seed does not give the same Poisson draw in two engines (XSPEC's
generator is not NumPy's), so the check forces ``noise = "asimov"``: every
engine then fits the same expected spectrum and any difference is the
engines' own. For each chosen point and each fit (T1 with the original ARF,
T1′ with the modified one) every engine is compared with the first that
runs (the baseline) column by column ([kT_lo, kT_fit, kT_hi]) in units of

    σ = mean over the two engines of (kT_hi − kT_lo) / (2 √error_delta),

the 1σ half-width of the fitted interval (its half-width is √Δ σ for a
statistic parabolic in kT). A point agrees when both engines give each of
its fits the same status (``status`` for T1, ``status_modified`` for T1′),
NaN in the same places, and every difference is at most the tolerance. The
points (:func:`choose_points`) run a diagonal through the grid: θ and T each
from their first to their last value.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import logging
import math
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from xrmod.engines import ENGINES, get_engine
from xrmod.errors import EngineError, InputError
from xrmod.status import Status

if TYPE_CHECKING:
    from xrmod.config import Config
    from xrmod.grid import Grid
    from xrmod.job import Job

__all__ = [
    "DEFAULT_ENGINES",
    "DEFAULT_POINTS",
    "DEFAULT_TOLERANCE",
    "CheckReport",
    "EngineRun",
    "check_engines",
    "choose_points",
]

log = logging.getLogger(__name__)

#: Engines compared by default.
DEFAULT_ENGINES = ("native", "xspec")
#: Grid points run by default.
DEFAULT_POINTS = 5
#: Largest difference that agrees, in σ (Asimov spectra: the engines' own precision).
DEFAULT_TOLERANCE = 0.5

#: (label, results attribute, status attribute) of each fit.
_FITS = (("T1", "results", "status"), ("T1'", "results_modified", "status_modified"))


def choose_points(grid: Grid, n: int) -> list[int]:
    """*n* flat indices spread over *grid* (deterministic), sorted.

    First a diagonal: θ and T each evenly from their first to their last
    value; where those coincide, evenly spaced flat indices, then the rest in
    order, until min(n, grid size) distinct points.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--points must be an integer >= 1, got {n!r}")
    nt = grid.temperatures.size
    per_theta = grid.points_per_theta
    want = min(n, grid.size)
    thetas = np.rint(np.linspace(0, grid.n_theta - 1, n)).astype(np.int64)
    temps = np.rint(np.linspace(0, nt - 1, n)).astype(np.int64)
    diagonal = (thetas * per_theta + temps).tolist()  # realization 0
    spread = np.rint(np.linspace(0, grid.size - 1, n)).astype(np.int64).tolist()
    chosen: list[int] = []
    for flat in itertools.chain(diagonal, spread, range(grid.size)):
        if flat not in chosen:
            chosen.append(int(flat))
        if len(chosen) == want:
            break
    return sorted(chosen)


@dataclass
class EngineRun:
    """One engine's results at the chosen points (None where it could not run)."""

    name: str
    error: str | None = None
    results: np.ndarray | None = None  # (n, 3)
    results_modified: np.ndarray | None = None  # (n, 3)
    status: np.ndarray | None = None  # (n,) the point and its T1 fit
    status_modified: np.ndarray | None = None  # (n,) the point and its T1′ fit

    @property
    def available(self) -> bool:
        """Whether the engine ran."""
        return self.error is None


@dataclass
class CheckReport:
    """Outcome of a check: the points, each engine's results, the comparison.

    ``deviation[name]`` is (n, 2): the largest |difference| / σ of each point's
    T1 and T1′ from the baseline's (0 where both fits failed alike, inf where
    that fit's statuses or NaN positions differ).
    """

    config: str
    engines: tuple[str, ...]
    flats: list[int]
    thetas: list[dict[str, float]]
    temperatures: list[float]
    tolerance: float
    error_delta: float
    grid_size: int
    runs: dict[str, EngineRun]
    deviation: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        """The engine the others are compared with: the first one that ran."""
        return next((n for n in self.engines if self.runs[n].available), self.engines[0])

    @property
    def unavailable(self) -> list[str]:
        """Engines that could not run here."""
        return [name for name in self.engines if not self.runs[name].available]

    @property
    def disagreeing(self) -> dict[str, list[int]]:
        """Engine -> positions (into :attr:`flats`) of points beyond the tolerance."""
        out = {}
        for name, dev in self.deviation.items():
            bad = np.flatnonzero(~(dev <= self.tolerance).all(axis=1)).tolist()
            if bad:
                out[name] = bad
        return out

    @property
    def outcome(self) -> str:
        """``"disagree"`` (some compared engines differ), else ``"unavailable"``, else ``"agree"``.

        A check where fewer than two engines ran is never ``"agree"``.
        """
        if self.disagreeing:
            return "disagree"
        if self.unavailable or len(self.deviation) == 0:
            return "unavailable"
        return "agree"

    def format(self) -> str:
        """The report as text: header, a table (one row per point and fit), the verdict."""
        base = self.baseline
        others = [n for n in self.engines if n != base and self.runs[n].available]
        lines = [
            f"config: {self.config}",
            f"engines: {', '.join(self.engines)} (compared with {base})",
            'noise: forced to "asimov" for this check (expected counts, no Poisson draw): '
            "every engine fits the same spectrum, so differences are the engines' own",
            f"points: {len(self.flats)} of {self.grid_size} (flat indices "
            f"{', '.join(map(str, self.flats))}); tolerance {self.tolerance:g} sigma, "
            f"sigma = (kT_hi - kT_lo) / (2 sqrt(error_delta)), error_delta = "
            f"{self.error_delta:g}",
            "",
        ]
        header = ["point", "theta", "T [keV]", "fit"]
        shown = [n for n in self.engines if self.runs[n].available]
        header += [f"{n}: kT -lo +hi [keV]" for n in shown]
        header += [f"|d|/sigma {n}" for n in others] + ["verdict"]
        rows = [header]
        bad = {n: set(v) for n, v in self.disagreeing.items()}
        for i, flat in enumerate(self.flats):
            theta = " ".join(f"{k}={v:g}" for k, v in self.thetas[i].items())
            for j, (label, attr, status) in enumerate(_FITS):
                row = [str(flat), theta, f"{self.temperatures[i]:g}"] if j == 0 else ["", "", ""]
                row.append(label)
                for name in shown:
                    row.append(_cell(self.runs[name], attr, status, i))
                for name in others:
                    d = self.deviation[name][i, j]
                    row.append("-" if d == 0 and _both_failed(self, name, status, i) else _num(d))
                verdict = "DIFFER" if any(i in bad.get(n, ()) for n in others) else "ok"
                if not others:
                    verdict = "-"
                row.append(verdict if j == 0 else "")
                rows.append(row)
        widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        lines.append("")
        for name in self.unavailable:
            lines.append(f"{name}: UNAVAILABLE here, not compared: {self.runs[name].error}")
        outcome = self.outcome
        if outcome == "disagree":
            for name, positions in self.disagreeing.items():
                lines.append(
                    f"result: {name} DISAGREES with {base} at {len(positions)} of "
                    f"{len(self.flats)} points (beyond {self.tolerance:g} sigma)"
                )
        elif outcome == "unavailable":
            ran = ", ".join(shown) or "none"
            lines.append(
                f"result: NOT CHECKED: {', '.join(self.unavailable)} could not run here "
                f"(ran: {ran})"
            )
        else:
            lines.append(
                f"result: all {len(self.flats)} points agree within {self.tolerance:g} sigma "
                f"({', '.join(self.engines)})"
            )
        return "\n".join(lines)


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.3f}" if x == 0 or x >= 1.0e-3 else f"{x:.1e}"


def _cell(run: EngineRun, attr: str, status: str, i: int) -> str:
    code = int(getattr(run, status)[i])
    r = getattr(run, attr)[i]
    lo, fit, hi = r
    if not math.isfinite(fit):
        return f"status {code} ({Status(code).name})"
    text = f"{fit:.4f} " + ("-nan" if math.isnan(lo) else f"-{fit - lo:.4f}")
    text += " " + ("+nan" if math.isnan(hi) else f"+{hi - fit:.4f}")
    if code != Status.OK:
        text += f" [{Status(code).name}]"
    return text


def _both_failed(report: CheckReport, name: str, status: str, i: int) -> bool:
    a, b = report.runs[report.baseline], report.runs[name]
    return int(getattr(a, status)[i]) == int(getattr(b, status)[i]) != Status.OK


def _sigma(r: np.ndarray, delta: float) -> float:
    """1σ of one fit from its interval: mean of the available half-widths / √delta."""
    halves = [r[1] - r[0], r[2] - r[1]]
    halves = [h for h in halves if math.isfinite(h)]
    return float(np.mean(halves)) / math.sqrt(delta) if halves else math.nan


def _deviation(a: EngineRun, b: EngineRun, delta: float) -> np.ndarray:
    """(n, 2) largest |b − a| / σ per point and fit (see :class:`CheckReport`)."""
    n = a.status.size
    out = np.zeros((n, 2))
    for i in range(n):
        for j, (_, attr, status) in enumerate(_FITS):
            ra, rb = getattr(a, attr)[i], getattr(b, attr)[i]
            if int(getattr(a, status)[i]) != int(getattr(b, status)[i]):
                out[i, j] = math.inf
                continue
            finite_a, finite_b = np.isfinite(ra), np.isfinite(rb)
            if not np.array_equal(finite_a, finite_b):
                out[i, j] = math.inf
                continue
            if not finite_a.any():
                continue  # both failed alike
            sigmas = [s for s in (_sigma(ra, delta), _sigma(rb, delta)) if math.isfinite(s)]
            sigma = float(np.mean(sigmas)) if sigmas else math.nan
            diff = np.abs(rb[finite_a] - ra[finite_a]).max()
            if not sigma > 0:
                out[i, j] = 0.0 if diff == 0 else math.inf
            else:
                out[i, j] = diff / sigma
    return out


def _parse_engines(engines: str | Sequence[str]) -> tuple[str, ...]:
    """The engine names of ``--engines``: any of the registry, those for checks only too."""
    names = tuple(engines.split(",")) if isinstance(engines, str) else tuple(engines)
    names = tuple(n.strip() for n in names)
    known = sorted(ENGINES)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"--engines: unknown engine(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(known)})"
        )
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"--engines needs two or more different engines, got {','.join(names)!r}")
    return names


def _run(name: str, job: Job, flats: list[int]) -> EngineRun:
    """Prepare engine *name* and run each chosen point as its own one-point unit."""
    engine = get_engine(name, checks=True)
    try:
        engine.prepare(job)
    except EngineError as e:
        log.warning("%s: cannot run here: %s", name, e)
        return EngineRun(name, error=str(e))
    log.info("%s: running %d points", name, len(flats))
    n = len(flats)
    run = EngineRun(name, None, np.full((n, 3), np.nan), np.full((n, 3), np.nan))
    run.status = np.zeros(n, dtype=np.int8)
    run.status_modified = np.zeros(n, dtype=np.int8)
    try:
        for i, flat in enumerate(flats):
            res = engine.run_unit(job.grid.point_unit(flat))
            run.results[i] = res.results[0]
            run.results_modified[i] = res.results_modified[0]
            run.status[i] = res.status[0]
            run.status_modified[i] = res.status_modified[0]
    finally:
        engine.close()
    return run


class _Collect(logging.Handler):
    """Keeps the records of a child process, to log them again in the parent."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, self.format(record)))


def _run_child(
    name: str, cfg: Config, flats: list[int]
) -> tuple[EngineRun, list[tuple[str, int, str]]]:
    """In a fresh process: build the job, run engine *name*, return its run and log records."""
    from xrmod.job import job_from_config

    collect = _Collect()
    root = logging.getLogger("xrmod")
    root.addHandler(collect)
    root.setLevel(logging.INFO)
    return _run(name, job_from_config(cfg), flats), collect.records


def _run_in_process(name: str, cfg: Config, flats: list[int]) -> EngineRun:
    """Run engine *name* in a process of its own (``spawn``: nothing inherited).

    XSPEC is one session per process with process-wide state, and two XSPEC
    builds (the model library of the native engine, HEASoft's under PyXSPEC)
    cannot share a process: every engine of the check gets a fresh one.
    What the engine logs there is logged again here.
    """
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        run, records = pool.submit(_run_child, name, cfg, flats).result()
    for logger, level, message in records:
        logging.getLogger(logger).log(level, "%s", message)
    return run


def check_engines(
    config: str | os.PathLike | None,
    *,
    engines: str | Sequence[str] = DEFAULT_ENGINES,
    points: int = DEFAULT_POINTS,
    tolerance: float = DEFAULT_TOLERANCE,
) -> CheckReport:
    """Run a few points of *config* through *engines* on Asimov spectra and compare.

    Parameters
    ----------
    config : path-like or None
        TOML configuration (None: the embedded default). Its ``library.noise``
        and ``library.realizations`` are replaced by ``"asimov"`` and 1.
    engines : sequence of str or str
        Two or more engine names (``"native,xspec"`` also accepted); the first
        that runs is the baseline. Engines for checks only (``reference``, the
        NumPy oracle: :data:`xrmod.engines.ENGINES`) may be named here.
    points : int
        How many grid points (:func:`choose_points`).
    tolerance : float
        Largest |difference| / σ that agrees.

    Returns
    -------
    CheckReport
        An engine that cannot run here (:class:`~xrmod.errors.EngineError` at
        prepare, e.g. PyXSPEC missing) is reported as unavailable, not raised.

    Raises
    ------
    xrmod.errors.InputError
        A bad config, engine name, point count or tolerance.
    """
    from xrmod.config import load_config
    from xrmod.job import job_from_config

    names = _parse_engines(engines)
    tolerance = float(tolerance)
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise InputError(f"--tolerance must be a number > 0, got {tolerance!r}")
    cfg = load_config(config)
    library = dataclasses.replace(cfg.library, noise="asimov", realizations=1)
    job = job_from_config(dataclasses.replace(cfg, library=library))
    grid = job.grid
    flats = choose_points(grid, points)
    thetas_index = grid.theta_index(np.asarray(flats, dtype=np.int64))
    params = grid.theta_parameters(thetas_index)
    thetas = [{k: float(v[i]) for k, v in params.items()} for i in range(len(flats))]
    temps = grid.temperatures[grid.temperature_index(np.asarray(flats, dtype=np.int64))]
    runs = {name: _run_in_process(name, job.config, flats) for name in names}
    report = CheckReport(
        config=cfg.source_path,
        engines=names,
        flats=flats,
        thetas=thetas,
        temperatures=[float(t) for t in temps],
        tolerance=tolerance,
        error_delta=float(cfg.fit.error_delta),
        grid_size=grid.size,
        runs=runs,
    )
    base = runs[report.baseline]
    if base.available:
        for name in names:
            if name != base.name and runs[name].available:
                report.deviation[name] = _deviation(base, runs[name], report.error_delta)
    return report
