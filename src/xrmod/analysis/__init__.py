"""The analysis part: reading finished libraries.

What is built on a library rather than into it lives here: the labelled
arrays of :func:`open_library`, the summary of :func:`summary` (``xrmod info
--json``; :func:`describe` is its text), the figures of :mod:`xrmod.analysis.plot`
(``xrmod plot``), the emulators of :mod:`xrmod.analysis.emulator` (and the
neural one, :mod:`xrmod.analysis.neural`), the observations and likelihood of
``xrmod infer`` and its sampling and ranking (:mod:`xrmod.analysis.inference`).
The file format itself is :mod:`xrmod.library`'s; this package only reads it
(an emulator is saved beside the data, in its own group).
"""

from __future__ import annotations

from xrmod.analysis.dataset import open_library
from xrmod.analysis.describe import describe, summary

__all__ = ["describe", "open_library", "summary"]
