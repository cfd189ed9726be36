"""Engines: compute the fits of one work unit.

The engines share :class:`~xrmod.engines.base.Engine` and are listed once,
in :data:`ENGINES`: ``native`` (compiled, fast) and ``xspec`` (PyXSPEC,
inside HEASoft) may be named in a configuration (``library.engine``);
``reference`` (the NumPy oracle of the native engine) is for checks only:
``xrmod check-engines`` and the tests run it, a configuration cannot name
it. The config check, the driver and ``check-engines`` all read this
registry. Engines are loaded lazily by name, so that importing xrmod never
imports an engine's heavy dependencies (PyXSPEC is imported by
``XspecEngine.prepare`` only).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from xrmod.engines.base import Engine
from xrmod.errors import ConfigError

__all__ = ["ENGINES", "Engine", "EngineEntry", "get_engine", "selectable_engines"]


@dataclass(frozen=True)
class EngineEntry:
    """One engine of the registry.

    Attributes
    ----------
    target : str
        ``"module:class"``, imported only when the engine is asked for.
    summary : str
        What the engine is, in a few words.
    check_only : bool
        True for an engine that checks others (``xrmod check-engines``, the
        tests) and that a configuration cannot name.
    """

    target: str
    summary: str
    check_only: bool = False


#: Engine name -> entry, in the order configurations and messages list them.
ENGINES: dict[str, EngineEntry] = {
    "native": EngineEntry("xrmod.engines.native:NativeEngine", "compiled fast path"),
    "xspec": EngineEntry("xrmod.engines.xspec:XspecEngine", "XSPEC itself, through PyXSPEC"),
    "reference": EngineEntry(
        "xrmod.engines.reference:ReferenceEngine",
        "NumPy oracle of the native engine, for checks only",
        check_only=True,
    ),
}


def selectable_engines() -> tuple[str, ...]:
    """The engines a configuration may name (``library.engine``), in registry order."""
    return tuple(name for name, entry in ENGINES.items() if not entry.check_only)


def get_engine(name: str, *, checks: bool = False) -> Engine:
    """A new, unprepared engine called *name*.

    Parameters
    ----------
    name : str
        A name of :data:`ENGINES`.
    checks : bool
        Whether engines for checks only may be returned too (``check-engines``).

    Raises
    ------
    xrmod.errors.ConfigError
        An unknown name, or one for checks only without *checks* (key ``library.engine``).
    """
    entry = ENGINES.get(name)
    if entry is None or (entry.check_only and not checks):
        known = ", ".join(sorted(ENGINES) if checks else selectable_engines())
        what = "is for checks only" if entry is not None else "is not available"
        raise ConfigError(f"engine {name!r} {what} (known: {known})", key="library.engine")
    module, cls = entry.target.split(":")
    return getattr(import_module(module), cls)()
