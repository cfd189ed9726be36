"""The spline kernel (``xrmod._spline.evaluate``) against scipy's NdBSpline, and the interpolation.

SciPy is the independent computation: random clamped non-uniform knot
vectors and random coefficients, values and every first partial derivative
(``NdBSpline(..., nu=...)``) for 1 to 5 axes, at random points and exactly
at the knots and the ends of the span. Then the emulator's interpolation
(``spline_coefficients``, ``_along_axis``) against polynomials it must
reproduce exactly, and the kernel's argument checks.
"""

import numpy as np
import pytest
from scipy.interpolate import NdBSpline

from xrmod import _spline
from xrmod.analysis.emulator import QUANTITIES
from xrmod.analysis.spline import _along_axis, spline_coefficients

# ---------------------------------------------------------------- helpers


def _clamped_knots(rng, n_coef):
    """Cubic clamped knots for *n_coef* coefficients on a random span, distinct interior knots."""
    lo = rng.uniform(-3.0, 1.0)
    hi = lo + rng.uniform(0.5, 5.0)
    gaps = rng.uniform(0.2, 1.8, n_coef - 3)  # n_coef - 4 interior knots, unevenly spaced
    interior = lo + (hi - lo) * np.cumsum(gaps)[:-1] / gaps.sum()
    return np.r_[[lo] * 4, interior, [hi] * 4]


def _points(rng, knots, n):
    """n points: uniform in the span, or exactly a knot (ends included), axis by axis; corners."""
    d = len(knots)
    x = np.empty((n, d))
    for a, t in enumerate(knots):
        on_knot = rng.random(n) < 0.4
        x[:, a] = np.where(on_knot, rng.choice(np.unique(t), n), rng.uniform(t[0], t[-1], n))
    lo = np.array([t[0] for t in knots])
    hi = np.array([t[-1] for t in knots])
    corners = np.array(
        [lo, hi, np.where(np.arange(d) % 2, lo, hi), np.where(np.arange(d) % 2, hi, lo)]
    )
    return np.ascontiguousarray(np.vstack([x, corners]))


def _flat(knots):
    return np.concatenate(knots), np.cumsum([0] + [t.size for t in knots]).astype(np.intp)


def _kernel(x, knots, coef, gradient=False):
    """The kernel's values (n, n_out) and, with *gradient*, partials (n, n_out, d)."""
    flat, start = _flat(knots)
    c = np.ascontiguousarray(coef.reshape(coef.shape[0], int(np.prod(coef.shape[1:]))))
    value = np.full((x.shape[0], c.shape[0]), np.nan)
    grad = np.full((x.shape[0], c.shape[0], x.shape[1]), np.nan) if gradient else None
    _spline.evaluate(x, flat, start, c, value, grad)
    return (value, grad) if gradient else value


def _scipy(x, knots, coef, nu=None):
    """NdBSpline of the same knots and coefficients (outputs as trailing dimension): (n, n_out)."""
    spline = NdBSpline(tuple(knots), np.moveaxis(coef, 0, -1), 3)
    return spline(x, nu=nu)


def _random_spline(rng, d, n_out=1):
    knots = [_clamped_knots(rng, int(rng.integers(4, 8 if d < 5 else 7))) for _ in range(d)]
    coef = rng.uniform(-1.0, 1.0, (n_out, *(t.size - 4 for t in knots)))
    return knots, coef


def _derivative_scale(knots, coef):
    """A size for the partial derivatives: |coef| over the smallest knot spacing."""
    h = min(np.diff(np.unique(t)).min() for t in knots)
    return np.abs(coef).max() / h


# ---------------------------------------------------------------- kernel vs NdBSpline


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5])
def test_values_match_ndbspline(d):
    rng = np.random.default_rng(100 + d)
    knots, coef = _random_spline(rng, d)
    x = _points(rng, knots, 300)
    expected = _scipy(x, knots, coef)
    assert np.ptp(expected) > 0.1  # a spline that varies, not a constant
    np.testing.assert_allclose(_kernel(x, knots, coef), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5])
def test_every_partial_derivative_matches_ndbspline(d):
    rng = np.random.default_rng(200 + d)
    knots, coef = _random_spline(rng, d)
    x = _points(rng, knots, 300)
    value, grad = _kernel(x, knots, coef, gradient=True)
    np.testing.assert_allclose(value, _scipy(x, knots, coef), rtol=1e-12, atol=1e-12)
    scale = _derivative_scale(knots, coef)
    for a in range(d):
        nu = np.zeros(d, dtype=int)
        nu[a] = 1
        expected = _scipy(x, knots, coef, nu=nu)
        assert np.abs(expected).max() > 1e-3 * scale  # not a trivially zero derivative
        np.testing.assert_allclose(grad[:, :, a], expected, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.parametrize("d", [1, 3])
def test_exactly_at_the_ends_and_knots(d):
    """Every combination of knot values, both ends included (the last interval owns the end)."""
    rng = np.random.default_rng(300 + d)
    knots, coef = _random_spline(rng, d)
    mesh = np.meshgrid(*[np.unique(t) for t in knots], indexing="ij")
    x = np.ascontiguousarray(np.stack([m.ravel() for m in mesh], axis=1))
    value, grad = _kernel(x, knots, coef, gradient=True)
    np.testing.assert_allclose(value, _scipy(x, knots, coef), rtol=1e-12, atol=1e-12)
    scale = _derivative_scale(knots, coef)
    for a in range(d):
        nu = np.eye(d, dtype=int)[a]
        np.testing.assert_allclose(
            grad[:, :, a], _scipy(x, knots, coef, nu=nu), rtol=1e-10, atol=1e-12 * scale
        )
    # at the span's corners a clamped spline equals its corner coefficient
    first = x[np.all(x == [t[0] for t in knots], axis=1)]
    last = x[np.all(x == [t[-1] for t in knots], axis=1)]
    assert _kernel(first, knots, coef)[0, 0] == pytest.approx(coef[(0,) + (0,) * d], abs=1e-14)
    assert _kernel(last, knots, coef)[0, 0] == pytest.approx(coef[(0,) + (-1,) * d], abs=1e-14)


def test_outside_the_span_extends_the_end_pieces():
    """The kernel clamps to the end intervals: NdBSpline's extrapolation, not garbage."""
    rng = np.random.default_rng(4)
    knots, coef = _random_spline(rng, 2)
    span = [(t[0], t[-1]) for t in knots]
    x = np.array(
        [
            [span[0][0] - 0.3, span[1][0] - 0.1],
            [span[0][1] + 0.2, span[1][1] + 0.4],
            [span[0][0] - 1.0, 0.5 * (span[1][0] + span[1][1])],
        ]
    )
    value, grad = _kernel(x, knots, coef, gradient=True)
    np.testing.assert_allclose(value, _scipy(x, knots, coef), rtol=1e-11, atol=1e-11)
    for a in range(2):
        nu = np.eye(2, dtype=int)[a]
        np.testing.assert_allclose(grad[:, :, a], _scipy(x, knots, coef, nu=nu), rtol=1e-10)


@pytest.mark.parametrize("d", [1, 2, 4])
def test_several_outputs_equal_each_alone(d):
    rng = np.random.default_rng(400 + d)
    knots, coef = _random_spline(rng, d, n_out=5)
    x = _points(rng, knots, 200)
    value, grad = _kernel(x, knots, coef, gradient=True)
    plain = _kernel(x, knots, coef)
    for q in range(coef.shape[0]):
        v, g = _kernel(x, knots, coef[q : q + 1], gradient=True)
        np.testing.assert_array_equal(value[:, q], v[:, 0])
        np.testing.assert_array_equal(grad[:, q], g[:, 0])
        np.testing.assert_array_equal(plain[:, q], _kernel(x, knots, coef[q : q + 1])[:, 0])
    # and the outputs are what NdBSpline gives for the stacked coefficients
    np.testing.assert_allclose(value, _scipy(x, knots, coef), rtol=1e-12, atol=1e-12)
    assert np.ptp(value[:, 0] - value[:, 1]) > 0  # the outputs differ: no row mix-up hides


@pytest.mark.parametrize("d", [1, 3, 5])
def test_values_identical_with_and_without_gradient(d):
    rng = np.random.default_rng(500 + d)
    knots, coef = _random_spline(rng, d, n_out=2)
    x = _points(rng, knots, 200)
    value, _ = _kernel(x, knots, coef, gradient=True)
    np.testing.assert_array_equal(_kernel(x, knots, coef), value)


def test_no_points_and_no_outputs():
    rng = np.random.default_rng(6)
    knots, coef = _random_spline(rng, 2)
    assert _kernel(np.empty((0, 2)), knots, coef).shape == (0, 1)
    value, grad = _kernel(_points(rng, knots, 3), knots, coef[:0], gradient=True)
    assert value.shape == (7, 0)
    assert grad.shape == (7, 0, 2)


def test_read_only_inputs_accepted():
    rng = np.random.default_rng(7)
    knots, coef = _random_spline(rng, 3, n_out=2)
    x = _points(rng, knots, 50)
    flat, start = _flat(knots)
    c = np.ascontiguousarray(coef.reshape(2, -1))
    expected = _kernel(x, knots, coef)
    for array in (x, flat, start, c):
        array.setflags(write=False)
    value = np.empty((x.shape[0], 2))
    grad = np.empty((x.shape[0], 2, 3))
    _spline.evaluate(x, flat, start, c, value, grad)
    np.testing.assert_array_equal(value, expected)
    np.testing.assert_allclose(value, _scipy(x, knots, coef), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- argument checks


def _valid_arguments(d=2, n=4, n_out=3):
    rng = np.random.default_rng(8)
    knots, coef = _random_spline(rng, d, n_out=n_out)
    flat, start = _flat(knots)
    x = _points(rng, knots, n)[:n].copy()
    return {
        "x": x,
        "knots": flat,
        "knot_start": start,
        "coef": np.ascontiguousarray(coef.reshape(n_out, -1)),
        "value": np.zeros((n, n_out)),
        "gradient": np.zeros((n, n_out, d)),
    }


def _call(args):
    return _spline.evaluate(
        args["x"], args["knots"], args["knot_start"], args["coef"], args["value"], args["gradient"]
    )


def test_valid_arguments_pass():
    args = _valid_arguments()
    _call(args)
    assert np.all(args["value"] != 0)


_BAD = {
    "knot_start length": ("knot_start", lambda a: a[:-1].copy(), r"knot_start has shape \(2,\)"),
    "knot_start past knots": ("knot_start", lambda a: a + 1, r"knot_start spans .* knots has"),
    "knots too short": ("knots", lambda a: a[:-1].copy(), r"knot_start spans .* knots has"),
    "coef width": ("coef", lambda a: a[:, 1:].copy(), r"coef has shape \(3, \d+\) but the knots"),
    "coef too wide": ("coef", lambda a: np.zeros((3, a.shape[1] + 1)), r"coef has shape \(3, "),
    "value width": ("value", lambda a: a[:, :2].copy(), r"value has shape \(4, 2\), expected"),
    "value rows": ("value", lambda a: np.zeros((5, 3)), r"value has shape \(5, 3\), expected"),
    "gradient d": ("gradient", lambda a: np.zeros((4, 3, 3)), r"gradient has shape \(4, 3, 3\)"),
    "gradient n_out": ("gradient", lambda a: a[:, :2].copy(), r"gradient has shape \(4, 2, 2\)"),
    "gradient rows": ("gradient", lambda a: a[:3].copy(), r"gradient has shape \(3, 3, 2\)"),
    "no columns": ("x", lambda a: a[:, :0].copy(), r"x has 0 columns"),
}


@pytest.mark.parametrize("case", list(_BAD))
def test_shape_errors_name_the_argument(case):
    name, change, match = _BAD[case]
    args = _valid_arguments()
    args[name] = change(args[name])
    before = args["value"].copy()
    with pytest.raises(ValueError, match=match):
        _call(args)
    np.testing.assert_array_equal(args["value"], before)  # refused before writing anything


def test_too_few_knots_names_the_axis():
    args = _valid_arguments()
    start = args["knot_start"]
    t0, t1 = args["knots"][start[0] : start[1]], args["knots"][start[1] : start[2]]
    short = np.r_[[t1[0]] * 3, [t1[-1]] * 4]  # 7 knots: no cubic piece
    args["knots"] = np.r_[t0, short]
    args["knot_start"] = np.array([0, t0.size, t0.size + 7], dtype=np.intp)
    with pytest.raises(ValueError, match="axis 1 has 7 knots; a cubic needs at least 8"):
        _call(args)


def test_more_axes_than_max_dimensions():
    d = _spline.MAX_DIMENSIONS + 1
    t = np.r_[[0.0] * 4, [1.0] * 4]
    args = {
        "x": np.full((2, d), 0.5),
        "knots": np.tile(t, d),
        "knot_start": np.arange(d + 1, dtype=np.intp) * 8,
        "coef": np.zeros((1, 4**d)),
        "value": np.zeros((2, 1)),
        "gradient": None,
    }
    with pytest.raises(ValueError, match=f"x has {d} columns; 1 to {d - 1} axes"):
        _call(args)


def test_max_dimensions_itself_works():
    """The largest supported d runs (its work arrays are the biggest) and agrees with a product."""
    d = _spline.MAX_DIMENSIONS
    rng = np.random.default_rng(10)
    t = np.r_[[0.0] * 4, [1.0] * 4]
    # coefficients of a product of per-axis cubics: the spline is the product of 1-D splines
    factors = rng.uniform(0.5, 1.5, (d, 4))
    coef = factors[0]
    for f in factors[1:]:
        coef = np.multiply.outer(coef, f)
    x = rng.uniform(0.0, 1.0, (3, d))
    value = _kernel(x, [t] * d, coef[None])
    expected = np.ones(3)
    for a in range(d):
        expected *= _scipy(x[:, a : a + 1], [t], factors[a][None])[:, 0]
    np.testing.assert_allclose(value[:, 0], expected, rtol=1e-12)


# ---------------------------------------------------------------- interpolation


def _nodes(rng, n):
    """n increasing, unevenly spaced nodes."""
    return np.cumsum(rng.uniform(0.3, 1.7, n)) - 1.0


def test_interpolates_through_every_node():
    rng = np.random.default_rng(11)
    coords = [_nodes(rng, n) for n in (2, 3, 4, 7)]
    values = {"T1": rng.normal(size=[c.size for c in coords])}
    knots, coef = spline_coefficients(coords, values)
    assert coef.shape == (1, *[t.size - 4 for t in knots])
    mesh = np.meshgrid(*coords, indexing="ij")
    x = np.ascontiguousarray(np.stack([m.ravel() for m in mesh], axis=1))
    np.testing.assert_allclose(_kernel(x, knots, coef)[:, 0], values["T1"].ravel(), atol=1e-12)
    # the same spline for scipy
    np.testing.assert_allclose(_scipy(x, knots, coef)[:, 0], values["T1"].ravel(), atol=1e-12)


def test_quantities_come_out_in_their_order():
    rng = np.random.default_rng(12)
    coords = [_nodes(rng, 5), _nodes(rng, 4)]
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    knots, coef = spline_coefficients(coords, {"T1_modified": b, "T1": a})
    assert QUANTITIES.index("T1") < QUANTITIES.index("T1_modified")
    mesh = np.meshgrid(*coords, indexing="ij")
    x = np.ascontiguousarray(np.stack([m.ravel() for m in mesh], axis=1))
    value = _kernel(x, knots, coef)
    np.testing.assert_allclose(value[:, 0], a.ravel(), atol=1e-12)
    np.testing.assert_allclose(value[:, 1], b.ravel(), atol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_two_or_three_nodes_give_the_line_or_parabola(n):
    rng = np.random.default_rng(20 + n)
    x_nodes = _nodes(rng, n)
    y = rng.normal(size=n)
    t, c = _along_axis(x_nodes, y[None, :], 1)
    np.testing.assert_array_equal(t, np.r_[[x_nodes[0]] * 4, [x_nodes[-1]] * 4])
    assert c.shape == (1, 4)
    poly = np.polyfit(x_nodes, y, n - 1)
    x = np.r_[x_nodes, rng.uniform(x_nodes[0], x_nodes[-1], 50)][:, None]
    value, grad = _kernel(np.ascontiguousarray(x), [t], c, gradient=True)
    np.testing.assert_allclose(value[:, 0], np.polyval(poly, x[:, 0]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        grad[:, 0, 0], np.polyval(np.polyder(poly), x[:, 0]), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("n", [2, 3])
def test_few_nodes_along_a_middle_axis(n):
    """_along_axis on axis 1 of a 3-D array: each line along it gets its own polynomial."""
    rng = np.random.default_rng(30 + n)
    x_nodes = _nodes(rng, n)
    y = rng.normal(size=(3, n, 2))
    t, c = _along_axis(x_nodes, y, 1)
    assert c.shape == (3, 4, 2)
    x = np.ascontiguousarray(rng.uniform(x_nodes[0], x_nodes[-1], (40, 1)))
    for i in range(3):
        for k in range(2):
            poly = np.polyfit(x_nodes, y[i, :, k], n - 1)
            value = _kernel(x, [t], c[i, :, k][None])
            np.testing.assert_allclose(value[:, 0], np.polyval(poly, x[:, 0]), atol=1e-12)


@pytest.mark.parametrize("n", [4, 5, 9])
def test_not_a_knot_reproduces_any_cubic(n):
    rng = np.random.default_rng(40 + n)
    x_nodes = _nodes(rng, n)
    poly = rng.normal(size=4) * [3.0, 1.0, 1.0, 1.0]  # a genuine cubic
    t, c = _along_axis(x_nodes, np.polyval(poly, x_nodes)[None, :], 1)
    x = np.ascontiguousarray(np.r_[x_nodes, rng.uniform(x_nodes[0], x_nodes[-1], 100)][:, None])
    value, grad = _kernel(x, [t], c, gradient=True)
    np.testing.assert_allclose(value[:, 0], np.polyval(poly, x[:, 0]), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        grad[:, 0, 0], np.polyval(np.polyder(poly), x[:, 0]), rtol=1e-9, atol=1e-9
    )


def test_not_a_knot_differs_from_a_quartic():
    """The exactness above is the cubic's: a quartic between 5 unequal nodes is not reproduced."""
    rng = np.random.default_rng(50)
    x_nodes = _nodes(rng, 5)
    poly = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    t, c = _along_axis(x_nodes, np.polyval(poly, x_nodes)[None, :], 1)
    x = np.ascontiguousarray(np.linspace(x_nodes[0], x_nodes[-1], 101)[:, None])
    assert np.abs(_kernel(x, [t], c)[:, 0] - np.polyval(poly, x[:, 0])).max() > 1e-4


def test_tensor_interpolation_reproduces_the_product_polynomial():
    """Axes of 2, 3 and 5 nodes: degree 1, 2 and 3 in each, exact everywhere, gradient too."""
    rng = np.random.default_rng(60)
    coords = [_nodes(rng, 2), _nodes(rng, 3), _nodes(rng, 5)]
    p = [rng.normal(size=2), rng.normal(size=3), rng.normal(size=4)]

    def f(x):
        return (
            np.polyval(p[0], x[..., 0]) * np.polyval(p[1], x[..., 1]) * np.polyval(p[2], x[..., 2])
            + 0.5 * x[..., 0] * x[..., 2] ** 3
        )

    mesh = np.stack(np.meshgrid(*coords, indexing="ij"), axis=-1)
    knots, coef = spline_coefficients(coords, {"T1": f(mesh), "T1_width": -2.0 * f(mesh)})
    lo = [c[0] for c in coords]
    hi = [c[-1] for c in coords]
    x = np.ascontiguousarray(rng.uniform(lo, hi, (200, 3)))
    value, grad = _kernel(x, knots, coef, gradient=True)
    np.testing.assert_allclose(value[:, 0], f(x), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(value[:, 1], -2.0 * f(x), rtol=1e-10, atol=1e-10)
    h = 1e-6
    for a in range(3):
        step = np.zeros(3)
        step[a] = h
        numeric = (f(x + step) - f(x - step)) / (2 * h)
        np.testing.assert_allclose(grad[:, 0, a], numeric, rtol=1e-6, atol=1e-6)
