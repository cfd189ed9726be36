"""XSPEC's model library: which copy, loaded once, never two versions mixed.

The native engine evaluates XSPEC's own model functions (``libXSFunctions``
and the libraries it needs). Two copies can be at hand:

* **HEASoft's own**, ``$HEADAS/lib``, when ``$HEADAS`` names a HEASoft whose
  model library is complete: ``libXSFunctions`` and every library it needs
  are in ``$HEADAS/lib`` and define every function xrmod calls
  (:data:`REQUIRED_SYMBOLS`). Then the native engine and PyXSPEC (the
  ``xspec`` engine) use the same XSPEC, in one process.
* **The copy xspectrampoline bundles** (XSPEC 12.15) otherwise: it runs
  anywhere, with or without HEASoft.

``XRMOD_XSPEC_MODELS`` chooses: ``auto`` (the default: HEASoft's when it is
complete, else the bundled copy), ``heasoft`` (HEASoft's or an error saying
what is missing) or ``bundled``.

Each library is loaded by absolute path, its dependencies first (their
``DT_NEEDED`` entries, read from the ELF files), with ``RTLD_GLOBAL``. The
dynamic loader matches a needed library by its soname against those already
loaded, so nothing of the other copy can be bound in its place, whatever
``LD_LIBRARY_PATH`` holds: HEASoft's environment puts ``$HEADAS/lib`` first,
and the bundled ``libXSFunctions`` would otherwise take HEASoft's
``libXSUtil`` (another version: undefined symbols). The compiler runtime
(libstdc++, libgfortran, libgcc_s, libquadmath) is left to the loader: a
second copy of it in one process would be worse than either.

The completeness check is static (the files and their dynamic symbol
tables): once a library of one copy is loaded, the process cannot switch to
the other, so nothing is loaded before the choice is made. The choice is
recorded in every library file (:func:`provenance`) and shown by ``xrmod
info``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xrmod.errors import EngineError

__all__ = [
    "CHOICE_ENV",
    "REQUIRED_SYMBOLS",
    "Candidate",
    "ModelLibrary",
    "find_library",
    "load_library",
    "loaded_elsewhere",
    "provenance",
]

log = logging.getLogger(__name__)

#: Environment variable choosing the copy: auto | heasoft | bundled.
CHOICE_ENV = "XRMOD_XSPEC_MODELS"
_CHOICES = ("auto", "heasoft", "bundled")

#: What xrmod calls in the model library: the model functions of xrmod.models,
#: the table setters and getters, the version.
REQUIRED_SYMBOLS = (
    "C_tbabs",
    "xsphab_",
    "xsabsw_",
    "xsbrms_",
    "xszbrm_",
    "C_apec",
    "FNINIT",
    "FPSOLR",
    "FPXSCT",
    "FGSOLR",
    "FGXSCT",
    "FGDATD",
    "FGMODF",
    "FGMSTR",
    "FGATDV",
    "xs_getVersion",
)

# The library xrmod opens; the rest come with it as its dependencies.
_ROOT = "libXSFunctions.so"
# Toolchain runtimes: left to the dynamic loader (the system's, else the copy's RUNPATH).
_RUNTIME_PREFIXES = ("libstdc++.", "libgcc_s.", "libgfortran.", "libquadmath.", "libc.", "libm.")


@dataclass(frozen=True)
class ModelLibrary:
    """A loaded copy of XSPEC's model library.

    Attributes
    ----------
    origin : str
        ``"heasoft"`` ($HEADAS) or ``"bundled"`` (xspectrampoline's copy).
    headas : str
        The HEADAS directory of that copy (its ``lib`` holds the libraries).
    version : str
        XSPEC's version string, as the library reports it (``xs_getVersion``).
    package : str
        ``"HEASoft"`` or ``"xspectrampoline <version>"``.
    functions : ctypes.CDLL
        ``libXSFunctions``, loaded with its dependencies.
    """

    origin: str
    headas: str
    version: str
    package: str
    functions: Any

    @property
    def description(self) -> str:
        """One line: which XSPEC, from where (``xrmod info`` shows it)."""
        return f"XSPEC {self.version} from {self.package} ({self.headas})"

    def model(self, symbol: str) -> Any:
        """A model function as ``f(edges, params, out, err)`` over NumPy arrays.

        XSPEC's two calling conventions (``funcWrappers.h``): a trailing
        underscore is the Fortran one (float32 arrays, sizes by reference), a
        ``C_`` prefix the C one (float64 arrays, sizes by value, an init
        string). ``edges`` has n + 1 values, ``out`` and ``err`` n.
        """
        func = getattr(self.functions, symbol)
        func.restype = None
        if symbol.endswith("_"):
            f32 = ctypes.POINTER(ctypes.c_float)
            i32 = ctypes.POINTER(ctypes.c_int)
            func.argtypes = [f32, i32, f32, i32, f32, f32]

            def call(edges: Any, params: Any, out: Any, err: Any) -> None:
                n, ifl = ctypes.c_int(out.size), ctypes.c_int(1)
                func(
                    edges.ctypes.data_as(f32),
                    ctypes.byref(n),
                    params.ctypes.data_as(f32),
                    ctypes.byref(ifl),
                    out.ctypes.data_as(f32),
                    err.ctypes.data_as(f32),
                )

            return call
        if not symbol.startswith("C_"):
            raise EngineError(f"{symbol}: not an XSPEC model function (C_name or name_)")
        f64 = ctypes.POINTER(ctypes.c_double)
        func.argtypes = [f64, ctypes.c_int, f64, ctypes.c_int, f64, f64, ctypes.c_char_p]

        def call(edges: Any, params: Any, out: Any, err: Any) -> None:
            func(
                edges.ctypes.data_as(f64),
                out.size,
                params.ctypes.data_as(f64),
                1,
                out.ctypes.data_as(f64),
                err.ctypes.data_as(f64),
                b"",
            )

        return call

    def string(self, symbol: str, *args: bytes) -> str:
        """Call a ``char* f(char*...)`` function of the library (XSPEC's FG* getters)."""
        func = getattr(self.functions, symbol)
        func.restype = ctypes.c_char_p
        func.argtypes = [ctypes.c_char_p] * len(args)
        return (func(*args) or b"").decode(errors="replace")


# --------------------------------------------------------------------------- ELF


@dataclass(frozen=True)
class _Elf:
    needed: tuple[str, ...]
    defined: frozenset[str]


def _read_elf(path: Path) -> _Elf:
    """DT_NEEDED entries and defined dynamic symbols of a 64-bit little-endian ELF file."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [
            struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
        ]

        def strings(index: int) -> tuple[int, int]:
            _, _, _, _, offset, size, *_ = sections[index]
            return offset, size

        def name_at(table: tuple[int, int], at: int) -> str:
            start = table[0] + at
            return data[start : data.find(b"\0", start)].decode()

        needed: list[str] = []
        defined: set[str] = set()
        for _, kind, _, _, offset, size, link, _, _, entsize in sections:
            if kind == 6:  # SHT_DYNAMIC: (tag, value) pairs
                table = strings(link)
                for at in range(offset, offset + size, entsize):
                    tag, value = struct.unpack_from("<qQ", data, at)
                    if tag == 0:
                        break
                    if tag == 1:  # DT_NEEDED
                        needed.append(name_at(table, value))
            elif kind == 11:  # SHT_DYNSYM
                table = strings(link)
                for at in range(offset + entsize, offset + size, entsize):
                    name, info, _, shndx = struct.unpack_from("<IBBH", data, at)
                    if shndx != 0 and info >> 4 in (1, 2):  # defined, GLOBAL or WEAK
                        defined.add(name_at(table, name))
        return _Elf(tuple(needed), frozenset(defined))


def _closure(libdir: Path) -> list[Path]:
    """The path of libXSFunctions in *libdir* and of what it needs there, dependencies first."""
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = libdir / name
        if not path.is_file() or name.startswith(_RUNTIME_PREFIXES):
            return
        for dep in _read_elf(path).needed:
            visit(dep)
        order.append(path)

    visit(_ROOT)
    return order


def _missing_symbols(paths: list[Path]) -> list[str]:
    defined: set[str] = set()
    for path in paths:
        defined |= _read_elf(path).defined
    return [s for s in REQUIRED_SYMBOLS if s not in defined]


# --------------------------------------------------------------------------- choice


@dataclass(frozen=True)
class Candidate:
    """A copy of the model library that could be loaded: where, and its files in load order."""

    origin: str
    headas: Path
    package: str
    paths: tuple[Path, ...]


def _bundled() -> Candidate:
    """The copy xspectrampoline ships, found without importing it (its import loads it)."""
    spec = importlib.util.find_spec("xspectrampoline")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "the native engine needs XSPEC's model library: pip install xspectrampoline"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    headas = next(iter(sorted(root.glob("LibXSPEC_v*"))), None)
    if headas is None or not (headas / "lib" / _ROOT).is_file():
        raise EngineError(f"xspectrampoline at {root} holds no {_ROOT}: reinstall it")
    try:
        version = importlib.metadata.version("xspectrampoline")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return Candidate(
        "bundled", headas, f"xspectrampoline {version}", tuple(_closure(headas / "lib"))
    )


def _heasoft(headas: Path) -> tuple[Candidate | None, str]:
    """HEASoft's copy at *headas*, or None and why it cannot serve."""
    libdir = headas / "lib"
    if not (libdir / _ROOT).is_file():
        return None, f"no {libdir / _ROOT}"
    try:
        paths = _closure(libdir)
        missing = _missing_symbols(paths)
    except (OSError, ValueError, struct.error) as exc:
        return None, f"cannot read {libdir}: {exc}"
    if missing:
        names = ", ".join(missing)
        return None, f"{libdir / _ROOT} and the libraries it names do not define {names}"
    return Candidate("heasoft", headas, "HEASoft", tuple(paths)), ""


def _choice() -> str:
    choice = os.environ.get(CHOICE_ENV, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise EngineError(f"{CHOICE_ENV}={choice!r}: choose one of {', '.join(_CHOICES)}")
    return choice


def find_library() -> tuple[Candidate, str]:
    """The copy to load (nothing is loaded) and, for a fall-back, why HEASoft's was not taken."""
    choice = _choice()
    headas = os.environ.get("HEADAS", "").strip()
    if choice == "bundled":
        return _bundled(), ""
    bundled = None if choice == "heasoft" else _bundled()
    if headas and (bundled is None or Path(headas).resolve() != bundled.headas.resolve()):
        candidate, why = _heasoft(Path(headas))
        if candidate is not None:
            return candidate, ""
        if choice == "heasoft":
            raise EngineError(f"{CHOICE_ENV}=heasoft but HEADAS={headas} cannot serve: {why}")
        return bundled, f"HEADAS={headas}: {why}"
    if choice == "heasoft":
        raise EngineError(f"{CHOICE_ENV}=heasoft but HEADAS is not set")
    return bundled, ""


def _load_in_order(paths: tuple[Path, ...]) -> Any:
    """CDLL each path (RTLD_GLOBAL) in order; returns the last one.

    A library that needs symbols of a sibling it does not list (libgsl takes
    cblas from whoever loads libgslcblas) fails with "undefined symbol" when
    its turn comes first: it is tried again after the others.
    """
    handles: dict[Path, Any] = {}
    pending = list(paths)
    while pending:
        failed: list[Path] = []
        error: OSError | None = None
        for path in pending:
            try:
                handles[path] = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                if "undefined symbol" not in str(exc):
                    raise
                failed.append(path)
                error = exc
        if len(failed) == len(pending):
            raise error  # no progress: a symbol nobody here defines
        pending = failed
    return handles[paths[-1]]


def _loaded_copies() -> set[Path]:
    """Directories of the libXSFunctions already mapped into this process (Linux)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    return {
        Path(line.split(None, 5)[5]).resolve().parent
        for line in maps.splitlines()
        if line.rstrip().endswith("/" + _ROOT)
    }


def _digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _settle_on_loaded(candidate: Candidate) -> Candidate:
    """The copy to load, given what this process holds already.

    Nothing loaded: the candidate. The same build loaded from another place
    (Sherpa's link to another environment's xspectrampoline, say): that one,
    whose files are then already mapped, never a second copy. Another build:
    an EngineError, since two versions cannot share one process.
    """
    ours = (candidate.headas / "lib").resolve()
    others = sorted(d for d in _loaded_copies() if d != ours)
    if not others:
        return candidate
    other = others[0]
    if _digest(other / _ROOT) == _digest(ours / _ROOT):
        log.debug("XSPEC model library: the same build is loaded from %s already", other)
        return dataclasses.replace(candidate, headas=other.parent, paths=tuple(_closure(other)))
    raise EngineError(
        f"this process has XSPEC's model library from {other} loaded already "
        f"(PyXSPEC or Sherpa); the native engine would load another build, {ours}: two "
        "versions cannot share one process. Run the engines in separate processes "
        f"(xrmod check-engines does), or set {CHOICE_ENV} to use the same copy"
    )


def loaded_elsewhere(headas: str | os.PathLike) -> list[str]:
    """Directories, other than ``headas/lib``, of a libXSFunctions mapped into this process.

    PyXSPEC loads HEASoft's model library by name; where another copy is in
    the process already (loaded here for the native engine, or by Sherpa)
    the dynamic loader would give PyXSPEC that one.
    """
    ours = (Path(headas) / "lib").resolve()
    return sorted(str(d) for d in _loaded_copies() if d != ours)


@functools.cache
def load_library() -> ModelLibrary:
    """Load the chosen copy once per process (dependencies first) and initialise it.

    Raises
    ------
    xrmod.errors.EngineError
        No usable copy, or the chosen one fails to load.
    """
    from xrmod.models import silence_c_output

    candidate, why = find_library()
    if why:
        log.info("XSPEC model library: the bundled copy, not HEASoft's (%s)", why)
    candidate = _settle_on_loaded(candidate)
    saved = os.environ.get("HEADAS")
    try:
        with silence_c_output():  # FNINIT prints the tables it sets
            functions = _load_in_order(candidate.paths)
            # FNINIT finds the copy's data (manager and modelData directories) from
            # $HEADAS, read once here: point it at the copy being loaded
            os.environ["HEADAS"] = str(candidate.headas)
            functions.FNINIT()
    except (OSError, AttributeError) as exc:
        raise EngineError(
            f"cannot load XSPEC's model library from {candidate.headas / 'lib'} "
            f"({type(exc).__name__}: {exc}); {CHOICE_ENV}=bundled uses the copy "
            "xspectrampoline ships"
        ) from exc
    finally:
        if saved is None:
            os.environ.pop("HEADAS", None)
        else:
            os.environ["HEADAS"] = saved
    buffer = ctypes.create_string_buffer(256)
    functions.xs_getVersion.argtypes = [ctypes.c_char_p, ctypes.c_int]
    functions.xs_getVersion(buffer, len(buffer))
    library = ModelLibrary(
        origin=candidate.origin,
        headas=str(candidate.headas),
        version=buffer.value.decode(errors="replace").strip() or "?",
        package=candidate.package,
        functions=functions,
    )
    log.debug("XSPEC model library: %s", library.description)
    return library


def provenance() -> dict[str, str]:
    """Root attributes describing the loaded copy (written into every library)."""
    lib = load_library()
    return {
        "xspec_models": lib.description,
        "xspec_models_origin": lib.origin,
        "xspec_models_version": lib.version,
    }
