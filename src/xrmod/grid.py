"""The computation grid: modifier axes × [realizations] × temperatures.

Grid points are numbered in C order over the shape (N1, …, Nd, [R], NT): the
d modifier axes θ vary slowest and the temperature fastest, so the
P = R · NT points of one θ form the contiguous flat range
[θ · P, (θ + 1) · P). A *work unit* is one θ with all its points, or, with
``max_points`` = m, one of the ⌈P / m⌉ consecutive chunks of at most m of
its points; a unit never crosses θ, so the modified ARF (and its folded
tables) are built once per unit. Unit k's bounds follow from k in O(1)
(:meth:`Grid.unit`), so a scheduler can hand out bare unit numbers from a
shared counter. The index arithmetic runs in the compiled module
``xrmod._grid`` (``ext/_grid.pyx``).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from xrmod import _grid
from xrmod.errors import InputError

__all__ = ["Grid", "WorkUnit"]

_MAX_SIZE = 2**62  # flat indices stay far from int64 overflow


@dataclass(frozen=True)
class WorkUnit:
    """One schedulable piece of the grid: flat points [start, stop) of one θ.

    Parameters
    ----------
    theta : int
        Flat index of θ over the modifier axes (C order).
    start, stop : int
        Half-open range of flat grid indices.
    """

    theta: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of grid points in the unit."""
        return self.stop - self.start


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _axis_values(what: str, values: ArrayLike, *, positive: bool = False) -> np.ndarray:
    """Validated read-only float64 copy of one axis."""
    try:
        arr = np.array(values, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} must be numeric, got {values!r}") from e
    if arr.ndim != 1:
        raise InputError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{what} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(f"{what} must be finite, got {float(arr[bad][0])!r}")
    if positive and (arr <= 0).any():
        raise InputError(f"{what} must be > 0, got {float(arr[arr <= 0][0])!r}")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        dups = ", ".join(repr(float(v)) for v in uniq[counts > 1])
        raise InputError(f"{what} has duplicate values: {dups}")
    return _readonly(arr)


def _max_points(max_points: int | None) -> int | None:
    if max_points is None:
        return None
    if isinstance(max_points, bool):
        raise InputError(f"max_points must be a positive integer or None, got {max_points!r}")
    try:
        m = operator.index(max_points)
    except TypeError as e:
        raise InputError(
            f"max_points must be a positive integer or None, got {max_points!r}"
        ) from e
    if m < 1:
        raise InputError(f"max_points must be >= 1, got {m}")
    return m


def _int_array(what: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{what} must be integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


@dataclass(frozen=True, eq=False, repr=False)
class Grid:
    """Modifier axes × [realizations] × temperatures, numbered in C order.

    Parameters
    ----------
    axes : sequence of (str, array_like) pairs, or mapping
        Modifier axes in the user's order (config ``[modifier.axes]``): each
        name with its 1-D, non-empty, finite values without duplicates.
    temperatures : array_like
        (NT,) true temperatures in keV (``source.temperatures``), > 0.
    realizations : int, optional
        Noise realizations per (θ, T) (``library.realizations``); more than 1
        adds an axis before the temperature axis.

    Notes
    -----
    Values are copied into read-only float64 arrays.
    """

    axes: tuple[tuple[str, np.ndarray], ...]
    temperatures: np.ndarray
    realizations: int = 1

    def __post_init__(self) -> None:
        raw = self.axes.items() if isinstance(self.axes, Mapping) else self.axes
        try:
            pairs = [tuple(p) for p in raw]
        except TypeError as e:
            raise InputError(f"axes must be (name, values) pairs, got {self.axes!r}") from e
        if not pairs:
            raise InputError("a grid needs at least one modifier axis")
        axes = []
        for pair in pairs:
            if len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
                raise InputError(f"each axis must be a (name, values) pair, got {pair!r}")
            axes.append((pair[0], _axis_values(f"axis {pair[0]!r}", pair[1])))
        names = [n for n, _ in axes]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise InputError(f"duplicate axis names: {', '.join(dups)}")
        temps = _axis_values("temperatures", self.temperatures, positive=True)
        if isinstance(self.realizations, bool):
            raise InputError(f"realizations must be an integer >= 1, got {self.realizations!r}")
        try:
            r = operator.index(self.realizations)
        except TypeError as e:
            raise InputError(
                f"realizations must be an integer >= 1, got {self.realizations!r}"
            ) from e
        if r < 1:
            raise InputError(f"realizations must be an integer >= 1, got {r}")
        object.__setattr__(self, "axes", tuple(axes))
        object.__setattr__(self, "temperatures", temps)
        object.__setattr__(self, "realizations", r)
        size = 1
        for n in self.shape:
            size *= n
        if size >= _MAX_SIZE:
            raise InputError(f"grid of shape {self.shape} has too many points ({size})")

    # ------------------------------------------------------------ shape ---

    @property
    def axis_names(self) -> tuple[str, ...]:
        """Modifier axis names, in order."""
        return tuple(n for n, _ in self.axes)

    @property
    def theta_shape(self) -> tuple[int, ...]:
        """(N1, …, Nd): the modifier axes' lengths."""
        return tuple(v.size for _, v in self.axes)

    @property
    def n_theta(self) -> int:
        """Number of modifier parameter sets θ, ∏ Ni."""
        return int(np.prod(self.theta_shape, dtype=np.int64))

    @property
    def shape(self) -> tuple[int, ...]:
        """(N1, …, Nd, [R], NT); R only when ``realizations`` > 1."""
        r = (self.realizations,) if self.realizations > 1 else ()
        return (*self.theta_shape, *r, self.temperatures.size)

    @property
    def ndim(self) -> int:
        """Number of dimensions of :attr:`shape`."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of grid points."""
        return self.n_theta * self.points_per_theta

    @property
    def points_per_theta(self) -> int:
        """P = R · NT, the grid points of one θ."""
        return self.realizations * self.temperatures.size

    # ---------------------------------------------------------- indices ---

    def ravel(self, multi_index: ArrayLike) -> np.ndarray:
        """Flat C-order indices of multi-indices.

        Parameters
        ----------
        multi_index : array_like of int
            (n, ndim), or (ndim,) for one point.

        Returns
        -------
        numpy.ndarray
            (n,) int64.
        """
        multi = _int_array("multi_index", multi_index)
        if multi.ndim == 1:
            multi = multi.reshape(1, -1)
        if multi.ndim != 2 or multi.shape[1] != self.ndim:
            raise InputError(
                f"multi_index must have shape (n, {self.ndim}) for a grid of shape "
                f"{self.shape}, got {multi.shape}"
            )
        out = np.empty(multi.shape[0], dtype=np.int64)
        bad = _grid.ravel_multi_index(multi, np.asarray(self.shape, dtype=np.int64), out)
        if bad >= 0:
            raise InputError(
                f"multi-index {multi[bad].tolist()} is out of range for grid shape {self.shape}"
            )
        return out

    def unravel(self, flat: ArrayLike) -> np.ndarray:
        """Multi-indices of flat C-order indices.

        Parameters
        ----------
        flat : int or array_like of int
            Scalar or (n,) flat indices in [0, size).

        Returns
        -------
        numpy.ndarray
            (n, ndim) int64.
        """
        return self._unravel(flat, self.shape)

    def _unravel(self, flat: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
        idx = _int_array("flat index", flat).reshape(-1)
        out = np.empty((idx.size, len(shape)), dtype=np.int64)
        bad = _grid.unravel_index(idx, np.asarray(shape, dtype=np.int64), out)
        if bad >= 0:
            size = int(np.prod(shape, dtype=np.int64))
            raise InputError(f"flat index {int(idx[bad])} is out of range [0, {size})")
        return out

    def _flat(self, flat: ArrayLike) -> np.ndarray:
        idx = _int_array("flat index", flat)
        if idx.size and (idx.min() < 0 or idx.max() >= self.size):
            bad = idx[(idx < 0) | (idx >= self.size)].flat[0]
            raise InputError(f"flat index {int(bad)} is out of range [0, {self.size})")
        return idx

    def theta_index(self, flat: ArrayLike) -> np.ndarray:
        """Flat θ index (over the modifier axes) of flat grid indices."""
        return self._flat(flat) // self.points_per_theta

    def temperature_index(self, flat: ArrayLike) -> np.ndarray:
        """Index into :attr:`temperatures` of flat grid indices."""
        return self._flat(flat) % self.temperatures.size

    def realization_index(self, flat: ArrayLike) -> np.ndarray:
        """Realization number (0 … R−1) of flat grid indices."""
        return (self._flat(flat) // self.temperatures.size) % self.realizations

    def _point(self, flat: int) -> int:
        """One flat index as a Python int, checked to be in range."""
        if isinstance(flat, (bool, np.bool_)):
            raise InputError(f"flat index must be an integer, got {flat!r}")
        try:
            index = operator.index(flat)
        except TypeError as e:
            raise InputError(f"flat index must be an integer, got {flat!r}") from e
        if not 0 <= index < self.size:
            raise InputError(f"flat index {index} is out of range [0, {self.size})")
        return index

    def point_temperature(self, flat: int) -> int:
        """Index into :attr:`temperatures` of the one point *flat* (:meth:`temperature_index`)."""
        return self._point(flat) % self.temperatures.size

    def point_unit(self, flat: int) -> WorkUnit:
        """The work unit of the one point *flat*: its θ, points [flat, flat + 1)."""
        index = self._point(flat)
        return WorkUnit(index // self.points_per_theta, index, index + 1)

    def theta_parameters(self, theta_flat: ArrayLike) -> dict[str, np.ndarray]:
        """Modifier parameter values of flat θ indices.

        Parameters
        ----------
        theta_flat : int or array_like of int
            Scalar or (n,) indices in [0, n_theta).

        Returns
        -------
        dict of str to numpy.ndarray
            Axis name → (n,) float64 values, in axis order (the shape
            :meth:`xrmod.modifiers.ModifierFamily.apply` takes).
        """
        multi = self._unravel(theta_flat, self.theta_shape)
        return {name: values[multi[:, k]] for k, (name, values) in enumerate(self.axes)}

    # ------------------------------------------------------- work units ---

    def _chunk(self, max_points: int | None) -> int:
        m = _max_points(max_points)
        return self.points_per_theta if m is None else m

    def n_units(self, max_points: int | None = None) -> int:
        """Number of work units: n_theta, or n_theta · ⌈P / max_points⌉."""
        return int(_grid.n_units(self.n_theta, self.points_per_theta, self._chunk(max_points)))

    def unit(self, k: int, max_points: int | None = None) -> WorkUnit:
        """Work unit number ``k`` in O(1).

        Parameters
        ----------
        k : int
            Unit number in [0, n_units(max_points)).
        max_points : int, optional
            Split each θ into consecutive chunks of at most this many points.
        """
        m = self._chunk(max_points)
        n = self.n_units(max_points)
        try:
            kk = operator.index(k)
        except TypeError as e:
            raise InputError(f"unit number must be an integer, got {k!r}") from e
        if not 0 <= kk < n:
            raise InputError(f"unit number {kk} is out of range [0, {n})")
        theta, start, stop = _grid.unit_bounds(kk, self.points_per_theta, m)
        return WorkUnit(int(theta), int(start), int(stop))

    def units(self, max_points: int | None = None) -> np.ndarray:
        """All work units as an (n_units, 3) int64 array of [theta, start, stop)."""
        m = self._chunk(max_points)
        k = np.arange(self.n_units(max_points), dtype=np.int64)
        out = np.empty((k.size, 3), dtype=np.int64)
        _grid.units(k, self.points_per_theta, m, out)
        return out

    # ------------------------------------------------------------ misc ---

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return (
            self.axis_names == other.axis_names
            and all(
                np.array_equal(a, b) for (_, a), (_, b) in zip(self.axes, other.axes, strict=True)
            )
            and np.array_equal(self.temperatures, other.temperatures)
            and self.realizations == other.realizations
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        axes = ", ".join(f"{n}[{v.size}]" for n, v in self.axes)
        return (
            f"Grid(axes=({axes}), temperatures[{self.temperatures.size}], "
            f"realizations={self.realizations})"
        )
