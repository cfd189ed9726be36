"""Emulators: a library's T1 and T1′ at any (θ, kT_true) inside its grid.

A library samples the fitted temperatures on a grid; inference needs them
everywhere in between, fast, with their uncertainty and their gradients.
:class:`Emulator` is the interface, :meth:`Emulator.from_library` builds one
and :meth:`Emulator.load` reads one saved with :meth:`Emulator.save` (into
the library's ``/EMULATORS`` group, or into a file of its own).

The default, :class:`xrmod.analysis.spline.SplineEmulator`, interpolates the targets of
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

from xrmod.analysis.describe import plain_value
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
            :class:`~xrmod.analysis.spline.SplineEmulator` (the default) or
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
        fit, kT, log_kT = self._bind_inputs(kT_true, fit)
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

    def _bind_inputs(self, kT_true: ArrayLike, fit: str) -> tuple[str, np.ndarray, np.ndarray]:
        """:meth:`bind`'s checked arguments: the fit, kT_true (m,) and its coordinate."""
        (fit,) = _fit_names([fit])
        kT = np.asarray(kT_true, dtype=np.float64).ravel()
        _check_range(self.axes[-1], kT)
        return fit, kT, np.clip(np.log(kT), self._lo[-1], self._hi[-1])

    def _theta_coordinates(self, theta: np.ndarray) -> np.ndarray:
        """(n, P) parameter values -> their interpolation coordinates (no range check)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        out = np.empty_like(theta)
        for j, axis in enumerate(self.axes[:-1]):
            with np.errstate(divide="ignore", invalid="ignore"):
                out[:, j] = axis.to_coordinate(theta[:, j])
        return np.minimum(np.maximum(out, self._lo[:-1]), self._hi[:-1])  # np.clip: slower

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


# ---------------------------------------------------------------- helpers
def _kind(kind: str) -> type[Emulator]:
    if kind == "spline":
        from xrmod.analysis.spline import SplineEmulator

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
        "provenance": {
            k: plain_value(training.attrs[k]) for k in _PROVENANCE if k in training.attrs
        },
        "status_counts": training.status_counts,
        "accuracy": None,
        "inert": training.inert_axes(),
    }


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
