"""The synthetic background spectrum shared by the background tests, the Sherpa
cross-check and ``bench/engine.py --background``."""

from __future__ import annotations

import os

import numpy as np

from xrmod.responses import RMF, write_pha

#: Exposure (s) and BACKSCAL of the synthetic background (scale 1).
EXPOSURE = 40_000.0
BACKSCAL = 5.0


def write_background(path: str | os.PathLike, rmf: RMF, scale: float = 1.0) -> None:
    """A smooth background on *rmf*'s channels: falling with energy plus a floor.

    *scale* times 0.2-1.7 counts per channel over *scale* x EXPOSURE (the same
    rate): at scale 1 it is ~25 % of a 3 keV source's counts in a 50 ks source
    spectrum of BACKSCAL 1.
    """
    energy = 0.5 * (rmf.e_min + rmf.e_max)
    mean = scale * (1.5 * np.exp(-energy / 3.0) + 0.2)
    counts = np.random.default_rng(11).poisson(mean).astype(np.float64)
    write_pha(
        path, rmf.channels, counts, exposure=scale * EXPOSURE, backscal=BACKSCAL, overwrite=True
    )
