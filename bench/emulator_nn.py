"""Benchmark: the neural emulator against the spline, on the same held-out nodes, same run.

On a library (``LIBRARY``; by default an Asimov library of the native engine,
gaussian mu 6 x sigma 4 x amp 6 x 14 temperatures = 2016 points, built in a
temporary directory), :func:`xrmod.analysis.neural.compare_with_spline`
trains a :class:`~xrmod.analysis.neural.NeuralEmulator` without the held-out
slices (:func:`~xrmod.analysis.neural.held_out_slices`) and rebuilds the
spline without each of them in turn; printed: the RMS and maximum error of
T1 and T1' on those nodes, in units of the library's statistical width, for
both; the training time; the RMS error of the network at its own training
nodes (how well it fits what it saw); then the time of each emulator for
``--n`` (default 10^6) random points inside the grid: the four outputs raw
(``_evaluate``), ``predict(fits=("T1",))`` and ``gradient(fit="T1")``, best
of ``--repeat``.

``--per-axis`` also trains one network per axis with only that axis'
middle interior slice held out, and compares each with the spline on that
slice: which axis the default held-out set takes changes the verdict.

Run: ``python bench/emulator_nn.py [LIBRARY] [--seed 0] [--per-axis] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from xrmod.analysis.emulator import QUANTITIES, Accuracy, Emulator
from xrmod.analysis.neural import compare_with_spline
from xrmod.analysis.spline import interior_slices
from xrmod.analysis.training import TrainingSet, read_training_set

logger = logging.getLogger("bench.emulator_nn")

CONFIG = """\
[library]
output = "{out}"
engine = "native"
noise = "asimov"
[instrument]
exposure = 20000.0
[source]
temperatures = {{ start = 1.0, stop = 15.0, num = 14, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = [0.5, 1.0, 2.0, 3.0, 4.5, 6.0]
sigma = [0.1, 0.3, 0.6, 1.0]
amp = [-0.3, -0.2, -0.1, 0.1, 0.2, 0.3]
"""


def build_library(directory: str) -> str:
    """The default Asimov library (2016 points); its path."""
    from xrmod import driver

    out = os.path.join(directory, "bench_emulator_nn.h5")
    cfg = os.path.join(directory, "bench_emulator_nn.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(out=out))
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
    logger.info("built %s in %.1f s", out, time.perf_counter() - start)
    return out


def best_of(func: Callable[[], Any], repeat: int) -> float:
    """Best time (s) of *repeat* calls, after one untimed call."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def fit_at_nodes(em: Emulator, training: TrainingSet, exclude: list[tuple[int, int]]) -> float:
    """RMS error (sigma) of T1 at the usable nodes not in *exclude*: the fit to what it saw."""
    mesh = np.meshgrid(*[a.nodes for a in training.axes], indexing="ij")
    p = em.predict(**{a.name: m for a, m in zip(training.axes, mesh, strict=True)}, fits=["T1"])
    pull = (p.T1 - training.value("T1")) / training.width("T1")
    mask = np.isfinite(pull)
    for j, k in exclude:
        index: list[Any] = [slice(None)] * pull.ndim
        index[j] = k
        mask[tuple(index)] = False
    return float(np.sqrt(np.mean(pull[mask] ** 2)))


def timings(em: Emulator, n: int, repeat: int, rng: np.random.Generator) -> dict[str, float]:
    """Seconds for n random points: raw outputs, predict(T1), gradient(T1)."""
    values = {a.name: rng.uniform(a.nodes[0], a.nodes[-1], n) for a in em.axes}
    x = np.column_stack([a.to_coordinate(values[a.name]) for a in em.axes])
    return {
        "evaluate_4_outputs": best_of(
            lambda: em._evaluate(x, list(QUANTITIES), gradient=False), repeat
        ),
        "predict_T1": best_of(lambda: em.predict(fits=["T1"], **values), repeat),
        "gradient_T1": best_of(lambda: em.gradient(fit="T1", **values), repeat),
    }


def accuracy_row(acc: Accuracy) -> dict[str, float]:
    return {
        "T1_rms": acc.rms["T1"],
        "T1_max": acc.max["T1"],
        "T1_modified_rms": acc.rms["T1_modified"],
        "T1_modified_max": acc.max["T1_modified"],
        "T1_rms_percent_of_kT": 100 * acc.rms_relative["T1"],
        "nodes": acc.nodes["T1"],
    }


def middle_slices(training: TrainingSet) -> dict[str, int]:
    """Per axis of 3+ values, its interior slice nearest the middle (held_out_slices' first)."""
    by_axis: dict[int, list[int]] = {}
    for j, k in interior_slices(training):
        by_axis.setdefault(j, []).append(k)
    out = {}
    for j, ks in by_axis.items():
        middle = (training.shape[j] - 1) / 2
        out[training.axes[j].name] = min(ks, key=lambda k, m=middle: (abs(k - m), k))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", nargs="?", help="an xrmod library (default: build one)")
    parser.add_argument("--seed", type=int, default=0, help="the network's seed")
    parser.add_argument("--max-epochs", type=int, help="override the training's max_epochs")
    parser.add_argument("--n", type=int, default=1_000_000, help="points timed (default 10^6)")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--per-axis", action="store_true", help="one network per axis' slice")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("xrmod").setLevel(logging.WARNING)
    options: dict[str, Any] = {"seed": args.seed}
    if args.max_epochs:
        options["max_epochs"] = args.max_epochs

    with tempfile.TemporaryDirectory() as tmp:
        path = args.library or build_library(tmp)
        training = read_training_set(path)
        logger.info("library %s: %s = %d nodes", path, training.shape, np.prod(training.shape))
        for axis in training.axes:
            logger.info("  %s", axis.describe())

        start = time.perf_counter()
        spline = Emulator.from_library(path, accuracy=False)
        spline_build = time.perf_counter() - start

        compared = compare_with_spline(training, **options)
        nn = compared["emulator"]
        info = nn.training_info
        result: dict[str, Any] = {
            "library": path,
            "shape": list(training.shape),
            "held_out": {
                "slices": [list(s) for s in compared["slices"]],
                "nodes": compared["nodes"],
                "mlp": accuracy_row(compared["mlp"]),
                "spline": accuracy_row(compared["spline"]),
            },
            "mlp_training": {
                "seconds": info["seconds"],
                "epochs": info["epochs"],
                "best_epoch": info["best_epoch"],
                "nodes_train": info["nodes_train"],
                "nodes_validation": info["nodes_validation"],
                "T1_rms_at_training_nodes": fit_at_nodes(nn, training, nn.held_out),
                "options": info["options"],
            },
            "spline_build_seconds": spline_build,
        }
        logger.info("")
        logger.info(
            "held out: %s (%d nodes; default rule, holdout <= 20 %%)",
            ", ".join(f"{a}[{k}]" for a, k in compared["slices"]),
            compared["nodes"],
        )
        logger.info("  %-7s %24s %24s", "", "T1 RMS / max (sigma)", "T1' RMS / max (sigma)")
        for name in ("mlp", "spline"):
            r = result["held_out"][name]
            logger.info(
                "  %-7s %11.3g / %-11.3g %11.3g / %-11.3g",
                name,
                r["T1_rms"],
                r["T1_max"],
                r["T1_modified_rms"],
                r["T1_modified_max"],
            )
        t = result["mlp_training"]
        logger.info(
            "mlp training: %.1f s, %d epochs (best %d), %d + %d validation nodes; "
            "T1 RMS at its training nodes %.3g sigma",
            t["seconds"],
            t["epochs"],
            t["best_epoch"],
            t["nodes_train"],
            t["nodes_validation"],
            t["T1_rms_at_training_nodes"],
        )
        logger.info("spline build (no accuracy run): %.3f s", spline_build)

        if args.per_axis:
            result["per_axis"] = {}
            logger.info("")
            logger.info("one slice held out per network (T1 RMS / max, sigma):")
            for name, k in middle_slices(training).items():
                c = compare_with_spline(training, slices=[(name, k)], **options)
                row = {
                    "slice": [name, k],
                    "nodes": c["nodes"],
                    "mlp": accuracy_row(c["mlp"]),
                    "spline": accuracy_row(c["spline"]),
                    "seconds": c["emulator"].training_info["seconds"],
                }
                result["per_axis"][name] = row
                logger.info(
                    "  %-8s[%d] %4d nodes: mlp %6.3g / %-6.3g spline %6.3g / %-6.3g (%.0f s)",
                    name,
                    k,
                    c["nodes"],
                    row["mlp"]["T1_rms"],
                    row["mlp"]["T1_max"],
                    row["spline"]["T1_rms"],
                    row["spline"]["T1_max"],
                    row["seconds"],
                )

        rng = np.random.default_rng(20261207)
        result["timings"] = {"points": args.n}
        logger.info("")
        logger.info("evaluation, %d random points (best of %d, s):", args.n, args.repeat)
        logger.info("  %-7s %12s %12s %12s", "", "4 outputs", "predict T1", "gradient T1")
        for name, em in (("mlp", nn), ("spline", spline)):
            tm = timings(em, args.n, args.repeat, rng)
            result["timings"][name] = tm
            logger.info(
                "  %-7s %12.3f %12.3f %12.3f",
                name,
                tm["evaluate_4_outputs"],
                tm["predict_T1"],
                tm["gradient_T1"],
            )
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
