"""xrmod: calibration-modification libraries for X-ray spectroscopy.

For every point of a grid of ARF distortions times true plasma temperatures,
xrmod simulates the spectrum an observer would get, fits it with the nominal
and with the distorted effective area, and records both fitted temperatures
in one self-describing HDF5 library.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from xrmod.errors import (
    ConfigError,
    EngineError,
    InputError,
    ModifierError,
    ResponseError,
    XrmodError,
)

try:
    __version__ = version("xrmod")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ConfigError",
    "EngineError",
    "InputError",
    "ModifierError",
    "ResponseError",
    "XrmodError",
    "__version__",
]
