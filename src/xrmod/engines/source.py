"""The job's source model on the band's energies, and the kT range its fits can search.

Shared by the ``native`` and ``reference`` engines, which evaluate the source
with xrmod's own binding of XSPEC's model library (:mod:`xrmod.models`); the
``xspec`` engine evaluates it inside XSPEC.

**Where the band has no counts.** A thermal spectrum falls as exp(−E/kT), and
XSPEC's model is float32 (and cuts bremsstrahlung off a few tens of kT above
E): over a hard band it is exactly zero at the lowest temperatures of the
default ``fit.kt_limits`` (tbabs*zbremss on the bundled pn response: over
2–7 keV below kT = 0.0504 keV, over 5–10 keV below 0.1358 keV), where the band
has no counts at all. There the statistic of any spectrum with counts is +∞:
no fit can enter that region. :meth:`BandSource.fit_limits` therefore starts
the search range at the lowest kT at which the model has counts in the band,
found by bisection in ln kT to :data:`FLOOR_XTOL` (and moved
:data:`BREAK_CLEARANCE` beyond a break of the model found there: the counts
often start at one of the Gaunt factor's table switches), and logs it; the
fits take it as their lower kT limit (a bound that reaches it is
``BOUND_AT_LIMIT``, as at ``fit.kt_limits``). Where the band has counts at
``fit.kt_limits[0]`` (the default 0.5–10 keV band) the range is
``fit.kt_limits`` itself. Single channels that are empty at the low end while
others are not are the tables' business: the native engine floors their
expected counts, the reference engine's statistic is +∞ there.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xrmod.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from xrmod.job import EngineInputs, Job
    from xrmod.models import SourceModel

__all__ = ["BREAK_CLEARANCE", "FLOOR_XTOL", "MAX_EXPECTED_COUNTS", "BandSource"]

log = logging.getLogger(__name__)

#: Most expected counts a band channel may have (original ARF, true kT): 1e15,
#: far above any observation and far below where Poisson draws break (~1e18).
MAX_EXPECTED_COUNTS = 1.0e15
#: Resolution (in ln kT) of the lowest kT at which the band has counts.
FLOOR_XTOL = 1.0e-6
#: A break of the model (:data:`xrmod.models.KT_BREAKS`) this close (ln kT) to that
#: kT moves the start of the fit range this far beyond the break.
BREAK_CLEARANCE = 1.0e-4


@dataclass(frozen=True, eq=False)
class BandSource:
    """The source model of a job on the energy bins that reach its band.

    Attributes
    ----------
    model : xrmod.models.SourceModel
        ``source.model`` with the job's abundance and cross-section tables.
    energ_lo, energ_hi : numpy.ndarray
        The energy bins of :attr:`xrmod.job.EngineInputs.rows` (keV).
    parameters : dict
        nH, redshift and abundance of ``[source]``, norm 1.
    """

    model: SourceModel
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    parameters: dict[str, float]

    @classmethod
    def from_job(cls, job: Job) -> BandSource:
        """Load the job's source model (XSPEC's model library) for the band's energies."""
        from xrmod.models import load_model

        src = job.config.source
        inputs = job.engine_inputs()
        model = load_model(
            src.model, abundance_table=src.abundance_table, cross_sections=src.cross_sections
        )
        parameters = {
            "nH": src.nH,
            "redshift": src.redshift,
            "abundance": src.abundance,
            "norm": 1.0,
        }
        return cls(model, inputs.energ_lo, inputs.energ_hi, parameters)

    def spectra(self, kts: np.ndarray) -> np.ndarray:
        """Photon fluxes (len(kts), n_energy) at the temperatures *kts* (keV), norm 1."""
        return self.model.photon_flux_table(self.energ_lo, self.energ_hi, kts, **self.parameters)

    def flux(self, kt: float) -> np.ndarray:
        """Photon flux (n_energy,) at temperature *kt* (keV), norm 1."""
        return self.model.photon_flux(self.energ_lo, self.energ_hi, kt, **self.parameters)

    def fit_limits(self, inputs: EngineInputs, *, source_path: str) -> tuple[float, float]:
        """The x = ln kT range of the fits: ``fit.kt_limits``, starting where the band has counts.

        See the module docstring. *inputs* gives the limits, the band and the
        original ARF.

        Raises
        ------
        xrmod.errors.ConfigError
            The band has no counts at any kT of ``fit.kt_limits`` (key
            ``instrument.band``), or at a true temperature (key
            ``source.temperatures``).
        """
        self._check_scale(inputs, source_path)
        x_lo, x_hi = inputs.x_limits
        has_counts = self._counts_test(inputs)
        lo, hi = inputs.band
        where = f"in the band {lo:g}-{hi:g} keV"
        if not has_counts(x_hi):
            raise ConfigError(
                f"{self.model.expression} has no counts {where} at any kT of fit.kt_limits "
                f"(none at kT = {inputs.kt_limits[1]:g} keV): use a softer band",
                path=source_path,
                key="instrument.band",
            )
        if has_counts(x_lo):
            return x_lo, x_hi
        a, b = x_lo, x_hi  # no counts at a, counts at b
        while b - a > FLOOR_XTOL:
            mid = 0.5 * (a + b)
            a, b = (a, mid) if has_counts(mid) else (mid, b)
        # the model often starts to have counts at one of its breaks (a table switch
        # of the Gaunt factor): start the range just beyond it, never at its edge
        near = [math.log(kt) for kt in self.model.kt_breaks]
        near = [x for x in near if abs(x - b) <= BREAK_CLEARANCE and x + BREAK_CLEARANCE < x_hi]
        if near:
            b = max(b, max(near) + BREAK_CLEARANCE)
        floor = math.exp(b)
        coldest = float(np.min(inputs.temperatures))
        if math.log(coldest) < b:
            raise ConfigError(
                f"temperature {coldest:g} keV is below {floor:.4g} keV, the lowest kT at "
                f"which {self.model.expression} has counts {where} (instrument.band): use "
                "temperatures above it or a softer band",
                path=source_path,
                key="source.temperatures",
            )
        log.info(
            "%s has no counts %s below kT = %.4g keV: the fits search kT from there "
            "(fit.kt_limits starts at %g keV)",
            self.model.expression,
            where,
            floor,
            inputs.kt_limits[0],
        )
        return b, x_hi

    def _check_scale(self, inputs: EngineInputs, source_path: str) -> None:
        """Refuse an exposure × norm × ARF whose expected counts overflow or are absurd.

        The counts of the original ARF at the true temperatures must be finite
        and at most :data:`MAX_EXPECTED_COUNTS` in every band channel (Poisson
        draws and float64 sums break far above it).
        """
        try:
            flux = self.spectra(inputs.temperatures) * inputs.arf[inputs.rows]
        except ConfigError:  # no counts at some temperature: the checks after this name it
            return
        with np.errstate(over="ignore", invalid="ignore"):
            counts = inputs.exposure * inputs.norm * (inputs.fold_matrix @ flux.T)
        peak = float(np.max(counts)) if np.all(np.isfinite(counts)) else math.inf
        if peak > MAX_EXPECTED_COUNTS:
            raise ConfigError(
                f"instrument.exposure ({inputs.exposure:g} s) x source.norm "
                f"({inputs.norm:g}) x the ARF {inputs.arf_path} give {peak:g} expected "
                f"counts in a band channel, above {MAX_EXPECTED_COUNTS:g}: check the "
                "exposure, the norm and the ARF's units (cm^2)",
                path=source_path,
            )

    def _counts_test(self, inputs: EngineInputs) -> Callable[[float], bool]:
        """A test of x = ln kT: whether the model has counts in a band channel (original ARF).

        The emission is evaluated on the band's bins with one more bin below
        them, at energies under half the lowest kT of the fit (in the source
        frame), where every thermal spectrum is far from zero: XSPEC's model
        over the band alone may be all zero, which :mod:`xrmod.models` refuses.
        Each bin's value is that of the band's own evaluation (XSPEC integrates
        bin by bin).
        """
        p = self.parameters
        weight = self.model.transmission(self.energ_lo, self.energ_hi, nH=p["nH"])
        weight = weight * inputs.arf[inputs.rows]
        top = min(float(self.energ_lo[0]), 0.5 * inputs.kt_limits[0] / (1.0 + p["redshift"]))
        extra = 1 if top > 0 else 0  # a band from E = 0 has counts at every kT: no extra bin
        lo = np.concatenate([[0.5 * top] * extra, self.energ_lo])
        hi = np.concatenate([[top] * extra, self.energ_hi])

        def has_counts(x: float) -> bool:
            emission = self.model.emission_flux(
                lo, hi, math.exp(x), redshift=p["redshift"], abundance=p["abundance"]
            )
            return bool(np.any(emission[extra:] * weight > 0))

        return has_counts
