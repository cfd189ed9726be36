"""A job: the configuration with its responses, grid and modifier, checked up front.

Everything that can be wrong with the input is found here, before any work
starts, so a bad config or FITS file ends the run with one message (exit 2).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from xrmod import __version__
from xrmod.config import Config, InstrumentConfig, load_config
from xrmod.engines.base import simulate
from xrmod.engines.source import MAX_EXPECTED_COUNTS
from xrmod.errors import ConfigError, InputError, ResponseError
from xrmod.grid import Grid
from xrmod.modifiers import ModifierFamily, get_family
from xrmod.responses import (
    ARF,
    PHA,
    RMF,
    check_background,
    check_compatible,
    file_sha256,
    read_arf,
    read_pha,
    read_rmf,
)

__all__ = ["BandBackground", "EngineInputs", "Job", "job_from_config", "load_job"]


@dataclass(frozen=True, eq=False)
class BandBackground:
    """The background in the fit band, as the engines use it.

    Attributes
    ----------
    counts : numpy.ndarray
        Background-spectrum counts B_c of the band channels.
    alpha : numpy.ndarray
        Per band channel, the factor that scales background counts to the
        source spectrum: (exposure · backscal) / (EXPOSURE · BACKSCAL · AREASCAL)
        of the background file. The simulated source spectrum has mean
        μ_c + α_c B_c.
    """

    counts: np.ndarray
    alpha: np.ndarray


def _band_background(bkg: PHA, instrument: InstrumentConfig, band: np.ndarray) -> BandBackground:
    """The background's counts and scaling in the band channels *band* (a channel mask)."""
    scale = np.broadcast_to(bkg.exposure * np.multiply(bkg.backscal, bkg.areascal), band.shape)
    with np.errstate(divide="ignore", invalid="ignore"):  # checked just below
        alpha = instrument.exposure * instrument.backscal / scale[band]
    bad = np.flatnonzero(~(np.isfinite(alpha) & (alpha > 0)))
    if bad.size:
        channel = int(bkg.channels[np.flatnonzero(band)[bad[0]]])
        raise ResponseError(
            f"BACKSCAL x AREASCAL is not > 0 in channel {channel} "
            f"({bad.size} band channels): the background cannot be scaled",
            path=str(bkg.path),
            extension="SPECTRUM",
        )
    counts = np.ascontiguousarray(bkg.counts[band], dtype=np.float64)
    if np.any(counts < 0):
        raise ResponseError(
            f"{int(np.sum(counts < 0))} band channels have negative counts: "
            "a background spectrum must hold counts, not a subtracted rate",
            path=str(bkg.path),
            extension="SPECTRUM",
        )
    scaled = alpha * np.maximum(counts, 1.0)  # even one background count must stay sane
    if np.any(scaled > MAX_EXPECTED_COUNTS):
        i = int(np.argmax(scaled))
        channel = int(bkg.channels[np.flatnonzero(band)[i]])
        raise ResponseError(
            f"the background scaled to the source (x {alpha[i]:g}: instrument.exposure x "
            f"backscal / (EXPOSURE x BACKSCAL x AREASCAL)) gives {scaled[i]:g} counts in "
            f"channel {channel}, above {MAX_EXPECTED_COUNTS:g}: check its EXPOSURE and scales",
            path=str(bkg.path),
            extension="SPECTRUM",
        )
    return BandBackground(
        counts=counts,
        alpha=np.ascontiguousarray(alpha, dtype=np.float64),
    )


def _band_channels(rmf: RMF, cfg: Config) -> np.ndarray:
    """The channel mask of ``instrument.band`` (:meth:`RMF.band_channels`), refused if empty."""
    lo, hi = cfg.instrument.band
    mask = rmf.band_channels(lo, hi)
    if not mask.any():
        raise ConfigError(
            f"the band {lo:g}-{hi:g} keV selects no channel: the channels of the RMF "
            f"cover {float(np.min(rmf.e_min)):g}-{float(np.max(rmf.e_max)):g} keV ({rmf.path})",
            path=cfg.source_path,
            key="instrument.band",
        )
    return mask


def _band_response(rmf: RMF, mask: np.ndarray) -> tuple[scipy.sparse.csr_array, np.ndarray]:
    """:meth:`RMF.band_response` for a channel mask already computed (the same arrays)."""
    matrix = rmf.matrix[:, mask].tocsr()
    rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
    return matrix[rows].T.tocsr(), rows


@dataclass(frozen=True, eq=False)
class EngineInputs:
    """What every engine takes from a job, derived once per process (:meth:`Job.engine_inputs`).

    The band's channel mask is computed once here, and the band refused here
    when it selects no channel (or no energy reaches its channels).

    Attributes
    ----------
    seed : int
        ``library.seed``.
    asimov : bool
        ``library.noise == "asimov"``: the data are the expected counts.
    exposure, norm : float
        ``instrument.exposure`` (s), ``source.norm`` (the simulation's).
    kt_limits : tuple of float
        ``fit.kt_limits`` (keV).
    error_delta : float
        ``fit.error_delta``: Δstat of the bounds.
    band : tuple of float
        ``instrument.band`` (keV).
    band_mask : numpy.ndarray
        (n_channel,) bool: the fitted channels (:meth:`RMF.band_channels`).
    fold_matrix : scipy.sparse.csr_array
        (band channels × energies that reach them): the RMF restricted to the
        band, laid out for folding (:meth:`RMF.band_response`).
    rows : numpy.ndarray
        Indices of those energy bins.
    energ_lo, energ_hi : numpy.ndarray
        Their edges (keV), float64.
    arf : numpy.ndarray
        The original ARF (``SPECRESP``, all energies), float64.
    energies : numpy.ndarray
        The ARF's bin mid-points (keV): the E of the modifier formulas.
    temperatures : numpy.ndarray
        The grid's true temperatures (keV), float64.
    background : BandBackground or None
        The background in the band channels.
    arf_path : str
        The ARF's file, for messages.
    """

    seed: int
    asimov: bool
    exposure: float
    norm: float
    kt_limits: tuple[float, float]
    error_delta: float
    band: tuple[float, float]
    band_mask: np.ndarray
    fold_matrix: scipy.sparse.csr_array
    rows: np.ndarray
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    arf: np.ndarray
    energies: np.ndarray
    temperatures: np.ndarray
    background: BandBackground | None
    arf_path: str = ""

    @classmethod
    def from_job(cls, job: Job) -> EngineInputs:
        """Derive the inputs of *job* (see :meth:`Job.engine_inputs`, which keeps them)."""
        cfg = job.config
        rmf = job.rmf
        mask = _band_channels(rmf, cfg)
        fold_matrix, rows = _band_response(rmf, mask)
        if rows.size == 0:
            lo, hi = cfg.instrument.band
            raise ConfigError(
                f"no energy of the RMF reaches the {int(mask.sum())} channels of the band "
                f"{lo:g}-{hi:g} keV ({rmf.path})",
                path=cfg.source_path,
                key="instrument.band",
            )
        if not np.any(job.arf.specresp[rows] > 0):
            lo, hi = cfg.instrument.band
            raise ResponseError(
                f"SPECRESP is 0 at every energy that reaches the band {lo:g}-{hi:g} keV "
                f"({rows.size} bins, {float(rmf.energ_lo[rows[0]]):g}-"
                f"{float(rmf.energ_hi[rows[-1]]):g} keV): no source counts can be simulated",
                path=str(job.arf.path),
                extension="SPECRESP",
            )
        background = None
        if job.background is not None:
            background = _band_background(job.background, cfg.instrument, mask)
        return cls(
            seed=int(cfg.library.seed),
            asimov=cfg.library.noise == "asimov",
            exposure=float(cfg.instrument.exposure),
            norm=float(cfg.source.norm),
            kt_limits=(float(cfg.fit.kt_limits[0]), float(cfg.fit.kt_limits[1])),
            error_delta=float(cfg.fit.error_delta),
            band=(float(cfg.instrument.band[0]), float(cfg.instrument.band[1])),
            band_mask=mask,
            fold_matrix=fold_matrix,
            rows=rows,
            energ_lo=np.asarray(rmf.energ_lo[rows], dtype=np.float64),
            energ_hi=np.asarray(rmf.energ_hi[rows], dtype=np.float64),
            arf=np.asarray(job.arf.specresp, dtype=np.float64),
            energies=0.5 * (job.arf.energ_lo + job.arf.energ_hi),
            temperatures=np.asarray(job.grid.temperatures, dtype=np.float64),
            background=background,
            arf_path=str(job.arf.path),
        )

    @property
    def x_limits(self) -> tuple[float, float]:
        """``fit.kt_limits`` as x = ln kT."""
        return math.log(self.kt_limits[0]), math.log(self.kt_limits[1])

    @property
    def n_band(self) -> int:
        """Number of band channels."""
        return int(self.fold_matrix.shape[0])

    def simulate(
        self, expected: np.ndarray, flat_index: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One point's spectrum from its *expected* counts (:func:`xrmod.engines.base.simulate`)."""
        return simulate(
            expected, flat_index, seed=self.seed, asimov=self.asimov, background=self.background
        )


@dataclass(frozen=True)
class Job:
    """Inputs of one library run, validated and loaded."""

    config: Config
    arf: ARF
    rmf: RMF
    background: PHA | None
    grid: Grid
    family: ModifierFamily
    output: Path

    def summary(self) -> str:
        """A few lines describing what the run will compute."""
        cfg = self.config
        axes = ", ".join(f"{name}[{len(values)}]" for name, values in self.grid.axes)
        lo, hi = cfg.instrument.band
        return "\n".join(
            [
                f"config: {cfg.source_path}",
                f"engine: {cfg.library.engine}, noise: {cfg.library.noise}, "
                f"seed: {cfg.library.seed}",
                f"model: {cfg.source.model}, exposure {cfg.instrument.exposure:g} s, "
                f"band {lo:g}-{hi:g} keV",
                f"ARF: {self.arf.path}",
                f"RMF: {self.rmf.path}",
                f"modifier: {self.family.name} over {axes}",
                f"temperatures: {len(self.grid.temperatures)}, "
                f"realizations: {self.grid.realizations}",
                f"grid: {self.grid.size} points in {self.grid.n_theta} work units; "
                f"output: {self.output}",
                *self.notes(),
            ]
        )

    def notes(self) -> list[str]:
        """What the user may not expect of this grid, one line each ("note: ...").

        An axis over a parameter that only rescales the ARF by a constant
        (:attr:`ModifierFamily.scale_only`, tilt's ``pivot``) changes the counts
        as the exposure would and no best fit: its points repeat the same fits.
        """
        axes = dict(self.grid.axes)
        return [
            f"note: {name} only multiplies the {self.family.name} ARF by a constant, which "
            f"the fitted norm absorbs: along its {axes[name].size} values the best fits T1 "
            "and T1' stay the same (only the counts change, as with the exposure); one "
            f"value of {name} gives the same library at 1/{axes[name].size} of the cost"
            for name in self.family.scale_only
            if name in axes and axes[name].size > 1
        ]

    def engine_inputs(self) -> EngineInputs:
        """What every engine derives from the job, computed once (then kept on the job).

        Raises
        ------
        xrmod.errors.ConfigError
            The band selects no channel of the RMF (key ``instrument.band``).
        xrmod.errors.ResponseError
            The background cannot be scaled, or holds negative counts.
        """
        inputs = self.__dict__.get("_engine_inputs")
        if inputs is None:
            inputs = EngineInputs.from_job(self)
            object.__setattr__(self, "_engine_inputs", inputs)  # a cache, not a field
        return inputs

    def band_background(self) -> BandBackground | None:
        """The background restricted to the fit band, or None without one.

        Raises
        ------
        xrmod.errors.ResponseError
            When a band channel's scaling is not finite and > 0 (a BACKSCAL or
            AREASCAL of 0 in the background file).
        """
        return self.engine_inputs().background

    def provenance(self, n_ranks: int = 1) -> dict[str, Any]:
        """Root attributes of the library describing this run."""
        cfg = self.config
        attrs: dict[str, Any] = {
            "xrmod_version": __version__,
            "config": cfg.text,
            "config_path": cfg.source_path,
            "engine": cfg.library.engine,
            "model": cfg.source.model,
            "seed": cfg.library.seed,
            "noise": cfg.library.noise,
            "exposure": cfg.instrument.exposure,
            "band": list(cfg.instrument.band),
            "error_delta": cfg.fit.error_delta,
            "arf": str(self.arf.path),
            "arf_sha256": file_sha256(self.arf.path),
            "rmf": str(self.rmf.path),
            "rmf_sha256": file_sha256(self.rmf.path),
            "background": str(self.background.path) if self.background else "",
            "background_sha256": file_sha256(self.background.path) if self.background else "",
            "backscal": cfg.instrument.backscal,
            "n_ranks": n_ranks,
            "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if cfg.source.model.endswith("bremss"):
            attrs["model_note"] = "continuum-only thermal model (bremsstrahlung, no lines)"
        return attrs


def load_job(config_path: str | os.PathLike | None = None, *, output: str | None = None) -> Job:
    """Load and check a configuration file with everything it names.

    Parameters
    ----------
    config_path : path-like, optional
        TOML file; None uses the embedded default.
    output : str, optional
        Library path overriding ``library.output``.

    Raises
    ------
    xrmod.errors.InputError
        Any problem with the config, the responses or the modifier (exit code 2).
    """
    return job_from_config(load_config(config_path), output=output)


def job_from_config(
    cfg: Config,
    *,
    output: str | os.PathLike | None = None,
    arf: ARF | None = None,
    rmf: RMF | None = None,
) -> Job:
    """Assemble a job from a parsed configuration, reading the responses it names.

    Already-read responses may be passed in (tests and benchmarks reuse them);
    they are checked against each other all the same.
    """
    if output is not None and not os.fspath(output).strip():
        raise InputError(
            "the output path (-o) is empty: give a file name, or leave -o out to use "
            f"library.output ({cfg.library.output})"
        )
    inst = cfg.instrument
    arf = arf if arf is not None else read_arf(inst.arf)
    rmf = rmf if rmf is not None else read_rmf(inst.rmf)
    check_compatible(arf, rmf)
    background = None
    if inst.background is not None:
        background = read_pha(inst.background)
        check_background(background, rmf)
    grid = Grid(
        axes=cfg.modifier.axes,
        temperatures=cfg.source.temperatures,
        realizations=cfg.library.realizations,
    )
    job = Job(
        config=cfg,
        arf=arf,
        rmf=rmf,
        background=background,
        grid=grid,
        family=get_family(cfg.modifier.family),
        output=Path(output) if output else Path(cfg.library.output),
    )
    job.engine_inputs()  # the band and the background's scaling are checked here, before any work
    return job
