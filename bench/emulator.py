"""Benchmark: the spline emulator and its kernel against SciPy, same points, same run.

An Asimov library built with the native engine (default: gaussian
mu 12 x sigma 4 x amp 7 x 10 temperatures; ``--library PATH`` takes one
already built) gives a :class:`~xrmod.analysis.spline.SplineEmulator`.
At ``--n`` (default 10^6) random points inside its grid, each timed as the
best of ``--repeat`` runs:

- values: ``SplineEmulator.predict(fits=("T1",))`` (two spline outputs, T1
  and its width, plus the range checks and exp), the raw kernel
  ``xrmod._spline.evaluate`` for one output, SciPy's ``NdBSpline`` on the
  same knots and coefficients (the peer: one output, and two for predict),
  and ``RegularGridInterpolator(method="cubic")`` on the node values (those
  the spline goes through: a node without a usable fit filled as the
  emulator fills it; SciPy builds an NdBSpline with the iterative solver
  gcrotmk; timed on ``--n-rgi`` points and scaled to n, as the table says);
- gradients: ``Emulator.gradient(fit="T1")`` (value and every partial of
  one output, turned into keV per unit), the kernel with its gradient, and
  NdBSpline's value plus one call per axis with ``nu`` = that axis;
- inference: ``Emulator.bind`` at 50 temperatures, one call per 32 θ (µs
  per call), against the generic ``Emulator.bind`` (every point through the
  spline) and NdBSpline at the same 1600 points (T1 and its width, and
  ∂T1/∂log kT).

Then a 5-D case (a synthetic 12 x 4 x 7 x 6 x 10 coefficient array on random
clamped knots, ``--n5`` points): the kernel against NdBSpline only.

Each contender's numbers are checked against NdBSpline's before timing (the
``check`` lines). Ratios are time / peer time: below 1 is faster than SciPy.

Run: ``python bench/emulator.py [--library PATH] [--n 1000000] [--repeat 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.interpolate import NdBSpline, RegularGridInterpolator

from xrmod import _spline
from xrmod.analysis.emulator import QUANTITIES, Emulator
from xrmod.analysis.spline import SplineEmulator, fill_unknown, known_nodes
from xrmod.analysis.training import read_training_set

logger = logging.getLogger("bench.emulator")

CONFIG = """\
[library]
output = "{out}"
engine = "native"
noise = "asimov"
[instrument]
exposure = 20000.0
[source]
temperatures = {{ start = 1.0, stop = 12.0, num = {n_kT}, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = {{ start = 0.5, stop = 9.0, num = {n_mu} }}
sigma = {{ start = 0.2, stop = 2.0, num = {n_sigma} }}
amp = {{ start = -0.3, stop = 0.3, num = {n_amp} }}
"""

#: The synthetic 5-D case: coefficients per axis.
SHAPE_5D = (12, 4, 7, 6, 10)
#: Emulator.bind: temperatures per call and θ per call.
BIND_TEMPERATURES = 50
BIND_THETA = 32


def best_of(func: Callable[[], Any], repeat: int) -> float:
    """Best time of one call (s) over *repeat* runs; calls batched to >= 0.2 s per run.

    The first call is timed too: when it takes 0.2 s or more it is one of
    the runs (at 10^6 points a warm-up call changes nothing but the total).
    """
    start = time.perf_counter()
    func()
    first = time.perf_counter() - start
    if first >= 0.2:
        times = [first]
        for _ in range(repeat - 1):
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
        return min(times)
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def build_library(directory: str, grid: tuple[int, int, int, int]) -> str:
    """An Asimov library of the native engine on the (mu, sigma, amp, kT) *grid*; its path."""
    from xrmod import driver

    out = os.path.join(directory, "bench_emulator.h5")
    cfg = os.path.join(directory, "bench_emulator.toml")
    n_mu, n_sigma, n_amp, n_kT = grid
    with open(cfg, "w") as f:
        f.write(CONFIG.format(out=out, n_mu=n_mu, n_sigma=n_sigma, n_amp=n_amp, n_kT=n_kT))
    start = time.perf_counter()
    quiet = logging.getLogger("xrmod")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the driver's progress lines
    try:
        code = driver.generate(cfg, progress=False)
    finally:
        quiet.setLevel(level)
    if code != 0:
        raise SystemExit("building the library failed")
    logger.info(
        "built %s: %d x %d x %d x %d points in %.1f s",
        out,
        *grid,
        time.perf_counter() - start,
    )
    return out


def random_points(em: Emulator, n: int, rng: np.random.Generator):
    """n points inside the grid: (kT_true, {axis: values}, coordinates (n, D))."""
    values = {a.name: rng.uniform(a.nodes[0], a.nodes[-1], n) for a in em.axes}
    x = np.column_stack([a.to_coordinate(values[a.name]) for a in em.axes])
    theta = {name: values[name] for name in em.parameters}
    return values["kT_true"], theta, np.ascontiguousarray(x)


def kernel_call(knots, coef, x, gradient=False):
    """A closure evaluating the kernel (output arrays allocated once, outside the timing)."""
    flat = np.concatenate(knots)
    start = np.cumsum([0] + [t.size for t in knots]).astype(np.intp)
    c = np.ascontiguousarray(coef.reshape(coef.shape[0], -1))
    value = np.empty((x.shape[0], c.shape[0]))
    grad = np.empty((x.shape[0], c.shape[0], x.shape[1])) if gradient else None

    def run():
        _spline.evaluate(x, flat, start, c, value, grad)
        return value, grad

    return run


def ndb_gradient(spline: NdBSpline, x: np.ndarray) -> np.ndarray:
    """NdBSpline's value and its d partial derivatives: (n, 1 + d), d + 1 calls."""
    d = x.shape[1]
    out = np.empty((x.shape[0], d + 1))
    out[:, 0] = spline(x)
    for a in range(d):
        out[:, 1 + a] = spline(x, nu=np.eye(d, dtype=int)[a])
    return out


def max_relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


class Table:
    """Timed rows: label, seconds for the stated points, the peer's label."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, section, label, seconds, points, *, peer=None, scaled_from=None, unit="s"):
        self.rows.append(
            {
                "section": section,
                "label": label,
                "seconds": seconds,
                "points": points,
                "ns_per_point": seconds / points * 1e9,
                "peer": peer,
                "scaled_from_points": scaled_from,
                "unit": unit,
            }
        )

    def finish(self) -> None:
        """Ratios to each row's peer (time / peer time)."""
        by_label = {(r["section"], r["label"]): r for r in self.rows}
        for r in self.rows:
            peer = by_label.get((r["section"], r["peer"])) if r["peer"] else None
            r["ratio_to_peer"] = r["seconds"] / peer["seconds"] if peer else None

    def log(self) -> None:
        section = None
        notes: list[str] = []
        for r in self.rows:
            if r["section"] != section:
                for note in notes:
                    logger.info("  %s", note)
                notes = []
                section = r["section"]
                logger.info("")
                logger.info("%s", section)
                logger.info("  %-46s %12s %10s %9s  %s", "", "time", "ns/point", "x peer", "peer")
            if r["unit"] == "us/call":
                time_text = f"{r['seconds'] * 1e6:9.1f} us"
            else:
                time_text = f"{r['seconds']:10.3f} s"
            label = r["label"]
            if r["scaled_from_points"]:
                label += " *"
                notes.append(
                    f"* timed on {r['scaled_from_points']:.0e} points, scaled to {r['points']:.0e}"
                )
            ratio = f"{r['ratio_to_peer']:9.3f}" if r["ratio_to_peer"] is not None else ""
            peer = "(peer)" if r["peer"] == r["label"] else (r["peer"] or "")
            logger.info(
                "  %-46s %12s %10.1f %9s  %s", label, time_text, r["ns_per_point"], ratio, peer
            )
        for note in notes:
            logger.info("  %s", note)


def bench_4d(em: SplineEmulator, args, table: Table, checks: dict[str, float]) -> None:
    rng = np.random.default_rng(20261207)
    n = args.n
    kT, theta, x = random_points(em, n, rng)
    knots = em._knots
    coef = em._coef  # (4 quantities, *n_coef)
    t1 = QUANTITIES.index("T1")
    width = QUANTITIES.index("T1_width")
    d = x.shape[1]
    spline1 = NdBSpline(tuple(knots), coef[t1], 3)
    spline2 = NdBSpline(tuple(knots), np.moveaxis(coef[[t1, width]], 0, -1), 3)
    kernel1 = kernel_call(knots, coef[t1 : t1 + 1], x)
    kernel1_grad = kernel_call(knots, coef[t1 : t1 + 1], x, gradient=True)

    # same numbers first
    value, _ = kernel1()
    reference = spline1(x)
    checks["4-D kernel vs NdBSpline, max |diff| in log(T1/kT)"] = float(
        np.abs(value[:, 0] - reference).max()
    )
    prediction = em.predict(kT, fits=("T1",), **theta)
    valid = prediction.T1_valid
    checks["4-D predict T1 vs kT exp(NdBSpline), max relative (valid points)"] = max_relative(
        prediction.T1[valid], kT[valid] * np.exp(reference[valid])
    )
    checks["4-D predict: points not valid (next to a failed node)"] = int((~valid).sum())
    m = min(n, 20000)
    ndb = ndb_gradient(spline1, x[:m])
    grad = em.gradient(kT[:m], fit="T1", **{k: v[:m] for k, v in theta.items()})
    t1_value = kT[:m] * np.exp(ndb[:, 0])
    worst = 0.0
    for j, axis in enumerate(em.axes):
        v = kT[:m] if axis.name == "kT_true" else theta[axis.name][:m]
        if axis.name == "kT_true":
            expected = t1_value / kT[:m] * (1.0 + ndb[:, 1 + j])
        else:
            expected = t1_value * ndb[:, 1 + j] * axis.derivative(v)
        scale = np.abs(expected).max()
        ok = np.isfinite(grad[axis.name])
        worst = max(worst, float(np.abs(grad[axis.name] - expected)[ok].max() / scale))
    checks["4-D Emulator.gradient vs NdBSpline partials, max |diff| / max |partial|"] = worst
    _, g = kernel1_grad()
    checks["4-D kernel gradient vs NdBSpline nu, max |diff|"] = float(
        np.abs(g[:m, 0, :] - ndb[:, 1:]).max()
    )

    training = read_training_set(em.library)
    nodes = fill_unknown(
        training.targets["T1"], known_nodes(training, "T1")
    )  # as the emulator fills them
    start = time.perf_counter()
    rgi = RegularGridInterpolator([a.coordinates for a in em.axes], nodes, method="cubic")
    rgi_build = time.perf_counter() - start
    n_rgi = min(args.n_rgi, n)
    x_rgi = x[:n_rgi]
    checks["4-D RegularGridInterpolator(cubic) vs kernel, max |diff| in log(T1/kT)"] = float(
        np.abs(rgi(x_rgi) - value[:n_rgi, 0]).max()
    )

    grid = " x ".join(str(a.nodes.size) for a in em.axes)
    section = f"4-D values: {n:.0e} points, grid {grid} ({', '.join(em.parameters)}, kT_true)"
    peer1, peer2 = "NdBSpline, 1 output", "NdBSpline, 2 outputs"
    t = best_of(lambda: em.predict(kT, fits=("T1",), **theta), args.repeat)
    table.add(section, 'SplineEmulator.predict(fits=("T1",))', t, n, peer=peer2)
    table.add(section, "kernel, 1 output", best_of(kernel1, args.repeat), n, peer=peer1)
    table.add(section, peer1, best_of(lambda: spline1(x), args.repeat), n, peer=peer1)
    table.add(section, peer2, best_of(lambda: spline2(x), args.repeat), n, peer=peer2)
    t = best_of(lambda: rgi(x_rgi), args.repeat) * n / n_rgi
    label = 'RegularGridInterpolator(method="cubic")'
    table.add(section, label, t, n, peer=peer1, scaled_from=n_rgi if n_rgi < n else None)
    checks["4-D RegularGridInterpolator(cubic) construction, s"] = rgi_build

    section = f"4-D value + {d} partial derivatives: {n:.0e} points"
    peer = f"NdBSpline + {d} calls with nu"
    t = best_of(lambda: em.gradient(kT, fit="T1", **theta), args.repeat)
    table.add(section, 'Emulator.gradient(fit="T1")', t, n, peer=peer)
    table.add(
        section, "kernel with gradient, 1 output", best_of(kernel1_grad, args.repeat), n, peer=peer
    )
    table.add(section, peer, best_of(lambda: ndb_gradient(spline1, x), args.repeat), n, peer=peer)

    bench_bind(em, args, table, checks, spline2, spline1, rng)


def bench_bind(em, args, table, checks, spline2, spline1, rng) -> None:
    lo, hi = em.bounds["kT_true"]
    temperatures = np.geomspace(lo * 1.01, hi * 0.99, BIND_TEMPERATURES)
    theta = np.column_stack(
        [rng.uniform(a.nodes[0], a.nodes[-1], BIND_THETA) for a in em.axes[:-1]]
    )
    fast = em.bind(temperatures)
    generic = Emulator.bind(em, temperatures)
    coords = np.column_stack([a.to_coordinate(theta[:, j]) for j, a in enumerate(em.axes[:-1])])
    x = np.empty((BIND_THETA, BIND_TEMPERATURES, len(em.axes)))
    x[:, :, :-1] = coords[:, None, :]
    x[:, :, -1] = np.log(temperatures)
    x = np.ascontiguousarray(x.reshape(-1, len(em.axes)))
    nu = np.zeros(len(em.axes), dtype=int)
    nu[-1] = 1

    def peer_call():
        return spline2(x), spline1(x, nu=nu)

    bound = fast(theta)
    other = generic(theta)
    values, slope = peer_call()
    r = values[:, 0].reshape(BIND_THETA, BIND_TEMPERATURES)
    expected = temperatures * np.exp(r)
    ok = bound.valid
    checks["bind T1 vs NdBSpline, max relative (valid points)"] = max_relative(
        bound.value[ok], expected[ok]
    )
    checks["bind slope vs NdBSpline, max |diff| (valid points)"] = float(
        np.abs(bound.slope - np.exp(r) * (1.0 + slope.reshape(r.shape)))[ok].max()
    )
    checks["bind vs generic Emulator.bind, max relative (valid points)"] = max_relative(
        bound.value[ok], other.value[ok]
    )
    checks["bind vs generic Emulator.bind: valid flags that differ"] = int(
        (bound.valid != other.valid).sum()
    )
    checks["bind: points not valid"] = int((~bound.valid).sum())

    points = BIND_THETA * BIND_TEMPERATURES
    section = (
        f"inference: Emulator.bind at {BIND_TEMPERATURES} temperatures, "
        f"one call per {BIND_THETA} theta ({points} points); NdBSpline: T1, its width "
        "and dT1/dlog kT at those points"
    )
    peer = "NdBSpline, same points"
    unit = "us/call"
    table.add(
        section,
        "SplineEmulator.bind (fast path)",
        best_of(lambda: fast(theta), args.repeat),
        points,
        peer=peer,
        unit=unit,
    )
    t = best_of(lambda: generic(theta), args.repeat)
    table.add(section, "Emulator.bind (generic, every point)", t, points, peer=peer, unit=unit)
    table.add(section, peer, best_of(peer_call, args.repeat), points, peer=peer, unit=unit)


def bench_5d(args, table: Table, checks: dict[str, float]) -> None:
    rng = np.random.default_rng(5)
    knots = []
    for n_coef in SHAPE_5D:
        gaps = rng.uniform(0.3, 1.7, n_coef - 3)
        interior = np.cumsum(gaps)[:-1] / gaps.sum()
        knots.append(np.r_[[0.0] * 4, interior, [1.0] * 4])
    coef = rng.normal(size=(1, *SHAPE_5D))
    n = args.n5
    x = np.ascontiguousarray(rng.uniform(0.0, 1.0, (n, len(SHAPE_5D))))
    spline = NdBSpline(tuple(knots), coef[0], 3)
    kernel = kernel_call(knots, coef, x)
    kernel_grad = kernel_call(knots, coef, x, gradient=True)
    m = min(n, 20000)
    value, grad = kernel_grad()
    ndb = ndb_gradient(spline, x[:m])
    checks["5-D kernel vs NdBSpline, max |diff|"] = float(np.abs(value[:m, 0] - ndb[:, 0]).max())
    checks["5-D kernel gradient vs NdBSpline nu, max |diff|"] = float(
        np.abs(grad[:m, 0, :] - ndb[:, 1:]).max()
    )
    section = (
        f"5-D synthetic {' x '.join(map(str, SHAPE_5D))} coefficients: {n:.0e} points, 1 output"
    )
    d = len(SHAPE_5D)
    table.add(section, "kernel, values", best_of(kernel, args.repeat), n, peer="NdBSpline, values")
    table.add(
        section,
        "NdBSpline, values",
        best_of(lambda: spline(x), args.repeat),
        n,
        peer="NdBSpline, values",
    )
    peer = f"NdBSpline + {d} calls with nu"
    table.add(section, "kernel with gradient", best_of(kernel_grad, args.repeat), n, peer=peer)
    table.add(section, peer, best_of(lambda: ndb_gradient(spline, x), args.repeat), n, peer=peer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="an Asimov library to use (default: build one)")
    parser.add_argument(
        "--grid",
        default="12,4,7,10",
        help="mu,sigma,amp,temperatures of the library built (default 12,4,7,10)",
    )
    parser.add_argument("--n", type=int, default=10**6, help="points, 4-D (default 10^6)")
    parser.add_argument(
        "--n-rgi",
        type=int,
        default=10**5,
        help="points RegularGridInterpolator is timed on, scaled to --n (default 10^5)",
    )
    parser.add_argument("--n5", type=int, default=10**5, help="points, 5-D case (default 10^5)")
    parser.add_argument("--repeat", type=int, default=5, help="timing repeats (best is kept)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    checks: dict[str, float | int] = {}
    table = Table()
    with tempfile.TemporaryDirectory(prefix="xrmod-bench-") as tmp:
        if args.library:
            path = args.library
        else:
            grid = tuple(int(v) for v in args.grid.split(","))
            if len(grid) != 4:
                parser.error("--grid takes four numbers: mu,sigma,amp,temperatures")
            path = build_library(tmp, grid)
        start = time.perf_counter()
        em = SplineEmulator.from_library(path, accuracy=False)
        build = time.perf_counter() - start
        logger.info("spline emulator of %s built in %.3f s (no accuracy run)", path, build)
        for axis in em.axes:
            logger.info("  %s", axis.describe())
        bench_4d(em, args, table, checks)
    bench_5d(args, table, checks)

    table.finish()
    logger.info("")
    logger.info("checks (same numbers first):")
    for name, value in checks.items():
        logger.info("  %-78s %s", name, value if isinstance(value, int) else f"{value:.3g}")
    table.log()
    if args.json:
        result = {
            "library": args.library or f"built: grid {args.grid} (mu,sigma,amp,kT)",
            "grid": [int(a.nodes.size) for a in em.axes],
            "n": args.n,
            "n_rgi": args.n_rgi,
            "n5": args.n5,
            "repeat": args.repeat,
            "emulator_build_seconds": build,
            "checks": checks,
            "rows": table.rows,
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
