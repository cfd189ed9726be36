"""The native engine: its compiled kernels, and agreement with the reference engine.

The reference (:class:`xrmod.engines.reference.ReferenceEngine`) evaluates
XSPEC's model and folds it at every statistic evaluation; the native engine
must give the same simulated counts bit for bit, the same statuses, and fits
within 1 % of the statistical error σ (half the bound interval).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from xrmod import _fit
from xrmod.config import parse_config
from xrmod.engines.native import (
    LogTable,
    NativeEngine,
    _slope_operator,
    correction_nodes,
    correction_table,
)
from xrmod.engines.reference import ReferenceEngine, _Fitter, cstat, profiled_cstat
from xrmod.engines.source import BREAK_CLEARANCE, FLOOR_XTOL
from xrmod.errors import ConfigError
from xrmod.job import job_from_config
from xrmod.responses import read_arf, read_rmf
from xrmod.status import Status

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def responses():
    from xrmod.config import load_config

    cfg = load_config(None)  # the embedded default: the bundled response
    return read_arf(cfg.instrument.arf), read_rmf(cfg.instrument.rmf)


def make_job(
    responses,
    *,
    temps,
    axes,
    family="gaussian",
    noise="asimov",
    kt_limits=(0.05, 64.0),
    band=(0.5, 10.0),
):
    """A Job on the bundled response from a few settings (as ``load_job`` builds one)."""
    lines = "\n".join(f"{name} = {list(values)}" for name, values in axes.items())
    text = f"""
[library]
noise = "{noise}"
seed = 4242
[instrument]
exposure = 50000.0
band = {list(band)}
[source]
model = "tbabs*zbremss"
nH = 0.05
redshift = 0.1
norm = 1.0e-3
temperatures = {list(temps)}
[modifier]
family = "{family}"
[modifier.axes]
{lines}
[fit]
error_delta = 1.0
kt_limits = {list(kt_limits)}
"""
    arf, rmf = responses
    return job_from_config(parse_config(text, source="<test>"), arf=arf, rmf=rmf)


def run_all(engine, job, order=None):
    units = [job.grid.unit(k) for k in range(job.grid.n_units())]
    if order is not None:
        units = [units[k] for k in order]
    return {u.start: engine.run_unit(u) for u in units}


# ----------------------------------------------------------------------------- kernels


def test_cstat_matches_reference_with_zero_counts():
    rng = np.random.default_rng(1)
    model = rng.uniform(0.01, 30.0, 500)
    counts = rng.poisson(model).astype(float)
    counts[::7] = 0.0  # many zero-count channels
    assert (counts == 0).sum() > 70
    assert _fit.cstat(counts, model) == pytest.approx(cstat(counts, model), rel=1e-13)
    # hand-derived: D = 0 contributes 2m; D = m contributes 0
    assert _fit.cstat(np.array([0.0, 3.0]), np.array([1.5, 3.0])) == pytest.approx(3.0, abs=1e-15)
    # impossible model: counts where the model is zero
    assert _fit.cstat(np.array([1.0]), np.array([0.0])) == np.inf
    assert cstat(np.array([1.0]), np.array([0.0])) == np.inf
    # read-only inputs are accepted
    counts.setflags(write=False)
    model.setflags(write=False)
    assert np.isfinite(_fit.cstat(counts, model))


def _synthetic_table(nch=40, seed=3):
    """A smooth ln f_c(x) family (power laws with curvature) as a Hermite table."""
    rng = np.random.default_rng(seed)
    knots = np.linspace(-1.0, 2.0, 151)
    a = rng.normal(0.0, 1.0, nch)
    b = rng.normal(0.0, 0.5, nch)
    c = rng.normal(0.0, 0.2, nch)
    values = a + np.outer(knots, b) + np.outer(knots**2, c) + 3.0
    slopes = b + 2.0 * np.outer(knots, c)
    f = np.exp(values)
    scalar = np.log(f.sum(axis=1))
    scalar_slopes = (f * slopes).sum(axis=1) / f.sum(axis=1)
    return LogTable(knots, values, slopes, scalar, scalar_slopes)


def _table_model(table: LogTable, x: float) -> np.ndarray:
    return np.exp(table(x)[0])


@pytest.mark.parametrize("x", [-0.83, 0.0, 0.41, 1.777])
def test_profiled_statistic_matches_numpy_and_finite_differences(x):
    table = _synthetic_table()
    tables = _fit.Tables(*table.arrays())
    rng = np.random.default_rng(7)
    counts = rng.poisson(_table_model(table, 0.3) * 2.5).astype(float)
    counts[:5] = 0.0  # zero-count channels
    out = np.empty((3, 4))
    h = 1e-4
    tables.profile(counts, np.array([x - h, x, x + h]), out)
    value, d1, d2, norm = out[1]
    # value: XSPEC's cstat with the norm profiled, on the interpolated model
    # (the kernel interpolates ln F = ln Σ f separately: ~1e-9 apart here)
    ref, ref_norm = profiled_cstat(counts, _table_model(table, x))
    assert value == pytest.approx(ref, rel=1e-8)
    assert norm == pytest.approx(ref_norm, rel=1e-8)
    # analytic derivatives against central differences of the kernel's own value
    assert d1 == pytest.approx((out[2, 0] - out[0, 0]) / (2 * h), rel=1e-5, abs=1e-5)
    assert d2 == pytest.approx((out[2, 1] - out[0, 1]) / (2 * h), rel=1e-4, abs=1e-4)


def test_log_table_python_matches_kernel_interpolation():
    table = _synthetic_table(nch=8)
    counts = np.arange(8, dtype=float)
    tables = _fit.Tables(*table.arrays())
    xs = np.array([-1.5, -1.0, -0.31, 0.5, 1.999, 2.0, 2.7])  # including extrapolation
    out = np.empty((xs.size, 4))
    tables.profile(counts, xs, out)
    n = counts.sum()
    const = (counts[counts > 0] * np.log(counts[counts > 0])).sum() - n * np.log(n)
    for x, row in zip(xs, out, strict=True):
        lnf, _, lnF, _ = table(float(x))
        assert row[0] == pytest.approx(2 * (const + n * lnF - (counts * lnf).sum()), rel=1e-12)


def test_fold_is_bit_identical_to_scipy():
    rng = np.random.default_rng(11)
    matrix = scipy.sparse.random(57, 43, density=0.3, format="csr", random_state=rng)
    matrix.data[:] = rng.random(matrix.nnz)
    for k in (4, 8, 12, 20):
        x = rng.random((43, k))
        out = np.empty((57, k))
        _fit.fold(
            matrix.indptr.astype(np.int32), matrix.indices.astype(np.int32), matrix.data, x, out
        )
        for j in range(k):
            assert np.array_equal(out[:, j], matrix @ np.ascontiguousarray(x[:, j]))
    with pytest.raises(ValueError, match="multiple of 4"):
        _fit.fold(matrix.indptr, matrix.indices, matrix.data, np.ones((43, 3)), np.ones((57, 3)))


def test_slope_operator_reproduces_cubic_splines():
    from scipy.interpolate import CubicSpline

    from xrmod.engines.native import _spline_slope_operator

    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 4, 7):
        z = np.sort(rng.random(n)) * 3.0 + np.arange(n)
        v = rng.random(n)
        got = _spline_slope_operator(z) @ v
        if n >= 4:
            want = CubicSpline(z, v, bc_type="not-a-knot")(z, 1)
        elif n > 1:
            want = np.polyval(np.polyder(np.polyfit(z, v, n - 1)), z)
        else:
            want = np.zeros(1)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_correction_kernel_matches_numpy():
    base = _synthetic_table(nch=12)
    temps = np.exp(np.array([-0.5, 0.2, 0.9]))
    nodes = correction_nodes(temps, (-1.0, 2.0), gap=0.3, margin=0.1, breaks=(np.exp(0.5),))
    rng = np.random.default_rng(5)
    folded = np.exp(np.array([base(float(x))[0] for x in np.log(nodes.kt)]))
    folded *= rng.uniform(0.8, 1.2, folded.shape)
    operator = _slope_operator(nodes)
    corr = correction_table(base, nodes, folded, operator)
    want = np.log(folded[nodes.column]) - np.array(
        [base(float(x), left=bool(lf))[0] for x, lf in zip(nodes.x, nodes.left, strict=True)]
    )
    np.testing.assert_allclose(corr.values, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(corr.slopes, operator @ want, rtol=1e-10, atol=1e-12)
    # the break is a knot twice (end of one piece, start of the next), one fold
    assert np.count_nonzero(nodes.x == 0.5) == 2
    assert nodes.kt.size == nodes.x.size - 1


def test_fit_of_noiseless_synthetic_spectrum_returns_truth():
    table = _synthetic_table()
    tables = _fit.Tables(*table.arrays())
    out = np.empty(5)
    for x_true in (-0.6, 0.35, 1.4):
        counts = 3.0 * np.exp(table(x_true)[0])  # Asimov: D = norm · f(x_true)
        status = tables.fit(counts, x_true + 0.2, -1.0, 2.0, 1.0, out)
        assert status == Status.OK
        assert np.log(out[1]) == pytest.approx(x_true, abs=1e-7)
        assert out[3] == pytest.approx(3.0, rel=1e-6)
        assert out[0] < out[1] < out[2]
        # C(bound) = C_min + delta at both bounds
        prof = np.empty((3, 4))
        tables.profile(counts, np.log(out[:3]), prof)
        np.testing.assert_allclose(prof[[0, 2], 0], prof[1, 0] + 1.0, atol=1e-7)
        assert out[4] == max(prof[1, 0], 0.0)  # reported C_min, never below 0


def _jump_table(nch=30, seed=4):
    """ln f_c(x) with a jump at x = 0: the right piece is the left one shifted by 0.4.

    Data made at x = −0.2 are matched exactly there (C = 0) and nearly as well
    at x = 0.2 on the other side of the jump (a spurious local minimum).
    """
    rng = np.random.default_rng(seed)
    a, b = rng.normal(3.0, 0.5, nch), rng.normal(0.0, 1.0, nch)
    mismatch = rng.normal(0.0, 0.02, nch)
    left, right = np.linspace(-1.0, 0.0, 11), np.linspace(0.0, 1.0, 11)
    knots = np.concatenate([left, right])
    values = a + np.outer(knots, b)
    values[left.size :] = a + np.outer(right - 0.4, b) + mismatch
    slopes = np.broadcast_to(b, values.shape).copy()
    f = np.exp(values)
    scalar = np.log(f.sum(axis=1))
    scalar_slopes = (f * slopes).sum(axis=1) / f.sum(axis=1)
    return LogTable(knots, values, slopes, scalar, scalar_slopes)


def test_minimum_is_found_across_a_jump():
    table = _jump_table()
    counts = 5.0 * np.exp(table(-0.2)[0])  # noiseless, left of the jump
    out = np.empty(5)
    # without knowing the jump, Newton from the right stops in the spurious minimum
    plain = _fit.Tables(*table.arrays())
    assert plain.fit(counts, 0.6, -1.0, 1.0, 1.0, out) == Status.OK
    assert np.log(out[1]) == pytest.approx(0.2, abs=0.05)
    with_jump = _fit.Tables(*table.arrays(), jumps=[0.0])
    for start in (-0.7, -0.05, 0.05, 0.6):  # either side
        assert with_jump.fit(counts, start, -1.0, 1.0, 1.0, out) == Status.OK
        assert np.log(out[1]) == pytest.approx(-0.2, abs=1e-7)


def _two_pieces(x_data, shift, mismatch, nch=30, seed=5):
    """A table with a jump at x = 0 and counts: (LogTable, counts).

    Both pieces are linear in x, ln f_c = a_c + x b_c on the left and
    a_c + (x − shift) b_c + mismatch · d_c on the right, so C is smooth in
    each piece; the counts are 20 · f(x_data) of the left piece (noiseless):
    C = 0 at x_data if it is inside the left piece. *shift* and *mismatch* set
    how far the right piece's own minimum moves and how much it rises.
    """
    rng = np.random.default_rng(seed)
    # C ≈ 30 (Δx)² within a piece (12 000 counts), a right-piece minimum ≈ 1.2e4 mismatch²
    a, b, d = rng.normal(3.0, 0.5, nch), rng.normal(0.0, 0.05, nch), rng.normal(0.0, 1.0, nch)
    left, right = np.linspace(-2.0, 0.0, 21), np.linspace(0.0, 2.0, 21)
    knots = np.concatenate([left, right])
    values = a + np.outer(knots, b)
    values[left.size :] = a + np.outer(right - shift, b) + mismatch * d
    slopes = np.broadcast_to(b, values.shape).copy()
    f = np.exp(values)
    scalar = np.log(f.sum(axis=1))
    scalar_slopes = (f * slopes).sum(axis=1) / f.sum(axis=1)
    table = LogTable(knots, values, slopes, scalar, scalar_slopes)
    return table, 20.0 * np.exp(a + x_data * b)


def _jump_fits(table, counts, start):
    """The kernel's fit and the reference's (_Fitter, NumPy/SciPy) of the same table."""
    out = np.empty(5)
    code = _fit.Tables(*table.arrays(), jumps=[0.0]).fit(counts, start, -2.0, 2.0, 1.0, out)

    def fold(_arf, kt):  # the exact table, its left piece below x = 0
        x = float(np.log(kt))
        return np.exp(table(x, left=x < 0.0)[0])

    ref = _Fitter(fold, None, (-2.0, 2.0), 1.0, jumps=(1.0,))
    r, _, c, s = ref.fit(counts)
    return (out[:3], Status(code), out[4]), (r, s, c)


def _profile(table, counts, x, left=False):
    """C(x) of the table (from the left at a jump if *left*), by NumPy."""
    return profiled_cstat(counts, np.exp(table(x, left=left)[0]))[0]


def _check_jump_case(table, counts, status, starts=(-1.0, -0.05, 0.05, 1.0)):
    """Kernel and reference agree on the status and [lo, fit, hi] from every start."""
    for start in starts:
        (kernel, code, cmin), (ref, ref_code, ref_cmin) = _jump_fits(table, counts, start)
        where = f"start {start}: kernel {np.log(kernel)} {code!r}, reference {np.log(ref)}"
        assert code == status and ref_code == status, where
        np.testing.assert_array_equal(np.isnan(kernel), np.isnan(ref), err_msg=where)
        # the reference's tolerances: 1e-7 in x for the minimum (its edges 4e-7 from a
        # jump, the kernel's 1e-11), 1e-9 for the bounds
        np.testing.assert_allclose(np.log(kernel), np.log(ref), atol=2e-5, err_msg=where)
        assert cmin == pytest.approx(ref_cmin, abs=1e-4)
    return kernel, cmin


def test_bound_that_stops_at_a_jump_is_nan_and_model_jump():
    """S = [x_lo, 0): the right piece never comes down to the target."""
    table, counts = _two_pieces(x_data=-0.1, shift=0.6, mismatch=0.03)
    assert _profile(table, counts, 0.0, left=True) < 1.0  # left limit inside S
    right = [_profile(table, counts, x) for x in np.linspace(0.0, 2.0, 201)]
    assert min(right) > 1.0  # the right piece is above the target everywhere
    fit, cmin = _check_jump_case(table, counts, Status.MODEL_JUMP)
    assert np.isnan(fit[2])  # never a zero-width bound at the jump
    assert np.log(fit[1]) == pytest.approx(-0.1, abs=1e-7) and cmin < 1e-9
    assert _profile(table, counts, np.log(fit[0])) == pytest.approx(1.0, abs=1e-7)


def test_bridged_jump_is_harmless():
    """C <= target on both sides of the jump: one interval across it, status OK."""
    table, counts = _two_pieces(x_data=-0.1, shift=0.02, mismatch=0.0)
    assert _profile(table, counts, 0.0, left=True) < 1.0 and _profile(table, counts, 0.0) < 1.0
    fit, _ = _check_jump_case(table, counts, Status.OK)
    assert np.log(fit[0]) < 0.0 < np.log(fit[2])  # the upper bound is in the right piece
    for x in np.log(fit[[0, 2]]):
        assert _profile(table, counts, x) == pytest.approx(1.0, abs=1e-7)


def test_islands_give_model_jump_and_the_hull():
    """S = [l1, r1] ∪ [l2, r2] with r1 < 0 < l2: −6, bounds l1 and r2 (the hull)."""
    table, counts = _two_pieces(x_data=-0.5, shift=1.0, mismatch=0.007)
    right = [_profile(table, counts, x) for x in np.linspace(0.0, 2.0, 401)]
    assert 0.0 < min(right) < 1.0 < right[0]  # a second island, apart from the first
    assert _profile(table, counts, 0.0, left=True) > 1.0
    fit, _ = _check_jump_case(table, counts, Status.MODEL_JUMP)
    assert np.log(fit[0]) < -0.5 and np.log(fit[2]) > 0.5 and np.isfinite(fit).all()
    assert np.log(fit[1]) == pytest.approx(-0.5, abs=1e-7)  # the global minimum
    for x in np.log(fit[[0, 2]]):
        assert _profile(table, counts, x) == pytest.approx(1.0, abs=1e-7)


def test_best_fit_at_a_jump_is_model_jump():
    """The data want x = 0.2 of the left shape; the right piece fits worse: C_min at 0⁻."""
    table, counts = _two_pieces(x_data=0.2, shift=0.8, mismatch=0.03)
    fit, cmin = _check_jump_case(table, counts, Status.MODEL_JUMP)
    assert np.log(fit[1]) == pytest.approx(0.0, abs=1e-6)  # kT_fit: the jump's kT
    assert cmin == pytest.approx(_profile(table, counts, 0.0, left=True), abs=1e-6)
    assert np.isnan(fit[2]) and np.isfinite(fit[0])  # nothing above the jump reaches target


def test_kernel_status_codes_are_the_status_enum():
    assert {name: int(Status[name]) for name in _fit.STATUS_CODES} == _fit.STATUS_CODES
    from xrmod.status import JUMP_TOLERANCE

    assert _fit.JUMP_TOLERANCE == JUMP_TOLERANCE


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def asimov_job(responses):
    return make_job(
        responses,
        temps=[0.8, 2.5, 6.0],
        axes={"mu": [2.0], "sigma": [0.5], "amp": [-0.15, 0.0, 0.2]},
    )


@pytest.fixture(scope="module")
def native_asimov(asimov_job):
    engine = NativeEngine()
    engine.prepare(asimov_job)
    return engine


def test_noiseless_fit_returns_true_kt(native_asimov, asimov_job):
    """amp = 0: both fits see the ARF the data were made with."""
    temps = asimov_job.grid.temperatures
    unit = asimov_job.grid.unit(1)
    res = native_asimov.run_unit(unit)
    assert (res.status == Status.OK).all()
    np.testing.assert_allclose(res.results[:, 1], temps, rtol=1e-6)
    np.testing.assert_allclose(res.results_modified[:, 1], temps, rtol=1e-6)
    np.testing.assert_allclose(res.extras["norm"], 1.0e-3, rtol=1e-6)


def _compare(native, reference, job, counts_of):
    """Bounds within 1 % of σ; kT within 1 % of σ or as good a minimum of the exact C.

    XSPEC's zbremss is a float32 function with tiny jumps in kT (its Gaunt
    factor switches polynomials at fixed E/kT in every energy bin), so the
    exact statistic the reference minimises is rough at the 10⁻³ level near its
    minimum: its minimiser stops anywhere within ΔC ≈ 10⁻³, up to a few % of σ
    from the smooth minimum the native engine finds. Bounds sit where C is
    steep and are not affected.
    """
    checked = 0
    for start, a in native.items():
        b = reference[start]
        for name in ("results", "results_modified"):
            ra, rb = getattr(a, name), getattr(b, name)
            for i in range(ra.shape[0]):
                sigma = 0.5 * (rb[i, 2] - rb[i, 0])
                assert abs(ra[i, 0] - rb[i, 0]) <= 0.01 * sigma
                assert abs(ra[i, 2] - rb[i, 2]) <= 0.01 * sigma
                if abs(ra[i, 1] - rb[i, 1]) > 0.01 * sigma:
                    counts, fitter = counts_of(start + i, name)
                    c_native = fitter.statistic(counts, np.log(ra[i, 1]))[0]
                    c_ref = fitter.statistic(counts, np.log(rb[i, 1]))[0]
                    assert c_native <= c_ref + 5e-3
                checked += 1
    return checked


def _counts_of(reference, job):
    def counts_of(flat, name):
        grid = job.grid
        theta = flat // grid.points_per_theta
        params = dict(grid.theta_parameters(np.array([theta])))
        mod = job.family.apply(reference.inputs.energies, reference.inputs.arf, params).values[0]
        mod = mod[reference.inputs.rows]
        kt = float(grid.temperatures[flat % grid.temperatures.size])
        counts = reference.inputs.simulate(reference.inputs.norm * reference.fold(mod, kt), flat)[0]
        arf = mod if name == "results_modified" else reference.inputs.arf[reference.inputs.rows]
        return counts, _Fitter(
            reference.fold, arf, reference._log_limits, reference.inputs.error_delta
        )

    return counts_of


@pytest.mark.parametrize("noise", ["asimov", "poisson"])
def test_native_agrees_with_reference(responses, noise):
    job = make_job(
        responses,
        temps=[0.8, 2.5, 6.0],
        axes={"mu": [2.0], "sigma": [0.5], "amp": [-0.15, 0.2]},
        noise=noise,
    )
    native, reference = NativeEngine(), ReferenceEngine()
    native.prepare(job)
    reference.prepare(job)
    a = run_all(native, job)
    b = run_all(reference, job)
    for start in a:
        np.testing.assert_array_equal(a[start].status, b[start].status)
        assert (a[start].status == Status.OK).all()
        if noise == "poisson":
            np.testing.assert_array_equal(a[start].extras["counts"], b[start].extras["counts"])
        else:  # the native means along a linear axis are sums of two folds: rounding apart
            np.testing.assert_allclose(
                a[start].extras["counts"], b[start].extras["counts"], rtol=1e-12
            )
        for name in ("norm", "norm_modified"):
            np.testing.assert_allclose(a[start].extras[name], b[start].extras[name], rtol=2e-3)
        for name in ("cstat", "cstat_modified"):
            np.testing.assert_allclose(a[start].extras[name], b[start].extras[name], atol=0.02)
    assert _compare(a, b, job, _counts_of(reference, job)) == 12


def test_simulated_counts_are_identical(responses):
    job = make_job(
        responses,
        temps=[1.0, 4.0],
        axes={"mu": [3.0], "sigma": [1.0], "amp": [0.1]},
        noise="poisson",
    )
    native, reference = NativeEngine(), ReferenceEngine()
    native.prepare(job)
    reference.prepare(job)
    folded = native._modified(job.grid.unit(0))[1].folded
    params = dict(job.grid.theta_parameters(np.array([0])))
    mod = job.family.apply(reference.inputs.energies, reference.inputs.arf, params).values[0]
    for t, kt in enumerate(job.grid.temperatures):
        mu_native = native.inputs.norm * folded[native._t_node[t]]
        mu_ref = reference.inputs.norm * reference.fold(mod[reference.inputs.rows], float(kt))
        assert np.array_equal(mu_native, mu_ref)  # bit for bit
        assert np.array_equal(
            native.inputs.simulate(mu_native, t)[0], reference.inputs.simulate(mu_ref, t)[0]
        )


def test_negative_arf_status(responses):
    job = make_job(
        responses,
        temps=[2.0, 5.0],
        axes={"slope": [0.02, -0.5], "pivot": [3.0]},
        family="linear",
    )
    native, reference = NativeEngine(), ReferenceEngine()
    native.prepare(job)
    reference.prepare(job)
    slopes = job.grid.theta_parameters(np.arange(2))["slope"]  # axes are stored sorted
    bad, good = (job.grid.unit(int(k)) for k in np.argsort(slopes))
    for engine in (native, reference):
        res = engine.run_unit(bad)
        assert (res.status == Status.ARF_NEGATIVE).all()
        assert np.isnan(res.results).all() and np.isnan(res.results_modified).all()
        assert all(np.isnan(v).all() for v in res.extras.values())
    assert (native.run_unit(good).status == Status.OK).all()


def test_bound_at_limit_status(responses):
    # kT = 1 keV has σ ≈ 1 %: a lower limit 0.5 % below puts the lower bound beyond it
    job = make_job(
        responses,
        temps=[1.0],
        axes={"mu": [3.0], "sigma": [1.0], "amp": [0.0]},
        kt_limits=(0.995, 3.0),
    )
    native, reference = NativeEngine(), ReferenceEngine()
    native.prepare(job)
    reference.prepare(job)
    a = native.run_unit(job.grid.unit(0))
    b = reference.run_unit(job.grid.unit(0))
    for res in (a, b):
        assert res.status[0] == Status.BOUND_AT_LIMIT
        assert np.isnan(res.results[0, 0]) and np.isnan(res.results_modified[0, 0])
        assert np.isfinite(res.results[0, 1:]).all()
    np.testing.assert_allclose(a.results[0, 1:], b.results[0, 1:], rtol=1e-4)


def test_results_do_not_depend_on_unit_order(native_asimov, asimov_job, responses):
    job = make_job(
        responses,
        temps=[0.8, 2.5, 6.0],
        axes={"mu": [2.0], "sigma": [0.5], "amp": [-0.15, 0.0, 0.2]},
        noise="poisson",
    )
    forward, backward = NativeEngine(), NativeEngine()
    forward.prepare(job)
    backward.prepare(job)
    n = job.grid.n_units()
    a = run_all(forward, job)
    b = run_all(backward, job, order=range(n - 1, -1, -1))
    for start, res in a.items():
        other = b[start]
        for name in ("results", "results_modified", "status"):
            np.testing.assert_array_equal(getattr(res, name), getattr(other, name))
        for name, values in res.extras.items():
            np.testing.assert_array_equal(values, other.extras[name])


# ----------------------------------------------------------------------------- hard bands

#: The bands of the cross-calibration studies (2-7 keV) and a harder one, with the
#: default fit.kt_limits = [0.05, 64]: below some kT the model has no counts in them.
HARD_BANDS = [pytest.param((2.0, 7.0), id="2-7keV"), pytest.param((5.0, 10.0), id="5-10keV")]


def _hard_job(responses, band, noise="poisson", temps=(1.0, 3.0, 8.0)):
    axes = {"mu": [3.0], "sigma": [1.0], "amp": [0.0, 0.2]}
    return make_job(responses, temps=temps, axes=axes, noise=noise, band=band)


@pytest.mark.parametrize("noise", ["asimov", "poisson"])
@pytest.mark.parametrize("band", HARD_BANDS)
def test_hard_band_native_agrees_with_reference(responses, band, noise):
    """A hard band runs with the default kT limits, and the engines agree as on 0.5-10 keV."""
    job = _hard_job(responses, band, noise)
    native, reference = NativeEngine(), ReferenceEngine()
    native.prepare(job)
    reference.prepare(job)
    a = run_all(native, job)
    b = run_all(reference, job)
    for start in a:
        assert (a[start].status == Status.OK).all() and (b[start].status == Status.OK).all()
        assert (a[start].status_modified == Status.OK).all()
        np.testing.assert_array_equal(a[start].status_modified, b[start].status_modified)
        np.testing.assert_allclose(  # Asimov: a linear axis' means are sums of two folds
            a[start].extras["counts"], b[start].extras["counts"], rtol=1e-12
        )
        assert (a[start].extras["counts"] > 10).all()
        # the norm follows kT along the fit's valley: with 30 counts (1 keV over 5-10 keV)
        # the reference's rough minimum (XSPEC's float32 steps) moves it by 0.3 %
        for name in ("norm", "norm_modified"):
            np.testing.assert_allclose(a[start].extras[name], b[start].extras[name], rtol=5e-3)
    assert _compare(a, b, job, _counts_of(reference, job)) == 12
    if noise == "asimov":  # the T1' fit of an Asimov spectrum is the truth
        for start, res in a.items():
            temps = job.grid.temperatures[job.grid.temperature_index(np.arange(start, start + 3))]
            np.testing.assert_allclose(res.results_modified[:, 1], temps, rtol=1e-3)


@pytest.mark.parametrize("band", HARD_BANDS)
def test_hard_band_fit_range_starts_where_the_band_has_counts(responses, band):
    """Both engines search kT from the same lowest kT with counts; below it the model has none."""
    job = _hard_job(responses, band, noise="asimov")
    native, reference = NativeEngine(), ReferenceEngine()
    native.prepare(job)
    reference.prepare(job)
    x_lo, x_hi = reference._log_limits
    assert (x_lo, x_hi) == native._x_limits
    assert np.log(0.05) < x_lo < np.log(0.2) and x_hi == np.log(64.0)
    arf = reference.inputs.arf[reference.inputs.rows]
    assert reference.fold(arf, np.exp(x_lo)).sum() > 0
    # just below, XSPEC's model is zero over the whole band (xrmod.models refuses it)
    below = x_lo - (BREAK_CLEARANCE if band == (5.0, 10.0) else 0.0) - 2 * FLOOR_XTOL
    with pytest.raises(ConfigError, match="all zeros"):
        reference.fold(arf, np.exp(below))
    assert native._base.knots[0] == x_lo


def test_default_band_searches_the_configured_kt_limits(responses):
    """Where the band has counts at fit.kt_limits[0] the range is fit.kt_limits (no change)."""
    job = make_job(responses, temps=[2.0], axes={"mu": [3.0], "sigma": [1.0], "amp": [0.0]})
    native, reference = NativeEngine(), ReferenceEngine()
    native.prepare(job)
    reference.prepare(job)
    assert native._x_limits == reference._log_limits == (np.log(0.05), np.log(64.0))


@pytest.mark.parametrize(
    ("band", "temps", "kt_limits", "key", "fragment"),
    [
        (
            (5.0, 10.0),
            (0.1, 1.0),
            (0.05, 64.0),
            "source.temperatures",
            "temperature 0.1 keV is below 0.1358 keV, the lowest kT at which tbabs*zbremss "
            "has counts in the band 5-10 keV (instrument.band)",
        ),
        (
            (10.0, 12.0),
            (0.1,),
            (0.05, 0.15),
            "instrument.band",
            "tbabs*zbremss has no counts in the band 10-12 keV at any kT of fit.kt_limits",
        ),
    ],
)
@pytest.mark.parametrize("cls", [NativeEngine, ReferenceEngine], ids=lambda c: c.name)
def test_impossible_hard_band_names_the_key(responses, cls, band, temps, kt_limits, key, fragment):
    """A band without counts where the job needs them is a config error naming the key to change."""
    axes = {"mu": [3.0], "sigma": [1.0], "amp": [0.0]}
    job = make_job(responses, temps=temps, axes=axes, band=band, kt_limits=kt_limits)
    with pytest.raises(ConfigError) as info:
        cls().prepare(job)
    assert info.value.key == key
    assert fragment in info.value.message


# ----------------------------------------------------------------------------- fast paths


def _same_units(a, b, *, rtol_modified=0.0):
    """Units of two runs agree: statuses, counts and T1 exactly; T1′ within *rtol_modified*."""
    for start in a:
        ua, ub = a[start], b[start]
        np.testing.assert_array_equal(ua.status, ub.status)
        np.testing.assert_array_equal(ua.status_modified, ub.status_modified)
        np.testing.assert_array_equal(ua.results, ub.results)
        np.testing.assert_array_equal(ua.extras["counts"], ub.extras["counts"])
        for name in ("results_modified",):
            np.testing.assert_allclose(
                getattr(ua, name), getattr(ub, name), rtol=rtol_modified, atol=0
            )
        for name in ("norm_modified", "cstat_modified"):
            np.testing.assert_allclose(
                ua.extras[name], ub.extras[name], rtol=max(rtol_modified, 1e-300) * 100, atol=1e-9
            )


@pytest.mark.parametrize(
    ("family", "axes"),
    [
        ("gaussian", {"mu": [1.5, 4.0], "sigma": [0.4], "amp": [-0.3, 0.0, 0.15, 0.4]}),
        ("gaussian", {"amp": [-0.2, 0.25], "mu": [1.5, 4.0], "sigma": [0.4]}),  # p not last
        ("linear", {"slope": [-0.05, 0.02, 0.08], "pivot": [3.0]}),
        ("edge", {"energy": [2.0], "depth": [-0.3, -0.1, 0.2], "width": [0.2]}),
    ],
)
def test_folds_along_a_linear_axis_match_direct_folds(responses, family, axes):
    # A′ = A (1 + p g): F(A) + p F(A g) instead of F(A′) per θ; the draws are the same
    # numbers, T1 identical, T1′ equal to rounding (the documented 1e-8 relative).
    job = make_job(responses, temps=[0.9, 3.0, 7.0], axes=axes, family=family, noise="poisson")
    fast, direct = NativeEngine(), NativeEngine(linear=False)
    fast.prepare(job)
    direct.prepare(job)
    assert fast._linear == job.family.linear
    a, b = run_all(fast, job), run_all(direct, job)
    _same_units(a, b, rtol_modified=1e-8)
    assert any((u.status_modified == Status.OK).any() for u in a.values())


def test_compiled_point_loop_equals_the_point_by_point_path(responses):
    from xrmod.engines.base import Engine

    job = make_job(
        responses,
        temps=[0.3, 1.2, 5.0, 30.0],
        axes={"mu": [2.0], "sigma": [0.6], "amp": [-0.2, 0.3]},
        noise="poisson",
        band=(2.0, 10.0),
    )
    engine = NativeEngine()
    engine.prepare(job)
    for k in range(job.grid.n_units()):
        unit = job.grid.unit(k)
        compiled = engine.run_unit(unit)
        _, state = engine._modified(unit)
        python = type(compiled).failed(unit.start, unit.stop)
        Engine._fit_points(engine, state, python)  # the base class: one _fit_point each
        _same_units({0: compiled}, {0: python})
        for name in compiled.extras:
            np.testing.assert_array_equal(compiled.extras[name], python.extras[name])


def test_compiled_point_loop_marks_points_without_counts(responses):
    job = make_job(
        responses,
        temps=[1.0, 2.0],
        axes={"mu": [2.0], "sigma": [0.6], "amp": [0.1]},
        noise="poisson",
    )
    engine = NativeEngine()
    engine.prepare(job)
    unit = job.grid.unit(0)
    _, state = engine._modified(unit)
    empty = state._replace(folded=np.zeros_like(state.folded))
    result = type(engine.run_unit(unit)).failed(unit.start, unit.stop)
    engine._fit_points(empty, result)
    assert (result.status == Status.NO_COUNTS).all()
    assert (result.status_modified == Status.NO_COUNTS).all()
    assert np.isnan(result.results).all() and (result.extras["counts"] == 0).all()
    bad = state._replace(folded=np.full_like(state.folded, np.nan))
    with pytest.raises(ValueError, match="finite and >= 0"):
        engine._fit_points(bad, result)


def test_tilt_pivot_changes_no_fit_of_noiseless_spectra(responses):
    # (E / pivot)**index = E**index · pivot**-index: a constant the free norm absorbs;
    # it scales the counts as the exposure would (so the bounds and the noise, not the fit)
    job = make_job(
        responses,
        temps=[1.0, 5.0],
        axes={"index": [-0.1, 0.08], "pivot": [1.0, 3.0, 9.0]},
        family="tilt",
    )
    assert job.family.scale_only == ("pivot",)
    engine = NativeEngine()
    engine.prepare(job)
    res = run_all(engine, job)
    for name in ("results", "results_modified"):
        kt = np.array([getattr(res[u.start], name) for u in map(job.grid.unit, range(6))])
        kt = kt.reshape(2, 3, 2, 3)[..., 1]  # index, pivot, temperature
        np.testing.assert_allclose(kt, kt[:, :1].repeat(3, axis=1), rtol=1e-6)


def test_validate_notes_an_axis_over_tilt_pivot(responses):
    job = make_job(
        responses, temps=[1.0], axes={"index": [0.1], "pivot": [1.0, 3.0]}, family="tilt"
    )
    (note,) = job.notes()
    assert note.startswith("note: pivot only multiplies the tilt ARF by a constant")
    assert note in job.summary().splitlines()
    one = make_job(
        responses, temps=[1.0], axes={"index": [0.1, 0.2], "pivot": [3.0]}, family="tilt"
    )
    assert one.notes() == []
