"""ARF modification families: the registry and the batch wrapper.

A modifier family φθ turns the nominal effective area A(E) into
A'(E) = A(E) · F(E; θ), with E the energy-bin mid-point in keV. The
compiled kernels in ``xrmod._modify`` (``ext/_modify.pyx``) do the work for
n parameter sets at once and check that the shapes of their arguments agree;
:meth:`ModifierFamily.apply` validates the parameter values, allocates the
outputs, calls them and words a shape they refuse for the user. A
modification that makes any ARF value negative or non-finite is reported per
parameter set with a :class:`~xrmod.status.Status` code, never clipped.

Adding a family takes a kernel in ``ext/_modify.pyx`` (same signature and
shape checks as the others: energy, arf, one array per parameter, out,
status) and one :func:`register` call here.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from xrmod import _modify
from xrmod.errors import ModifierError
from xrmod.status import Status

__all__ = [
    "EDGE",
    "GAUSSIAN",
    "LINEAR",
    "POSITIVE",
    "TILT",
    "Constraint",
    "ModifiedARFs",
    "ModifierFamily",
    "families",
    "get_family",
    "register",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Constraint:
    """A domain restriction on one parameter, beyond being finite.

    Parameters
    ----------
    text : str
        How the message states it, e.g. ``"> 0"``.
    check : callable
        Vectorised predicate: float64 array → boolean array, True where valid.
    """

    text: str
    check: Callable[[np.ndarray], np.ndarray] = field(repr=False)


#: The parameter must be strictly positive.
POSITIVE = Constraint("> 0", lambda v: v > 0)


@dataclass(frozen=True)
class ModifiedARFs:
    """Modified ARFs for n parameter sets, with one status code each.

    Parameters
    ----------
    values : numpy.ndarray
        (n, nE) float64, A'(E) for every parameter set; negative and
        non-finite values are kept as computed.
    status : numpy.ndarray
        (n,) int8 :class:`~xrmod.status.Status` codes: ``OK``,
        ``ARF_NEGATIVE`` or ``ARF_NONFINITE`` (which takes precedence).
    """

    values: np.ndarray
    status: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """(n,) bool, True where the modified ARF is finite and non-negative."""
        return self.status == Status.OK


@dataclass(frozen=True)
class ModifierFamily:
    """A named family of smooth ARF distortions and its compiled kernel.

    Parameters
    ----------
    name : str
        Registry name, as written in the config (``modifier.family``).
    parameters : tuple of str
        Parameter names in kernel order.
    units : mapping of str to str
        Unit of each parameter (``""`` when dimensionless).
    formula : str
        One line, A'(E) in terms of A(E) and the parameters; the same line
        stands in the kernel's docstring.
    kernel : callable
        ``kernel(energy, arf, *parameters, out, status)`` from ``xrmod._modify``;
        raises ValueError when the shapes disagree.
    constraints : mapping of str to Constraint, optional
        Domain restrictions beyond finiteness, per parameter.
    description : str, optional
        One sentence saying what the distortion models.
    linear : str, optional
        The parameter p in which A' is affine, A' = A (1 + p g(E; other
        parameters)): the native engine folds A g once for every value of p
        (:class:`xrmod.engines.native.NativeEngine`).
    scale_only : tuple of str, optional
        Parameters that only multiply A' by a constant, which the fitted norm
        absorbs: they change the counts as the exposure would, not the best
        fits (``xrmod validate`` says so of a grid axis over one).
    """

    name: str
    parameters: tuple[str, ...]
    units: Mapping[str, str] = field(compare=False)
    formula: str
    kernel: Callable[..., None] = field(repr=False, compare=False)
    constraints: Mapping[str, Constraint] = field(default_factory=dict, compare=False, repr=False)
    description: str = ""
    linear: str | None = None
    scale_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        params = tuple(self.parameters)
        if len(set(params)) != len(params):
            raise ModifierError(f"family {self.name!r}: duplicate parameter names in {params}")
        special = [*self.scale_only, *([self.linear] if self.linear else [])]
        unknown = sorted(set(special) - set(params))
        if unknown:
            raise ModifierError(
                f"family {self.name!r}: linear or scale_only names unknown parameter(s) "
                f"{', '.join(unknown)}"
            )
        for what, mapping in (("units", self.units), ("constraints", self.constraints)):
            extra = sorted(set(mapping) - set(params))
            if extra:
                raise ModifierError(
                    f"family {self.name!r}: {what} for unknown parameter(s) {', '.join(extra)}"
                )
        missing_units = [p for p in params if p not in self.units]
        if missing_units:
            raise ModifierError(
                f"family {self.name!r}: no unit for parameter(s) {', '.join(missing_units)}"
            )
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))
        object.__setattr__(self, "constraints", MappingProxyType(dict(self.constraints)))

    def _check_names(self, names: object) -> None:
        """Raise one ModifierError listing every missing and every unknown name."""
        given = list(names)
        missing = [p for p in self.parameters if p not in given]
        unknown = [str(g) for g in given if g not in self.parameters]
        if not (missing or unknown):
            return
        parts = [f"modifier family {self.name!r} takes {', '.join(self.parameters)}"]
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if unknown:
            hints = []
            for u in unknown:
                close = difflib.get_close_matches(u, self.parameters, n=1)
                hints.append(f"{u} (did you mean {close[0]!r}?)" if close else u)
            parts.append(f"unknown: {', '.join(hints)}")
        raise ModifierError("; ".join(parts))

    def _as_float(self, name: str, value: ArrayLike) -> np.ndarray:
        """float64 array of one parameter's values, or a ModifierError quoting them."""
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ModifierError(
                f"modifier {self.name!r} parameter {name!r} must be numeric, got {value!r}"
            ) from e
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ModifierError(
                f"modifier {self.name!r} parameter {name!r} must be finite, "
                f"got {float(arr[bad].flat[0])!r}{_count(bad)}"
            )
        constraint = self.constraints.get(name)
        if constraint is not None:
            bad = ~np.asarray(constraint.check(arr), dtype=bool)
            if bad.any():
                raise ModifierError(
                    f"modifier {self.name!r} parameter {name!r} must be {constraint.text}, "
                    f"got {float(arr[bad].flat[0])!r}{_count(bad)}"
                )
        return arr

    def validate(self, values: Mapping[str, ArrayLike]) -> None:
        """Check parameter values against the family.

        Exactly the family's parameters must be given, every value finite
        and inside the family's domain (e.g. ``gaussian`` needs sigma > 0).

        Parameters
        ----------
        values : mapping of str to array_like
            Parameter name → value(s), any shape.

        Raises
        ------
        ModifierError
            Naming every missing and unknown parameter at once, or the
            parameter with a bad value and quoting that value.
        """
        self._check_names(values)
        for name in self.parameters:
            self._as_float(name, values[name])

    def apply(
        self, energies: ArrayLike, arf: ArrayLike, params: Mapping[str, ArrayLike]
    ) -> ModifiedARFs:
        """Modify one ARF with n parameter sets in one compiled call.

        Parameters
        ----------
        energies : array_like
            (nE,) energy-bin mid-points in keV (finite, > 0).
        arf : array_like
            (nE,) the nominal effective area A(E).
        params : mapping of str to array_like
            Parameter name → (n,) values; scalars are broadcast to n
            (n = 1 when every value is a scalar).

        Returns
        -------
        ModifiedARFs
            (n, nE) values and (n,) status codes; nothing is clipped.

        Raises
        ------
        ModifierError
            Bad parameter names, values or lengths (as :meth:`validate`);
            energies or ARF not 1-D of one length; energies not finite and > 0.
        """
        self._check_names(params)
        columns = [self._as_float(p, params[p]) for p in self.parameters]
        energy = _vector("energies", energies)
        area = _vector("arf", arf)
        if not (np.isfinite(energy).all() and (energy > 0).all()):
            bad = energy[~(np.isfinite(energy) & (energy > 0))]
            raise ModifierError(f"energies must be finite and > 0 keV, got {float(bad[0])!r}")
        if any(c.ndim > 1 for c in columns):
            shapes = {
                p: c.shape for p, c in zip(self.parameters, columns, strict=True) if c.ndim > 1
            }
            raise ModifierError(f"modifier parameters must be scalars or 1-D, got shapes {shapes}")
        # n from the first 1-D parameter; the kernel checks that the others and the ARF fit
        n = next((c.size for c in columns if c.ndim == 1), 1)
        vectors = [
            np.ascontiguousarray(np.broadcast_to(c, (n,)) if c.ndim == 0 else c) for c in columns
        ]
        values = np.empty((n, energy.size), dtype=np.float64)
        status = np.empty(n, dtype=np.int8)
        try:
            self.kernel(energy, area, *vectors, values, status)
        except ValueError as e:
            error = self._shape_error(energy, area, columns)
            if error is None:
                raise
            raise error from e
        return ModifiedARFs(values=values, status=status)

    def _shape_error(
        self, energy: np.ndarray, area: np.ndarray, columns: list[np.ndarray]
    ) -> ModifierError | None:
        """The user's view of a shape the kernel refused; None if the shapes agree."""
        if energy.shape != area.shape:
            return ModifierError(
                f"energies and arf must have the same length, got {energy.size} and {area.size}"
            )
        if len({c.size for c in columns if c.ndim == 1}) > 1:
            given = ", ".join(
                f"{p}={c.size}" for p, c in zip(self.parameters, columns, strict=True) if c.ndim
            )
            return ModifierError(f"modifier parameters must all have the same length, got {given}")
        return None


def _count(bad: np.ndarray) -> str:
    """`` (k of n values)`` when more than one value was checked."""
    return f" ({int(bad.sum())} of {bad.size} values)" if bad.size > 1 else ""


def _vector(name: str, value: ArrayLike) -> np.ndarray:
    """Contiguous float64 copy-if-needed of a non-empty 1-D array."""
    try:
        arr = np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ModifierError(f"{name} must be a numeric 1-D array, got {value!r}") from e
    if arr.ndim != 1 or arr.size == 0:
        raise ModifierError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    return arr


_REGISTRY: dict[str, ModifierFamily] = {}


def register(family: ModifierFamily) -> ModifierFamily:
    """Add a family to the registry and return it.

    Raises
    ------
    ModifierError
        If another family of the same name is already registered.
    """
    if not isinstance(family, ModifierFamily):
        raise TypeError(f"register() needs a ModifierFamily, got {type(family).__name__}")
    known = _REGISTRY.get(family.name)
    if known is not None and known is not family:
        raise ModifierError(f"modifier family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    logger.debug("registered modifier family %r", family.name)
    return family


def get_family(name: str) -> ModifierFamily:
    """The registered family called ``name``.

    Raises
    ------
    ModifierError
        Unknown name; the message lists the known families and suggests the
        closest one.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    known = families()
    message = f"unknown modifier family {name!r}; known: {', '.join(known)}"
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    raise ModifierError(message)


def families() -> tuple[str, ...]:
    """Names of the registered families, sorted."""
    return tuple(sorted(_REGISTRY))


GAUSSIAN = register(
    ModifierFamily(
        name="gaussian",
        parameters=("mu", "sigma", "amp"),
        units={"mu": "keV", "sigma": "keV", "amp": ""},
        formula="A'(E) = A(E) * (1 + amp * exp(-(E - mu)**2 / (2 * sigma**2)))",
        kernel=_modify.gaussian,
        constraints={"sigma": POSITIVE},
        description="Gaussian bump (amp > 0) or dip (amp < 0) centred on mu, "
        "standard deviation sigma.",
        linear="amp",
    )
)
"""Gaussian bump or dip: A'(E) = A(E) * (1 + amp * exp(-(E - mu)**2 / (2 * sigma**2))).

mu (keV) is the centre, sigma (keV, > 0) the standard deviation, amp the
fractional height at mu. The reference family of xrmod.
"""

TILT = register(
    ModifierFamily(
        name="tilt",
        parameters=("index", "pivot"),
        units={"index": "", "pivot": "keV"},
        formula="A'(E) = A(E) * (E / pivot)**index",
        kernel=_modify.tilt,
        constraints={"pivot": POSITIVE},
        description="Power-law (log-linear) tilt about a pivot energy, the usual "
        "cross-calibration ratio form.",
        scale_only=("pivot",),
    )
)
"""Power-law tilt: A'(E) = A(E) * (E / pivot)**index.

log(A'/A) is linear in log E and zero at pivot (keV, > 0); index is the
power-law index of the ratio A'/A. The pivot only multiplies A' by the
constant pivot**-index, which the fitted norm absorbs: the best fits T1 and
T1′ of noiseless spectra do not depend on it; it scales the counts as the
exposure would (so the bounds and the Poisson noise). A grid over pivot
repeats the same fits at another count level.
"""

LINEAR = register(
    ModifierFamily(
        name="linear",
        parameters=("slope", "pivot"),
        units={"slope": "1/keV", "pivot": "keV"},
        formula="A'(E) = A(E) * (1 + slope * (E - pivot))",
        kernel=_modify.linear,
        description="Linear tilt about a pivot energy; a negative ARF is reported, not clipped.",
        linear="slope",
    )
)
"""Linear tilt: A'(E) = A(E) * (1 + slope * (E - pivot)).

slope in 1/keV, pivot (keV) any finite value. Far enough from the pivot the
factor goes negative: reported as ``Status.ARF_NEGATIVE``, never clipped.
"""

EDGE = register(
    ModifierFamily(
        name="edge",
        parameters=("energy", "depth", "width"),
        units={"energy": "keV", "depth": "", "width": "keV"},
        formula="A'(E) = A(E) * (1 + depth / (1 + exp(-(E - energy) / width)))",
        kernel=_modify.edge,
        constraints={"width": POSITIVE},
        description="Smoothed step of fractional depth above an edge energy "
        "(depth < 0 is a drop, e.g. a mis-modelled absorption edge).",
        linear="depth",
    )
)
"""Smoothed edge: A'(E) = A(E) * (1 + depth / (1 + exp(-(E - energy) / width))).

A logistic step centred on energy (keV) with width (keV, > 0); well above
the edge A' = A * (1 + depth), so depth < 0 is a drop and depth < -1 makes
the ARF negative (reported, not clipped).
"""
