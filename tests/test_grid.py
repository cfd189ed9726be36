"""Grid indexing kernels (xrmod._grid) and the Grid / WorkUnit API (xrmod.grid)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from xrmod import _grid
from xrmod.errors import InputError
from xrmod.grid import Grid, WorkUnit
from xrmod.modifiers import get_family


def random_shape(rng: np.random.Generator, d: int) -> tuple[int, ...]:
    """A random shape with d axes of length 1..5 (size-1 axes are frequent)."""
    return tuple(int(n) for n in rng.integers(1, 6, d))


def make_grid(theta_shape, nt, realizations=1) -> Grid:
    axes = [(f"p{k}", np.linspace(-1.0, 1.0, n) + k) for k, n in enumerate(theta_shape)]
    return Grid(axes, np.geomspace(1.0, 10.0, nt), realizations)


GRID_CASES = [
    ((3,), 1, 1),
    ((1,), 1, 1),
    ((1,), 4, 1),
    ((2, 3), 5, 1),
    ((2, 3), 5, 3),
    ((1, 1, 1), 1, 2),
    ((4, 1, 2, 3), 3, 1),
    ((2, 2, 1, 3, 2), 4, 2),
]


# ---------------------------------------------------------------- kernels vs NumPy


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6])
def test_ravel_unravel_kernels_match_numpy(d):
    rng = np.random.default_rng(d)
    for _ in range(20):
        shape = random_shape(rng, d)
        size = int(np.prod(shape))
        flat = rng.integers(0, size, 50).astype(np.int64)
        multi = np.stack(np.unravel_index(flat, shape), axis=1).astype(np.int64)
        shape_arr = np.asarray(shape, dtype=np.int64)

        out = np.empty((flat.size, d), dtype=np.int64)
        assert _grid.unravel_index(flat, shape_arr, out) == -1
        np.testing.assert_array_equal(out, multi)

        back = np.empty(flat.size, dtype=np.int64)
        assert _grid.ravel_multi_index(out, shape_arr, back) == -1
        np.testing.assert_array_equal(back, np.ravel_multi_index(tuple(multi.T), shape))
        np.testing.assert_array_equal(back, flat)


def test_kernels_accept_read_only_inputs():
    shape = np.array([3, 1, 4], dtype=np.int64)
    flat = np.arange(12, dtype=np.int64)
    for arr in (shape, flat):
        arr.setflags(write=False)
    multi = np.empty((12, 3), dtype=np.int64)
    assert _grid.unravel_index(flat, shape, multi) == -1
    multi.setflags(write=False)
    out = np.empty(12, dtype=np.int64)
    assert _grid.ravel_multi_index(multi, shape, out) == -1
    np.testing.assert_array_equal(out, flat)
    k = np.arange(6, dtype=np.int64)
    k.setflags(write=False)
    units = np.empty((6, 3), dtype=np.int64)
    _grid.units(k, 4, 2, units)
    np.testing.assert_array_equal(units[:, 0], [0, 0, 1, 1, 2, 2])


def test_kernels_report_the_first_bad_entry():
    shape = np.array([2, 3], dtype=np.int64)
    multi = np.array([[0, 0], [1, 2], [1, 3], [-1, 0]], dtype=np.int64)
    assert _grid.ravel_multi_index(multi, shape, np.empty(4, dtype=np.int64)) == 2
    flat = np.array([0, 5, 6, -1], dtype=np.int64)
    assert _grid.unravel_index(flat, shape, np.empty((4, 2), dtype=np.int64)) == 2


def test_unit_bounds_arithmetic():
    # P = 10 points per theta, chunks of at most 4: [0,4) [4,8) [8,10) | [10,14) ...
    assert _grid.n_units(3, 10, 4) == 9
    assert _grid.unit_bounds(0, 10, 4) == (0, 0, 4)
    assert _grid.unit_bounds(2, 10, 4) == (0, 8, 10)
    assert _grid.unit_bounds(5, 10, 4) == (1, 18, 20)
    assert _grid.unit_bounds(4, 10, 10) == (4, 40, 50)
    assert _grid.unit_bounds(4, 10, 1000) == (4, 40, 50)


# ---------------------------------------------------------------- Grid indexing


@pytest.mark.parametrize(("theta_shape", "nt", "r"), GRID_CASES)
def test_grid_shape_properties(theta_shape, nt, r):
    g = make_grid(theta_shape, nt, r)
    assert g.theta_shape == theta_shape
    assert g.n_theta == int(np.prod(theta_shape))
    assert g.shape == (*theta_shape, *((r,) if r > 1 else ()), nt)
    assert g.ndim == len(g.shape)
    assert g.size == int(np.prod(g.shape))
    assert g.points_per_theta == r * nt
    assert g.axis_names == tuple(f"p{k}" for k in range(len(theta_shape)))


@pytest.mark.parametrize(("theta_shape", "nt", "r"), GRID_CASES)
def test_grid_ravel_unravel_round_trip(theta_shape, nt, r):
    g = make_grid(theta_shape, nt, r)
    flat = np.arange(g.size)
    multi = g.unravel(flat)
    assert multi.shape == (g.size, g.ndim)
    assert multi.dtype == np.int64
    np.testing.assert_array_equal(multi, np.stack(np.unravel_index(flat, g.shape), axis=1))
    np.testing.assert_array_equal(g.ravel(multi), flat)
    # a single point
    np.testing.assert_array_equal(g.ravel(multi[-1]), [g.size - 1])
    np.testing.assert_array_equal(g.unravel(g.size - 1), multi[-1:])


@pytest.mark.parametrize(("theta_shape", "nt", "r"), GRID_CASES)
def test_grid_component_indices(theta_shape, nt, r):
    g = make_grid(theta_shape, nt, r)
    flat = np.arange(g.size)
    full = np.unravel_index(flat, (g.n_theta, r, nt))
    np.testing.assert_array_equal(g.theta_index(flat), full[0])
    np.testing.assert_array_equal(g.realization_index(flat), full[1])
    np.testing.assert_array_equal(g.temperature_index(flat), full[2])
    assert g.temperature_index(g.size - 1) == nt - 1


@pytest.mark.parametrize(("theta_shape", "nt", "r"), GRID_CASES)
def test_one_point_helpers(theta_shape, nt, r):
    """point_temperature and point_unit: the array helpers' answers for one flat index."""
    g = make_grid(theta_shape, nt, r)
    for flat in range(g.size):
        t = g.point_temperature(flat)
        assert type(t) is int and t == int(g.temperature_index([flat])[0]) == flat % nt
        unit = g.point_unit(np.int64(flat))
        assert unit == WorkUnit(int(g.theta_index([flat])[0]), flat, flat + 1)
        assert type(unit.theta) is int and type(unit.start) is int
    for bad in (-1, g.size):
        with pytest.raises(InputError, match=rf"flat index {bad} is out of range"):
            g.point_temperature(bad)
        with pytest.raises(InputError, match="out of range"):
            g.point_unit(bad)
    for bad in (1.5, True):
        with pytest.raises(InputError, match="must be an integer"):
            g.point_unit(bad)


@pytest.mark.parametrize(("theta_shape", "nt", "r"), GRID_CASES)
def test_theta_parameters(theta_shape, nt, r):
    g = make_grid(theta_shape, nt, r)
    values = g.theta_parameters(np.arange(g.n_theta))
    assert list(values) == list(g.axis_names)
    mesh = np.meshgrid(*(v for _, v in g.axes), indexing="ij")
    for k, name in enumerate(g.axis_names):
        np.testing.assert_array_equal(values[name], mesh[k].ravel())
    one = g.theta_parameters(g.n_theta - 1)
    assert {name: v.shape for name, v in one.items()} == {name: (1,) for name in g.axis_names}


def test_random_grids_against_numpy():
    rng = np.random.default_rng(2026)
    for d in range(1, 6):
        for _ in range(10):
            g = make_grid(random_shape(rng, d), int(rng.integers(1, 5)), int(rng.integers(1, 4)))
            flat = rng.integers(0, g.size, 30)
            expected = np.stack(np.unravel_index(flat, g.shape), axis=1)
            np.testing.assert_array_equal(g.unravel(flat), expected)
            np.testing.assert_array_equal(g.ravel(expected), flat)


def test_index_errors():
    g = make_grid((2, 3), 4)
    with pytest.raises(InputError, match=r"multi-index \[0, 3, 0\] is out of range"):
        g.ravel([[0, 0, 0], [0, 3, 0]])
    with pytest.raises(InputError, match=r"must have shape \(n, 3\)"):
        g.ravel([[0, 0]])
    with pytest.raises(InputError, match=r"flat index 24 is out of range \[0, 24\)"):
        g.unravel([0, 24])
    with pytest.raises(InputError, match=r"flat index -1 is out of range"):
        g.temperature_index(-1)
    with pytest.raises(InputError, match=r"flat index 6 is out of range \[0, 6\)"):
        g.theta_parameters(6)
    with pytest.raises(InputError, match="must be integers"):
        g.unravel(1.5)


# ---------------------------------------------------------------- work units


def max_points_cases(p: int) -> list[int | None]:
    return [*sorted({1, 2, 3, max(p - 1, 1), p, p + 5}), None]


@pytest.mark.parametrize(("theta_shape", "nt", "r"), GRID_CASES)
def test_units_cover_every_point_once_and_never_cross_theta(theta_shape, nt, r):
    g = make_grid(theta_shape, nt, r)
    p = g.points_per_theta
    for m in max_points_cases(p):
        units = g.units(m)
        chunks = 1 if m is None else -(-p // m)
        assert units.shape == (g.n_units(m), 3) == (g.n_theta * chunks, 3)
        assert units.dtype == np.int64
        theta, start, stop = units.T
        assert (stop > start).all()
        assert (stop - start <= (p if m is None else m)).all()
        # inside its theta's contiguous range
        assert (start >= theta * p).all()
        assert (stop <= (theta + 1) * p).all()
        # every flat point exactly once, in order
        covered = np.concatenate([np.arange(a, b) for a, b in zip(start, stop, strict=True)])
        np.testing.assert_array_equal(covered, np.arange(g.size))
        np.testing.assert_array_equal(g.theta_index(start), theta)
        # unit(k) equals units()[k]
        for k in range(units.shape[0]):
            assert g.unit(k, m) == WorkUnit(*(int(v) for v in units[k]))
        if m is None or m >= p:
            np.testing.assert_array_equal(theta, np.arange(g.n_theta))


def test_unchunked_units_are_whole_thetas():
    g = make_grid((2, 3), 5, realizations=2)
    u = g.unit(4)
    assert u == WorkUnit(theta=4, start=40, stop=50)
    assert u.size == 10
    assert g.n_units() == 6
    assert g.n_units(7) == 12
    assert g.unit(3, 7) == WorkUnit(theta=1, start=17, stop=20)


def test_unit_errors():
    g = make_grid((2,), 3)
    with pytest.raises(InputError, match=r"unit number 2 is out of range \[0, 2\)"):
        g.unit(2)
    with pytest.raises(InputError, match=r"unit number -1 is out of range"):
        g.unit(-1)
    for bad in (0, -3):
        with pytest.raises(InputError, match=f"max_points must be >= 1, got {bad}"):
            g.units(bad)
    for bad in (1.5, True, "4"):
        with pytest.raises(InputError, match="max_points must be a positive integer"):
            g.n_units(bad)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("axes", "temps", "r", "pattern"),
    [
        ([("mu", [])], [1.0], 1, r"axis 'mu' is empty"),
        ([("mu", [[1.0, 2.0]])], [1.0], 1, r"axis 'mu' must be 1-D, got shape \(1, 2\)"),
        ([("mu", 3.0)], [1.0], 1, r"axis 'mu' must be 1-D, got shape \(\)"),
        ([("mu", [1.0, 2.0, 1.0])], [1.0], 1, r"axis 'mu' has duplicate values: 1\.0"),
        ([("mu", [1.0, np.nan])], [1.0], 1, r"axis 'mu' must be finite, got nan"),
        ([("mu", ["a"])], [1.0], 1, r"axis 'mu' must be numeric"),
        ([("mu", [1.0]), ("mu", [2.0])], [1.0], 1, r"duplicate axis names: mu"),
        ([("", [1.0])], [1.0], 1, r"each axis must be a \(name, values\) pair"),
        ([], [1.0], 1, r"at least one modifier axis"),
        ([("mu", [1.0])], [], 1, r"temperatures is empty"),
        ([("mu", [1.0])], [1.0, 0.0], 1, r"temperatures must be > 0, got 0\.0"),
        ([("mu", [1.0])], [2.0, -1.0], 1, r"temperatures must be > 0, got -1\.0"),
        ([("mu", [1.0])], [2.0, 2.0], 1, r"temperatures has duplicate values: 2\.0"),
        ([("mu", [1.0])], [1.0], 0, r"realizations must be an integer >= 1, got 0"),
        ([("mu", [1.0])], [1.0], 2.0, r"realizations must be an integer >= 1, got 2\.0"),
        ([("mu", [1.0])], [1.0], True, r"realizations must be an integer >= 1, got True"),
    ],
)
def test_grid_validation(axes, temps, r, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        Grid(axes, temps, r)
    assert isinstance(info.value, ValueError)


def test_grid_stores_read_only_copies():
    mu = np.array([0.5, 1.0, 2.0])
    temps = np.array([1.0, 2.0])
    g = Grid({"mu": mu, "sigma": [0.1]}, temps)
    assert g.axis_names == ("mu", "sigma")
    mu[0] = 99.0
    temps[0] = 99.0
    assert g.axes[0][1][0] == 0.5
    assert g.temperatures[0] == 1.0
    for _, values in g.axes:
        assert not values.flags.writeable
        assert values.dtype == np.float64
    assert not g.temperatures.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        g.temperatures[0] = 3.0


def test_grid_equality_and_repr():
    a = Grid([("mu", [1.0, 2.0]), ("sigma", [0.1])], [1.0, 2.0])
    b = Grid({"mu": np.array([1.0, 2.0]), "sigma": (0.1,)}, np.array([1.0, 2.0]))
    assert a == b
    assert a != Grid([("sigma", [0.1]), ("mu", [1.0, 2.0])], [1.0, 2.0])
    assert a != Grid([("mu", [1.0, 2.0]), ("sigma", [0.1])], [1.0, 2.0], realizations=2)
    assert repr(a) == "Grid(axes=(mu[2], sigma[1]), temperatures[2], realizations=1)"


def test_axis_order_is_the_users_order():
    g = Grid([("sigma", [0.1, 0.2]), ("amp", [0.0, 0.1, 0.2]), ("mu", [5.0])], [1.0])
    assert g.axis_names == ("sigma", "amp", "mu")
    assert g.theta_shape == (2, 3, 1)
    np.testing.assert_array_equal(g.theta_parameters(4)["amp"], [0.1])
    np.testing.assert_array_equal(g.theta_parameters(4)["sigma"], [0.2])


def test_theta_parameters_feed_a_modifier():
    g = Grid([("mu", [1.0, 6.0]), ("sigma", [0.2, 1.0]), ("amp", [-0.1, 0.1])], [2.0, 4.0])
    e = np.linspace(0.5, 10.0, 50)
    a = np.full(50, 400.0)
    got = get_family("gaussian").apply(e, a, g.theta_parameters(np.arange(g.n_theta)))
    for theta, (mu, sigma, amp) in enumerate(
        itertools.product([1.0, 6.0], [0.2, 1.0], [-0.1, 0.1])
    ):
        expected = a * (1 + amp * np.exp(-((e - mu) ** 2) / (2 * sigma**2)))
        np.testing.assert_allclose(got.values[theta], expected, rtol=1e-12)
