"""Whole-run throughput on one rank: ``xrmod-gen`` against the engine alone, a baseline and Sherpa.

The grid of issue 13: Gaussian ``mu`` 20 × ``sigma`` 10 × ``amp`` 10 × 10
temperatures = 20,000 points, Poisson noise, the bundled XMM-pn response,
tbabs*zbremss, 50 ks. Measured in one run, each in a process of its own and
interleaved ``--repeat`` times (the machine may be shared; ratios are taken
within a repetition, the median reported):

- **run**: ``xrmod-gen`` of this checkout, serial, as a user starts it: the
  driver's own loop time (points/s over the loop) and the wall time of the
  whole command (start-up, engine set-up, loop, closing the library);
- **engine**: the native engine alone over every unit of the same grid
  (``run_unit`` in a loop, after ``prepare``; no driver, no writing): the
  floor the run is compared with (target: run ≥ 85 % of its points/s);
- **baseline** (``--baseline-python``): ``xrmod-gen`` of another
  installation, e.g. today's main built into its own venv::

      git worktree add /tmp/xrmod-base <rev>
      python -m venv /tmp/base && /tmp/base/bin/pip install /tmp/xrmod-base
      python bench/throughput.py --baseline-python /tmp/base/bin/python

- **Sherpa** (if importable with its XSPEC models): ``--sherpa`` points of the
  same grid (spread over it), each simulated and fitted twice with ``conf``
  bounds, with the cross-check's tight settings and with Sherpa's defaults
  (``tests/sherpa_helpers.py``, as ``bench/engine.py``): per point.

Each library is compared with this checkout's: the baseline's must hold the
same counts, T1 and statuses and T1′ within 1e-8 relative (the documented
tolerance of the linear-axis folds). Not a test: the target (issue 13) is
≤ 0.25 ms per point for the run. For one core set ``OPENBLAS_NUM_THREADS=1``.

Run: ``python bench/throughput.py [--repeat 3] [--sherpa 20] [--baseline-python PY]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CONFIG = """
[library]
output = "{output}"
engine = "native"
seed = 20261127
noise = "poisson"

[instrument]
exposure = 50000.0
band = [0.5, 10.0]

[source]
model = "tbabs*zbremss"
nH = 0.05
redshift = 0.1
abundance = 0.3
norm = 1.0e-3
temperatures = {{ start = 1.0, stop = 8.0, num = 10, spacing = "log" }}

[modifier]
family = "gaussian"

[modifier.axes]
mu = {{ start = 1.0, stop = 8.0, num = 20 }}
sigma = {{ start = 0.2, stop = 2.0, num = 10 }}
amp = {{ start = -0.2, stop = 0.2, num = 10 }}
"""

_LOOP = re.compile(r"(\d+) points in ([\d.]+) s \(([\d.]+) points/s\)")


def run_gen(python: str, config: Path, output: Path) -> dict[str, float]:
    """``xrmod-gen CONFIG -o OUTPUT`` with *python*: loop and wall seconds, points."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    output.unlink(missing_ok=True)
    cmd = [python, "-c", "import sys; from xrmod.cli import gen_main; sys.exit(gen_main())"]
    start = time.perf_counter()
    proc = subprocess.run(
        [*cmd, str(config), "-o", str(output), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{python}: xrmod-gen failed ({proc.returncode}):\n{proc.stderr}")
    found = _LOOP.search(proc.stderr)
    if found is None:
        raise SystemExit(f"no loop timing in the output of {python}:\n{proc.stderr}")
    return {"points": int(found[1]), "loop": float(found[2]), "wall": wall}


def run_engine(config: Path) -> dict[str, float]:
    """The native engine alone over every unit of the grid (this process)."""
    from xrmod.engines.native import NativeEngine
    from xrmod.job import load_job

    job = load_job(config)
    engine = NativeEngine()
    engine.prepare(job)
    units = [job.grid.unit(k) for k in range(job.grid.n_units())]
    start = time.perf_counter()
    for unit in units:
        engine.run_unit(unit)
    return {"points": job.grid.size, "loop": time.perf_counter() - start}


def run_sherpa(config: Path, n: int, precise: bool) -> float | None:
    """Seconds per point for Sherpa doing a point's work, on *n* points of the grid."""
    try:
        from sherpa_helpers import SherpaPeer, import_sherpa_xspec

        import_sherpa_xspec()
    except Exception:
        return None
    from xrmod.job import load_job

    job = load_job(config)
    grid = job.grid
    peer = SherpaPeer(job, precise=precise, cache="absorber")
    points = np.unique(np.linspace(0, grid.size - 1, n).astype(int))
    start = time.perf_counter()
    for flat in points:
        theta = int(flat) // grid.points_per_theta
        kt = float(grid.temperatures[int(flat) % grid.temperatures.size])
        arf_mod = peer.theta_arf(theta)
        data, bkg = peer.spectra(peer.expected_counts(arf_mod, kt), int(flat))
        peer.fit(data, peer.arf, background=bkg)
        peer.fit(data, arf_mod, background=bkg)
    return (time.perf_counter() - start) / points.size


def compare(ours: Path, theirs: Path) -> str:
    """How the baseline's library differs from this checkout's."""
    import h5py

    with h5py.File(ours, "r") as a, h5py.File(theirs, "r") as b:
        la, lb = a["LIBRARY"], b["LIBRARY"]
        same = [k for k in la if np.array_equal(la[k][()], lb[k][()], equal_nan=True)]
        x, y = la["results_modified"][()], lb["results_modified"][()]
        ok = np.isfinite(x) & np.isfinite(y)
        rel = float(np.max(np.abs(x[ok] - y[ok]) / np.abs(y[ok]))) if ok.any() else 0.0
        nan_same = bool(np.array_equal(np.isnan(x), np.isnan(y)))
    exact = {"counts", "results", "status", "status_modified"}
    verdict = "OK" if exact <= set(same) and rel <= 1e-8 and nan_same else "DIFFERENT"
    return f"{verdict}: identical {', '.join(sorted(same))}; results_modified max rel {rel:.1e}"


def _median(values: list[float]) -> str:
    med = statistics.median(values)
    spread = f" (range {min(values):.3g}-{max(values):.3g})" if len(values) > 1 else ""
    return f"{med:.3g}{spread}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--baseline-python", help="a Python with another xrmod installed")
    parser.add_argument("--sherpa", type=int, default=20, help="Sherpa points (0: none)")
    parser.add_argument("--keep", help="directory for the libraries (default: a temporary one)")
    args = parser.parse_args(argv)

    work = Path(args.keep or tempfile.mkdtemp(prefix="xrmod-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "grid.toml"
    config.write_text(CONFIG.format(output=work / "library.h5"))
    python = sys.executable
    rows: dict[str, list[float]] = {
        k: [] for k in ("run_ms", "wall_ms", "engine_ms", "base_ms", "base_wall_ms", "vs_engine")
    }
    rows |= {"vs_base": [], "vs_base_wall": []}
    for rep in range(args.repeat):
        ours = run_gen(python, config, work / "ours.h5")
        engine = subprocess.run(
            [python, __file__, "--engine-only", str(config)],
            capture_output=True,
            text=True,
            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
            check=True,
        )
        engine_s = float(engine.stdout.split()[-1])
        n = ours["points"]
        rows["run_ms"].append(1e3 * ours["loop"] / n)
        rows["wall_ms"].append(1e3 * ours["wall"] / n)
        rows["engine_ms"].append(1e3 * engine_s / n)
        rows["vs_engine"].append(engine_s / ours["loop"])
        if args.baseline_python:
            base = run_gen(args.baseline_python, config, work / "baseline.h5")
            rows["base_ms"].append(1e3 * base["loop"] / n)
            rows["base_wall_ms"].append(1e3 * base["wall"] / n)
            rows["vs_base"].append(base["loop"] / ours["loop"])
            rows["vs_base_wall"].append(base["wall"] / ours["wall"])
        print(f"repetition {rep + 1}/{args.repeat} done (load {os.getloadavg()[0]:.2f})")
    sherpa = {
        name: run_sherpa(config, args.sherpa, precise) if args.sherpa else None
        for name, precise in (("tight", True), ("defaults", False))
    }
    n = 20_000
    print(f"\nxrmod whole-run throughput, one rank: {n} points (20 mu x 10 sigma x 10 amp x 10 T)")
    print(f"  xrmod-gen loop        {_median(rows['run_ms'])} ms/point")
    print(f"  xrmod-gen wall        {_median(rows['wall_ms'])} ms/point (start-up included)")
    print(f"  engine alone          {_median(rows['engine_ms'])} ms/point")
    print(f"  run / engine points/s {_median(rows['vs_engine'])} (target >= 0.85)")
    if rows["base_ms"]:
        print(f"  baseline loop         {_median(rows['base_ms'])} ms/point")
        print(f"  baseline wall         {_median(rows['base_wall_ms'])} ms/point")
        print(f"  speed-up, loop        {_median(rows['vs_base'])} x")
        print(f"  speed-up, wall        {_median(rows['vs_base_wall'])} x")
        print(f"  libraries             {compare(work / 'ours.h5', work / 'baseline.h5')}")
    for name, per_point in sherpa.items():
        if per_point is None:
            print(f"  Sherpa, {name:<9}     not available")
            continue
        ratio = per_point / (1e-3 * statistics.median(rows["run_ms"]))
        print(f"  Sherpa, {name:<9}     {1e3 * per_point:.1f} ms/point ({ratio:.0f} x the run)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--engine-only":
        print(run_engine(Path(sys.argv[2]))["loop"])
    else:
        main()
