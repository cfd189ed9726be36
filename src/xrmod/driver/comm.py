"""The ranks of a run, and the steps every rank agrees on.

A run without an MPI launcher has one rank (:class:`Serial`, the calls of an
mpi4py communicator that the driver uses); started by a launcher, with
mpi4py installed, it runs on ``MPI.COMM_WORLD``. mpi4py is imported only
here and in :mod:`xrmod.driver.counter`, and only when a launcher started
the process.

:func:`agree` and :func:`on_root` are the driver's failure policy between
ranks: a step runs on every rank (or on rank 0), and an error on any rank is
raised as one :class:`~xrmod.errors.RunError` on every rank. The collective
report is reached by every rank whatever the step raised, so no rank skips
a collective call that another waits in.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from xrmod.errors import EXIT_INTERNAL, EXIT_RUN, EXIT_SIGINT, InputError, RunError, XrmodError
from xrmod.output import os_error_message

__all__ = [
    "LAUNCH_MARKERS",
    "Comm",
    "Serial",
    "agree",
    "comm_self",
    "error_info",
    "host",
    "on_root",
    "raise_if_any",
    "world",
    "world_rank",
]

log = logging.getLogger("xrmod.driver")  # the package's one logger: its name prefixes messages

T = TypeVar("T")

#: Environment variables set by MPI launchers (Open MPI, MPICH/Hydra, PMIx, Slurm's srun).
LAUNCH_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


class Comm(Protocol):
    """What the driver uses of a communicator: an mpi4py ``Comm`` or :class:`Serial`."""

    @property
    def rank(self) -> int:
        """The rank of this process."""
        ...

    @property
    def size(self) -> int:
        """Number of ranks."""
        ...

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """Collective: *obj* of rank *root*, on every rank."""
        ...

    def allgather(self, obj: Any) -> list[Any]:
        """Collective: every rank's *obj*, in rank order, on every rank."""
        ...

    def Barrier(self) -> None:
        """Collective: wait until every rank is here."""
        ...


def world_rank() -> int:
    """The rank of this process as its MPI launcher numbered it (0 without a launcher)."""
    for name in _RANK_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _launcher_size() -> int:
    for name in _SIZE_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


class Serial:
    """The communicator of a run without MPI (the calls of an mpi4py ``Comm``)."""

    rank = 0
    size = 1

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """*obj* itself."""
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        """``[obj]``."""
        return [obj]

    def Barrier(self) -> None:
        """Nothing to wait for."""
        return None


def world() -> Comm:
    """``MPI.COMM_WORLD`` when an MPI launcher started us and mpi4py is there, else serial."""
    if not any(name in os.environ for name in LAUNCH_MARKERS):
        return Serial()
    try:
        from mpi4py import MPI
    except ImportError as e:
        if _launcher_size() > 1:
            raise InputError(
                f"started by an MPI launcher on {_launcher_size()} ranks, but mpi4py is not "
                "installed: pip install 'xrmod[mpi]', or run xrmod-gen without mpirun"
            ) from e
        return Serial()
    return MPI.COMM_WORLD


def comm_self() -> Comm:
    """``MPI.COMM_SELF``: parallel HDF5 on one process."""
    from mpi4py import MPI

    return MPI.COMM_SELF


def host() -> str:
    """The name of the host this process runs on (errors name the rank and host)."""
    return socket.gethostname()


def error_info(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) of an exception, for sending to the other ranks.

    A write the file system refused (no space, quota, permission) is named
    with what to do (:func:`xrmod.output.os_error_message`), exit code 4.
    """
    if isinstance(exc, XrmodError):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)", EXIT_SIGINT
    refused = os_error_message(exc)  # a full disk, a quota, a permission: the run stops (4)
    if refused is not None:
        return refused, EXIT_RUN
    text = " ".join(str(exc).split())  # one line (HDF5's messages span several)
    return f"internal error: {type(exc).__name__}: {text}", EXIT_INTERNAL


def raise_if_any(comm: Comm, error: tuple[str, int] | None) -> None:
    """Collective: if any rank reports an error, raise one :class:`RunError` on every rank."""
    reports = comm.allgather(None if error is None else (comm.rank, host(), *error))
    failed = [r for r in reports if r is not None]
    if not failed:
        return
    rank, where, message, code = failed[0]
    if comm.size > 1 and (len(failed) < comm.size or len({r[2] for r in failed}) > 1):
        message = f"rank {rank} ({where}): {message}"
    raise RunError(message, exit_code=code)


def agree(comm: Comm, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call *func* on every rank; an exception on any rank is raised on every rank.

    Serially the original exception propagates unchanged. Under MPI every
    rank reaches the collective report, whatever *func* raised (a
    ``KeyboardInterrupt`` included).
    """
    failure: BaseException | None = None
    value: Any = None
    try:
        value = func(*args, **kwargs)
    except (Exception, KeyboardInterrupt) as exc:
        if comm.size == 1:
            raise
        failure = exc
    try:
        if failure is not None and not isinstance(failure, XrmodError):
            log.error("rank %d (%s): unexpected error", comm.rank, host(), exc_info=failure)
    finally:
        try:
            raise_if_any(comm, None if failure is None else error_info(failure))
        except RunError as run_error:
            raise run_error from failure
    return value


def on_root(comm: Comm, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call *func* on rank 0 only, give its value to every rank; errors reach every rank."""
    value = agree(comm, lambda: func(*args, **kwargs) if comm.rank == 0 else None)
    return comm.bcast(value, root=0)
