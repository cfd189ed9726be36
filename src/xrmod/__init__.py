"""xrmod: calibration-modification libraries for X-ray spectroscopy.

For every point of a grid of ARF distortions times true plasma temperatures,
xrmod simulates the spectrum an observer would get, fits it with the nominal
and with the distorted effective area, and records both fitted temperatures
in one self-describing HDF5 library.

The names below are the public API. Importing :mod:`xrmod` does no work:
each name is looked up in its module on first use (PEP 562), so ``import
xrmod`` loads neither NumPy nor HDF5, and the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xrmod.analysis import describe, open_library, summary
    from xrmod.analysis.emulator import Emulator
    from xrmod.analysis.inference import infer
    from xrmod.analysis.observations import read_observations
    from xrmod.config import Config, load_config
    from xrmod.driver import generate
    from xrmod.errors import (
        ConfigError,
        EngineError,
        InputError,
        ModifierError,
        OutputError,
        ResponseError,
        RunError,
        XrmodError,
    )
    from xrmod.grid import Grid, WorkUnit
    from xrmod.modifiers import families, get_family
    from xrmod.status import Status

#: Public name -> the module that defines it.
_PUBLIC = {
    "Config": "xrmod.config",
    "load_config": "xrmod.config",
    "ConfigError": "xrmod.errors",
    "EngineError": "xrmod.errors",
    "InputError": "xrmod.errors",
    "ModifierError": "xrmod.errors",
    "OutputError": "xrmod.errors",
    "ResponseError": "xrmod.errors",
    "RunError": "xrmod.errors",
    "XrmodError": "xrmod.errors",
    "Grid": "xrmod.grid",
    "WorkUnit": "xrmod.grid",
    "describe": "xrmod.analysis",
    "open_library": "xrmod.analysis",
    "summary": "xrmod.analysis",
    "Emulator": "xrmod.analysis.emulator",
    "infer": "xrmod.analysis.inference",
    "read_observations": "xrmod.analysis.observations",
    "generate": "xrmod.driver",
    "families": "xrmod.modifiers",
    "get_family": "xrmod.modifiers",
    "Status": "xrmod.status",
}

__all__ = [
    "Config",
    "ConfigError",
    "Emulator",
    "EngineError",
    "Grid",
    "InputError",
    "ModifierError",
    "OutputError",
    "ResponseError",
    "RunError",
    "Status",
    "WorkUnit",
    "XrmodError",
    "__version__",
    "describe",
    "families",
    "generate",
    "get_family",
    "infer",
    "load_config",
    "open_library",
    "read_observations",
    "summary",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xrmod")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use; else a submodule (``xrmod.grid``)."""
    if name == "__version__":
        value: Any = _version()
    elif name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
