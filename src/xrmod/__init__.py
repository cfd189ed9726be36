"""xrmod: calibration-modification libraries for X-ray spectroscopy.

For every point of a grid of ARF distortions times true plasma temperatures,
xrmod simulates the spectrum an observer would get, fits it with the nominal
and with the distorted effective area, and records both fitted temperatures
in one self-describing HDF5 library.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from xrmod.config import Config, load_config
from xrmod.errors import (
    ConfigError,
    EngineError,
    InputError,
    ModifierError,
    ResponseError,
    XrmodError,
)
from xrmod.grid import Grid, WorkUnit
from xrmod.library import open_library
from xrmod.modifiers import families, get_family
from xrmod.status import Status

try:
    __version__ = version("xrmod")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Config",
    "ConfigError",
    "EngineError",
    "Grid",
    "InputError",
    "ModifierError",
    "ResponseError",
    "Status",
    "WorkUnit",
    "XrmodError",
    "__version__",
    "families",
    "get_family",
    "load_config",
    "open_library",
]
