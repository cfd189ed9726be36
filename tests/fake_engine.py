"""A deterministic test engine, and ``xrmod-gen`` with it standing in for ``native``.

Results depend only on (seed, flat index), like a real engine's, and cost
nothing, so driver tests control timing and failures through environment
variables:

XRMOD_FAKE_SLEEP         seconds spent per unit
XRMOD_FAKE_RAISE         θ numbers (comma-separated) whose unit raises RuntimeError
XRMOD_FAKE_PREPARE_FAIL  rank whose prepare() raises EngineError (a fatal set-up error)
XRMOD_FAKE_DIE           θ whose unit kills its process with SIGKILL (a dead rank)
XRMOD_FAKE_BREAK_WRITER  θ numbers whose result lacks an extra: the writer fails (fatal)
XRMOD_FAKE_MARKS         directory: a file per finished unit (holding the rank) and per
                         process (pid.<pid>)

``python -m fake_engine ARGS`` (with tests/ on PYTHONPATH) runs ``xrmod-gen ARGS``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from xrmod.engines.base import EXTRAS, Engine, UnitResult
from xrmod.errors import EngineError
from xrmod.status import Status


def _env_ints(name):
    value = os.environ.get(name, "")
    return {int(v) for v in value.split(",") if v.strip()}


def expected_point(seed, flat, temperature):
    """The fake engine's [kT_lo, kT_fit, kT_hi] for one point."""
    rng = np.random.default_rng(np.random.SeedSequence((seed, flat)))
    fit = temperature * (1.0 + 0.05 * rng.standard_normal())
    return np.array([fit * 0.9, fit, fit * 1.1])


class FakeEngine(Engine):
    name = "native"

    def prepare(self, job):
        from xrmod.driver import world_rank

        self._job = job
        self._rank = world_rank()
        self._seed = job.config.library.seed
        fail = _env_ints("XRMOD_FAKE_PREPARE_FAIL")
        if self._rank in fail:
            raise EngineError(f"fake engine cannot start on rank {self._rank}")
        self._marks = os.environ.get("XRMOD_FAKE_MARKS")
        if self._marks:
            with open(os.path.join(self._marks, f"pid.{os.getpid()}"), "w") as f:
                f.write(str(self._rank))

    def run_unit(self, unit):
        if unit.theta in _env_ints("XRMOD_FAKE_DIE"):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(os.environ.get("XRMOD_FAKE_SLEEP", "0")))
        if unit.theta in _env_ints("XRMOD_FAKE_RAISE"):
            raise RuntimeError(f"injected failure in θ {unit.theta}")
        grid = self._job.grid
        n = unit.size
        temps = grid.temperatures
        results = np.empty((n, 3))
        for i, flat in enumerate(range(unit.start, unit.stop)):
            results[i] = expected_point(self._seed, flat, temps[flat % temps.size])
        status = np.full(n, Status.OK, dtype=np.int8)
        if unit.theta % 5 == 4:  # some documented failures too
            status[:] = Status.FIT_FAILED
            results[:] = np.nan
        status_modified = status.copy()  # T1′: its own status, -4 where θ % 5 == 2
        if unit.theta % 5 == 2:
            status_modified[:] = Status.BOUND_AT_LIMIT
        extras = {
            name: np.arange(unit.start, unit.stop) * (k + 1.0) for k, name in enumerate(EXTRAS)
        }
        if unit.theta in _env_ints("XRMOD_FAKE_BREAK_WRITER"):
            extras["bogus"] = extras.pop("counts")  # no writer can store it: fatal mid-run
        if self._marks:
            with open(os.path.join(self._marks, f"unit.{unit.theta}"), "w") as f:
                f.write(str(self._rank))
        return UnitResult(
            unit.start, unit.stop, results, results * 1.01, status, status_modified, extras
        )


def use_fake_engine():
    """Make ``library.engine = "native"`` build a :class:`FakeEngine` (this process only)."""
    import dataclasses

    from xrmod.engines import ENGINES

    ENGINES["native"] = dataclasses.replace(ENGINES["native"], target="fake_engine:FakeEngine")


def fake_engine_in_test(monkeypatch) -> None:
    """:func:`use_fake_engine` for one test: the registry and the fake's knobs restored after it."""
    from xrmod.engines import ENGINES

    monkeypatch.setitem(ENGINES, "native", ENGINES["native"])
    use_fake_engine()
    for name in ("XRMOD_FAKE_RAISE", "XRMOD_FAKE_SLEEP", "XRMOD_FAKE_BREAK_WRITER"):
        monkeypatch.delenv(name, raising=False)


def main():
    use_fake_engine()
    from xrmod.cli import gen_main

    return gen_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------- helpers
DATASETS = (
    "results",
    "results_modified",
    "status",
    "norm",
    "norm_modified",
    "cstat",
    "cstat_modified",
    "counts",
)


def read_library(path):
    """Every dataset under /LIBRARY, as arrays."""
    import h5py

    with h5py.File(path, "r") as f:
        return {name: ds[()] for name, ds in f["LIBRARY"].items()}


def assert_same_library(a, b):
    """The LIBRARY datasets of two libraries are identical, bit for bit (NaN included)."""
    da, db = read_library(a), read_library(b)
    assert sorted(da) == sorted(db)
    for name in da:
        x, y = da[name], db[name]
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert x.tobytes() == y.tobytes(), f"{name} differs between {a} and {b}"
