"""Profile the native engine: time per grid point, where it goes, and its accuracy.

Speed (default): the default job (bundled XMM-pn response, band 0.5–10 keV,
tbabs*zbremss, Poisson noise, 50 ks) on a Gaussian grid of ``--mu × 2 σ × 3
amp`` distortions and ``--temps`` temperatures (default 30 θ × 10 = 300
points). Prints ``prepare`` apart, then per point (best of ``--repeat``
passes over all units, wall and CPU time of this process): the per-θ phases
(ARF modification, the one sparse × dense fold of the exact spectra, the
correction tables) divided by the temperatures of a θ, and the per-point
phases (Poisson draw, both fits with their bounds). The reference engine
runs ``--reference`` points of the same grid in the same process for the
ratio. ``--cprofile`` adds a cProfile listing of one pass.

Accuracy (``--accuracy``): Asimov and Poisson spectra at temperatures
0.5–20 keV for several distortions (Gaussian narrow and wide, linear tilt,
edge), both engines; prints the largest |native − reference| / σ of kT_lo,
kT and kT_hi (σ = half the reference's bound interval) for the original-ARF
and the modified-ARF fits, over all points and over those whose fits and
bounds (± σ) stay away from zbremss's jumps in kT (13.58 and 54.32 keV: the
statistic jumps there and may have two minima or cross C_min + Δ twice, and
the engines may pick different ones), and, for every point beyond 1 % of σ,
the exact statistic (direct evaluation) at both engines' kT: negative where
the native minimum is the lower one, ~10⁻³ where the reference's minimiser
stopped on one of the float32 model's tiny steps in kT.

Run: ``python bench/profile_native.py [--temps 10] [--reference 4] [--accuracy]``.
For a single core, set ``OPENBLAS_NUM_THREADS=1`` (the engine itself uses no
threads).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import time

import numpy as np

logger = logging.getLogger("bench.profile_native")

CONFIG = """
[library]
noise = "{noise}"
seed = 20261127
[instrument]
exposure = 50000.0
band = [0.5, 10.0]
[source]
model = "tbabs*zbremss"
nH = 0.05
redshift = 0.1
norm = 1.0e-3
temperatures = {temps}
[modifier]
family = "{family}"
[modifier.axes]
{axes}
[fit]
error_delta = 1.0
kt_limits = [0.05, 64.0]
"""


def make_job(temps, axes: dict, *, family: str = "gaussian", noise: str = "poisson"):
    """A Job on the bundled response (as ``load_job`` builds one from a file)."""
    from xrmod.config import parse_config
    from xrmod.job import job_from_config

    text = CONFIG.format(
        noise=noise,
        temps=[float(t) for t in temps],
        family=family,
        axes="\n".join(f"{k} = {list(map(float, v))}" for k, v in axes.items()),
    )
    return job_from_config(parse_config(text, source="<bench>"))


def _pass(engine, units) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for unit in units:
        engine.run_unit(unit)
    return time.perf_counter() - wall, time.process_time() - cpu


def speed(args: argparse.Namespace) -> None:
    from xrmod.engines.native import NativeEngine
    from xrmod.engines.reference import ReferenceEngine
    from xrmod.grid import WorkUnit

    temps = np.geomspace(1.0, 8.0, args.temps)
    axes = {"mu": np.linspace(1.0, 8.0, args.mu), "sigma": [0.3, 1.0], "amp": [-0.1, 0.0, 0.1]}
    job = make_job(temps, axes)
    grid = job.grid
    units = [grid.unit(k) for k in range(grid.n_units())]
    n = grid.size

    engine = NativeEngine()
    wall, cpu = time.perf_counter(), time.process_time()
    engine.prepare(job)
    prep_wall, prep_cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"grid: {grid.n_theta} θ × {grid.points_per_theta} temperatures = {n} points")
    print(
        f"native prepare: {prep_wall:.3f} s wall, {prep_cpu:.3f} s CPU "
        f"({engine._base.knots.size} table knots × {engine._n_channel} channels, "
        f"{engine._nodes.kt.size} exact folds per θ)"
    )
    best = None
    for _ in range(args.repeat):
        engine._cache = engine._linear_cache = None
        for key in engine.timers:
            if key != "prepare":
                engine.timers[key] = 0.0
        wall, cpu = _pass(engine, units)
        if best is None or cpu < best[1]:
            best = (wall, cpu, dict(engine.timers))
    wall, cpu, timers = best
    native_wall, native_cpu = wall / n, cpu / n
    per = 1e3 / n
    print(f"native per point: {wall * per:.3f} ms wall, {cpu * per:.3f} ms CPU", end="")
    print(f" (best of {args.repeat} passes)")
    phases = ("arf", "fold", "correction", "simulate", "fit")
    accounted = sum(timers[k] for k in phases)
    for key in phases:
        if key == "simulate" and not timers[key]:  # the compiled loop draws inside "fit"
            continue
        label = "draw + fit" if key == "fit" and not timers["simulate"] else key
        print(
            f"  {label:<11} {timers[key] * per:7.3f} ms/point  ({100 * timers[key] / wall:4.1f} %)"
        )
    print(f"  {'other':<11} {(wall - accounted) * per:7.3f} ms/point")

    if args.cprofile:
        engine._cache = engine._linear_cache = None
        prof = cProfile.Profile()
        prof.enable()
        _pass(engine, units)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)

    if args.reference > 0:
        ref = ReferenceEngine()
        ref.prepare(job)
        step = max(n // args.reference, 1)
        flats = list(range(0, n, step))[: args.reference]
        wall, cpu = time.perf_counter(), time.process_time()
        for flat in flats:
            ref.run_unit(WorkUnit(flat // grid.points_per_theta, flat, flat + 1))
        ref_wall = (time.perf_counter() - wall) / len(flats)
        ref_cpu = (time.process_time() - cpu) / len(flats)
        print(
            f"reference per point: {ref_wall * 1e3:.1f} ms wall, {ref_cpu * 1e3:.1f} ms CPU "
            f"({len(flats)} points); reference / native: {ref_wall / native_wall:.0f}× wall, "
            f"{ref_cpu / native_cpu:.0f}× CPU"
        )


# --------------------------------------------------------------------------- accuracy

ACCURACY_TEMPS = [0.5, 0.7, 1.0, 1.5, 2.2, 3.3, 5.0, 7.5, 11.0, 16.0, 20.0]
ACCURACY_CASES = [
    ("gaussian", {"mu": [1.0, 4.0], "sigma": [0.3], "amp": [-0.2, 0.2]}),
    ("gaussian", {"mu": [0.7, 6.0], "sigma": [1.5], "amp": [0.2]}),
    ("linear", {"slope": [-0.04, 0.05], "pivot": [3.0]}),
    ("edge", {"energy": [2.0], "depth": [-0.2], "width": [0.05]}),
]


def accuracy(args: argparse.Namespace) -> None:
    from xrmod.engines.native import NativeEngine
    from xrmod.engines.reference import ReferenceEngine, _Fitter
    from xrmod.models import KT_JUMPS

    jumps = np.asarray(KT_JUMPS["zbremss"])
    for noise in ("asimov", "poisson"):
        diffs, near_jump, notes = {"results": [], "results_modified": []}, {}, []
        for family, axes in ACCURACY_CASES:
            job = make_job(ACCURACY_TEMPS, axes, family=family, noise=noise)
            native, ref = NativeEngine(), ReferenceEngine()
            native.prepare(job)
            ref.prepare(job)
            for k in range(job.grid.n_units()):
                unit = job.grid.unit(k)
                a, b = native.run_unit(unit), ref.run_unit(unit)
                assert np.array_equal(a.status, b.status), (a.status, b.status)
                assert np.array_equal(a.status_modified, b.status_modified)
                assert np.array_equal(a.extras["counts"], b.extras["counts"])
                params = dict(job.grid.theta_parameters(np.array([unit.theta])))
                mod = job.family.apply(ref.inputs.energies, ref.inputs.arf, params).values[
                    0, ref.inputs.rows
                ]
                for name in diffs:
                    ra, rb = getattr(a, name), getattr(b, name)
                    sigma = 0.5 * (rb[:, 2] - rb[:, 0])  # NaN with a NaN bound (−4, −6)
                    d = (ra - rb) / sigma[:, None]
                    diffs[name].append(d)
                    lo = np.fmin(np.nanmin(ra, axis=1), np.nanmin(rb, axis=1)) - sigma
                    hi = np.fmax(np.nanmax(ra, axis=1), np.nanmax(rb, axis=1)) + sigma
                    near = ((jumps >= lo[:, None]) & (jumps <= hi[:, None])).any(axis=1)
                    near_jump.setdefault(name, []).append(near)
                    for i in np.flatnonzero(np.nan_to_num(np.abs(d)).max(axis=1) > 0.01):
                        kt = ACCURACY_TEMPS[i]
                        counts = ref.inputs.simulate(
                            ref.inputs.norm * ref.fold(mod, kt), unit.start + i
                        )[0]
                        arf = mod if name == "results_modified" else ref.inputs.arf[ref.inputs.rows]
                        fit = _Fitter(ref.fold, arf, ref._log_limits, ref.inputs.error_delta)
                        c_a = fit.statistic(counts, np.log(ra[i, 1]))[0]
                        c_b = fit.statistic(counts, np.log(rb[i, 1]))[0]
                        notes.append(
                            f"    {family} { ({p: float(v[0]) for p, v in params.items()}) } "
                            f"T={kt:g} {name}: (lo, kT, hi) {np.round(d[i], 4)}; exact C at "
                            f"native kT − at reference kT = {c_a - c_b:+.4f}"
                        )
        print(f"{noise}:")
        for name, rows in diffs.items():
            d = np.abs(np.concatenate(rows))
            near = np.concatenate(near_jump[name])
            ok = np.isfinite(d).all(axis=1)
            for label, sel in (("all", ok), ("away from jumps", ok & ~near)):
                e = d[sel]
                print(
                    f"  {name:<17} {label:<15} {e.shape[0]:3d} points: max |Δ|/σ lo "
                    f"{e[:, 0].max():.4f} kT {e[:, 1].max():.4f} hi {e[:, 2].max():.4f}; "
                    f"median kT {np.median(e[:, 1]):.1e}; beyond 1 %: kT "
                    f"{(e[:, 1] > 0.01).sum()}, bounds {(e[:, [0, 2]] > 0.01).any(axis=1).sum()}"
                )
        print("  points beyond 1 % of σ:")
        print("\n".join(notes) if notes else "    none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temps", type=int, default=10, help="temperatures per θ (1-8 keV)")
    parser.add_argument("--mu", type=int, default=5, help="Gaussian centres (× 2 σ × 3 amp)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the grid")
    parser.add_argument("--reference", type=int, default=4, help="reference-engine points")
    parser.add_argument("--cprofile", action="store_true", help="cProfile one pass")
    parser.add_argument("--accuracy", action="store_true", help="compare with the reference")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        logger.warning("OPENBLAS_NUM_THREADS is not 1: BLAS threads may distort the timings")
    if args.accuracy:
        accuracy(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
