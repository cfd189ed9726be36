"""A job: the configuration with its responses, grid and modifier, checked up front.

Everything that can be wrong with the input is found here, before any work
starts, so a bad config or FITS file ends the run with one message (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from xrmod import __version__
from xrmod.config import Config, load_config
from xrmod.errors import ResponseError
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

__all__ = ["BandBackground", "Job", "job_from_config", "load_job"]


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
            ]
        )

    def band_background(self) -> BandBackground | None:
        """The background restricted to the fit band, or None without one.

        Raises
        ------
        xrmod.errors.ResponseError
            When a band channel's scaling is not finite and > 0 (a BACKSCAL or
            AREASCAL of 0 in the background file).
        """
        bkg = self.background
        if bkg is None:
            return None
        inst = self.config.instrument
        band = self.rmf.band_channels(*inst.band)
        scale = np.broadcast_to(bkg.exposure * np.multiply(bkg.backscal, bkg.areascal), band.shape)
        with np.errstate(divide="ignore", invalid="ignore"):  # checked just below
            alpha = inst.exposure * inst.backscal / scale[band]
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
        return BandBackground(
            counts=counts,
            alpha=np.ascontiguousarray(alpha, dtype=np.float64),
        )

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
    job.band_background()  # its scaling is checked here, before any work
    return job
