"""The default emulator: a tensor-product cubic spline through every node of a library.

:class:`SplineEmulator` interpolates the targets of
:mod:`xrmod.analysis.training` — log(T1/kT_true), log(T1′/kT_true) and their
log widths — with a cubic spline in every axis (not-a-knot; an axis of two
or three values gets the one polynomial through them), in log kT_true and
in the log of a modifier axis whose values are geometric. The tensor-product
system is a Kronecker product, solved one axis at a time, exactly; the
compiled kernel ``xrmod._spline`` evaluates it with its gradients. Unknown
nodes (failed points) are filled smoothly for the solve
(:func:`fill_unknown`) and the cells next to them masked (:func:`cells_ok`).
:func:`leave_one_slice_out` measures the accuracy, which the neural
emulator reuses on its own held-out slices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from xrmod.analysis.emulator import (
    QUANTITIES,
    Accuracy,
    Bound,
    Emulator,
)
from xrmod.analysis.training import FITS, Axis, TrainingSet

if TYPE_CHECKING:
    pass

__all__ = [
    "SplineEmulator",
    "cell_index",
    "cells_ok",
    "evaluate_raw",
    "fill_unknown",
    "interior_slices",
    "known_nodes",
    "leave_one_slice_out",
    "max_abs",
    "rms",
    "slice_errors",
    "slice_points",
    "spline_coefficients",
]


class SplineEmulator(Emulator):
    """Tensor-product cubic spline through every node of the library (the default emulator).

    Parameters
    ----------
    training : TrainingSet
        The library's nodes (:func:`xrmod.analysis.training.read_training_set`).
    accuracy : bool
        Measure the accuracy (leave-one-slice-out) when built; without it
        the emulator's own error is taken as 0.
    max_slices : int
        At most this many interior slices per axis are left out in turn
        (spread over the axis): bounds the cost on big grids.
    """

    kind = "spline"

    def __init__(
        self,
        training: TrainingSet | None,
        *,
        accuracy: bool = True,
        max_slices: int = 8,
        header: Mapping[str, Any] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ):
        super().__init__(training, header=header)
        if training is not None:
            filled = {
                q: fill_unknown(training.targets[q], known_nodes(training, q)) for q in QUANTITIES
            }
            self._knots, self._coef = spline_coefficients(
                [a.coordinates for a in self.axes], filled
            )
            self._usable = {fit: training.usable[fit] for fit in FITS}
            if accuracy:
                self.accuracy = leave_one_slice_out(training, filled, max_slices=max_slices)
        else:
            assert arrays is not None
            self._knots = [np.asarray(arrays[f"knots/{a.name}"]) for a in self.axes]
            self._coef = arrays["coef"]
            self._usable = {fit: np.asarray(arrays[f"usable/{fit}"], bool) for fit in FITS}
        self._flat_knots = np.concatenate(self._knots)
        self._knot_start = np.cumsum([0] + [t.size for t in self._knots]).astype(np.intp)
        self._coef = np.ascontiguousarray(self._coef, dtype=np.float64)
        self._flat_coef = self._coef.reshape(len(QUANTITIES), -1)  # a view: one copy in memory
        self._cell_ok = {fit: cells_ok(u) for fit, u in self._usable.items()}

    def _evaluate(self, x, quantities, *, gradient):
        from xrmod import _spline

        rows = [QUANTITIES.index(q) for q in quantities]
        coef = self._flat_coef if len(rows) == len(QUANTITIES) else self._flat_coef[rows]
        coef = np.ascontiguousarray(coef)
        x = np.ascontiguousarray(x, dtype=np.float64)
        value = np.empty((x.shape[0], len(rows)))
        grad = np.empty((x.shape[0], len(rows), x.shape[1])) if gradient else None
        _spline.evaluate(x, self._flat_knots, self._knot_start, coef, value, grad)
        values = {q: value[:, i] for i, q in enumerate(quantities)}
        grads = {q: grad[:, i, :] for i, q in enumerate(quantities)} if gradient else None
        return values, grads

    def _valid(self, x, fit):
        cell_ok = self._cell_ok[fit]
        if cell_ok is None:  # every node usable
            return np.ones(x.shape[0], dtype=bool)
        return cell_ok[tuple(cell_index(a, x[:, j]) for j, a in enumerate(self.axes))]

    def bind(self, kT_true: ArrayLike, fit: str = "T1") -> Callable[[np.ndarray], Bound]:
        """As :meth:`Emulator.bind`, contracting the kT_true axis once per temperature.

        The kT_true basis functions at the m fixed temperatures are computed
        here, once; a call then evaluates the spline over the modifier axes
        only, with the coefficients of every kT_true basis function as its
        outputs, and finishes with one small matrix product: a quarter of
        the work per point, and the m temperatures share it.
        """
        from xrmod import _spline

        fit, kT, log_kT = self._bind_inputs(kT_true, fit)
        t_knots = self._knots[-1]
        n_t = t_knots.size - 4
        basis = np.empty((kT.size, n_t))
        slope = np.empty((kT.size, n_t, 1))
        start = np.array([0, t_knots.size], dtype=np.intp)
        _spline.evaluate(log_kT[:, None].copy(), t_knots, start, np.eye(n_t), basis, slope)
        rows = [QUANTITIES.index(fit), QUANTITIES.index(f"{fit}_width")]
        coef = np.moveaxis(self._coef[rows], -1, 1)  # (2, n_t, *theta coefficients)
        theta_coef = np.ascontiguousarray(coef.reshape(2 * n_t, -1))
        theta_knots = self._flat_knots[: self._knot_start[-2]]
        theta_start = self._knot_start[:-1]
        cell_ok = self._cell_ok[fit]
        t_cells = cell_index(self.axes[-1], log_kT)

        def evaluate(theta: np.ndarray) -> Bound:
            x = self._theta_coordinates(theta)
            n = x.shape[0]
            if x.shape[1] == 0:  # no modifier axis varies: the coefficients are the values
                c = np.broadcast_to(theta_coef[:, 0], (n, 2 * n_t))
            else:
                c = np.empty((n, 2 * n_t))
                _spline.evaluate(x, theta_knots, theta_start, theta_coef, c)
            c = c.reshape(n, 2, n_t)
            values = c @ basis.T  # (n, 2, m)
            dr = c[:, 0, :] @ slope[:, :, 0].T
            if cell_ok is None:
                valid = np.ones((n, kT.size), dtype=bool)
            else:
                index = tuple(cell_index(a, x[:, j])[:, None] for j, a in enumerate(self.axes[:-1]))
                valid = cell_ok[(*index, t_cells[None, :])]
            return self._bound(kT, values[:, 0], dr, values[:, 1], valid, fit)

        return evaluate

    @classmethod
    def _from_saved(cls, group, header):
        arrays = {f"knots/{name}": group[f"knots/{name}"][()] for name in group["knots"]}
        arrays["coef"] = group["coef"][()]
        for fit in FITS:
            arrays[f"usable/{fit}"] = group[f"usable/{fit}"][()]
        return cls(None, header=header, arrays=arrays)

    def _save_arrays(self, group):
        for axis, t in zip(self.axes, self._knots, strict=True):
            group.create_dataset(f"knots/{axis.name}", data=t)
        group.create_dataset("coef", data=self._coef, compression="gzip", shuffle=True)
        for fit, usable in self._usable.items():
            group.create_dataset(f"usable/{fit}", data=usable, compression="gzip")


# ---------------------------------------------------------------- splines
def spline_coefficients(
    coordinates: Sequence[np.ndarray], values: Mapping[str, np.ndarray]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Knots per axis and coefficients (n_quantities, *n_coef) interpolating *values*.

    Each quantity of *values* (arrays over the grid of *coordinates*, no NaN)
    in the order of :data:`QUANTITIES` where present. The tensor-product
    interpolation system is a Kronecker product, so it is solved one axis at
    a time, exactly.
    """
    names = [q for q in QUANTITIES if q in values]
    c = np.stack([values[q] for q in names])
    knots = []
    for j, x in enumerate(coordinates):
        t, c = _along_axis(x, c, j + 1)
        knots.append(t)
    return knots, c


def _along_axis(x: np.ndarray, y: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-spline knots and coefficients interpolating *y* at nodes *x* along *axis*.

    Four or more nodes: not-a-knot cubic (SciPy's ``make_interp_spline``).
    Two or three: the line or parabola through them, written as one cubic
    piece (its values at four points interpolated on knots [a]*4 + [b]*4).
    """
    from scipy.interpolate import make_interp_spline

    if x.size >= 4:
        spline = make_interp_spline(x, y, k=3, axis=axis)
        return spline.t, np.moveaxis(spline.c, 0, axis)
    z = np.linspace(x[0], x[-1], 4)
    lagrange = np.ones((4, x.size))
    for i in range(x.size):
        for m in range(x.size):
            if m != i:
                lagrange[:, i] *= (z - x[m]) / (x[i] - x[m])
    yz = np.moveaxis(np.tensordot(lagrange, y, axes=([1], [axis])), 0, axis)
    t = np.r_[[x[0]] * 4, [x[-1]] * 4]
    spline = make_interp_spline(z, yz, k=3, t=t, axis=axis)
    return spline.t, np.moveaxis(spline.c, 0, axis)


def known_nodes(training: TrainingSet, quantity: str) -> np.ndarray:
    """Nodes where *quantity* has a value: the fit is usable (and, for a width, finite)."""
    fit = quantity.removesuffix("_width")
    return training.usable[fit] & np.isfinite(training.targets[quantity])


def fill_unknown(values: np.ndarray, known: np.ndarray, sweeps: int = 400) -> np.ndarray:
    """*values* with the unknown nodes filled smoothly from the known ones.

    Each unknown node becomes the mean of its grid neighbours, repeated
    until it settles (a discrete Laplace equation with the known nodes as its
    boundary): smooth, no overshoot, and only the spline's input — the
    emulator still refuses predictions next to these nodes.
    """
    if known.all():
        return values
    out = np.where(known, values, np.nanmean(np.where(known, values, np.nan)))
    unknown = ~known
    for _ in range(sweeps):
        total = np.zeros_like(out)
        count = np.zeros_like(out)
        for axis in range(out.ndim):
            if out.shape[axis] < 2:
                continue
            lo = [slice(None)] * out.ndim
            hi = [slice(None)] * out.ndim
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            total[tuple(hi)] += out[tuple(lo)]
            count[tuple(hi)] += 1
            total[tuple(lo)] += out[tuple(hi)]
            count[tuple(lo)] += 1
        new = total / count
        change = np.abs(new[unknown] - out[unknown]).max()
        out[unknown] = new[unknown]
        if change < 1e-10:
            break
    return out


def cell_index(axis: Axis, coordinates: np.ndarray) -> np.ndarray:
    """Index of the grid cell holding each of *coordinates* along *axis* (0 to nodes - 2)."""
    return np.searchsorted(axis.coordinates[1:-1], coordinates, side="right")


def cells_ok(usable: np.ndarray) -> np.ndarray | None:
    """Per grid cell, whether all its corners are usable (None: every node is)."""
    if usable.all():
        return None
    ok = usable
    for axis in range(usable.ndim):
        lo = [slice(None)] * ok.ndim
        hi = [slice(None)] * ok.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        ok = ok[tuple(lo)] & ok[tuple(hi)]
    return ok


# ---------------------------------------------------------------- accuracy
def leave_one_slice_out(
    training: TrainingSet,
    filled: Mapping[str, np.ndarray],
    *,
    max_slices: int = 8,
    slices: Sequence[tuple[int, int]] | None = None,
) -> Accuracy:
    """The spline's error at nodes it was not built from.

    For each axis and each of up to *max_slices* interior indices k
    (:func:`interior_slices`), or for each (axis, k) of *slices* when given,
    the spline is built again without the slice of nodes at k along that axis
    (a rectilinear grid still) and predicts that slice; the errors at usable
    nodes with usable neighbours along the axis are pooled. Leaving a slice
    out doubles the node spacing there, so this overstates the error of the
    full spline between nodes: a conservative estimate.
    """
    fits = list(FITS)
    errors: dict[str, list[np.ndarray]] = {fit: [] for fit in fits}
    relative: dict[str, list[np.ndarray]] = {fit: [] for fit in fits}
    per_axis: dict[str, list[np.ndarray]] = {}
    coords = [a.coordinates for a in training.axes]
    if slices is None:
        slices = interior_slices(training, max_slices)
    for j, k in slices:
        axis = training.axes[j]
        keep = np.delete(np.arange(axis.nodes.size), k)
        reduced = [c if i != j else c[keep] for i, c in enumerate(coords)]
        sub = {fit: np.take(filled[fit], keep, axis=j) for fit in fits}
        knots, coef = spline_coefficients(reduced, sub)
        x = slice_points(coords, j, k)
        predicted = evaluate_raw(knots, coef, x)
        for i, fit in enumerate(fits):
            err, rel = slice_errors(training, fit, j, k, predicted[:, i])
            errors[fit].append(err)
            relative[fit].append(rel)
            if fit == "T1":
                per_axis.setdefault(axis.name, []).append(err)
    return Accuracy(
        method="leave-one-slice-out",
        rms={f: rms(errors[f]) for f in fits},
        max={f: max_abs(errors[f]) for f in fits},
        rms_relative={f: rms(relative[f]) for f in fits},
        nodes={f: int(sum(e.size for e in errors[f])) for f in fits},
        per_axis={a: rms(e) for a, e in per_axis.items()},
    )


def interior_slices(training: TrainingSet, max_slices: int = 8) -> list[tuple[int, int]]:
    """(axis, index) of the slices :func:`leave_one_slice_out` leaves out, axis by axis.

    Per axis of three or more nodes, up to *max_slices* interior indices spread over it.
    """
    out = []
    for j, axis in enumerate(training.axes):
        n = axis.nodes.size
        if n >= 3:
            interior = np.linspace(1, n - 2, min(max_slices, n - 2)).round().astype(int)
            out += [(j, int(k)) for k in np.unique(interior)]
    return out


def slice_points(coords: Sequence[np.ndarray], axis: int, k: int) -> np.ndarray:
    """Coordinates of every node with index *k* along *axis* (C order of the others)."""
    grids = [c if i != axis else c[k : k + 1] for i, c in enumerate(coords)]
    mesh = np.meshgrid(*grids, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def evaluate_raw(knots: Sequence[np.ndarray], coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Every quantity of (*knots*, *coef*) (:func:`spline_coefficients`) at points *x*: (n, q)."""
    from xrmod import _spline

    flat = np.ascontiguousarray(coef.reshape(coef.shape[0], -1))
    start = np.cumsum([0] + [t.size for t in knots]).astype(np.intp)
    out = np.empty((x.shape[0], flat.shape[0]))
    _spline.evaluate(np.ascontiguousarray(x), np.concatenate(knots), start, flat, out)
    return out


def slice_errors(
    training: TrainingSet, fit: str, axis: int, k: int, predicted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the predicted log(T/kT) at slice *k* of *axis*: in sigma, and relative."""
    usable = training.usable[fit]
    n = usable.shape[axis]
    ok = np.take(usable, k, axis=axis) & np.take(usable, k - 1, axis=axis)
    ok &= np.take(usable, min(k + 1, n - 1), axis=axis)
    actual = np.take(training.targets[fit], k, axis=axis)
    width = np.take(training.width(fit), k, axis=axis)
    kT = np.take(np.broadcast_to(training.kT_grid(), usable.shape), k, axis=axis)
    ok &= np.isfinite(width) & (width > 0)
    predicted = predicted.reshape(actual.shape)
    diff = kT * (np.exp(predicted) - np.exp(actual))
    return (diff[ok] / width[ok]).ravel(), (diff[ok] / kT[ok]).ravel()


def rms(parts: Sequence[np.ndarray]) -> float:
    """Root mean square of the errors in *parts* together (NaN for none)."""
    values = np.concatenate(parts) if parts else np.empty(0)
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")


def max_abs(parts: Sequence[np.ndarray]) -> float:
    """Largest absolute error in *parts* (NaN for none)."""
    values = np.concatenate(parts) if parts else np.empty(0)
    return float(np.max(np.abs(values))) if values.size else float("nan")
