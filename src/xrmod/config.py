"""The TOML configuration of a run (DESIGN.md §3) as typed, immutable objects.

:func:`parse_config` checks everything a file says before any work starts:
unknown keys and sections (all of them, in one message, with did-you-mean
suggestions), types, ranges, choices, that response files exist, that the grid
is well formed and that the modifier family accepts its axes. Any problem is a
:class:`~xrmod.errors.ConfigError` naming the file and the dotted key and
quoting the bad value (exit code 2).

Grid specifications (``source.temperatures`` and each ``modifier.axes`` entry)
are a list of numbers, a single number (a one-value axis), or a table
``{start, stop, num, spacing}`` with spacing ``"linear"`` or ``"log"``. Every
grid is stored sorted, strictly increasing, as a read-only float64 array; a
duplicate value is an error. The order of the ``[modifier.axes]`` entries in
the file is the order of the axes in the library.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from xrmod.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "Config",
    "FitConfig",
    "InstrumentConfig",
    "LibraryConfig",
    "ModifierConfig",
    "SourceConfig",
    "bundled_response",
    "default_config_text",
    "load_config",
    "parse_config",
    "template_text",
]

log = logging.getLogger(__name__)

#: Name given to the embedded default configuration in messages and provenance.
DEFAULT_SOURCE = "<default>"

#: Every key each section accepts, in documentation order.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "library": ("output", "engine", "seed", "noise", "realizations"),
    "instrument": ("arf", "rmf", "exposure", "band", "background", "backscal"),
    "source": (
        "model",
        "nH",
        "redshift",
        "abundance",
        "abundance_table",
        "cross_sections",
        "norm",
        "temperatures",
    ),
    "modifier": ("family", "axes"),
    "fit": ("statistic", "error_delta", "kt_limits"),
}
_REQUIRED = ("source.temperatures", "modifier.axes")
_RANGE_KEYS = ("start", "stop", "num", "spacing")
#: Largest number of values one grid axis may have (catches a mistyped ``num``).
_MAX_AXIS_LENGTH = 1_000_000

_ABUNDANCE_TABLES = ("angr", "aspl", "feld", "aneb", "grsa", "wilm", "lodd", "lgpp", "lgps")
_CROSS_SECTIONS = ("bcmc", "obcm", "vern")


# --------------------------------------------------------------------------- objects


def _readonly(values: Any) -> np.ndarray:
    """Return a read-only float64 copy, so no caller can change a config in place."""
    array = np.array(values, dtype=np.float64)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class LibraryConfig:
    """``[library]``: where the library goes and how its points are simulated.

    Attributes
    ----------
    output : Path
        The HDF5 library; a relative path is relative to the working directory at run time.
    engine : str
        ``"native"`` (compiled fast path) or ``"xspec"`` (PyXSPEC): the engines
        of :data:`xrmod.engines.ENGINES` not for checks only.
    seed : int
        Root seed, 0 <= seed < 2**63; each point's stream derives from (seed, flat index).
    noise : str
        ``"poisson"`` draws counts; ``"asimov"`` uses the expected counts (the pure bias).
    realizations : int
        Noise realizations per point; more than one adds an axis before the temperature axis.
    """

    output: Path
    engine: str
    seed: int
    noise: str
    realizations: int


@dataclass(frozen=True)
class InstrumentConfig:
    """``[instrument]``: the response, exposure, fit band and optional background.

    Attributes
    ----------
    arf, rmf : Path
        Response files (resolved against the config file's directory).
    exposure : float
        Exposure time in seconds.
    band : tuple of float
        ``(lo, hi)`` in keV; channels whose EBOUNDS interval overlaps it are fitted.
    background : Path or None
        OGIP PHA background file, or None for no background.
    backscal : float
        ``BACKSCAL`` of the simulated source spectrum (its extraction area in the
        background file's units): the background enters the source spectrum scaled
        by (exposure · backscal) / (its EXPOSURE · BACKSCAL · AREASCAL).
    bundled : bool
        True when arf and rmf are the XMM-Newton EPIC-pn response shipped with xrmod.
    """

    arf: Path
    rmf: Path
    exposure: float
    band: tuple[float, float]
    background: Path | None
    backscal: float
    bundled: bool


@dataclass(frozen=True, eq=False)
class SourceConfig:
    """``[source]``: the absorbed thermal model and the true temperatures.

    Attributes
    ----------
    model : str
        Normalised ``"ABS*EMIS"`` expression, e.g. ``"tbabs*zbremss"``.
    nH : float
        Absorbing column in 1e22 cm^-2 (frozen in fits).
    redshift : float
        Source redshift (frozen); 0 for an emission model without one (bremss).
    abundance : float
        Metal abundance relative to ``abundance_table`` (apec models only; frozen).
    abundance_table : str
        XSPEC abundance table (``abund``), e.g. ``"angr"`` or ``"wilm"``.
    cross_sections : str
        XSPEC photoelectric cross-sections (``xsect``).
    norm : float
        Model normalisation used for the simulation (free in fits).
    temperatures : numpy.ndarray
        True kT values in keV, strictly increasing, read-only.
    """

    model: str
    nH: float  # the astronomers' spelling, as in the TOML key
    redshift: float
    abundance: float
    abundance_table: str
    cross_sections: str
    norm: float
    temperatures: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperatures", _readonly(self.temperatures))

    @property
    def absorption(self) -> str:
        """The absorption component, e.g. ``"tbabs"``."""
        return self.model.split("*")[0]

    @property
    def emission(self) -> str:
        """The emission component, e.g. ``"zbremss"``."""
        return self.model.split("*")[1]

    @property
    def continuum_only(self) -> bool:
        """True for bremsstrahlung models, which have no emission lines."""
        return self.emission.endswith("bremss")


@dataclass(frozen=True, eq=False)
class ModifierConfig:
    """``[modifier]``: the ARF distortion family and its parameter grid.

    Attributes
    ----------
    family : str
        Registered modifier family, e.g. ``"gaussian"``.
    axes : tuple of (str, numpy.ndarray)
        ``(parameter, values)`` pairs in the order written in the file, which is
        the order of the library's axes; values strictly increasing, read-only.
    """

    family: str
    axes: tuple[tuple[str, np.ndarray], ...]

    def __post_init__(self) -> None:
        axes = tuple((str(name), _readonly(values)) for name, values in self.axes)
        object.__setattr__(self, "axes", axes)

    @property
    def names(self) -> tuple[str, ...]:
        """Axis names in library order."""
        return tuple(name for name, _ in self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of values on each axis."""
        return tuple(len(values) for _, values in self.axes)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The axes as an (insertion-ordered) dict."""
        return dict(self.axes)


@dataclass(frozen=True)
class FitConfig:
    """``[fit]``: how each simulated spectrum is fitted.

    Attributes
    ----------
    statistic : str
        Fit statistic; only ``"cstat"`` (XSPEC's form) for now.
    error_delta : float
        Statistic increase defining the kT bounds: 1.0 gives 68 %, 2.706 gives 90 %
        (one parameter of interest).
    kt_limits : tuple of float
        ``(lo, hi)`` keV: the fitted kT is searched strictly inside this range
        (from the lowest kT at which the model has counts in the band, where it
        has none at lo: :mod:`xrmod.engines.source`).
    """

    statistic: str
    error_delta: float
    kt_limits: tuple[float, float]


@dataclass(frozen=True, eq=False)
class Config:
    """A whole, validated configuration.

    Attributes
    ----------
    library, instrument, source, modifier, fit
        The five sections.
    source_path : str
        The file it was read from, ``"<default>"`` for the embedded one.
    text : str
        The full TOML text, stored in the library as provenance.
    """

    library: LibraryConfig
    instrument: InstrumentConfig
    source: SourceConfig
    modifier: ModifierConfig
    fit: FitConfig
    source_path: str
    text: str

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Shape of the library's per-point arrays: axes, [realizations,] temperatures."""
        extra = (self.library.realizations,) if self.library.realizations > 1 else ()
        return (*self.modifier.shape, *extra, len(self.source.temperatures))

    @property
    def n_points(self) -> int:
        """Number of grid points (simulations with their two fits)."""
        return math.prod(self.grid_shape)


# --------------------------------------------------------------------------- validators


@dataclass(frozen=True)
class _Item:
    """A raw TOML value with its dotted key and the file it came from."""

    value: Any
    key: str
    source: str

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, path=self.source, key=self.key or None)

    def child(self, name: str | int, default: Any = None) -> _Item:
        if isinstance(name, int):
            return _Item(self.value[name], f"{self.key}[{name}]", self.source)
        key = f"{self.key}.{name}" if self.key else name
        return _Item(self.value.get(name, default), key, self.source)


def _show(value: Any) -> str:
    """Quote a bad value with its TOML-level type, e.g. ``'fifty' (str)``."""
    return f"{value!r} ({type(value).__name__})"


def _number(
    item: _Item, *, gt: float | None = None, ge: float | None = None, expected: str = "a number"
) -> float:
    """A finite float (ints accepted, booleans not), optionally bounded below."""
    value = item.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise item.error(f"expected {expected}, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise item.error(f"expected a finite number, got {value!r}")
    if gt is not None and not number > gt:
        raise item.error(f"must be > {gt:g}, got {value!r}")
    if ge is not None and not number >= ge:
        raise item.error(f"must be >= {ge:g}, got {value!r}")
    return number


def _integer(item: _Item, *, ge: int | None = None, lt: int | None = None) -> int:
    """An integer (floats and booleans refused), optionally in ``[ge, lt)``."""
    value = item.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise item.error(f"expected an integer, got {_show(value)}")
    if ge is not None and value < ge:
        raise item.error(f"must be >= {ge}, got {value!r}")
    if lt is not None and value >= lt:
        raise item.error(f"must be < {lt}, got {value!r}")
    return value


def _string(item: _Item) -> str:
    """A string."""
    if not isinstance(item.value, str):
        raise item.error(f"expected a string, got {_show(item.value)}")
    return item.value


def _choice(item: _Item, choices: Sequence[str]) -> str:
    """One of ``choices``, compared case-insensitively; returned in canonical form."""
    text = _string(item).strip().lower()
    if text not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise item.error(f"expected one of {allowed}, got {item.value!r}")
    return text


def _path(item: _Item, *, base_dir: Path | None = None, must_exist: bool = False) -> Path | None:
    """A file path, or None for ``""``; relative paths are joined to ``base_dir`` if given."""
    text = _string(item)
    if not text.strip():
        return None
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if must_exist and not path.is_file():
        reason = "not a regular file" if path.exists() else "no such file"
        given = f" (given as {text!r})" if text != str(path) else ""
        raise item.error(f"{reason}: '{path}'{given}")
    return path


def _interval(
    item: _Item, *, lo_gt: float | None = None, lo_ge: float | None = None
) -> tuple[float, float]:
    """A ``[lo, hi]`` pair of numbers with lo < hi and a lower bound on lo."""
    value = item.value
    if not isinstance(value, list) or len(value) != 2:
        raise item.error(f"expected a list [lo, hi] of two numbers, got {_show(value)}")
    lo = _number(item.child(0), gt=lo_gt, ge=lo_ge)
    hi = _number(item.child(1))
    if not lo < hi:
        raise item.error(f"needs lo < hi, got {value!r}")
    return lo, hi


def _range_table(item: _Item, spacing_default: str) -> np.ndarray:
    """Values of a ``{start, stop, num, spacing}`` table (``numpy.linspace``/``geomspace``)."""
    missing = [k for k in ("start", "stop", "num") if k not in item.value]
    if missing:
        raise item.error(f"a range table needs start, stop and num; missing {', '.join(missing)}")
    start = _number(item.child("start"))
    stop = _number(item.child("stop"))
    num = _integer(item.child("num"), ge=1)
    spacing = _choice(item.child("spacing", spacing_default), ("linear", "log"))
    if num > _MAX_AXIS_LENGTH:
        raise item.child("num").error(f"at most {_MAX_AXIS_LENGTH} values per axis, got {num}")
    if spacing == "linear":
        return np.linspace(start, stop, num)
    if not (start > 0 and stop > 0):
        raise item.error(f"log spacing needs start > 0 and stop > 0, got {start:g} and {stop:g}")
    return np.geomspace(start, stop, num)


def _grid(item: _Item, *, spacing_default: str, gt: float | None = None) -> np.ndarray:
    """A grid axis: list, single number or range table; sorted, no duplicates, read-only."""
    value = item.value
    if isinstance(value, dict):
        values = _range_table(item, spacing_default)
    elif isinstance(value, list):
        if not value:
            raise item.error("empty list: an axis needs at least one value")
        values = np.array([_number(item.child(i)) for i in range(len(value))])
    else:
        expected = "a number, a list of numbers or a table {start, stop, num, spacing}"
        values = np.array([_number(item, expected=expected)])
    if gt is not None and np.any(values <= gt):
        raise item.error(f"every value must be > {gt:g}, got {values.min():g}")
    values = np.sort(values)
    duplicated = values[1:][np.diff(values) == 0]
    if duplicated.size:
        raise item.error(f"duplicate value {duplicated[0]:g}")
    return _readonly(values)


def _model(item: _Item) -> str:
    """A normalised ``ABS*EMIS`` model expression (the names are checked by xrmod.models)."""
    from xrmod.models import parse_expression

    try:
        absorber, emission = parse_expression(_string(item))
    except ConfigError as e:
        raise item.error(e.message) from None
    return f"{absorber}*{emission}"


# --------------------------------------------------------------------------- structure


def _suggestion(name: str, allowed: Sequence[str], section: str | None) -> str:
    """A did-you-mean hint: a close key of the same table, else the same key in another section."""
    by_lower = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    if close:
        return f" (did you mean '{by_lower[close[0]]}'?)"
    if section is None:
        return ""
    for other, keys in _SECTIONS.items():
        for key in keys:
            if other != section and key.lower() == name.lower():
                return f" (did you mean '{other}.{key}'?)"
    return ""


def _unknown_keys(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every unknown key of the document as ``(dotted key, hint)``, in file order."""
    found: list[tuple[str, str]] = []

    def check(name: str, prefix: str, allowed: Sequence[str], section: str | None) -> bool:
        if name in allowed:
            return True
        found.append((f"{prefix}{name}", _suggestion(name, allowed, section)))
        return False

    def check_range(spec: Any, prefix: str, section: str) -> None:
        if isinstance(spec, dict):
            for name in spec:
                check(name, prefix, _RANGE_KEYS, section)

    for section, table in doc.items():
        if not check(section, "", tuple(_SECTIONS), None) or not isinstance(table, dict):
            continue
        for key, value in table.items():
            if not check(key, f"{section}.", _SECTIONS[section], section):
                continue
            if (section, key) == ("source", "temperatures"):
                check_range(value, "source.temperatures.", section)
            elif (section, key) == ("modifier", "axes") and isinstance(value, dict):
                for axis, spec in value.items():
                    check_range(spec, f"modifier.axes.{axis}.", section)
    return found


def _is_table(doc: Mapping[str, Any], section: str) -> bool:
    return isinstance(doc.get(section), dict)


def _check_structure(doc: Mapping[str, Any], source: str) -> None:
    """Refuse unknown keys (all at once), non-table sections and missing required keys."""
    unknown = _unknown_keys(doc)
    if len(unknown) == 1:
        key, hint = unknown[0]
        raise ConfigError(f"unknown key{hint}", path=source, key=key)
    if unknown:
        listed = "; ".join(f"'{key}'{hint}" for key, hint in unknown)
        raise ConfigError(f"{len(unknown)} unknown keys: {listed}", path=source)
    for section in _SECTIONS:
        if section in doc and not _is_table(doc, section):
            raise ConfigError(
                f"expected a table [{section}], got {_show(doc[section])}", path=source, key=section
            )
    missing = []
    for dotted in _REQUIRED:
        section, key = dotted.split(".")
        if key not in doc.get(section, {}):
            missing.append(dotted)
    if len(missing) == 1:
        raise ConfigError("missing required key", path=source, key=missing[0])
    if missing:
        listed = ", ".join(f"'{key}'" for key in missing)
        raise ConfigError(f"missing required keys {listed}", path=source)


# --------------------------------------------------------------------------- sections


def _library(t: _Item) -> LibraryConfig:
    output = _path(t.child("output", "library.h5"))
    if output is None:
        raise t.child("output").error("expected a file name, got ''")
    from xrmod.engines import selectable_engines  # the registry: read when a config is parsed

    library = LibraryConfig(
        output=output,
        engine=_choice(t.child("engine", "native"), selectable_engines()),
        seed=_integer(t.child("seed", 20261127), ge=0, lt=2**63),
        noise=_choice(t.child("noise", "poisson"), ("poisson", "asimov")),
        realizations=_integer(t.child("realizations", 1), ge=1),
    )
    if library.noise == "asimov" and library.realizations > 1:
        raise t.child("realizations").error(
            f"noise = 'asimov' is deterministic: {library.realizations} realizations "
            "would all be identical; use 1 or noise = 'poisson'"
        )
    return library


def bundled_response() -> tuple[Path, Path]:
    """Paths of the XMM-Newton EPIC-pn ARF and RMF shipped inside the package."""
    data = resources.files("xrmod") / "data"
    return Path(str(data / "pn.arf")), Path(str(data / "pn.rmf"))


def _instrument(t: _Item, base_dir: Path | None) -> InstrumentConfig:
    arf = _path(t.child("arf", ""), base_dir=base_dir, must_exist=True)
    rmf = _path(t.child("rmf", ""), base_dir=base_dir, must_exist=True)
    if (arf is None) != (rmf is None):
        absent = "rmf" if rmf is None else "arf"
        raise t.child(absent).error(
            "give both arf and rmf, or neither for the bundled XMM-Newton EPIC-pn response"
        )
    bundled = arf is None
    if arf is None or rmf is None:
        arf, rmf = bundled_response()
    return InstrumentConfig(
        arf=arf,
        rmf=rmf,
        exposure=_number(t.child("exposure", 50000.0), gt=0),
        band=_interval(t.child("band", [0.5, 10.0]), lo_ge=0),
        background=_path(t.child("background", ""), base_dir=base_dir, must_exist=True),
        backscal=_number(t.child("backscal", 1.0), gt=0),
        bundled=bundled,
    )


def _source(t: _Item) -> SourceConfig:
    source = SourceConfig(
        model=_model(t.child("model", "tbabs*zbremss")),
        nH=_number(t.child("nH", 0.05), ge=0),
        redshift=_number(t.child("redshift", 0.1), ge=0),
        abundance=_number(t.child("abundance", 0.3), ge=0),
        abundance_table=_choice(t.child("abundance_table", "angr"), _ABUNDANCE_TABLES),
        cross_sections=_choice(t.child("cross_sections", "vern"), _CROSS_SECTIONS),
        norm=_number(t.child("norm", 1.0e-3), gt=0),
        temperatures=_grid(t.child("temperatures"), spacing_default="log", gt=0),
    )
    _check_redshift(source, t)
    return source


def _check_redshift(source: SourceConfig, t: _Item) -> None:
    """An emission model without a redshift parameter (bremss) takes only ``redshift = 0``."""
    from xrmod.models import EMISSIONS

    emission = source.emission
    if "Redshift" not in EMISSIONS[emission].parameters and source.redshift != 0.0:
        given = "" if "redshift" in t.value else ", the default"
        raise t.child("redshift").error(
            f"{emission} has no redshift (got {source.redshift:g}{given}); use z{emission} "
            "or set redshift = 0"
        )


def _modifier(t: _Item) -> ModifierConfig:
    family = _string(t.child("family", "gaussian")).strip().lower()
    axes_item = t.child("axes")
    if not isinstance(axes_item.value, dict):
        raise axes_item.error(f"expected a table of axes, got {_show(axes_item.value)}")
    if not axes_item.value:
        raise axes_item.error("no axes: give at least one parameter grid")
    axes = tuple(
        (name, _grid(axes_item.child(name), spacing_default="linear")) for name in axes_item.value
    )
    modifier = ModifierConfig(family=family, axes=axes)
    _validate_modifier(modifier, t)
    return modifier


def _validate_modifier(modifier: ModifierConfig, t: _Item) -> None:
    """Let the modifier family check its parameter names and domains."""
    # Imported here: the registry is only needed once a config is parsed.
    from xrmod.errors import ModifierError
    from xrmod.modifiers import get_family

    try:
        family = get_family(modifier.family)
    except ModifierError as exc:
        raise t.child("family").error(str(exc)) from exc
    try:
        family.validate(modifier.as_dict())
    except ModifierError as exc:
        raise t.child("axes").error(str(exc)) from exc


def _fit(t: _Item) -> FitConfig:
    return FitConfig(
        statistic=_choice(t.child("statistic", "cstat"), ("cstat",)),
        error_delta=_number(t.child("error_delta", 1.0), gt=0),
        kt_limits=_interval(t.child("kt_limits", [0.05, 64.0]), lo_gt=0),
    )


def _check_temperatures(source: SourceConfig, fit: FitConfig, root: _Item) -> None:
    """Every true temperature must lie strictly inside the fit's kT limits."""
    lo, hi = fit.kt_limits
    kt = source.temperatures
    outside = kt[(kt <= lo) | (kt >= hi)]
    if outside.size:
        raise (
            root.child("source")
            .child("temperatures")
            .error(
                f"temperature {outside[0]:g} keV is not strictly inside fit.kt_limits "
                f"[{lo:g}, {hi:g}]"
            )
        )


def _check_model_limits(source: SourceConfig, fit: FitConfig, root: _Item) -> None:
    """Frozen parameters and ``fit.kt_limits`` must lie within the model's XSPEC hard limits.

    Found here, the message names the file and the key; found by the model
    later, it could only name the parameter.
    """
    from xrmod.models import ABSORBERS, EMISSIONS

    absorber, emission = ABSORBERS[source.absorption], EMISSIONS[source.emission]
    checks = [("source", "nH", source.nH, absorber, "nH")]
    checks += [("source", "redshift", source.redshift, emission, "Redshift")]
    checks += [("source", "abundance", source.abundance, emission, "Abundanc")]
    for section, key, value, component, parameter in checks:
        if parameter not in component.parameters:
            continue
        low, high = component.limits[component.parameters.index(parameter)]
        if not low <= value <= high:
            raise (
                root.child(section)
                .child(key)
                .error(
                    f"{value:g} is outside {component.name}'s {parameter} limits "
                    f"[{low:g}, {high:g}] (XSPEC's hard limits)"
                )
            )
    low, high = emission.limits[emission.parameters.index("kT")]
    lo, hi = fit.kt_limits
    if lo < low or hi > high:
        raise (
            root.child("fit")
            .child("kt_limits")
            .error(
                f"[{lo:g}, {hi:g}] keV reaches outside {emission.name}'s kT limits "
                f"[{low:g}, {high:g}] keV (XSPEC's hard limits); the default is [0.05, 64]"
            )
        )


# --------------------------------------------------------------------------- public API


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Parse and validate a configuration given as TOML text.

    Parameters
    ----------
    text : str
        The TOML document.
    source : str
        Name used in error messages and kept as ``Config.source_path``.
    base_dir : Path, optional
        Directory that relative ``instrument`` paths are resolved against (the
        config file's directory); None leaves them relative to the working directory.

    Returns
    -------
    Config

    Raises
    ------
    xrmod.errors.ConfigError
        Syntax error, unknown or missing key, bad type or value (exit code 2).
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error: {exc}", path=source) from exc
    _check_structure(doc, source)
    root = _Item(doc, "", source)
    section = {name: root.child(name, {}) for name in _SECTIONS}
    config = Config(
        library=_library(section["library"]),
        instrument=_instrument(section["instrument"], base_dir),
        source=_source(section["source"]),
        modifier=_modifier(section["modifier"]),
        fit=_fit(section["fit"]),
        source_path=source,
        text=text,
    )
    _check_model_limits(config.source, config.fit, root)
    _check_temperatures(config.source, config.fit, root)
    log.debug("configuration %s: grid %s, %d points", source, config.grid_shape, config.n_points)
    return config


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a configuration file.

    Parameters
    ----------
    path : path-like, optional
        The TOML file; None uses the embedded default (bundled response, a
        grid that runs in seconds).

    Returns
    -------
    Config

    Raises
    ------
    xrmod.errors.ConfigError
        Unreadable file or any problem :func:`parse_config` finds (exit code 2).
    """
    if path is None:
        return parse_config(default_config_text(), source=DEFAULT_SOURCE)
    name = os.fspath(path)
    file = Path(name)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("no such file", path=name) from exc
    except IsADirectoryError as exc:
        raise ConfigError("is a directory, not a TOML file", path=name) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=name) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=name) from exc
    return parse_config(text, source=name, base_dir=file.absolute().parent)


def _data_text(name: str) -> str:
    return (resources.files("xrmod") / "data" / name).read_text(encoding="utf-8")


def default_config_text() -> str:
    """The embedded default configuration (``xrmod/data/default.toml``)."""
    return _data_text("default.toml")


def template_text() -> str:
    """A configuration template listing every key with its unit, default and allowed values.

    The source models and the modifier families are filled in from their
    registries (:data:`xrmod.models.ABSORBERS`, :data:`xrmod.models.EMISSIONS`,
    :func:`xrmod.modifiers.families`): the template offers what a configuration
    accepts, no more, no less.
    """
    from xrmod.models import ABSORBERS, EMISSIONS
    from xrmod.modifiers import families, get_family

    def component(c: Any) -> str:
        return f"{c.name} ({', '.join(c.parameters)})" if c.parameters else c.name

    def with_parameter(name: str) -> str:
        return ", ".join(e for e, c in EMISSIONS.items() if name in c.parameters) or "none"

    width = max(len(name) for name in families()) + 2
    family_lines = []
    for name in families():
        family = get_family(name)
        parameters = []
        for p in family.parameters:
            constraint = family.constraints.get(p)
            notes = [n for n in (family.units[p], constraint.text if constraint else "") if n]
            parameters.append(f"{p} ({', '.join(notes)})" if notes else p)
        family_lines.append(f"#   {name:<{width}}{', '.join(parameters)}")
        family_lines.append(f"#   {'':<{width}}{family.formula}")
    fills = {
        "ABSORBERS": ", ".join(component(c) for c in ABSORBERS.values()),
        "EMISSIONS": ", ".join(component(c) for c in EMISSIONS.values()),
        "REDSHIFT": with_parameter("Redshift"),
        "ABUNDANCE": with_parameter("Abundanc"),
        "FAMILIES": "\n".join(family_lines),
    }
    text = _data_text("template.toml")
    for key, value in fills.items():
        text = text.replace(f"@{key}@", value)
    return text
