"""The contract every engine honours, run against each engine class.

An engine is prepared once, then runs work units in any order and any split;
a point's result depends only on the job and its flat index. Grids are tiny
(2 θ × 2 temperatures) so that the reference engine (≈ 0.5 s per point)
stays fast; one θ has a negative modified ARF, to exercise failures.
"""

from __future__ import annotations

import numpy as np
import pytest

from xrmod.config import parse_config
from xrmod.engines import ENGINES as REGISTRY
from xrmod.engines import get_engine, selectable_engines
from xrmod.engines.base import EXTRAS, Engine, PointResult, UnitResult
from xrmod.engines.native import NativeEngine
from xrmod.engines.reference import ReferenceEngine
from xrmod.errors import ConfigError
from xrmod.grid import WorkUnit
from xrmod.job import job_from_config
from xrmod.status import SEVERITY, Status

#: Engine classes under contract (the PyXSPEC engine joins where PyXSPEC imports).
ENGINES = [ReferenceEngine, NativeEngine]

CONFIG = """
[library]
noise = "poisson"
seed = 99
[instrument]
exposure = 20000.0
band = [0.5, 10.0]
[source]
model = "tbabs*zbremss"
nH = 0.05
redshift = 0.1
norm = 1.0e-3
temperatures = [2.0, 5.0]
[modifier]
family = "linear"
[modifier.axes]
slope = [-0.5, 0.03]
pivot = [3.0]
[fit]
error_delta = 1.0
kt_limits = [0.05, 64.0]
"""

#: Every code an engine may write for a computed point.
DOCUMENTED = {int(s) for s in Status} - {int(Status.NOT_COMPUTED)}


@pytest.fixture(scope="module")
def job():
    return job_from_config(parse_config(CONFIG, source="<contract>"))


@pytest.fixture(scope="module", params=ENGINES, ids=lambda cls: cls.name)
def prepared(request, job):
    engine = request.param()
    engine.prepare(job)
    results = {}
    for k in range(job.grid.n_units()):
        unit = job.grid.unit(k)
        results[unit.start] = engine.run_unit(unit)
    return engine, results


def _points(results: dict[int, UnitResult]) -> dict[str, np.ndarray]:
    """Concatenate unit results in flat-index order."""
    units = [results[k] for k in sorted(results)]
    out = {
        name: np.concatenate([getattr(u, name) for u in units])
        for name in ("results", "results_modified", "status", "status_modified")
    }
    for name in EXTRAS:
        out[name] = np.concatenate([u.extras[name] for u in units])
    return out


def test_is_an_engine(prepared):
    engine, _ = prepared
    assert isinstance(engine, Engine)
    assert isinstance(type(engine).name, str)


def test_unit_result_shapes(prepared, job):
    _, results = prepared
    for k in range(job.grid.n_units()):
        unit = job.grid.unit(k)
        res = results[unit.start]
        n = unit.size
        assert (res.start, res.stop) == (unit.start, unit.stop)
        assert res.results.shape == (n, 3) and res.results.dtype == np.float64
        assert res.results_modified.shape == (n, 3)
        assert res.status.shape == (n,) and res.status.dtype == np.int8
        assert res.status_modified.shape == (n,) and res.status_modified.dtype == np.int8
        assert set(res.extras) == set(EXTRAS)
        assert all(v.shape == (n,) for v in res.extras.values())


def test_statuses_documented_and_failures_are_nan(prepared, job):
    _, results = prepared
    p = _points(results)
    assert set(np.unique(p["status"]).tolist()) <= DOCUMENTED
    assert set(np.unique(p["status_modified"]).tolist()) <= DOCUMENTED
    # the θ with slope -0.5 makes the ARF negative above 5 keV: every point fails, both fits
    slope = job.grid.theta_parameters(job.grid.theta_index(np.arange(job.grid.size)))["slope"]
    for name in ("status", "status_modified"):
        assert (p[name][slope < 0] == Status.ARF_NEGATIVE).all()
        assert (p[name][slope > 0] == Status.OK).all()
    for name, status in (("results", "status"), ("results_modified", "status_modified")):
        failed = p[status] != Status.OK
        assert np.isnan(p[name][failed]).all()  # NaN, never zeros
        assert np.isfinite(p[name][~failed]).all()
    failed = p["status"] != Status.OK
    for name in EXTRAS:
        assert np.isnan(p[name][failed]).all()
        assert np.isfinite(p[name][~failed]).all()


@pytest.mark.parametrize("cls", ENGINES, ids=lambda cls: cls.name)
def test_each_fit_has_its_own_status(cls):
    """T1 stops at the kT limit (−4, its upper bound NaN); the good T1′ keeps status 1.

    A bump of hard area (Gaussian at 7 keV, +50 %) makes the data harder than
    the original ARF expects: T1 would be above the 5.6 keV limit, T1′ (the
    ARF that made the data) is 5.10 ± 0.09 keV (this Poisson draw).
    """
    text = CONFIG.replace("kt_limits = [0.05, 64.0]", "kt_limits = [0.05, 5.6]")
    text = text.replace('family = "linear"', 'family = "gaussian"')
    text = text.replace("slope = [-0.5, 0.03]\npivot = [3.0]", "mu = 7.0\nsigma = 2.0\namp = 0.5")
    job = job_from_config(parse_config(text, source="<contract>"))
    engine = cls()
    engine.prepare(job)
    res = engine.run_unit(job.grid.unit(0))  # T = 2 and 5 keV
    assert res.status.tolist() == [Status.OK, Status.BOUND_AT_LIMIT]
    assert res.status_modified.tolist() == [Status.OK, Status.OK]
    assert res.results[1, 1] == pytest.approx(5.6) and np.isnan(res.results[1, 2])
    lo, fit, hi = res.results_modified[1]
    assert lo < fit < hi < 5.6 and np.isfinite(res.results_modified).all()


def test_bounds_bracket_the_fit(prepared):
    _, results = prepared
    p = _points(results)
    for name in ("results", "results_modified"):
        r = p[name]
        ok = np.isfinite(r).all(axis=1)
        assert ok.any()
        assert (r[ok, 0] <= r[ok, 1]).all() and (r[ok, 1] <= r[ok, 2]).all()
        lo, fit, hi = r[ok].T
        assert (lo < fit).all() and (fit < hi).all()


def test_deterministic_for_a_fixed_seed(prepared, job):
    engine, results = prepared
    again = type(engine)()
    again.prepare(job)
    for start, res in results.items():
        unit = job.grid.unit(start // job.grid.points_per_theta)
        other = again.run_unit(unit)
        for name in ("results", "results_modified", "status", "status_modified"):
            np.testing.assert_array_equal(getattr(res, name), getattr(other, name))
        for name in EXTRAS:
            np.testing.assert_array_equal(res.extras[name], other.extras[name])


def test_points_do_not_depend_on_the_unit_split(prepared, job):
    engine, results = prepared
    whole = _points(results)
    chunks = {}
    n = job.grid.n_units(max_points=1)
    for k in reversed(range(n)):  # and in another order
        unit = job.grid.unit(k, max_points=1)
        chunks[unit.start] = engine.run_unit(unit)
    split = _points(chunks)
    for name, values in whole.items():
        np.testing.assert_array_equal(values, split[name])


def test_counts_extra_is_the_band_total(prepared):
    _, results = prepared
    p = _points(results)
    ok = p["status"] == Status.OK
    counts = p["counts"][ok]
    assert (counts > 0).all() and np.array_equal(counts, np.round(counts))  # Poisson draws


# --------------------------------------------------------------------------- registry


def test_one_registry_with_the_reference_for_checks_only():
    assert list(REGISTRY) == ["native", "xspec", "reference"]
    assert selectable_engines() == ("native", "xspec")
    assert [name for name, entry in REGISTRY.items() if entry.check_only] == ["reference"]
    assert isinstance(get_engine("native"), NativeEngine)
    assert isinstance(get_engine("reference", checks=True), ReferenceEngine)
    with pytest.raises(
        ConfigError, match=r"'reference' is for checks only \(known: native, xspec\)"
    ):
        get_engine("reference")
    with pytest.raises(ConfigError, match=r"'fast' is not available \(known: native, xspec\)") as e:
        get_engine("fast")
    assert e.value.key == "library.engine"


# --------------------------------------------------------------------------- shared pieces


def test_status_worst_is_the_severity_order():
    assert Status.worst(Status.OK) == Status.OK
    assert Status.worst(Status.OK, Status.BOUND_AT_LIMIT) == Status.BOUND_AT_LIMIT
    assert Status.worst(Status.BOUND_AT_LIMIT, Status.MODEL_JUMP, Status.OK) == Status.MODEL_JUMP
    for i, code in enumerate(SEVERITY):
        assert Status.worst(*SEVERITY[i:]) == code
        assert Status.worst(*reversed(SEVERITY[i:])) == code


def test_engine_inputs_are_derived_once(job):
    inputs = job.engine_inputs()
    assert job.engine_inputs() is inputs
    mask = job.rmf.band_channels(*job.config.instrument.band)
    np.testing.assert_array_equal(inputs.band_mask, mask)
    fold, rows = job.rmf.band_response(*job.config.instrument.band)
    np.testing.assert_array_equal(inputs.rows, rows)
    assert (inputs.fold_matrix != fold).nnz == 0 and inputs.n_band == mask.sum()
    assert (inputs.seed, inputs.asimov, inputs.exposure, inputs.norm) == (99, False, 2e4, 1e-3)
    assert (inputs.kt_limits, inputs.error_delta, inputs.band) == ((0.05, 64.0), 1.0, (0.5, 10.0))
    assert inputs.background is None and job.band_background() is None


def test_failed_unit_result_and_point_result():
    res = UnitResult.failed(10, 13, Status.ARF_NONFINITE)
    assert (res.status == Status.ARF_NONFINITE).all() and res.status.dtype == np.int8
    assert (res.status_modified == Status.ARF_NONFINITE).all()
    assert np.isnan(res.results).all() and set(res.extras) == set(EXTRAS)
    empty = UnitResult.failed(0, 2)
    empty.put(1, PointResult(Status.OK, Status.MODEL_JUMP, (1, 2, 3), (4, 5, 6), {"counts": 7.0}))
    empty.put(0, PointResult.failed(Status.NO_COUNTS, counts=0.0))
    assert empty.status.tolist() == [Status.NO_COUNTS, Status.OK]
    assert empty.status_modified.tolist() == [Status.NO_COUNTS, Status.MODEL_JUMP]
    assert empty.results[1].tolist() == [1, 2, 3] and np.isnan(empty.results[0]).all()
    assert empty.results_modified[1].tolist() == [4, 5, 6]
    assert empty.extras["counts"].tolist() == [0.0, 7.0] and np.isnan(empty.extras["norm"]).all()


class _HookEngine(Engine):
    """run_unit of the base class over hooks that record and fail on demand."""

    name = "hooks"

    def __init__(self, raise_theta=(), raise_flat=(), bad_theta=()):
        self.raise_theta, self.raise_flat, self.bad_theta = raise_theta, raise_flat, bad_theta
        self.released = []

    def prepare(self, job):
        self._bind(job)

    def _modified(self, unit):
        if unit.theta in self.raise_theta:
            raise RuntimeError("θ set-up fails")
        if unit.theta in self.bad_theta:
            return Status.ARF_NEGATIVE, None
        return Status.OK, f"state of θ {unit.theta}"

    def _fit_point(self, state, flat):
        if flat in self.raise_flat:
            raise RuntimeError("point fails")
        kt = float(flat)
        return PointResult(Status.OK, Status.OK, (kt, kt, kt), (kt, kt, kt), {"counts": kt})

    def _release(self, state):
        self.released.append(state)


def test_base_run_unit_turns_failures_into_statuses(job, caplog):
    engine = _HookEngine(raise_theta={1}, raise_flat={5}, bad_theta={2})
    engine.prepare(job)
    assert engine.inputs is job.engine_inputs()
    with caplog.at_level("ERROR"):
        ok = engine.run_unit(WorkUnit(0, 0, 2))
        failed_theta = engine.run_unit(WorkUnit(1, 2, 4))
        negative = engine.run_unit(WorkUnit(2, 4, 6))
        one_point = engine.run_unit(WorkUnit(0, 4, 7))
    assert ok.status.tolist() == [Status.OK] * 2 and ok.results[:, 1].tolist() == [0.0, 1.0]
    assert (failed_theta.status == Status.ERROR).all()
    assert (failed_theta.status_modified == Status.ERROR).all()
    assert np.isnan(failed_theta.results).all()
    assert (negative.status == Status.ARF_NEGATIVE).all()
    assert one_point.status.tolist() == [Status.OK, Status.ERROR, Status.OK]
    assert np.isnan(one_point.results[1]).all() and np.isnan(one_point.extras["counts"][1])
    assert one_point.extras["counts"].tolist()[::2] == [4.0, 6.0]
    # the state is released once per unit that made one, also when a point raised
    assert engine.released == ["state of θ 0", "state of θ 0"]
    messages = [r.getMessage() for r in caplog.records]
    assert "θ 1 of points 2..4 failed" in messages and "point 5 failed" in messages
