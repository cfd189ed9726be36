"""Source spectra from XSPEC's own model functions: the model registry and the source model.

The native engine does not reimplement the source models: it calls the
functions of XSPEC's model library (``libXSFunctions``): HEASoft's own when
``$HEADAS`` names a complete one, else the copy the ``xspectrampoline``
package ships (XSPEC 12.15); :mod:`xrmod.xspec_library` chooses and loads it,
:mod:`xrmod.xspec_models` calls its functions (calling conventions, the one
lock, the abundance and cross-section tables, XSPEC's output kept quiet). A
source is a multiplicative absorber times an additive emission model,
written as XSPEC writes it (``"tbabs*zbremss"``).

This module knows the models: the supported components and their XSPEC
parameters and hard limits (:data:`ABSORBERS`, :data:`EMISSIONS`), where a
spectrum is not smooth in kT (:data:`KT_BREAKS`, :data:`KT_JUMPS`), and
:class:`SourceModel`, which evaluates ``absorber*emission`` on a response's
energy bins. An additive model returns photons/cm²/s per bin for norm = 1;
the norm multiplies it afterwards, as XSPEC and Sherpa do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from xrmod import xspec_models
from xrmod.errors import ConfigError
from xrmod.xspec_models import MIN_ENERGY, silence_c_output

__all__ = [
    "ABSORBERS",
    "EMISSIONS",
    "KT_BREAKS",
    "KT_JUMPS",
    "KT_SIDE_EPS",
    "MIN_ENERGY",
    "Component",
    "SourceModel",
    "load_model",
    "parse_expression",
    "silence_c_output",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """One XSPEC model function and its parameters, as ``model.dat`` declares them.

    Parameters
    ----------
    name : str
        XSPEC's model name, lower case (``"zbremss"``).
    symbol : str
        The function in ``libXSFunctions`` (``"xszbrm_"``, ``"C_tbabs"``).
    kind : str
        ``"mul"`` (absorber) or ``"add"`` (emission; photons/cm²/s per bin).
    parameters : tuple of str
        Parameter names in XSPEC's order, norm excluded.
    limits : tuple of (float, float)
        XSPEC's hard limits of each parameter.
    abundance_table : bool
        Whether the model reads the global abundance table (``abund``).
    cross_sections : bool
        Whether the model reads the global cross-section table (``xsect``).
    """

    name: str
    symbol: str
    kind: str
    parameters: tuple[str, ...]
    limits: tuple[tuple[float, float], ...]
    abundance_table: bool = False
    cross_sections: bool = False

    @property
    def fortran(self) -> bool:
        """Whether the function has the float32 Fortran interface."""
        return self.symbol.endswith("_")


_NH_LIMITS = (0.0, 1.0e6)
_Z_LIMITS = (-0.999, 10.0)

#: Supported absorbers (multiplicative), keyed by XSPEC name.
ABSORBERS: dict[str, Component] = {
    # tbabs reads the abundance table but always uses Verner cross-sections.
    "tbabs": Component("tbabs", "C_tbabs", "mul", ("nH",), (_NH_LIMITS,), abundance_table=True),
    "phabs": Component(
        "phabs",
        "xsphab_",
        "mul",
        ("nH",),
        (_NH_LIMITS,),
        abundance_table=True,
        cross_sections=True,
    ),
    # wabs: Morrison & McCammon (1983), its own fixed abundances and cross-sections.
    "wabs": Component("wabs", "xsabsw_", "mul", ("nH",), (_NH_LIMITS,)),
}

#: Supported emission models (additive), keyed by XSPEC name.
EMISSIONS: dict[str, Component] = {
    "bremss": Component("bremss", "xsbrms_", "add", ("kT",), ((1.0e-4, 200.0),)),
    "zbremss": Component(
        "zbremss", "xszbrm_", "add", ("kT", "Redshift"), ((1.0e-4, 200.0), _Z_LIMITS)
    ),
    "apec": Component(
        "apec",
        "C_apec",
        "add",
        ("kT", "Abundanc", "Redshift"),
        ((0.008, 64.0), (0.0, 5.0), _Z_LIMITS),
        abundance_table=True,
    ),
}


def _gaunt_breaks() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Where XSPEC's bremsstrahlung spectrum is not smooth in kT: (all breaks, large jumps), keV.

    XSPEC's ``gaunt(E, kT, Z)`` (Kellogg, Baldwin & Koch 1975, ApJ 199, 299,
    with Kurucz's low-temperature table) works with γ² = Z²·0.01358 keV / kT
    and γ₁ = min(1000 γ², 100): the Born approximation for γ₁ < 1 (a jump of
    up to 5 % at the switch, kT = 13.58 Z² keV), polynomials in E/kT
    interpolated linearly in γ₁ between table columns at 1, 1.7783, 3,
    5.6234, 10, 30, 100 (a kink where the pair of columns changes: at 3,
    5.6234, 10, 30, and at 1.773, not 1.7783, where the switch also leaves a
    jump of ~10⁻⁴), and Kurucz's table
    (bilinear in log γ², nodes at γ² = 10^((j−3)/2): kinks) for γ² > 0.1 (a
    jump of ~1 % at the switch, kT = 0.1358 Z² keV). ``bremss`` and
    ``zbremss`` add Z = 1 and Z = 2 (He/H = 0.085). Measured jumps of the
    0.055–11.8 keV spectrum: 1.5 % (0.1358 keV), 0.58 % (0.5432), 3.4 %
    (13.58), 0.71 % (54.32), 2.5·10⁻⁵ (7.659), 5·10⁻⁶ (30.64).
    """
    breaks, jumps = [], []
    for z2 in (1.0, 4.0):
        born = z2 * 0.01358 * 1000.0  # kT at γ₁ = 1
        breaks.extend(born / g1 for g1 in (1.773, 3.0, 5.6234, 10.0, 30.0))
        jumps.extend((born, born / 100.0))  # Born and Kurucz switches
        breaks.extend(z2 * 0.01358 / 10.0 ** ((j - 3) / 2.0) for j in range(2, 7))
    return tuple(sorted(set(breaks + jumps))), tuple(sorted(jumps))


_GAUNT_BREAKS, _GAUNT_JUMPS = _gaunt_breaks()

#: Emission model -> kT (keV) where its spectrum is not smooth in kT (kinks and
#: jumps): the native engine's tables end a piece at each. Models not listed
#: are treated as smooth.
KT_BREAKS: dict[str, tuple[float, ...]] = {"bremss": _GAUNT_BREAKS, "zbremss": _GAUNT_BREAKS}

#: Emission model -> kT (keV) where its spectrum jumps by more than 10⁻³: the
#: profiled statistic is discontinuous there, and the engines fit each smooth
#: piece between them separately (the rule is :class:`xrmod.status.Status`'s).
#: Models not listed have none.
KT_JUMPS: dict[str, tuple[float, ...]] = {"bremss": _GAUNT_JUMPS, "zbremss": _GAUNT_JUMPS}

#: Relative offset in kT at which the model is evaluated on either side of a
#: break: kT · (1 ∓ KT_SIDE_EPS) is the left / right side (a few float32 ulps;
#: XSPEC's model functions take kT as float32).
KT_SIDE_EPS = 4.0e-7


# Emission models that read AtomDB files, and what to use instead without them.
_NEEDS_ATOMIC_DATA = frozenset({"apec"})

# Reference grid and parameters of the check load_model runs once per model.
_PROBE_EDGES = np.geomspace(0.1, 20.0, 201)
_PROBE_KT = {"bremss": 7.0, "zbremss": 7.0, "apec": 1.0}

# The emission models that cannot run here, with the reason.
_BROKEN: dict[str, str] = {}


def _check_limits(component: Component, values: Sequence[float]) -> None:
    for name, value, (low, high) in zip(
        component.parameters, values, component.limits, strict=True
    ):
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(
                f"{component.name} parameter {name} = {value!r} is outside XSPEC's hard "
                f"limits [{low:g}, {high:g}]"
            )


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class SourceModel:
    """An absorbed emission model, evaluated with XSPEC's own functions.

    Build it with :func:`load_model`. Fluxes are photons/cm²/s per energy
    bin (XSPEC's model output), float64. Every method takes the bins as
    ``ENERG_LO`` / ``ENERG_HI`` arrays in keV, the columns of an ARF or RMF.

    Parameters
    ----------
    expression : str
        The model as XSPEC writes it, ``"<absorber>*<emission>"``.
    absorber : str
        XSPEC name of the multiplicative part (``tbabs``, ``phabs``, ``wabs``).
    emission : str
        XSPEC name of the additive part (``bremss``, ``zbremss``, ``apec``).
    abundance_table : str
        XSPEC ``abund`` table used by tbabs, phabs and apec.
    cross_sections : str
        XSPEC ``xsect`` table used by phabs.
    """

    expression: str
    absorber: str
    emission: str
    abundance_table: str = "angr"
    cross_sections: str = "vern"
    _transmissions: dict[tuple[bytes, float], np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.absorber not in ABSORBERS or self.emission not in EMISSIONS:
            raise ConfigError(
                f"unsupported model {self.absorber}*{self.emission}; absorbers: "
                f"{', '.join(ABSORBERS)}; emission models: {', '.join(EMISSIONS)}",
                key="source.model",
            )
        if self.expression != f"{self.absorber}*{self.emission}":
            raise ValueError(
                f"expression {self.expression!r} does not match {self.absorber}*{self.emission}"
            )

    @property
    def kT_limits(self) -> tuple[float, float]:
        """XSPEC's hard limits of the emission temperature (keV)."""
        return EMISSIONS[self.emission].limits[0]

    @property
    def kt_breaks(self) -> tuple[float, ...]:
        """Where (kT, keV) the emission spectrum is not smooth in kT (:data:`KT_BREAKS`)."""
        return KT_BREAKS.get(self.emission, ())

    @property
    def kt_jumps(self) -> tuple[float, ...]:
        """Where (kT, keV) the emission spectrum jumps (:data:`KT_JUMPS`), increasing."""
        return KT_JUMPS.get(self.emission, ())

    @property
    def continuum_only(self) -> bool:
        """True for models without lines (bremss, zbremss): label outputs with it."""
        return self.emission not in _NEEDS_ATOMIC_DATA

    def transmission(self, energ_lo: ArrayLike, energ_hi: ArrayLike, *, nH: float) -> np.ndarray:
        """Fraction of photons the absorber lets through in each bin (unitless).

        Cached per energy grid and nH (the last few): absorbers are the
        costly part of a source (tbabs ≈ 2 ms, phabs ≈ 14 ms on 2000 bins) and
        nH is frozen in a fit.

        Parameters
        ----------
        energ_lo, energ_hi : array_like
            Bin edges in keV.
        nH : float
            Equivalent hydrogen column, 10²² cm⁻².
        """
        edges, index = xspec_models.energy_grid(energ_lo, energ_hi)
        return self._transmission(edges, index, nH).copy()

    def emission_flux(
        self,
        energ_lo: ArrayLike,
        energ_hi: ArrayLike,
        kT: float,
        *,
        redshift: float = 0.0,
        abundance: float = 1.0,
        norm: float = 1.0,
    ) -> np.ndarray:
        """Unabsorbed photons/cm²/s per bin of the emission model.

        Parameters
        ----------
        energ_lo, energ_hi : array_like
            Bin edges in keV.
        kT : float
            Plasma temperature, keV.
        redshift : float
            Source redshift (zbremss, apec; must be 0 for bremss).
        abundance : float
            Metal abundance relative to the table (apec only; ignored otherwise).
        norm : float
            XSPEC normalisation of the emission model.

        Raises
        ------
        ConfigError
            A parameter outside XSPEC's hard limits, a redshift with bremss, or a
            spectrum that is all zeros or not finite over the bins.
        """
        edges, index = xspec_models.energy_grid(energ_lo, energ_hi)
        return self._emission(edges, index, [float(kT)], redshift, abundance, norm)[0]

    def photon_flux(
        self,
        energ_lo: ArrayLike,
        energ_hi: ArrayLike,
        kT: float,
        *,
        nH: float,
        redshift: float = 0.0,
        abundance: float = 1.0,
        norm: float = 1.0,
    ) -> np.ndarray:
        """Absorbed photons/cm²/s per bin: ``transmission(nH) * emission_flux(kT)``.

        This is XSPEC's model output for ``absorber*emission`` on these bins.

        Parameters
        ----------
        energ_lo, energ_hi : array_like
            Bin edges in keV (ENERG_LO = 0 is replaced by :data:`MIN_ENERGY`).
        kT : float
            Plasma temperature, keV.
        nH : float
            Absorbing column, 10²² cm⁻².
        redshift, abundance, norm : float
            As in :meth:`emission_flux`.
        """
        return self.photon_flux_table(
            energ_lo, energ_hi, [kT], nH=nH, redshift=redshift, abundance=abundance, norm=norm
        )[0]

    def photon_flux_table(
        self,
        energ_lo: ArrayLike,
        energ_hi: ArrayLike,
        kTs: ArrayLike,
        *,
        nH: float,
        redshift: float = 0.0,
        abundance: float = 1.0,
        norm: float = 1.0,
    ) -> np.ndarray:
        """Absorbed spectra for many temperatures, shape ``(len(kTs), n_bins)``.

        The absorber is evaluated once for all rows; row i equals
        ``photon_flux(..., kTs[i], ...)``.

        Parameters
        ----------
        energ_lo, energ_hi : array_like
            Bin edges in keV.
        kTs : array_like
            Plasma temperatures, keV (1-D).
        nH, redshift, abundance, norm : float
            As in :meth:`photon_flux`.
        """
        temps = np.array(kTs, dtype=np.float64, ndmin=1)
        if temps.ndim != 1:
            raise ValueError(f"kTs must be 1-D, got shape {temps.shape}")
        edges, index = xspec_models.energy_grid(energ_lo, energ_hi)
        absorbed = self._transmission(edges, index, nH)
        flux = self._emission(edges, index, temps.tolist(), redshift, abundance, norm)
        flux *= absorbed
        for row, kT in zip(flux, temps, strict=True):
            if not row.any():
                raise ConfigError(
                    f"{self.expression} is absorbed to all zeros over {edges[0]:g}-"
                    f"{edges[-1]:g} keV (kT = {kT:g}, nH = {nH:g})",
                    key="source.model",
                )
        return flux

    # ------------------------------------------------------------------ helpers

    def _transmission(self, edges: np.ndarray, index: np.ndarray | None, nH: float) -> np.ndarray:
        """The absorber on *edges*, cached (read-only array)."""
        component = ABSORBERS[self.absorber]
        nH = float(nH)
        _check_limits(component, [nH])
        key = (edges.tobytes(), nH)
        cached = self._transmissions.get(key)
        if cached is None:
            with xspec_models.LOCK:
                self._use_tables(component)
                values = xspec_models.call(component.symbol, edges, [nH])
            cached = values if index is None else values[index]
            if not np.isfinite(cached).all():
                raise ConfigError(
                    f"{self.absorber} is not finite for nH = {nH:g} over "
                    f"{edges[0]:g}-{edges[-1]:g} keV",
                    key="source.model",
                )
            cached.setflags(write=False)
            if len(self._transmissions) >= 4:
                self._transmissions.pop(next(iter(self._transmissions)))
            self._transmissions[key] = cached
        return cached

    def _use_tables(self, component: Component) -> None:
        if component.abundance_table or component.cross_sections:
            xspec_models.set_tables(self.abundance_table, self.cross_sections)

    def _emission(
        self,
        edges: np.ndarray,
        index: np.ndarray | None,
        temps: Sequence[float],
        redshift: float,
        abundance: float,
        norm: float,
    ) -> np.ndarray:
        component = EMISSIONS[self.emission]
        redshift, abundance, norm = float(redshift), float(abundance), float(norm)
        if "Redshift" not in component.parameters and redshift != 0.0:
            raise ConfigError(
                f"{self.emission} has no redshift (got {redshift:g}); use z{self.emission} "
                "or set redshift = 0",
                key="source.redshift",
            )
        if not (math.isfinite(norm) and norm >= 0.0):
            raise ConfigError(f"norm must be finite and >= 0, not {norm!r}", key="source.norm")
        named = {"Redshift": redshift, "Abundanc": abundance}
        n_bins = edges.size - 1 if index is None else index.size
        out = np.empty((len(temps), n_bins))
        with xspec_models.LOCK:
            self._check_usable()
            self._use_tables(component)
            for row, kT in enumerate(temps):
                params = [kT, *(named[p] for p in component.parameters[1:])]
                _check_limits(component, params)
                values = xspec_models.call(component.symbol, edges, params)
                values = values if index is None else values[index]
                if not np.isfinite(values).all() or not values.any():
                    raise self._bad_output(values, edges, kT)
                out[row] = values
        out *= norm
        return out

    def _check_usable(self) -> None:
        """Refuse an emission model that cannot run here, before calling it."""
        if self.emission in _BROKEN:
            raise ConfigError(_BROKEN[self.emission], key="source.model")
        symbol = EMISSIONS[self.emission].symbol
        if self.emission in _NEEDS_ATOMIC_DATA and not xspec_models.called(symbol):
            problem = xspec_models.apec_data_problem(xspec_models.library())
            if problem is not None:
                _BROKEN[self.emission] = self._atomic_data_message(problem)
                raise ConfigError(_BROKEN[self.emission], key="source.model")

    def _atomic_data_message(self, problem: str) -> str:
        lib = xspec_models.library()
        where = (
            f"HEADAS={lib.headas} has none"
            if lib.origin == "heasoft"
            else f"the copy of {lib.package} has none"
        )
        return (
            f"{self.emission} needs XSPEC atomic data; set HEADAS to a HEASoft with "
            f"AtomDB or use {self.absorber}*zbremss ({where}: {problem})"
        )

    def _bad_output(self, values: np.ndarray, edges: np.ndarray, kT: float) -> ConfigError:
        reason = "is not finite" if not np.isfinite(values).all() else "is all zeros"
        message = f"{self.emission} {reason} over {edges[0]:g}-{edges[-1]:g} keV at kT = {kT:g}"
        if self.emission in _NEEDS_ATOMIC_DATA:
            # apec without its files: its next call would crash, so never call it again.
            message = self._atomic_data_message(message)
            _BROKEN[self.emission] = message
        return ConfigError(message, key="source.model")


def parse_expression(expression: str) -> tuple[str, str]:
    """Split ``"ABS*EMIS"`` into XSPEC component names, or raise ConfigError saying why."""
    text = "".join(str(expression).split()).lower()
    parts = text.split("*")
    known = (
        f"supported: <absorber>*<emission> with absorber in {{{', '.join(ABSORBERS)}}} "
        f"and emission in {{{', '.join(EMISSIONS)}}}"
    )
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"cannot read model {expression!r}; {known}", key="source.model")
    absorber, emission = parts
    if absorber in EMISSIONS and emission in ABSORBERS:
        raise ConfigError(
            f"model {expression!r}: write the absorber first, {emission}*{absorber}",
            key="source.model",
        )
    if emission == "zapec":
        raise ConfigError(
            "XSPEC has no model 'zapec': apec already takes the redshift "
            f"(kT, Abundanc, Redshift); use {absorber}*apec",
            key="source.model",
        )
    if absorber not in ABSORBERS or emission not in EMISSIONS:
        raise ConfigError(f"unsupported model {expression!r}; {known}", key="source.model")
    return absorber, emission


def load_model(
    expression: str, *, abundance_table: str = "angr", cross_sections: str = "vern"
) -> SourceModel:
    """Load XSPEC's functions for *expression* and check that they evaluate here.

    The check evaluates the model once on a reference grid (0.1-20 keV), so a
    model that cannot work on this machine (apec without atomic data) fails
    now, before any work starts, and the banners XSPEC prints on first use
    are swallowed here.

    Parameters
    ----------
    expression : str
        ``"<absorber>*<emission>"`` in XSPEC's names, e.g. ``"tbabs*zbremss"``.
    abundance_table : str
        XSPEC ``abund`` table (``angr`` is XSPEC's default; ``wilm`` goes with tbabs).
    cross_sections : str
        XSPEC ``xsect`` table (``vern``, ``bcmc``, ``obcm``).

    Raises
    ------
    ConfigError
        Unknown model or table, or a model that evaluates to zeros or non-finite
        values (with the reason, e.g. missing AtomDB files for apec).
    EngineError
        XSPEC's model library cannot be loaded.
    """
    absorber, emission = parse_expression(expression)
    model = SourceModel(
        expression=f"{absorber}*{emission}",
        absorber=absorber,
        emission=emission,
        abundance_table=str(abundance_table).strip().lower(),
        cross_sections=str(cross_sections).strip().lower(),
    )
    with xspec_models.LOCK:
        xspec_models.library()
        xspec_models.set_tables(model.abundance_table, model.cross_sections)
    model.photon_flux(
        _PROBE_EDGES[:-1],
        _PROBE_EDGES[1:],
        _PROBE_KT[emission],
        nH=0.01,
        redshift=0.0,
        abundance=1.0,
    )
    logger.debug("model %s loaded from %s", model.expression, xspec_models.library().headas)
    return model
