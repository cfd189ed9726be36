"""The project's exception classes.

Every error xrmod raises on purpose derives from :class:`XrmodError`. The
families that describe bad *input* (a config, a FITS file, a modifier
parameter) derive from :class:`InputError` and carry exit code 2, which the
command line turns into a one-line message without a traceback. Each family
also subclasses the builtin it refines, so ``except ValueError`` still works
for callers who do not know xrmod.
"""

from __future__ import annotations

__all__ = [
    "EXIT_DISAGREE",
    "EXIT_ENGINE",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_RUN",
    "EXIT_SIGINT",
    "EXIT_SIGPIPE",
    "EXIT_SIGTERM",
    "ConfigError",
    "EngineError",
    "InputError",
    "ModifierError",
    "OutputError",
    "ResponseError",
    "RunError",
    "XrmodError",
]

#: Process exit codes of the command line (documented in the README).
EXIT_OK = 0  #: success
EXIT_INTERNAL = 1  #: a bug: an error xrmod did not raise on purpose
EXIT_INPUT = 2  #: bad input: config, response, library, command line
EXIT_ENGINE = 3  #: the engine cannot run here (no PyXSPEC, wrong XSPEC)
EXIT_RUN = 4  #: the run stopped: a rank failed or died, the output could not be written
EXIT_DISAGREE = 5  #: ``check-engines``: the engines disagree
EXIT_SIGINT = 130  #: stopped by SIGINT (Ctrl-C); ``--resume`` continues
EXIT_SIGTERM = 143  #: stopped by SIGTERM; ``--resume`` continues
EXIT_SIGPIPE = 141  #: standard output closed by its reader (``xrmod info LIB | head``)


class XrmodError(Exception):
    """Base class of every error xrmod raises on purpose."""

    #: Process exit code the command line uses for this error.
    exit_code: int = EXIT_INTERNAL


class InputError(XrmodError, ValueError):
    """Bad input found before any work starts (exit code 2)."""

    exit_code = EXIT_INPUT


class ConfigError(InputError):
    """A configuration file is unreadable, has an unknown key, or a bad value.

    Parameters
    ----------
    message : str
        What is wrong, quoting the bad value.
    path : str, optional
        The configuration file (``"<default>"`` for the embedded one).
    key : str, optional
        Dotted key, e.g. ``"modifier.axes.mu"``.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.message = message
        self.path = path
        self.key = key
        where = ", ".join(p for p in (path, f"key '{key}'" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class ResponseError(InputError):
    """An instrument response (ARF, RMF, PHA) is missing, corrupt or inconsistent.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str, optional
        The FITS file.
    extension : str, optional
        The FITS extension (HDU name) concerned.
    """

    def __init__(self, message: str, *, path: str | None = None, extension: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.extension = extension
        where = ", ".join(
            p for p in (self.path, f"extension {extension}" if extension else None) if p
        )
        super().__init__(f"{where}: {message}" if where else message)


class ModifierError(InputError):
    """An unknown modifier family or a parameter it does not take."""


class OutputError(InputError):
    """The output cannot be made or written: its path, its space, its lock (exit code 2).

    A path where no file can be created, a directory as the output, a full
    disk, an exceeded quota or a missing permission while the library is
    created, or a lock held by another run on the same output.
    """


class EngineError(XrmodError, RuntimeError):
    """An engine cannot be prepared (missing model library, unusable model): exit code 3."""

    exit_code = EXIT_ENGINE


class RunError(XrmodError, RuntimeError):
    """A run cannot go on: a fatal error on one rank, raised on every rank.

    Parameters
    ----------
    message : str
        What went wrong, naming the rank and host where it happened.
    exit_code : int
        Process exit code (that of the original error where it had one).
    """

    def __init__(self, message: str, *, exit_code: int = EXIT_RUN):
        super().__init__(message)
        self.exit_code = exit_code
