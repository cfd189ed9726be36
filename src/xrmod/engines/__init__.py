"""Engines: compute the fits of one work unit.

Two engines share :class:`~xrmod.engines.base.Engine`: ``native`` (compiled,
fast) and ``xspec`` (PyXSPEC, inside HEASoft). They are loaded lazily by name so
that importing xrmod never imports an engine's heavy dependencies (PyXSPEC is
imported by ``XspecEngine.prepare`` only). The reference engine
(:mod:`xrmod.engines.reference`, the NumPy oracle) is not selectable in a
configuration; ``xrmod check-engines`` can compare against it.
"""

from __future__ import annotations

from importlib import import_module

from xrmod.engines.base import Engine
from xrmod.errors import ConfigError

__all__ = ["ENGINES", "Engine", "get_engine"]

#: Engine name -> "module:class", imported only when asked for.
ENGINES = {
    "native": "xrmod.engines.native:NativeEngine",
    "xspec": "xrmod.engines.xspec:XspecEngine",
}


def get_engine(name: str) -> Engine:
    """A new, unprepared engine called *name*."""
    try:
        target = ENGINES[name]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise ConfigError(
            f"engine {name!r} is not available (known: {known})", key="library.engine"
        ) from None
    module, cls = target.split(":")
    return getattr(import_module(module), cls)()
