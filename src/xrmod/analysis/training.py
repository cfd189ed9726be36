"""What an emulator learns from: a library's grid as arrays, its failed nodes, its digest.

Every emulator of :mod:`xrmod.analysis` reads a library through
:func:`read_training_set`. The targets are smooth and close to zero, which
is what interpolation and neural networks both like (DESIGN §10):

* ``log(T1 / kT_true)`` and ``log(T1' / kT_true)``, the fitted temperatures;
* ``log(w / kT_true)`` with w = (kT_hi − kT_lo) / (2 √error_delta), the
  1σ statistical width of each fit (where one bound is missing, its other
  half-width, 2 · |bound − kT_fit| / (2 √error_delta)).

A node is usable for a fit where its ``kT_fit`` is finite: status 1, and
also −4 (a bound at the kT limit) and −6 (the fit meets a jump of the source
model) when its ``kT_fit`` is not the jump itself — a best fit *at* a jump
(zbremss's 13.58 keV, :data:`xrmod.models.KT_JUMPS`) is where the model
cannot tell temperatures apart, not a point of a smooth surface. Every other
code (not computed, a failed ARF, a failed fit, no counts, an error) has no
value: the emulators fill such nodes smoothly from their neighbours for the
interpolation and refuse to predict next to them. With several
realizations, a node's value is the mean over its usable realizations.

The library's *digest* is the SHA-256 of what an emulator depends on (the
axes, the temperatures, both results and both status datasets, byte for
byte): a saved emulator records it and is refused once the library has
changed (``--resume`` computed more points, or another run overwrote it),
while adding an emulator to the library does not change it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from xrmod.errors import InputError
from xrmod.library import RESULT_COLUMNS, decode_attr, read_library_file
from xrmod.status import Status

if TYPE_CHECKING:
    import h5py

__all__ = ["FITS", "KT_TRUE", "Axis", "TrainingSet", "library_digest", "read_training_set"]

log = logging.getLogger(__name__)

#: The two fits of a library: name -> (results dataset, status dataset).
FITS = {"T1": ("results", "status"), "T1_modified": ("results_modified", "status_modified")}

#: Name of the true-temperature axis (the last axis of every emulator).
KT_TRUE = "kT_true"

#: Status codes whose kT_fit is stored (the node has a value).
VALUED = (Status.OK, Status.BOUND_AT_LIMIT, Status.MODEL_JUMP)

#: A best fit within this relative distance of a jump is at the jump.
_AT_JUMP = 1.0e-3

#: Datasets the digest covers, in this order (after the axes).
_DIGESTED = ("temps", "results", "results_modified", "status", "status_modified")


@dataclass(frozen=True)
class Axis:
    """One axis of an emulator: its grid nodes and the coordinate it interpolates in.

    Attributes
    ----------
    name : str
        The modifier parameter (``mu``, ``amp``, ...) or ``kT_true``.
    nodes : numpy.ndarray
        The grid values, increasing, in the axis' units.
    scale : str
        ``"log"`` (interpolated in the logarithm: kT_true, and a modifier
        axis whose values are geometric) or ``"linear"``.
    units : str
        Units of the values (``keV``, or empty).
    """

    name: str
    nodes: np.ndarray
    scale: str
    units: str

    @property
    def coordinates(self) -> np.ndarray:
        """The nodes in the interpolation coordinate."""
        return self.to_coordinate(self.nodes)

    def to_coordinate(self, values: np.ndarray) -> np.ndarray:
        """*values* of this axis in its interpolation coordinate."""
        return np.log(values) if self.scale == "log" else np.asarray(values, dtype=np.float64)

    def derivative(self, values: np.ndarray) -> np.ndarray:
        """d(coordinate) / d(value) at *values*: turns a slope per coordinate into per unit."""
        return 1.0 / values if self.scale == "log" else np.ones_like(values)

    def describe(self) -> str:
        """``mu: 20 values 0.5 .. 10 keV (linear)``."""
        unit = f" {self.units}" if self.units else ""
        lo, hi = self.nodes[0], self.nodes[-1]
        return f"{self.name}: {self.nodes.size} values {lo:g} .. {hi:g}{unit} ({self.scale})"


@dataclass(frozen=True)
class TrainingSet:
    """A library read for an emulator: nodes, targets, usable masks, provenance.

    Attributes
    ----------
    path : str
        The library file.
    digest : str
        :func:`library_digest` of the library when it was read.
    family : str
        The modifier family.
    axes : tuple of Axis
        The emulator's axes: the modifier axes with more than one value, in
        library order, then ``kT_true`` (log scale).
    fixed : dict
        Modifier axes with one value: name -> that value.
    targets : dict
        ``T1``, ``T1_width``, ``T1_modified``, ``T1_modified_width`` ->
        arrays over the axes' grid: log(value / kT_true), NaN where unknown.
    usable : dict
        ``T1``, ``T1_modified`` -> bool arrays: the node has a value for that fit.
    realizations : numpy.ndarray
        Per fit, the number of usable realizations at each node (``T1``, ``T1_modified``).
    status_counts : dict
        Per fit, status code -> number of points (over realizations too).
    error_delta : float
        Δstat of the library's bounds.
    attrs : dict
        The library's root attributes (provenance).
    """

    path: str
    digest: str
    family: str
    axes: tuple[Axis, ...]
    fixed: dict[str, float]
    targets: dict[str, np.ndarray]
    usable: dict[str, np.ndarray]
    realizations: dict[str, np.ndarray]
    status_counts: dict[str, dict[int, int]]
    error_delta: float
    attrs: dict[str, Any] = field(repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid shape over :attr:`axes`."""
        return tuple(a.nodes.size for a in self.axes)

    @property
    def names(self) -> tuple[str, ...]:
        """The axes' names, ``kT_true`` last."""
        return tuple(a.name for a in self.axes)

    def width(self, fit: str) -> np.ndarray:
        """The 1σ statistical width (keV) of *fit* at every node, NaN where unknown."""
        return np.exp(self.targets[f"{fit}_width"]) * self.kT_grid()

    def value(self, fit: str) -> np.ndarray:
        """The fitted temperature (keV) of *fit* at every node, NaN where unknown."""
        return np.exp(self.targets[fit]) * self.kT_grid()

    def inert_axes(self, tolerance: float = 1e-6) -> tuple[str, ...]:
        """Modifier axes along which neither T1 nor T1′ changes anywhere (relative *tolerance*).

        ``tilt``'s ``pivot`` is one: (E / pivot)**index only rescales the ARF
        by a constant, which the free norm absorbs. Inference holds such an
        axis fixed instead of sampling a parameter the data cannot see.
        """
        out = []
        for j, axis in enumerate(self.axes[:-1]):
            spread = 0.0
            for fit in FITS:
                values = np.where(self.usable[fit], self.targets[fit], np.nan)
                if np.isfinite(values).any():
                    with warnings.catch_warnings():  # all-NaN lines: nothing to compare
                        warnings.simplefilter("ignore", RuntimeWarning)
                        lines = np.nanmax(values, axis=j) - np.nanmin(values, axis=j)
                    spread = max(spread, float(np.nanmax(lines, initial=0.0)))
            if spread < tolerance:
                out.append(axis.name)
        return tuple(out)

    def kT_grid(self) -> np.ndarray:
        """kT_true broadcast over the grid."""
        kT = self.axes[-1].nodes
        return kT.reshape((1,) * (len(self.axes) - 1) + (-1,))


def read_training_set(path: str | os.PathLike) -> TrainingSet:
    """Read the library at *path* for an emulator.

    Raises
    ------
    xrmod.errors.InputError
        Not a readable library; one temperature only (nothing to interpolate
        along kT_true); no usable point at all.
    """
    name = os.path.normpath(os.fspath(path))
    with read_library_file(path, "cannot emulate, ") as f:
        axis_values, data = _digested_data(f)  # read once: hashed, then used
        digest = _digest(axis_values, data)
        attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
        family = str(decode_attr(f["PARAMS"].attrs["family"]))
        modifier = _modifier_axes(f)
        temps = np.asarray(data["temps"], dtype=np.float64)
        has_realizations = "realization" in f["LIBRARY"]
        raw = {fit: _fit_data(data, fit) for fit in FITS}
        model = str(decode_attr(f.attrs.get("model", "")))
    if temps.size < 2:
        raise InputError(f"{name}: cannot emulate a library with one temperature (kT_true)")
    error_delta = float(attrs.get("error_delta", 1.0))
    varied = [a for a in modifier if a.nodes.size > 1]
    fixed = {a.name: float(a.nodes[0]) for a in modifier if a.nodes.size == 1}
    axes = (*varied, Axis(KT_TRUE, temps, "log", "keV"))
    keep = tuple(0 if a.nodes.size == 1 else slice(None) for a in modifier)
    targets: dict[str, np.ndarray] = {}
    usable: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    status_counts: dict[str, dict[int, int]] = {}
    for fit, (results, status) in raw.items():
        results, status = results[keep], status[keep]
        codes, n = np.unique(status, return_counts=True)
        status_counts[fit] = {int(c): int(k) for c, k in zip(codes, n, strict=True)}
        value, width, count = _node_targets(
            results, status, temps, error_delta, has_realizations, _jumps(model)
        )
        targets[fit], targets[f"{fit}_width"] = value, width
        usable[fit], counts[fit] = count > 0, count
    if not usable["T1"].any():
        raise InputError(f"{name}: cannot emulate, no point of the library has a fitted T1")
    return TrainingSet(
        path=name,
        digest=digest,
        family=family,
        axes=axes,
        fixed=fixed,
        targets=targets,
        usable=usable,
        realizations=counts,
        status_counts=status_counts,
        error_delta=error_delta,
        attrs=attrs,
    )


def library_digest(f: h5py.File) -> str:
    """SHA-256 of the library's axes, temperatures, results and status datasets.

    Reads each dataset whole, in C order; names are hashed with the bytes so
    that two layouts cannot collide. A version-1 library (no
    ``status_modified``) hashes what it has.
    """
    return _digest(*_digested_data(f))


def _digested_data(f: h5py.File) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What the digest covers: the axes' values by name, and the datasets of ``_DIGESTED``."""
    params = f["PARAMS"]
    axes = {
        axis: np.ascontiguousarray(params[axis][()], dtype=np.float64)
        for axis in (str(a) for a in params.attrs["axes"])
    }
    lib = f["LIBRARY"]
    return axes, {name: lib[name][()] for name in _DIGESTED if name in lib}


def _digest(axes: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for axis, values in axes.items():
        h.update(f"PARAMS/{axis}\0".encode())
        h.update(values.tobytes())
    for name, values in data.items():
        h.update(f"LIBRARY/{name}\0".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def _modifier_axes(f: h5py.File) -> list[Axis]:
    params = f["PARAMS"]
    axes = []
    for name in (str(a) for a in params.attrs["axes"]):
        values = np.asarray(params[name][()], dtype=np.float64)
        units = str(decode_attr(params[name].attrs.get("units", "")))
        axes.append(Axis(name, values, _scale(values), units))
    return axes


def _scale(values: np.ndarray) -> str:
    """``"log"`` for three or more positive values evenly spaced in log but not linearly."""
    if values.size < 3 or (values <= 0).any():
        return "linear"
    steps, log_steps = np.diff(values), np.diff(np.log(values))
    even = np.allclose(steps, steps[0], rtol=1e-6)
    even_log = np.allclose(log_steps, log_steps[0], rtol=1e-6)
    return "log" if even_log and not even else "linear"


def _fit_data(data: dict[str, np.ndarray], fit: str) -> tuple[np.ndarray, np.ndarray]:
    """(results, status) of *fit* among the library's datasets."""
    results, status = FITS[fit]
    if status not in data:  # format version 1: one status for both fits
        status = "status"
    return np.asarray(data[results], dtype=np.float64), np.asarray(data[status])


def _jumps(model: str) -> np.ndarray:
    """The kT (keV) where the library's emission model jumps (none for an unknown model)."""
    from xrmod.models import KT_JUMPS

    return np.asarray(KT_JUMPS.get(model.split("*")[-1].strip(), ()), dtype=np.float64)


def _node_targets(
    results: np.ndarray,
    status: np.ndarray,
    temps: np.ndarray,
    error_delta: float,
    has_realizations: bool,
    jumps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log(kT_fit / kT), log(width / kT) and the usable count per node (realizations averaged)."""
    lo, fit, hi = (results[..., RESULT_COLUMNS.index(c)] for c in RESULT_COLUMNS)
    ok = np.isin(status, VALUED) & np.isfinite(fit) & (fit > 0)
    if jumps.size:  # a best fit at a jump: the model cannot tell temperatures apart there
        at_jump = np.abs(fit[..., None] / jumps - 1.0).min(axis=-1) < _AT_JUMP
        ok &= ~((status == Status.MODEL_JUMP) & at_jump)
    half = np.where(
        np.isfinite(lo) & np.isfinite(hi),
        0.5 * (hi - lo),
        np.where(np.isfinite(lo), fit - lo, hi - fit),
    )
    width = half / np.sqrt(error_delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(ok, np.log(fit / temps), np.nan)
        log_width = np.where(ok & (width > 0), np.log(width / temps), np.nan)
    if not has_realizations:
        return value, log_width, ok.astype(np.int64)
    count = ok.sum(axis=-2)
    with warnings.catch_warnings():  # "Mean of empty slice": no usable realization, NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(value, axis=-2), np.nanmean(log_width, axis=-2), count
