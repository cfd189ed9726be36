"""Benchmark: the native engine against Sherpa per grid point, same points, same run.

The default job's setup (bundled XMM-pn response, tbabs*zbremss, Poisson
noise, 50 ks): the first ⌈N / NT⌉ work units spread evenly over its grid.
For every point each contender does the same work: simulate the counts
(μ for A′ = φθ(A), a Poisson draw seeded by ``SeedSequence((seed, flat))`` as
the engine's), fit them with the original ARF and with A′ (free kT and norm,
C-stat) and find both kT bounds at Δstat = error_delta.

- native: ``prepare`` (timed apart), then ``run_unit`` over the units, best
  of ``--repeat`` passes (the whole set takes milliseconds).
- reference: ``xrmod.engines.reference.ReferenceEngine`` (NumPy/SciPy, the
  native engine's oracle), on a few points for context, if present.
- Sherpa, tight: the cross-check's settings (LevMar with 1e-12 tolerances + a
  NelderMead polish, ``conf`` with eps = 1e-4): accuracy comparable to the
  native engine's.
- Sherpa, defaults: LevMar and ``conf`` as shipped (bounds good to ~1e-3 of
  kT): what a Sherpa user runs.

Sherpa's model cache (its last five evaluations per component): by default
kept for the absorber only, whose nH is frozen, so tbabs is evaluated once per
fit, as the native engine's cached transmission; zbremss is recomputed at every
evaluation, with no free repeats (``--sherpa-cache none`` turns both off,
``all`` keeps Sherpa's default). Each contender runs in its own
process, one after the other, so its peak memory (``ru_maxrss``) is its own;
"base" is the process after its imports, before any work. Sherpa's counts
come from its own folding of its own model evaluation, drawn with the
engine's seeds; the check line says how many draws matched the engine's
exactly and how far the fits are apart.

With ``--background`` the job gets a background spectrum (a smooth synthetic
one on the bundled RMF, 0.2-1.7 counts per channel, 40 ks, BACKSCAL 5): the
engines draw source + scaled background and a new background, and fit with the
W-statistic; Sherpa fits the same counts with ``WStat``.

With ``--xspec`` the xspec engine (PyXSPEC: run in HEASoft's environment) does
the same points too, in a process of its own, one pass; its Poisson draws come
from XSPEC's generator, so only its time is compared (``xrmod check-engines``
compares the numbers on Asimov spectra). ``--no-sherpa`` leaves Sherpa out
(HEASoft's Python may have none).

Run: ``python bench/engine.py [--n 30] [--reference 6] [--sherpa-cache absorber]
[--background] [--xspec] [--no-sherpa]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# The Sherpa side is shared with tests/test_sherpa.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _job(background: str | None = None):
    """The embedded default job, with *background* (a PHA path) if given."""
    from xrmod.config import default_config_text, parse_config
    from xrmod.job import job_from_config

    text = default_config_text()
    if background:
        text = text.replace('background = ""', f'background = "{background}"')
        assert background in text, "the default config has no background key to set"
    return job_from_config(parse_config(text, source="<default>"))


def _points(units: list[tuple[int, int, int]]) -> list[int]:
    return [flat for _, start, stop in units for flat in range(start, stop)]


def run_engine(
    kind: str, units: list[tuple[int, int, int]], repeat: int = 1, background: str | None = None
) -> dict[str, Any] | None:
    """One engine over *units* ([theta, start, stop)), best of *repeat* passes.

    None when the engine is not available. Every pass computes the same
    numbers (the draws are seeded per point); "first" is the first pass's time.
    """
    from xrmod.grid import WorkUnit

    if kind == "xspec" and importlib.util.find_spec("xspec") is None:
        return None  # no PyXSPEC: not in HEASoft's environment
    if kind == "reference":
        try:
            from xrmod.engines.reference import ReferenceEngine
        except ImportError:
            return None
        engine = ReferenceEngine()
    else:
        from xrmod.engines import get_engine

        engine = get_engine(kind)
    job = _job(background)
    base = _rss_mb()
    t0 = time.perf_counter()
    engine.prepare(job)
    t1 = time.perf_counter()
    out = [engine.run_unit(WorkUnit(*u)) for u in units]
    passes = [time.perf_counter() - t1]
    for _ in range(repeat - 1):
        t = time.perf_counter()
        for u in units:
            engine.run_unit(WorkUnit(*u))
        passes.append(time.perf_counter() - t)
    return {
        "setup": t1 - t0,
        "run": min(passes),
        "first": passes[0],
        "points": _points(units),
        "base": base,
        "peak": _rss_mb(),
        "results": np.concatenate([r.results for r in out]),
        "results_modified": np.concatenate([r.results_modified for r in out]),
        "counts": np.concatenate([r.extras["counts"] for r in out]),
        "status": np.concatenate([r.status for r in out]),
        "status_modified": np.concatenate([r.status_modified for r in out]),
    }


def run_sherpa(
    precise: bool, cache: str, units: list[tuple[int, int, int]], background: str | None = None
) -> dict[str, Any]:
    """Sherpa doing each point's work: simulate, fit with A and A′, conf on kT for both."""
    from sherpa_helpers import SherpaPeer, import_sherpa_xspec

    import_sherpa_xspec()
    job = _job(background)
    grid = job.grid
    base = _rss_mb()
    t0 = time.perf_counter()
    peer = SherpaPeer(job, precise=precise, cache=cache)
    t1 = time.perf_counter()
    points = _points(units)
    results = np.full((len(points), 3), np.nan)
    results_mod = np.full((len(points), 3), np.nan)
    counts = np.zeros(len(points))
    for i, flat in enumerate(points):
        theta = flat // grid.points_per_theta
        kt = float(grid.temperatures[flat % grid.temperatures.size])
        arf_mod = peer.theta_arf(theta)
        data, bkg = peer.spectra(peer.expected_counts(arf_mod, kt), flat)
        counts[i] = data[peer.band].sum()
        results[i] = peer.fit(data, peer.arf, background=bkg).bounds
        results_mod[i] = peer.fit(data, arf_mod, background=bkg).bounds
    t2 = time.perf_counter()
    return {
        "setup": t1 - t0,
        "run": t2 - t1,
        "points": points,
        "base": base,
        "peak": _rss_mb(),
        "results": results,
        "results_modified": results_mod,
        "counts": counts,
    }


def _in_child(func, *args):
    """Run func(*args) in a fresh process (spawned: nothing inherited but the arguments)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(func, *args).result()


def _agreement(native: dict[str, Any], other: dict[str, Any]) -> str:
    """Max |ΔkT| / kT and max bound difference / half-width over the shared points, both fits."""
    idx = {flat: i for i, flat in enumerate(native["points"])}
    rows = [idx[p] for p in other["points"]]
    worst_kt = worst_bound = 0.0
    for key in ("results", "results_modified"):
        a, b = native[key][rows], other[key]
        ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
        a, b = a[ok], b[ok]
        if not len(a):
            continue
        worst_kt = max(worst_kt, float(np.max(np.abs(a[:, 1] - b[:, 1]) / b[:, 1])))
        half = np.stack([b[:, 1] - b[:, 0], b[:, 2] - b[:, 1]], axis=1)
        worst_bound = max(worst_bound, float(np.max(np.abs(a[:, [0, 2]] - b[:, [0, 2]]) / half)))
    same = int(np.sum(native["counts"][rows] == other["counts"]))
    return (
        f"max |dkT|/kT {worst_kt:.1e}, max |d bound|/half-width {worst_bound:.1e}, "
        f"counts identical {same}/{len(rows)}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="grid points (default 30)")
    parser.add_argument("--reference", type=int, default=6, help="points for the reference engine")
    parser.add_argument("--repeat", type=int, default=5, help="native passes (best is kept)")
    parser.add_argument(
        "--sherpa-cache",
        choices=("absorber", "none", "all"),
        default="absorber",
        help="which Sherpa model components keep their cache (default: the frozen absorber)",
    )
    parser.add_argument("--no-sherpa-defaults", action="store_true", help="skip Sherpa defaults")
    parser.add_argument("--no-sherpa", action="store_true", help="skip Sherpa altogether")
    parser.add_argument(
        "--xspec", action="store_true", help="the xspec engine too (needs PyXSPEC/HEASoft)"
    )
    parser.add_argument(
        "--background", action="store_true", help="add a background (W-statistic fits)"
    )
    args = parser.parse_args(argv)

    background = None
    if args.background:
        import tempfile

        from background_helpers import write_background

        from xrmod.config import load_config
        from xrmod.responses import read_rmf

        background = os.path.join(tempfile.mkdtemp(prefix="xrmod-bench-"), "bkg.pha")
        write_background(background, read_rmf(load_config(None).instrument.rmf))
    job = _job(background)
    grid = job.grid
    per_unit = grid.points_per_theta
    n_units = min(grid.n_units(), max(1, math.ceil(args.n / per_unit)))
    chosen = np.unique(np.round(np.linspace(0, grid.n_units() - 1, n_units)).astype(int))
    units = [tuple(int(v) for v in grid.units()[k]) for k in chosen]
    ref_units = [(t, s, min(e, s + args.reference)) for t, s, e in units[:1]]
    load = os.getloadavg()[0]

    phases: list[tuple[str, dict[str, Any] | None]] = []
    native = _in_child(run_engine, "native", units, args.repeat, background)
    phases.append(("native", native))
    if args.reference > 0:
        ref = _in_child(run_engine, "reference", ref_units, 1, background)
        phases.append(("reference (NumPy)", ref))
    if args.xspec:
        phases.append(("xspec (PyXSPEC)", _in_child(run_engine, "xspec", units, 1, background)))
    if not args.no_sherpa:
        tight = _in_child(run_sherpa, True, args.sherpa_cache, units, background)
        phases.append(("Sherpa, tight", tight))
    if not (args.no_sherpa or args.no_sherpa_defaults):
        defaults = _in_child(run_sherpa, False, args.sherpa_cache, units, background)
        phases.append(("Sherpa, defaults", defaults))

    native_ms = 1e3 * native["run"] / len(native["points"])
    print(
        f"xrmod engine benchmark: default job (bundled XMM-pn, {job.config.source.model}, "
        f"{job.config.library.noise}{', background: W-stat' if background else ''}), "
        f"{len(native['points'])} points in {len(units)} units "
        f"of {per_unit}; Sherpa cache: {args.sherpa_cache}; "
        f"load avg {load:.2f} on {os.cpu_count()} CPUs"
    )
    header = (
        f"{'contender':<19}{'points':>7}{'setup s':>9}{'ms/point':>10}{'points/s':>10}"
        f"{'x native':>10}{'base MB':>9}{'peak MB':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, r in phases:
        if r is None:
            print(f"{label:<19}  (not available)")
            continue
        ms = 1e3 * r["run"] / len(r["points"])
        print(
            f"{label:<19}{len(r['points']):>7}{r['setup']:>9.2f}{ms:>10.1f}"
            f"{1e3 / ms:>10.2f}{ms / native_ms:>10.1f}{r['base']:>9.0f}{r['peak']:>9.0f}"
        )
    bad = int(np.sum((native["status"] != 1) | (native["status_modified"] != 1)))  # either fit
    first_ms = 1e3 * native["first"] / len(native["points"])
    print(
        f"native: best of {args.repeat} passes; first pass {first_ms:.1f} ms/point; "
        f"status != ok: {bad}/{len(native['status'])}"
    )
    for label, r in phases[1:]:
        if r is not None and not label.startswith("xspec"):
            print(f"native vs {label}: {_agreement(native, r)}")


if __name__ == "__main__":
    main()
