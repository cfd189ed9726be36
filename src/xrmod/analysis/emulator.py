"""Emulators: a library's T1 and T1′ at any (θ, kT_true) inside its grid.

A library samples the fitted temperatures on a grid; inference needs them
everywhere in between, fast, with their uncertainty and their gradients.
:class:`Emulator` is the interface, :meth:`Emulator.from_library` builds one
and :meth:`Emulator.load` reads one saved with :meth:`Emulator.save` (into
the library's ``/EMULATORS`` group, or into a file of its own).

The default, :class:`SplineEmulator`, interpolates the targets of
:mod:`xrmod.analysis.training` — log(T1/kT_true), log(T1′/kT_true) and their
log widths — with a tensor-product cubic spline in every axis (not-a-knot;
an axis of two or three values gets the one polynomial through them), in
log kT_true and in the log of a modifier axis whose values are geometric.
It passes through every node, its derivatives are exact, and its compiled
kernel (``xrmod._spline``) evaluates a million points of a four-axis grid in
about 0.2 s. Its accuracy is measured by leaving out one slice of nodes at a
time (:attr:`Emulator.accuracy`), and that error, in units of the library's
statistical width, is the emulator's own 1σ error in :class:`Prediction`.
:class:`xrmod.analysis.neural.NeuralEmulator` is the neural alternative.

Examples
--------
>>> em = xrmod.Emulator.from_library("library.h5")  # doctest: +SKIP
>>> p = em.predict(kT_true=[2.0, 5.0], mu=1.7, sigma=0.4, amp=-0.08)
>>> p.T1, p.T1_sigma, p.T1_error
>>> em.gradient(kT_true=5.0, mu=1.7, sigma=0.4, amp=-0.08)["amp"]  # dT1/d amp, keV
>>> em.save()  # into library.h5's /EMULATORS/spline
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from xrmod.analysis.training import FITS, KT_TRUE, Axis, TrainingSet, read_training_set
from xrmod.errors import InputError
from xrmod.library import decode_attr

if TYPE_CHECKING:
    import h5py

__all__ = [
    "EMULATORS_GROUP",
    "Accuracy",
    "Bound",
    "Emulator",
    "Prediction",
    "SplineEmulator",
    "load_emulator",
]

log = logging.getLogger(__name__)

#: HDF5 group holding saved emulators, one subgroup per kind (in a library or a file of its own).
EMULATORS_GROUP = "EMULATORS"
#: ``format`` attribute of a file holding only emulators.
EMULATOR_FILE_FORMAT = "xrmod-emulator"
#: Version of the saved layout.
SAVE_VERSION = 1

#: The quantities every emulator predicts, in this order: log(value / kT_true).
QUANTITIES = ("T1", "T1_width", "T1_modified", "T1_modified_width")

#: Provenance copied from the library into an emulator (shown by ``xrmod emulate``).
_PROVENANCE = (
    "engine",
    "model",
    "noise",
    "exposure",
    "band",
    "error_delta",
    "arf",
    "arf_sha256",
    "rmf",
    "rmf_sha256",
)


@dataclass(frozen=True)
class Accuracy:
    """How well an emulator predicts library nodes it was not built from.

    Errors are (predicted − library) T1 at a left-out node, in units of the
    library's 1σ statistical width there (``rms``, ``max``: per fit), and as
    a fraction of kT_true (``rms_relative``). ``per_axis`` breaks ``rms`` of
    T1 down by the axis whose slice was left out.
    """

    method: str
    rms: dict[str, float]
    max: dict[str, float]
    rms_relative: dict[str, float]
    nodes: dict[str, int]
    per_axis: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """The accuracy as plain JSON types."""
        return asdict(self)

    def format(self) -> str:
        """Lines for the command line."""
        lines = [f"accuracy ({self.method}):"]
        for fit in self.rms:
            lines.append(
                f"  {fit}: RMS {self.rms[fit]:.3g} sigma, max {self.max[fit]:.3g} sigma, "
                f"RMS {100 * self.rms_relative[fit]:.3g} % of kT_true "
                f"({self.nodes[fit]} nodes)"
            )
        if self.per_axis:
            parts = ", ".join(f"{a} {v:.3g}" for a, v in self.per_axis.items())
            lines.append(f"  T1 RMS by axis left out (sigma): {parts}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Prediction:
    """An emulator's answer at n points (arrays broadcast to the points' shape).

    For each fit (``T1``: the nominal ARF; ``T1_modified``: T1′, the
    modified one), in keV: the temperature, ``_sigma`` the library's 1σ
    statistical width there (at the library's exposure), ``_error`` the
    emulator's own 1σ error, and ``_valid`` whether the point is usable
    (False next to a failed library node, where the values are NaN).
    A fit that was not asked for is None.
    """

    kT_true: np.ndarray
    theta: dict[str, np.ndarray]
    T1: np.ndarray | None = None
    T1_sigma: np.ndarray | None = None
    T1_error: np.ndarray | None = None
    T1_valid: np.ndarray | None = None
    T1_modified: np.ndarray | None = None
    T1_modified_sigma: np.ndarray | None = None
    T1_modified_error: np.ndarray | None = None
    T1_modified_valid: np.ndarray | None = None


@dataclass(frozen=True)
class Bound:
    """One fit at m fixed temperatures for n parameter sets: arrays (n, m), keV.

    ``value`` the temperature, ``slope`` its derivative along kT_true
    (dimensionless), ``sigma`` the library's statistical width, ``error``
    the emulator's own error, ``valid`` False next to a failed node.
    """

    value: np.ndarray
    slope: np.ndarray
    sigma: np.ndarray
    error: np.ndarray
    valid: np.ndarray


class Emulator(ABC):
    """T1 and T1′ of a library at any (θ, kT_true) inside its grid.

    Build one with :meth:`from_library`, read a saved one with :meth:`load`.
    The query methods take ``kT_true`` (keV) and one keyword per modifier
    axis with more than one value (:attr:`parameters`); values broadcast
    together like NumPy arrays. A one-value axis of the library is fixed
    (:attr:`fixed`): it may be passed, at that value only. A point outside
    the grid is refused, naming the axis.
    """

    #: Name of the kind, as saved and as ``xrmod emulate --kind`` takes it.
    kind: ClassVar[str]

    def __init__(self, training: TrainingSet | None, *, header: Mapping[str, Any] | None = None):
        if training is not None:
            header = _header_from(training)
        assert header is not None
        self.axes: tuple[Axis, ...] = tuple(header["axes"])
        self.fixed: dict[str, float] = dict(header["fixed"])
        self.family: str = header["family"]
        self.library: str = header["library"]
        self.library_digest: str = header["library_digest"]
        self.error_delta: float = float(header["error_delta"])
        self.provenance: dict[str, Any] = dict(header["provenance"])
        self.status_counts: dict[str, dict[int, int]] = dict(header.get("status_counts", {}))
        self.accuracy: Accuracy | None = header.get("accuracy")
        #: Modifier axes along which T1 and T1′ do not change (``TrainingSet.inert_axes``).
        self.inert: tuple[str, ...] = tuple(header.get("inert", ()))
        self._lo = np.array([a.coordinates[0] for a in self.axes])
        self._hi = np.array([a.coordinates[-1] for a in self.axes])

    # ------------------------------------------------------------ construction
    @classmethod
    def from_library(cls, path: str | os.PathLike, *, kind: str = "spline", **options: Any):
        """Build an emulator of the library at *path*.

        Parameters
        ----------
        path : path-like
            An xrmod library (complete or not: nodes without a value are
            filled for the interpolation and masked, with a warning).
        kind : {"spline", "mlp"}
            :class:`SplineEmulator` (the default) or
            :class:`xrmod.analysis.neural.NeuralEmulator` (needs ``xrmod[nn]``).
            Ignored when called on a subclass.
        **options
            Passed to the kind's constructor.
        """
        target = cls if cls is not Emulator else _kind(kind)
        training = read_training_set(path)
        _warn_unusable(training)
        return target(training, **options)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        kind: str | None = None,
        library: str | os.PathLike | None = None,
        verify: bool = True,
    ) -> Emulator:
        """Read an emulator saved with :meth:`save`.

        Parameters
        ----------
        path : path-like
            A library holding ``/EMULATORS/<kind>``, or a file written by
            ``save(path)``.
        kind : str, optional
            Which saved emulator; by default the only one, or ``spline``.
        library : path-like, optional
            The library to verify against (default: *path* itself when it is
            a library, else the library recorded at saving).
        verify : bool
            Refuse the emulator when the library's data changed since it was
            built (its SHA-256 differs). False skips the check, with a warning.

        Raises
        ------
        xrmod.errors.InputError
            No saved emulator, an unknown kind, or a stale one (the library
            changed since: both digests are named).
        """
        name = os.path.normpath(os.fspath(path))
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise InputError(f"{name}: not a readable HDF5 file ({e})") from e
        with f:
            group, kind = _saved_group(f, name, kind)
            header = _read_header(group)
            target = _kind(kind)
            emulator = target._from_saved(group, header)
            in_library = decode_attr(f.attrs.get("format")) != EMULATOR_FILE_FORMAT
        if verify:
            emulator.verify(library if library is not None else (name if in_library else None))
        else:
            log.warning("%s: emulator loaded without checking its library", name)
        return emulator

    @classmethod
    @abstractmethod
    def _from_saved(cls, group: h5py.Group, header: dict[str, Any]) -> Emulator:
        """The emulator saved in *group* (its common attributes already read as *header*)."""

    def verify(self, library: str | os.PathLike | None = None) -> None:
        """Raise unless *library* (default: the one it came from) holds the data it was built on."""
        from xrmod.analysis.training import library_digest
        from xrmod.library import read_library_file

        path = os.path.normpath(os.fspath(library if library is not None else self.library))
        if not os.path.exists(path):
            raise InputError(
                f"{path}: the library this emulator was built from is not there; "
                "pass library=PATH (or verify=False to use it unchecked)"
            )
        with read_library_file(path, "cannot check the emulator, ") as f:
            digest = library_digest(f)
        if digest != self.library_digest:
            raise InputError(
                f"{path}: the emulator is stale: it was built from data with SHA-256 "
                f"{self.library_digest}, the library now has {digest} (resumed or rewritten "
                "since); build it again (xrmod emulate)"
            )

    # ------------------------------------------------------------ queries
    @property
    def parameters(self) -> tuple[str, ...]:
        """The modifier axes an emulator varies (the library's axes with several values)."""
        return tuple(a.name for a in self.axes[:-1])

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        """Each axis' grid range (``kT_true`` included), in its units."""
        return {a.name: (float(a.nodes[0]), float(a.nodes[-1])) for a in self.axes}

    def predict(
        self,
        kT_true: ArrayLike,
        *,
        fits: Sequence[str] = ("T1", "T1_modified"),
        **theta: ArrayLike,
    ) -> Prediction:
        """T1 and T1′, their statistical widths and the emulator's error at each point.

        Parameters
        ----------
        kT_true : array_like
            True temperatures, keV.
        fits : sequence of str
            ``T1`` and/or ``T1_modified``; computing one is about half the work.
        **theta : array_like
            One value (or array) per parameter of :attr:`parameters`.
        """
        wanted = _fit_names(fits)
        x, shape, values = self._points(kT_true, theta)
        quantities = [q for q in QUANTITIES if q.split("_width")[0] in wanted]
        raw, _ = self._evaluate(x, quantities, gradient=False)
        kT = values[KT_TRUE]
        out: dict[str, Any] = {"kT_true": kT.reshape(shape), "theta": {}}
        for name in self.parameters:
            out["theta"][name] = values[name].reshape(shape)
        for fit in wanted:
            valid = self._valid(x, fit)
            value = np.where(valid, kT * np.exp(raw[fit]), np.nan)
            sigma = np.where(valid, kT * np.exp(raw[f"{fit}_width"]), np.nan)
            out[fit] = value.reshape(shape)
            out[f"{fit}_sigma"] = sigma.reshape(shape)
            out[f"{fit}_error"] = (self.error_scale(fit) * sigma).reshape(shape)
            out[f"{fit}_valid"] = valid.reshape(shape)
        return Prediction(**out)

    def gradient(
        self, kT_true: ArrayLike, *, fit: str = "T1", **theta: ArrayLike
    ) -> dict[str, np.ndarray]:
        """Partial derivatives of *fit*'s temperature, keV per unit of each axis.

        Returns a dict: one entry per parameter of :attr:`parameters` and
        ``kT_true`` (∂T1/∂kT_true, dimensionless); NaN where the point is not
        valid (:class:`Prediction`).
        """
        (fit,) = _fit_names([fit])
        x, shape, values = self._points(kT_true, theta)
        raw, grad = self._evaluate(x, [fit], gradient=True)
        assert grad is not None
        kT = values[KT_TRUE]
        value = kT * np.exp(raw[fit])
        valid = self._valid(x, fit)
        out = {}
        for j, axis in enumerate(self.axes):
            slope = value * grad[fit][:, j] * axis.derivative(values[axis.name])
            if axis.name == KT_TRUE:  # T1 = kT exp(r(log kT)): d/dkT = (T1 / kT)(1 + dr/dlog kT)
                slope = value / kT * (1.0 + grad[fit][:, j])
            out[axis.name] = np.where(valid, slope, np.nan).reshape(shape)
        return out

    def bind(self, kT_true: ArrayLike, fit: str = "T1") -> Callable[[np.ndarray], Bound]:
        """*fit* at the fixed temperatures *kT_true* for many θ at once (for inference).

        Returns a function of θ, an (n, P) array of :attr:`parameters`
        values (in that order), giving a :class:`Bound` of (n, m) arrays.
        """
        (fit,) = _fit_names([fit])
        kT = np.asarray(kT_true, dtype=np.float64).ravel()
        _check_range(self.axes[-1], kT)
        log_kT = np.clip(np.log(kT), self._lo[-1], self._hi[-1])
        quantities = [fit, f"{fit}_width"]

        def evaluate(theta: np.ndarray) -> Bound:
            n, m = theta.shape[0], kT.size
            x = np.empty((n, m, len(self.axes)))
            x[:, :, :-1] = self._theta_coordinates(theta)[:, None, :]
            x[:, :, -1] = log_kT
            x = x.reshape(n * m, -1)
            raw, grad = self._evaluate(x, quantities, gradient=True)
            assert grad is not None
            valid = self._valid(x, fit).reshape(n, m)
            r, dr = raw[fit].reshape(n, m), grad[fit][:, -1].reshape(n, m)
            width = raw[f"{fit}_width"].reshape(n, m)
            return self._bound(kT, r, dr, width, valid, fit)

        return evaluate

    def _theta_coordinates(self, theta: np.ndarray) -> np.ndarray:
        """(n, P) parameter values -> their interpolation coordinates (no range check)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        out = np.empty_like(theta)
        for j, axis in enumerate(self.axes[:-1]):
            with np.errstate(divide="ignore", invalid="ignore"):
                out[:, j] = axis.to_coordinate(theta[:, j])
        return np.clip(out, self._lo[:-1], self._hi[:-1])

    def _bound(
        self,
        kT: np.ndarray,
        r: np.ndarray,
        dr: np.ndarray,
        log_width: np.ndarray,
        valid: np.ndarray,
        fit: str,
    ) -> Bound:
        """A :class:`Bound` from log(T/kT), its slope in log kT and log(width/kT)."""
        value = kT * np.exp(r)
        sigma = kT * np.exp(log_width)
        return Bound(
            value=np.where(valid, value, np.nan),
            slope=np.where(valid, np.exp(r) * (1.0 + dr), np.nan),
            sigma=sigma,
            error=self.error_scale(fit) * sigma,
            valid=valid,
        )

    def error_scale(self, fit: str) -> float:
        """The emulator's own 1σ error in units of the statistical width (its accuracy's RMS)."""
        if self.accuracy is None:
            return 0.0
        return float(self.accuracy.rms[fit])

    # ------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _evaluate(
        self, x: np.ndarray, quantities: Sequence[str], *, gradient: bool
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """*quantities* (of :data:`QUANTITIES`) at points *x* (n, D) in axis coordinates.

        Returns name -> (n,) values and, with *gradient*, name -> (n, D)
        derivatives with respect to the coordinates.
        """

    def _valid(self, x: np.ndarray, fit: str) -> np.ndarray:
        """Whether *fit* is usable at points *x* (not next to a failed node)."""
        return np.ones(x.shape[0], dtype=bool)

    # ------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike | None = None) -> str:
        """Save into the library (default) or into the HDF5 file *path*; returns where.

        In the library, the emulator is the group ``/EMULATORS/<kind>``
        (replaced if present); the library's data, and so its digest, are
        not touched. A file of its own holds the same group and records the
        library's path.
        """
        import h5py

        target = os.path.normpath(os.fspath(path if path is not None else self.library))
        in_library = path is None or target == os.path.normpath(self.library)
        try:
            f = h5py.File(target, "a" if in_library else "w")
        except OSError as e:
            raise InputError(f"{target}: cannot write the emulator ({e})") from e
        with f:
            if not in_library:
                f.attrs["format"] = EMULATOR_FILE_FORMAT
                f.attrs["library"] = os.path.abspath(self.library)
            parent = f.require_group(EMULATORS_GROUP)
            if self.kind in parent:
                del parent[self.kind]
            group = parent.create_group(self.kind)
            self._write_header(group)
            self._save_arrays(group)
        log.info("saved the %s emulator to %s", self.kind, target)
        return target

    def _write_header(self, group: h5py.Group) -> None:
        from xrmod import __version__

        group.attrs["kind"] = self.kind
        group.attrs["save_version"] = SAVE_VERSION
        group.attrs["library"] = os.path.abspath(self.library)
        group.attrs["library_sha256"] = self.library_digest
        group.attrs["family"] = self.family
        group.attrs["error_delta"] = self.error_delta
        group.attrs["fixed"] = json.dumps(self.fixed)
        group.attrs["provenance"] = json.dumps(self.provenance, default=str)
        group.attrs["status_counts"] = json.dumps(self.status_counts)
        group.attrs["accuracy"] = json.dumps(self.accuracy.as_dict() if self.accuracy else None)
        group.attrs["inert"] = json.dumps(list(self.inert))
        group.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        group.attrs["xrmod_version"] = __version__
        group.attrs["axes"] = [a.name for a in self.axes]
        for axis in self.axes:
            ds = group.create_dataset(f"axis/{axis.name}", data=axis.nodes)
            ds.attrs["scale"] = axis.scale
            ds.attrs["units"] = axis.units

    @abstractmethod
    def _save_arrays(self, group: h5py.Group) -> None:
        """Write what this kind needs to predict (beside the common header)."""

    # ------------------------------------------------------------ input handling
    def _points(
        self, kT_true: ArrayLike, theta: Mapping[str, ArrayLike]
    ) -> tuple[np.ndarray, tuple[int, ...], dict[str, np.ndarray]]:
        """Check and broadcast the query: (coordinates (n, D), shape, flat values per axis)."""
        self._check_names(theta)
        given = [np.asarray(theta[name], dtype=np.float64) for name in self.parameters]
        kT = np.asarray(kT_true, dtype=np.float64)
        arrays = np.broadcast_arrays(*given, kT)
        shape = arrays[0].shape
        values = {a.name: arr.ravel() for a, arr in zip(self.axes, arrays, strict=True)}
        x = np.empty((values[KT_TRUE].size, len(self.axes)))
        for j, axis in enumerate(self.axes):
            v = values[axis.name]
            _check_range(axis, v)
            with np.errstate(divide="ignore", invalid="ignore"):
                x[:, j] = axis.to_coordinate(v)
        np.clip(x, self._lo, self._hi, out=x)  # rounding at the grid's ends
        return x, shape, values

    def _check_names(self, theta: Mapping[str, ArrayLike]) -> None:
        known = self.parameters
        for name, value in theta.items():
            if name in self.fixed:
                if not np.allclose(value, self.fixed[name], rtol=1e-9, atol=0.0):
                    raise InputError(
                        f"{name} has one value in the library ({self.fixed[name]:g}): "
                        f"the emulator cannot predict at {name} = {value}"
                    )
            elif name not in known:
                raise InputError(
                    f"unknown axis {name!r}: the emulator's axes are {', '.join([*known, KT_TRUE])}"
                )
        missing = [n for n in known if n not in theta]
        if missing:
            raise InputError(f"no value for {', '.join(missing)} (axes: {', '.join(known)})")

    def summary(self) -> dict[str, Any]:
        """What :meth:`describe` says, as JSON types (``xrmod emulate --json``)."""
        return {
            "kind": self.kind,
            "library": self.library,
            "library_sha256": self.library_digest,
            "family": self.family,
            "axes": [
                {"name": a.name, "values": a.nodes.tolist(), "scale": a.scale, "units": a.units}
                for a in self.axes
            ],
            "fixed": self.fixed,
            "inert": list(self.inert),
            "accuracy": self.accuracy.as_dict() if self.accuracy else None,
            "status_counts": {
                f: {str(k): v for k, v in c.items()} for f, c in self.status_counts.items()
            },
            "provenance": self.provenance,
        }

    def describe(self) -> str:
        """What the emulator is and how accurate: lines for ``xrmod emulate``."""
        lines = [
            f"{self.kind} emulator of {self.library} ({self.family} family)",
            f"  library data SHA-256: {self.library_digest}",
        ]
        lines += [f"  {a.describe()}" for a in self.axes]
        for name, value in self.fixed.items():
            lines.append(f"  {name}: fixed at {value:g} (one value in the library)")
        for name in self.inert:
            lines.append(f"  {name}: T1 and T1' do not depend on it (held fixed by infer)")
        if self.accuracy is not None:
            lines += ["  " + line for line in self.accuracy.format().splitlines()]
        return "\n".join(lines)


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
            filled = {q: _fill(training.targets[q], _known(training, q)) for q in QUANTITIES}
            knots, coef = spline_coefficients([a.coordinates for a in self.axes], filled)
            self._knots, self._coef = knots, coef
            self._usable = {fit: training.usable[fit] for fit in FITS}
            if accuracy:
                self.accuracy = leave_one_slice_out(training, filled, max_slices=max_slices)
        else:
            assert arrays is not None
            self._knots = [np.asarray(arrays[f"knots/{a.name}"]) for a in self.axes]
            self._coef = np.asarray(arrays["coef"])
            self._usable = {fit: np.asarray(arrays[f"usable/{fit}"], bool) for fit in FITS}
        self._flat_knots = np.concatenate(self._knots)
        self._knot_start = np.cumsum([0] + [t.size for t in self._knots]).astype(np.intp)
        self._flat_coef = np.ascontiguousarray(self._coef.reshape(len(QUANTITIES), -1))
        self._cell_ok = {fit: _cells_ok(u) for fit, u in self._usable.items()}

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
        index = tuple(
            np.clip(np.searchsorted(a.coordinates, x[:, j], side="right") - 1, 0, a.nodes.size - 2)
            for j, a in enumerate(self.axes)
        )
        return cell_ok[index]

    def bind(self, kT_true: ArrayLike, fit: str = "T1") -> Callable[[np.ndarray], Bound]:
        """As :meth:`Emulator.bind`, contracting the kT_true axis once per temperature.

        The kT_true basis functions at the m fixed temperatures are computed
        here, once; a call then evaluates the spline over the modifier axes
        only, with the coefficients of every kT_true basis function as its
        outputs, and finishes with one small matrix product: a quarter of
        the work per point, and the m temperatures share it.
        """
        from xrmod import _spline

        (fit,) = _fit_names([fit])
        kT = np.asarray(kT_true, dtype=np.float64).ravel()
        _check_range(self.axes[-1], kT)
        log_kT = np.clip(np.log(kT), self._lo[-1], self._hi[-1])
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
        t_cells = np.clip(
            np.searchsorted(self.axes[-1].coordinates, log_kT, side="right") - 1,
            0,
            self.axes[-1].nodes.size - 2,
        )

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
                index = tuple(
                    np.clip(
                        np.searchsorted(a.coordinates, x[:, j], side="right") - 1,
                        0,
                        a.nodes.size - 2,
                    )[:, None]
                    for j, a in enumerate(self.axes[:-1])
                )
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


def _known(training: TrainingSet, quantity: str) -> np.ndarray:
    """Nodes where *quantity* has a value: the fit is usable (and, for a width, finite)."""
    fit = quantity.removesuffix("_width")
    return training.usable[fit] & np.isfinite(training.targets[quantity])


def _fill(values: np.ndarray, known: np.ndarray, sweeps: int = 400) -> np.ndarray:
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


def _cells_ok(usable: np.ndarray) -> np.ndarray | None:
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
        x = _slice_points(coords, j, k)
        predicted = _evaluate_raw(knots, coef, x)
        for i, fit in enumerate(fits):
            err, rel = _slice_errors(training, fit, j, k, predicted[:, i])
            errors[fit].append(err)
            relative[fit].append(rel)
            if fit == "T1":
                per_axis.setdefault(axis.name, []).append(err)
    return Accuracy(
        method="leave-one-slice-out",
        rms={f: _rms(errors[f]) for f in fits},
        max={f: _max(errors[f]) for f in fits},
        rms_relative={f: _rms(relative[f]) for f in fits},
        nodes={f: int(sum(e.size for e in errors[f])) for f in fits},
        per_axis={a: _rms(e) for a, e in per_axis.items()},
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


def _slice_points(coords: Sequence[np.ndarray], axis: int, k: int) -> np.ndarray:
    """Coordinates of every node with index *k* along *axis* (C order of the others)."""
    grids = [c if i != axis else c[k : k + 1] for i, c in enumerate(coords)]
    mesh = np.meshgrid(*grids, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _evaluate_raw(knots: Sequence[np.ndarray], coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    from xrmod import _spline

    flat = np.ascontiguousarray(coef.reshape(coef.shape[0], -1))
    start = np.cumsum([0] + [t.size for t in knots]).astype(np.intp)
    out = np.empty((x.shape[0], flat.shape[0]))
    _spline.evaluate(np.ascontiguousarray(x), np.concatenate(knots), start, flat, out)
    return out


def _slice_errors(
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


def _rms(parts: Sequence[np.ndarray]) -> float:
    values = np.concatenate(parts) if parts else np.empty(0)
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")


def _max(parts: Sequence[np.ndarray]) -> float:
    values = np.concatenate(parts) if parts else np.empty(0)
    return float(np.max(np.abs(values))) if values.size else float("nan")


# ---------------------------------------------------------------- helpers
def _kind(kind: str) -> type[Emulator]:
    if kind == "spline":
        return SplineEmulator
    if kind == "mlp":
        from xrmod.analysis.neural import NeuralEmulator

        return NeuralEmulator
    raise InputError(f"unknown emulator kind {kind!r} (known: spline, mlp)")


def _fit_names(fits: Sequence[str]) -> list[str]:
    if isinstance(fits, str):
        fits = [fits]
    unknown = [f for f in fits if f not in FITS]
    if unknown or not fits:
        raise InputError(f"unknown fit {unknown or fits!r} (known: {', '.join(FITS)})")
    return [f for f in FITS if f in fits]


def _check_range(axis: Axis, values: np.ndarray) -> None:
    lo, hi = axis.nodes[0], axis.nodes[-1]
    slack = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    bad = ~((values >= lo - slack) & (values <= hi + slack))
    if bad.any():
        value = values[bad][0]
        unit = f" {axis.units}" if axis.units else ""
        raise InputError(
            f"{axis.name} = {value:g}{unit} is outside the library's grid "
            f"[{lo:g}, {hi:g}]{unit}: the emulator does not extrapolate"
        )


def _warn_unusable(training: TrainingSet) -> None:
    for fit, usable in training.usable.items():
        missing = int(usable.size - usable.sum())
        if missing:
            codes = ", ".join(
                f"{code}: {n}" for code, n in sorted(training.status_counts[fit].items())
            )
            log.warning(
                "%s: %d of %d nodes have no %s (status counts %s): filled for the "
                "interpolation; the emulator gives NaN (valid=False) in the cells next to them",
                training.path,
                missing,
                usable.size,
                fit,
                codes,
            )


def _header_from(training: TrainingSet) -> dict[str, Any]:
    return {
        "axes": training.axes,
        "fixed": training.fixed,
        "family": training.family,
        "library": training.path,
        "library_digest": training.digest,
        "error_delta": training.error_delta,
        "provenance": {k: _plain(training.attrs[k]) for k in _PROVENANCE if k in training.attrs},
        "status_counts": training.status_counts,
        "accuracy": None,
        "inert": training.inert_axes(),
    }


def _plain(value: Any) -> Any:
    """A root attribute as a JSON type."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _saved_group(f: h5py.File, name: str, kind: str | None) -> tuple[h5py.Group, str]:
    saved = f.get(EMULATORS_GROUP)
    kinds = sorted(saved) if saved is not None else []
    if not kinds:
        raise InputError(f"{name}: no saved emulator (run 'xrmod emulate {name}')")
    if kind is None:
        kind = kinds[0] if len(kinds) == 1 else ("spline" if "spline" in kinds else kinds[0])
    if kind not in kinds:
        raise InputError(f"{name}: no saved {kind!r} emulator (saved: {', '.join(kinds)})")
    return saved[kind], kind


def _read_header(group: h5py.Group) -> dict[str, Any]:
    names = [str(decode_attr(a)) for a in group.attrs["axes"]]
    axes = tuple(
        Axis(
            name,
            np.asarray(group[f"axis/{name}"][()], dtype=np.float64),
            str(decode_attr(group[f"axis/{name}"].attrs["scale"])),
            str(decode_attr(group[f"axis/{name}"].attrs["units"])),
        )
        for name in names
    )
    accuracy = json.loads(decode_attr(group.attrs["accuracy"]))
    counts = json.loads(decode_attr(group.attrs["status_counts"]))
    return {
        "axes": axes,
        "fixed": json.loads(decode_attr(group.attrs["fixed"])),
        "family": str(decode_attr(group.attrs["family"])),
        "library": str(decode_attr(group.attrs["library"])),
        "library_digest": str(decode_attr(group.attrs["library_sha256"])),
        "error_delta": float(group.attrs["error_delta"]),
        "provenance": json.loads(decode_attr(group.attrs["provenance"])),
        "status_counts": {f: {int(k): v for k, v in c.items()} for f, c in counts.items()},
        "accuracy": Accuracy(**accuracy) if accuracy else None,
        "inert": json.loads(decode_attr(group.attrs.get("inert", "[]"))),
    }


def load_emulator(
    library: str | os.PathLike, *, kind: str | None = None, build: bool = True
) -> Emulator:
    """The library's saved emulator if it is up to date, else (with *build*) a new spline one.

    What ``xrmod infer`` uses: a saved emulator that is stale is ignored
    with a warning, never used.
    """
    import h5py

    try:
        with h5py.File(library, "r") as f:
            saved = EMULATORS_GROUP in f and (kind is None or kind in f[EMULATORS_GROUP])
    except OSError:
        saved = False  # read_training_set names the problem below
    if saved:
        try:
            return Emulator.load(library, kind=kind)
        except InputError as e:
            if not build or "stale" not in str(e):
                raise
            log.warning("%s; building a new one (not saved)", e)
    if not build:
        raise InputError(f"{library}: no saved emulator")
    return Emulator.from_library(library, kind=kind or "spline")
