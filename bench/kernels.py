"""Benchmark: batch Gaussian modification of the bundled XMM-pn ARF.

Times the compiled kernel (``xrmod._modify.gaussian``, raw and through
``ModifierFamily.apply``) against the NumPy broadcasting expression, in the
same run, for n parameter sets over all ARF energies, and prints the ratios.
The NumPy timing is given bare and with the same status check (finite,
non-negative) the kernel does in its loop.

Run: ``python bench/kernels.py [--n 1000] [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import logging
import timeit
from importlib.resources import files

import numpy as np
from astropy.io import fits

from xrmod import _modify
from xrmod.modifiers import get_family
from xrmod.status import Status

logger = logging.getLogger("bench.kernels")


def load_pn_arf() -> tuple[np.ndarray, np.ndarray]:
    with fits.open(files("xrmod") / "data" / "pn.arf") as hdul:
        data = hdul["SPECRESP"].data
        lo = np.asarray(data["ENERG_LO"], dtype=np.float64)
        hi = np.asarray(data["ENERG_HI"], dtype=np.float64)
        area = np.asarray(data["SPECRESP"], dtype=np.float64)
    return 0.5 * (lo + hi), area


def numpy_gaussian(e, a, mu, sigma, amp):
    return a * (
        1.0 + amp[:, None] * np.exp(-((e - mu[:, None]) ** 2) / (2.0 * sigma[:, None] ** 2))
    )


def numpy_gaussian_with_status(e, a, mu, sigma, amp):
    values = numpy_gaussian(e, a, mu, sigma, amp)
    status = np.full(values.shape[0], Status.OK, dtype=np.int8)
    status[(values < 0).any(axis=1)] = Status.ARF_NEGATIVE
    status[~np.isfinite(values).all(axis=1)] = Status.ARF_NONFINITE
    return values, status


def best_of(func, repeat: int) -> float:
    """Best time of one call (s), after a warm-up; number of calls adapted to ~0.2 s."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="parameter sets (default 1000)")
    parser.add_argument("--repeat", type=int, default=7, help="timing repeats (best is kept)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    e, a = load_pn_arf()
    rng = np.random.default_rng(20261127)
    n = args.n
    mu = rng.uniform(0.5, 10.0, n)
    sigma = rng.uniform(0.05, 2.0, n)
    amp = rng.uniform(-0.2, 0.2, n)
    family = get_family("gaussian")
    out = np.empty((n, e.size))
    status = np.empty(n, dtype=np.int8)

    # same numbers first
    _modify.gaussian(e, a, mu, sigma, amp, out, status)
    ref_values, ref_status = numpy_gaussian_with_status(e, a, mu, sigma, amp)
    rel = np.max(np.abs(out - ref_values) / np.abs(ref_values))
    assert (status == ref_status).all()

    t_kernel = best_of(lambda: _modify.gaussian(e, a, mu, sigma, amp, out, status), args.repeat)
    t_apply = best_of(
        lambda: family.apply(e, a, {"mu": mu, "sigma": sigma, "amp": amp}), args.repeat
    )
    t_numpy = best_of(lambda: numpy_gaussian(e, a, mu, sigma, amp), args.repeat)
    t_numpy_status = best_of(lambda: numpy_gaussian_with_status(e, a, mu, sigma, amp), args.repeat)

    logger.info("gaussian modification of the bundled pn ARF: n = %d sets x nE = %d", n, e.size)
    logger.info("max relative difference kernel vs NumPy: %.2e", rel)
    rows = [
        ("Cython kernel (values + status)", t_kernel),
        ("ModifierFamily.apply (validate + alloc + kernel)", t_apply),
        ("NumPy broadcasting (values only)", t_numpy),
        ("NumPy broadcasting + status check", t_numpy_status),
    ]
    for label, t in rows:
        logger.info("  %-50s %8.2f ms  %6.1f ns/element", label, t * 1e3, t / (n * e.size) * 1e9)
    logger.info("ratio NumPy / kernel:                   %.2f", t_numpy / t_kernel)
    logger.info("ratio NumPy+status / kernel:            %.2f", t_numpy_status / t_kernel)
    logger.info("ratio NumPy+status / apply:             %.2f", t_numpy_status / t_apply)


if __name__ == "__main__":
    main()
