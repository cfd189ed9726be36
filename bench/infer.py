"""Benchmark: ``xrmod infer`` on a four-axis library and 50 observations, with its peers.

Builds (or takes ``--library``) an Asimov gaussian library with the native
engine — mu × sigma × amp × kT_true, the emulator's four axes — and 50
observations of sources seen through a distortion θ off the grid (one
Poisson library of that single θ: the fitted T1 and its bounds), then times,
in the same run:

* the whole inference (emcee posterior, dynesty evidence for the family and
  for the no-distortion baseline), and the truth's place in the intervals;
* one likelihood call (32 walkers × 50 observations) through the spline
  emulator's inference path (``Emulator.bind``), its generic path (every
  point a full 4-D evaluation), and the peers a user of SciPy would reach
  for on the same nodes: ``RegularGridInterpolator(method="cubic")`` and
  ``NdBSpline`` on the same coefficients. The ratios are to the peers.

Run: ``python bench/infer.py [--library LIB] [--repeat 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

from xrmod import driver
from xrmod.analysis.emulator import Emulator
from xrmod.analysis.inference import infer

logger = logging.getLogger("bench.infer")

TRUTH = {"mu": 2.63, "sigma": 0.57, "amp": -0.11}

CONFIG = """\
[library]
output = "{out}"
noise = "{noise}"
seed = {seed}
[instrument]
exposure = {exposure}
[source]
temperatures = {temperatures}
[modifier]
family = "gaussian"
[modifier.axes]
{axes}"""

GRID_AXES = """\
mu = { start = 0.6, stop = 6.0, num = 12 }
sigma = [0.25, 0.45, 0.7, 1.0]
amp = { start = -0.24, stop = 0.24, num = 7 }
"""


def _generate(tmp: Path, name: str, **fields) -> Path:
    out = tmp / f"{name}.h5"
    cfg = tmp / f"{name}.toml"
    cfg.write_text(CONFIG.format(out=out, **fields))
    driver.generate(cfg, progress=False)
    return out


def make_library(tmp: Path) -> tuple[Path, float]:
    t0 = time.perf_counter()
    lib = _generate(
        tmp,
        "library",
        noise="asimov",
        seed=1,
        exposure=50000.0,
        temperatures='{ start = 1.2, stop = 10.0, num = 10, spacing = "log" }',
        axes=GRID_AXES,
    )
    return lib, time.perf_counter() - t0


def make_observations(tmp: Path, n: int = 50) -> Path:
    """n sources at random temperatures, half at 30 ks and half at 100 ks; T_ref to 1 %."""
    rng = np.random.default_rng(7)
    axes = "\n".join(f"{k} = {v}" for k, v in TRUTH.items())
    rows = ["name,T_ref,T_ref_err,T_obs,T_obs_lo,T_obs_hi"]
    for k, exposure in enumerate((30000.0, 100000.0)):
        temps = np.round(np.exp(rng.uniform(np.log(1.5), np.log(9.0), n // 2)), 3)
        lib = _generate(
            tmp,
            f"obs{k}",
            noise="poisson",
            seed=100 + k,
            exposure=exposure,
            temperatures="[" + ", ".join(map(str, temps)) + "]",
            axes=axes,
        )
        import h5py

        with h5py.File(lib, "r") as f:  # the library sorts its temperatures
            r = f["LIBRARY/results"][()].reshape(-1, 3)
            temps = f["LIBRARY/temps"][()]
        for i, (t, (lo, fit, hi)) in enumerate(zip(temps, r, strict=True)):
            err = 0.01 * t
            ref = t + err * rng.standard_normal()
            rows.append(f"s{k}-{i},{ref:.4f},{err:.4f},{fit},{lo},{hi}")
    path = tmp / "observations.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def best_of(func, repeat: int) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def likelihood_calls(lib: Path, obs_path: Path, repeat: int) -> dict[str, float]:
    """Seconds per call: 32 walkers x 50 observations, each path and peer."""
    from scipy.interpolate import NdBSpline, RegularGridInterpolator

    from xrmod.analysis.observations import read_observations

    em = Emulator.from_library(lib)
    obs = read_observations(obs_path)
    rng = np.random.default_rng(0)
    lo = np.array([em.bounds[n][0] for n in em.parameters])
    hi = np.array([em.bounds[n][1] for n in em.parameters])
    theta = lo + rng.uniform(size=(32, 3)) * (hi - lo)
    fast, generic = em.bind(obs.T_ref), Emulator.bind(em, obs.T_ref)
    points = np.empty((32, obs.T_ref.size, 4))
    points[..., :3] = theta[:, None, :]
    points[..., 3] = np.log(obs.T_ref)
    points = points.reshape(-1, 4)
    coords = [a.coordinates for a in em.axes]
    from xrmod.analysis.spline import fill_unknown, known_nodes
    from xrmod.analysis.training import read_training_set

    training = read_training_set(lib)  # failed nodes filled as the spline fills them
    targets = fill_unknown(training.targets["T1"], known_nodes(training, "T1"))
    rgi = RegularGridInterpolator(coords, targets, method="cubic")
    nd = NdBSpline(tuple(em._knots), em._coef[0], 3)
    return {
        "xrmod_bind": best_of(lambda: fast(theta), repeat),
        "xrmod_generic": best_of(lambda: generic(theta), repeat),
        "scipy_rgi_cubic": best_of(lambda: rgi(points), max(1, repeat // 2)),
        "scipy_ndbspline": best_of(lambda: nd(points), repeat),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, help="an existing gaussian library")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.library:
            lib, build_s = args.library, float("nan")
        else:
            lib, build_s = make_library(tmp)
        obs = make_observations(tmp)
        t0 = time.perf_counter()
        result = infer([lib], obs, steps=args.steps, seed=1)
        infer_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast = infer([lib], obs, steps=args.steps, seed=1, evidence=False)
        posterior_s = time.perf_counter() - t0
        calls = likelihood_calls(lib, obs, args.repeat)
    summary = result.best.summary()
    report = {
        "library_build_seconds": build_s,
        "observations": 50,
        "infer_seconds": infer_s,
        "posterior_only_seconds": posterior_s,
        "sampler": {k: v for k, v in result.best.sampler.items() if k != "autocorrelation_time"},
        "evidence": result.best.evidence,
        "truth": TRUTH,
        "truth_in_95": {
            n: summary[n]["ci95"][0] <= v <= summary[n]["ci95"][1] for n, v in TRUTH.items()
        },
        "intervals_95": {n: summary[n]["ci95"] for n in TRUTH},
        "likelihood_call_seconds": calls,
        "ratios": {
            "rgi_cubic_over_bind": calls["scipy_rgi_cubic"] / calls["xrmod_bind"],
            "ndbspline_over_bind": calls["scipy_ndbspline"] / calls["xrmod_bind"],
            "generic_over_bind": calls["xrmod_generic"] / calls["xrmod_bind"],
        },
    }
    del fast
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"library: 12 x 4 x 7 x 10 = 3360 points, built in {build_s:.1f} s")
    print(f"infer (posterior + evidence + baseline): {infer_s:.1f} s; posterior only "
          f"{posterior_s:.1f} s")  # fmt: skip
    for n in TRUTH:
        print(f"  {n}: truth {TRUTH[n]} in 95 % {summary[n]['ci95']}: "
              f"{report['truth_in_95'][n]}")  # fmt: skip
    print("one likelihood call, 32 walkers x 50 observations:")
    for k, v in calls.items():
        print(f"  {k:<18} {v * 1e6:10.1f} us")
    for k, v in report["ratios"].items():
        print(f"  {k:<22} {v:8.1f}x")


if __name__ == "__main__":
    main()
