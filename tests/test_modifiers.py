"""ARF modification kernels (xrmod._modify) and the family registry (xrmod.modifiers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xrmod import _modify, modifiers
from xrmod.errors import InputError, ModifierError
from xrmod.modifiers import ModifierFamily, families, get_family, register
from xrmod.status import Status

PN_ARF = Path(__file__).resolve().parents[1] / "src" / "xrmod" / "data" / "pn.arf"


@pytest.fixture(scope="module")
def pn_arf() -> tuple[np.ndarray, np.ndarray]:
    """(energy mid-points in keV, SPECRESP) of the bundled XMM-pn ARF, read directly."""
    with fits.open(PN_ARF) as hdul:
        data = hdul["SPECRESP"].data
        lo = np.asarray(data["ENERG_LO"], dtype=np.float64)
        hi = np.asarray(data["ENERG_HI"], dtype=np.float64)
        area = np.asarray(data["SPECRESP"], dtype=np.float64)
    return 0.5 * (lo + hi), area


# ---------------------------------------------------------------- NumPy references


def ref_gaussian(e, a, mu, sigma, amp):
    mu, sigma, amp = (np.asarray(v)[:, None] for v in (mu, sigma, amp))
    return a * (1.0 + amp * np.exp(-((e - mu) ** 2) / (2.0 * sigma**2)))


def ref_tilt(e, a, index, pivot):
    index, pivot = (np.asarray(v)[:, None] for v in (index, pivot))
    return a * (e / pivot) ** index


def ref_linear(e, a, slope, pivot):
    slope, pivot = (np.asarray(v)[:, None] for v in (slope, pivot))
    return a * (1.0 + slope * (e - pivot))


def ref_edge(e, a, energy, depth, width):
    energy, depth, width = (np.asarray(v)[:, None] for v in (energy, depth, width))
    x = (e - energy) / width
    t = np.exp(-np.abs(x))  # never overflows
    logistic = np.where(x >= 0, 1.0 / (1.0 + t), t / (1.0 + t))
    return a * (1.0 + depth * logistic)


REFERENCES = {"gaussian": ref_gaussian, "tilt": ref_tilt, "linear": ref_linear, "edge": ref_edge}

# Random parameter ranges well inside each domain (and away from cancellation
# in 1 + ..., so 1e-12 relative is a fair test of the formula).
RANGES = {
    "gaussian": {"mu": (0.3, 12.0), "sigma": (0.02, 3.0), "amp": (-0.6, 0.6)},
    "tilt": {"index": (-0.5, 0.5), "pivot": (0.5, 10.0)},
    "linear": {"slope": (-0.04, 0.04), "pivot": (0.0, 12.0)},
    "edge": {"energy": (0.3, 12.0), "depth": (-0.6, 0.6), "width": (1e-4, 1.0)},
}


def random_params(family: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {p: rng.uniform(lo, hi, n) for p, (lo, hi) in RANGES[family].items()}


def reference(family: str, e, a, params) -> np.ndarray:
    fam = get_family(family)
    return REFERENCES[family](e, a, *(params[p] for p in fam.parameters))


# ---------------------------------------------------------------- kernels vs NumPy


@pytest.mark.parametrize("family", ["gaussian", "tilt", "linear", "edge"])
@pytest.mark.parametrize("n", [1, 2, 37])
def test_family_matches_numpy_on_pn_arf(family, n, pn_arf):
    e, a = pn_arf
    params = random_params(family, n, np.random.default_rng(n))
    got = get_family(family).apply(e, a, params)
    assert got.values.shape == (n, e.size)
    assert got.values.dtype == np.float64
    assert got.status.shape == (n,)
    assert got.status.dtype == np.int8
    np.testing.assert_allclose(got.values, reference(family, e, a, params), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got.status, Status.OK)
    assert got.ok.all()


@pytest.mark.parametrize("family", ["gaussian", "tilt", "linear", "edge"])
@pytest.mark.parametrize(("n", "ne"), [(1, 1), (3, 1), (1, 2), (5, 17)])
def test_odd_shapes(family, n, ne):
    rng = np.random.default_rng(1000 * n + ne)
    e = np.sort(rng.uniform(0.1, 15.0, ne))
    a = rng.uniform(1.0, 1000.0, ne)
    params = random_params(family, n, rng)
    got = get_family(family).apply(e, a, params)
    assert got.values.shape == (n, ne)
    np.testing.assert_allclose(got.values, reference(family, e, a, params), rtol=1e-12, atol=0)


def test_zero_parameter_sets(pn_arf):
    e, a = pn_arf
    empty = np.empty(0)
    got = get_family("gaussian").apply(e, a, {"mu": empty, "sigma": empty, "amp": empty})
    assert got.values.shape == (0, e.size)
    assert got.status.shape == (0,)


@pytest.mark.parametrize("family", ["gaussian", "tilt", "linear", "edge"])
def test_read_only_inputs(family, pn_arf):
    e, a = (v.copy() for v in pn_arf)
    params = random_params(family, 4, np.random.default_rng(7))
    for arr in (e, a, *params.values()):
        arr.setflags(write=False)
    expected = reference(family, e, a, params)
    fam = get_family(family)
    # through the wrapper ...
    np.testing.assert_allclose(fam.apply(e, a, params).values, expected, rtol=1e-12)
    # ... and straight into the kernel (const memoryviews accept read-only buffers)
    out = np.empty((4, e.size))
    status = np.empty(4, dtype=np.int8)
    fam.kernel(e, a, *(params[p] for p in fam.parameters), out, status)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(status, Status.OK)


def test_inputs_of_other_dtypes_and_layouts(pn_arf):
    e, a = pn_arf
    params = random_params("gaussian", 6, np.random.default_rng(3))
    expected = reference("gaussian", e, a, params)
    strided = {p: np.repeat(v, 2)[::2] for p, v in params.items()}  # non-contiguous views
    got = get_family("gaussian").apply(e.astype(np.float32), a, strided)
    np.testing.assert_allclose(
        got.values, reference("gaussian", e.astype(np.float32), a, params), rtol=1e-12
    )
    got = get_family("gaussian").apply(list(e), list(a), {p: list(v) for p, v in params.items()})
    np.testing.assert_allclose(got.values, expected, rtol=1e-12)


def test_scalars_are_broadcast(pn_arf):
    e, a = pn_arf
    mu = np.array([1.0, 2.0, 6.5])
    got = get_family("gaussian").apply(e, a, {"mu": mu, "sigma": 0.3, "amp": np.float64(0.1)})
    expected = ref_gaussian(e, a, mu, np.full(3, 0.3), np.full(3, 0.1))
    np.testing.assert_allclose(got.values, expected, rtol=1e-12)
    only_scalars = get_family("tilt").apply(e, a, {"index": 0.2, "pivot": 3.0})
    assert only_scalars.values.shape == (1, e.size)


def test_nogil_kernels_agree_across_threads(pn_arf):
    e, a = pn_arf
    params = random_params("edge", 200, np.random.default_rng(11))
    expected = reference("edge", e, a, params)
    fam = get_family("edge")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: fam.apply(e, a, params), range(8)))
    for r in results:
        np.testing.assert_allclose(r.values, expected, rtol=1e-12)


# ---------------------------------------------------------------- kernel shape checks

# The kernels' argument names, in order (edge's "energy" parameter is edge_energy).
KERNEL_ARGS = {
    "gaussian": ("mu", "sigma", "amp"),
    "tilt": ("index", "pivot"),
    "linear": ("slope", "pivot"),
    "edge": ("edge_energy", "depth", "width"),
}


def _kernel_args(family: str, n: int = 3, ne: int = 5) -> dict[str, np.ndarray]:
    """Every argument of the family's kernel by name, shapes that fit; out and status marked."""
    params = random_params(family, n, np.random.default_rng(5))
    values = [params[p] for p in get_family(family).parameters]
    return {
        "energy": np.linspace(0.5, 9.0, ne),
        "arf": np.full(ne, 100.0),
        **dict(zip(KERNEL_ARGS[family], values, strict=True)),
        "out": np.full((n, ne), -7.0),
        "status": np.full(n, 9, dtype=np.int8),
    }


def _call(family: str, args: dict[str, np.ndarray]) -> None:
    getattr(_modify, family)(*args.values())


@pytest.mark.parametrize("family", sorted(KERNEL_ARGS))
def test_kernel_accepts_matching_shapes(family):
    args = _kernel_args(family)
    _call(family, args)
    params = dict(zip(get_family(family).parameters, list(args.values())[2:-2], strict=True))
    expected = reference(family, args["energy"], args["arf"], params)
    np.testing.assert_allclose(args["out"], expected, rtol=1e-12)
    assert (args["status"] == Status.OK).all()


@pytest.mark.parametrize("size", [2, 4, 0])  # n = 3: one short, one long, empty
@pytest.mark.parametrize(
    ("family", "name"), [(f, p) for f, names in sorted(KERNEL_ARGS.items()) for p in names]
)
def test_kernel_refuses_a_parameter_of_another_length(family, name, size):
    args = _kernel_args(family)
    args[name] = np.ones(size)
    with pytest.raises(
        ValueError,
        match=rf"^{family}: {name} has shape \({size},\) but out has shape \(3, 5\) "
        rf"\(one {name} per row of out\)$",
    ):
        _call(family, args)
    assert (args["out"] == -7.0).all() and (args["status"] == 9).all()  # nothing written


@pytest.mark.parametrize("family", sorted(KERNEL_ARGS))
@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("arf", np.ones(4), r"arf has shape \(4,\) but energy has shape \(5,\)$"),
        ("arf", np.ones(50), r"arf has shape \(50,\) but energy has shape \(5,\)$"),
        (
            "out",
            np.empty((3, 6)),
            r"out has shape \(3, 6\) but energy has shape \(5,\) \(out needs one column "
            r"per energy\)$",
        ),
        (
            "status",
            np.empty(2, dtype=np.int8),
            r"status has shape \(2,\) but out has shape \(3, 5\) \(one status per row of out\)$",
        ),
    ],
)
def test_kernel_refuses_arrays_that_do_not_fit(family, name, bad, message):
    args = _kernel_args(family)
    args[name] = bad
    with pytest.raises(ValueError, match=rf"^{family}: {message}"):
        _call(family, args)
    if name != "out":
        assert (args["out"] == -7.0).all()
    if name != "status":
        assert (args["status"] == 9).all()


def test_kernel_checks_energy_against_out_when_there_are_no_sets():
    args = _kernel_args("gaussian", n=0)
    args["energy"] = np.linspace(1.0, 2.0, 4)
    with pytest.raises(ValueError, match=r"arf has shape \(5,\) but energy has shape \(4,\)"):
        _call("gaussian", args)


@pytest.mark.parametrize(
    ("family", "name"),
    [(f, p) for f in sorted(KERNEL_ARGS) for p in ("energy", "arf", *KERNEL_ARGS[f], "out")],
)
def test_kernel_refuses_none(family, name):
    args = _kernel_args(family)
    args[name] = None
    with pytest.raises(TypeError, match=f"Argument '{name}' must not be None"):
        _call(family, args)


def test_apply_leaves_the_shape_check_to_the_kernel(monkeypatch):
    monkeypatch.setattr(modifiers, "_REGISTRY", dict(modifiers._REGISTRY))
    seen = []

    def record(energy, arf, factor, out, status):  # checks nothing: apply must call it anyway
        seen.append((energy.shape, arf.shape, factor.shape, out.shape, status.shape))
        status[:] = Status.OK

    fam = register(
        ModifierFamily("record", ("factor",), {"factor": ""}, "A'(E) = A(E)", kernel=record)
    )
    fam.apply([1.0, 2.0, 3.0], [1.0, 1.0], {"factor": [1.0, 2.0]})
    assert seen == [((3,), (2,), (2,), (2, 3), (2,))]


def test_apply_words_the_kernels_refusal_for_the_user():
    fam = get_family("edge")
    e, a = np.linspace(1, 2, 5), np.ones(5)
    with pytest.raises(
        ModifierError, match=r"^energies and arf must have the same length, got 5 and 6$"
    ) as info:
        fam.apply(e, np.ones(6), {"energy": 1.0, "depth": 0.1, "width": 1.0})
    assert isinstance(info.value.__cause__, ValueError)
    assert "edge: arf has shape (6,) but energy has shape (5,)" in str(info.value.__cause__)
    with pytest.raises(
        ModifierError,
        match=r"^modifier parameters must all have the same length, got energy=2, width=3$",
    ):
        fam.apply(e, a, {"energy": [1.0, 2.0], "depth": 0.1, "width": [1.0, 1.0, 1.0]})


def test_apply_passes_on_a_kernel_error_that_is_not_about_shapes(monkeypatch):
    monkeypatch.setattr(modifiers, "_REGISTRY", dict(modifiers._REGISTRY))

    def broken(energy, arf, factor, out, status):
        raise ValueError("something else")

    fam = register(ModifierFamily("broken", ("factor",), {"factor": ""}, "x", kernel=broken))
    with pytest.raises(ValueError, match=r"^something else$"):
        fam.apply([1.0, 2.0], [1.0, 1.0], {"factor": 1.0})


# ---------------------------------------------------------------- hand-derived values


def test_gaussian_has_the_factor_two():
    # At E = mu ± sigma the factor is 1 + amp·e^{-1/2}; without the 2 it would be 1 + amp·e^{-1}.
    mu, sigma, amp = 4.0, 0.5, 0.3
    e = np.array([mu - sigma, mu, mu + sigma, mu + 2 * sigma])
    a = np.array([100.0, 200.0, 300.0, 400.0])
    got = get_family("gaussian").apply(e, a, {"mu": mu, "sigma": sigma, "amp": amp}).values[0]
    expected = a * (1 + amp * np.exp([-0.5, 0.0, -0.5, -2.0]))
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert not np.allclose(got[0], a[0] * (1 + amp * np.exp(-1.0)), rtol=1e-3)


@pytest.mark.parametrize("amp", [0.3, -0.9, 1e6, 1e-300, 0.0])
def test_gaussian_far_tail_is_exact(amp):
    # The kernel skips exp where |amp|·exp(-x) < 2**-54: there the bracket is exactly 1.
    mu, sigma = 5.0, 0.1
    x = np.linspace(0.0, 80.0, 4001)  # (E - mu)²/(2 sigma²) across the cut-off
    e = mu + sigma * np.sqrt(2 * x)
    a = np.linspace(1.0, 2.0, e.size)
    got = get_family("gaussian").apply(e, a, {"mu": mu, "sigma": sigma, "amp": amp}).values[0]
    expected = ref_gaussian(e, a, [mu], [sigma], [amp])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    exact_one = 1.0 + amp * np.exp(-((e - mu) ** 2) / (2 * sigma**2)) == 1.0
    assert exact_one.any()
    np.testing.assert_array_equal(got[exact_one], a[exact_one])


def test_tilt_is_one_at_pivot_and_a_power_law():
    e = np.array([1.0, 2.0, 4.0, 8.0])
    a = np.ones(4)
    got = get_family("tilt").apply(e, a, {"index": 1.0, "pivot": 2.0}).values[0]
    np.testing.assert_allclose(got, [0.5, 1.0, 2.0, 4.0], rtol=1e-15)


def test_linear_hand_values():
    e = np.array([1.0, 3.0, 5.0])
    a = np.array([2.0, 2.0, 2.0])
    got = get_family("linear").apply(e, a, {"slope": 0.1, "pivot": 3.0}).values[0]
    np.testing.assert_allclose(got, [1.6, 2.0, 2.4], rtol=1e-15)


def test_edge_limits_and_midpoint():
    e = np.array([1.0, 2.0, 3.0, 1000.0])
    a = np.full(4, 10.0)
    # tiny width: x = ±1e6 on either side of the edge — no overflow, exact limits
    got = get_family("edge").apply(e, a, {"energy": 2.0, "depth": -0.25, "width": 1e-6}).values[0]
    np.testing.assert_array_equal(got, [10.0, 10.0 * (1 - 0.125), 7.5, 7.5])
    wide = get_family("edge").apply(e, a, {"energy": 2.0, "depth": 0.5, "width": 1.0}).values[0]
    np.testing.assert_allclose(wide[:3], 10 * (1 + 0.5 / (1 + np.exp([1.0, 0.0, -1.0]))))


# ---------------------------------------------------------------- status codes


def test_kernel_status_codes_are_status_values():
    assert _modify.STATUS_CODES == {
        "OK": Status.OK,
        "ARF_NEGATIVE": Status.ARF_NEGATIVE,
        "ARF_NONFINITE": Status.ARF_NONFINITE,
    }


def test_negative_arf_is_reported_not_clipped(pn_arf):
    e, a = pn_arf
    params = {"slope": np.array([0.01, -0.5, 0.5]), "pivot": np.array([5.0, 5.0, 5.0])}
    got = get_family("linear").apply(e, a, params)
    np.testing.assert_array_equal(got.status, [Status.OK, Status.ARF_NEGATIVE, Status.ARF_NEGATIVE])
    np.testing.assert_array_equal(got.ok, [True, False, False])
    assert (got.values[1] < 0).any() and (got.values[2] < 0).any()
    np.testing.assert_allclose(got.values, ref_linear(e, a, **params), rtol=1e-12, atol=1e-9)


def test_edge_deeper_than_one_goes_negative(pn_arf):
    e, a = pn_arf
    got = get_family("edge").apply(e, a, {"energy": 7.0, "depth": -1.5, "width": 0.05})
    assert got.status[0] == Status.ARF_NEGATIVE
    above = e > 9.0  # x = (E - 7) / 0.05 >= 40: the step is complete
    np.testing.assert_allclose(got.values[0, above], -0.5 * a[above], rtol=1e-12)


def test_nonfinite_arf_is_reported(pn_arf):
    e, a = pn_arf
    # (16 / 0.01)**200 overflows to inf
    got = get_family("tilt").apply(
        e, a, {"index": np.array([0.1, 200.0]), "pivot": np.array([1.0, 0.01])}
    )
    np.testing.assert_array_equal(got.status, [Status.OK, Status.ARF_NONFINITE])
    assert np.isinf(got.values[1]).any()


def test_nonfinite_takes_precedence_over_negative():
    e = np.array([1.0, 2.0, 3.0])
    a = np.array([1.0, np.nan, -1.0])  # a broken ARF: one NaN, one negative
    got = get_family("gaussian").apply(e, a, {"mu": 2.0, "sigma": 1.0, "amp": 0.1})
    assert got.status[0] == Status.ARF_NONFINITE
    assert np.isnan(got.values[0, 1])
    assert got.values[0, 2] < 0


# ---------------------------------------------------------------- registry


def test_builtin_families():
    assert families() == ("edge", "gaussian", "linear", "tilt")
    assert get_family("gaussian").parameters == ("mu", "sigma", "amp")
    assert get_family("tilt").parameters == ("index", "pivot")
    assert get_family("linear").parameters == ("slope", "pivot")
    assert get_family("edge").parameters == ("energy", "depth", "width")
    for name in families():
        fam = get_family(name)
        assert set(fam.units) == set(fam.parameters)
        assert fam.name == name


@pytest.mark.parametrize("name", ["gaussian", "tilt", "linear", "edge"])
def test_formula_is_in_the_kernel_docstring(name):
    fam = get_family(name)
    assert "\n" not in fam.formula
    assert fam.formula in fam.kernel.__doc__


def test_unknown_family_message():
    with pytest.raises(ModifierError) as info:
        get_family("gausian")
    assert str(info.value) == (
        "unknown modifier family 'gausian'; known: edge, gaussian, linear, tilt; "
        "did you mean 'gaussian'?"
    )
    assert isinstance(info.value, InputError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ModifierError, match=r"unknown modifier family 'zzz'; known: edge"):
        get_family("zzz")


def test_missing_and_unknown_parameters_listed_at_once():
    with pytest.raises(ModifierError) as info:
        get_family("gaussian").validate({"mu": 1.0, "sigm": 0.1, "width": 2.0})
    msg = str(info.value)
    assert "missing: sigma, amp" in msg
    assert "unknown: sigm (did you mean 'sigma'?), width" in msg
    with pytest.raises(ModifierError, match="missing: energy, depth, width"):
        get_family("edge").validate({})


@pytest.mark.parametrize(
    ("family", "values", "pattern"),
    [
        (
            "gaussian",
            {"mu": 1.0, "sigma": [0.2, -0.3], "amp": 0.1},
            r"'sigma' must be > 0, got -0\.3",
        ),
        ("gaussian", {"mu": 1.0, "sigma": 0.0, "amp": 0.1}, r"'sigma' must be > 0, got 0\.0"),
        ("tilt", {"index": 1.0, "pivot": -2.5}, r"'pivot' must be > 0, got -2\.5"),
        (
            "edge",
            {"energy": 7.1, "depth": -0.1, "width": -0.125},
            r"'width' must be > 0, got -0\.125",
        ),
        ("linear", {"slope": np.inf, "pivot": 1.0}, r"'slope' must be finite, got inf"),
        (
            "gaussian",
            {"mu": [1.0, np.nan], "sigma": 1.0, "amp": 0.1},
            r"'mu' must be finite, got nan",
        ),
        ("tilt", {"index": "steep", "pivot": 1.0}, r"'index' must be numeric, got 'steep'"),
    ],
)
def test_domain_errors_quote_the_value(family, values, pattern):
    with pytest.raises(ModifierError, match=pattern):
        get_family(family).validate(values)
    e = np.linspace(1, 2, 3)
    with pytest.raises(ModifierError, match=pattern):
        get_family(family).apply(e, np.ones(3), values)


def test_linear_pivot_may_be_any_finite_value():
    get_family("linear").validate({"slope": [-1.0, 1.0], "pivot": [-3.0, 0.0]})


def test_apply_checks_shapes():
    fam = get_family("gaussian")
    e, a = np.linspace(1, 2, 5), np.ones(5)
    with pytest.raises(ModifierError, match="same length, got mu=2, sigma=3"):
        fam.apply(e, a, {"mu": [1.0, 2.0], "sigma": [1.0, 1.0, 1.0], "amp": 0.1})
    with pytest.raises(ModifierError, match="scalars or 1-D"):
        fam.apply(e, a, {"mu": [[1.0]], "sigma": 1.0, "amp": 0.1})
    with pytest.raises(ModifierError, match="same length, got 5 and 4"):
        fam.apply(e, a[:4], {"mu": 1.0, "sigma": 1.0, "amp": 0.1})
    with pytest.raises(ModifierError, match=r"energies must be a non-empty 1-D array"):
        fam.apply([], [], {"mu": 1.0, "sigma": 1.0, "amp": 0.1})
    with pytest.raises(ModifierError, match=r"energies must be finite and > 0 keV, got 0\.0"):
        fam.apply([0.0, 1.0], [1.0, 1.0], {"mu": 1.0, "sigma": 1.0, "amp": 0.1})


def test_register_a_new_family(monkeypatch):
    monkeypatch.setattr(modifiers, "_REGISTRY", dict(modifiers._REGISTRY))

    def scale(energy, arf, factor, out, status):  # a pure-Python stand-in kernel
        out[:] = np.asarray(factor)[:, None] * np.asarray(arf)[None, :]
        status[:] = Status.OK

    fam = register(
        ModifierFamily(
            name="scale",
            parameters=("factor",),
            units={"factor": ""},
            formula="A'(E) = A(E) * factor",
            kernel=scale,
        )
    )
    assert get_family("scale") is fam
    assert "scale" in families()
    got = fam.apply([1.0, 2.0], [3.0, 4.0], {"factor": [1.0, 2.0]})
    np.testing.assert_array_equal(got.values, [[3.0, 4.0], [6.0, 8.0]])
    with pytest.raises(ModifierError, match="already registered"):
        register(ModifierFamily("scale", ("factor",), {"factor": ""}, "x", kernel=scale))


def test_family_definition_is_checked():
    with pytest.raises(ModifierError, match="no unit for parameter"):
        ModifierFamily("bad", ("a", "b"), {"a": ""}, "x", kernel=print)
    with pytest.raises(ModifierError, match="duplicate parameter"):
        ModifierFamily("bad", ("a", "a"), {"a": ""}, "x", kernel=print)
    with pytest.raises(ModifierError, match="constraints for unknown"):
        ModifierFamily(
            "bad", ("a",), {"a": ""}, "x", kernel=print, constraints={"b": modifiers.POSITIVE}
        )


def test_families_are_immutable():
    fam = get_family("gaussian")
    with pytest.raises(AttributeError):
        fam.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        fam.units["mu"] = "eV"  # type: ignore[index]
    assert hash(fam) == hash(get_family("gaussian"))
