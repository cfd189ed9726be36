"""The output of a run: checked up front, locked while a run writes it, write errors explained.

- :func:`check_output_path`: a file can be made where the library goes (its
  directory exists, is a directory, takes new files; the output is not a
  directory). ``xrmod-gen`` checks it before any compute, ``xrmod validate``
  and ``xrmod-gen --check`` too.
- :class:`OutputLock`: ``OUTPUT.lock``, created atomically (``O_CREAT|O_EXCL``)
  by the run that writes OUTPUT (rank 0 under MPI) before it touches the
  output, removed when the run ends (also after an error, SIGTERM or
  SIGINT). It holds the host, PID and start time of that run. A second run
  on the same output is refused (exit 2) naming them. A lock left by a run
  that died (SIGKILL, a crash) on *this* host is found stale (its PID is gone,
  or is another process) and taken over with a warning; a lock from another
  host cannot be checked: remove it, or pass ``--force-unlock``, once no run
  writes the output.
- :func:`os_error_message`: a write that failed for lack of space, quota or
  permission (``ENOSPC``, ``EDQUOT``, ``EACCES``, ``EPERM``, ``EROFS``) as one
  message naming the file and saying what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xrmod.errors import OutputError

__all__ = [
    "SPACE_ERRNOS",
    "OutputLock",
    "check_output_path",
    "creating_path",
    "lock_path",
    "os_error_message",
]

log = logging.getLogger("xrmod.output")

#: errno values of a write refused by the file system (space, quota, permission, read-only).
SPACE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EFBIG")
    if hasattr(errno, name)
)

_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space there, or write the "
    "library to another file system",
    errno.EACCES: "permission denied: make the directory writable for you, or choose "
    "another output",
    errno.EPERM: "operation not permitted: choose another output",
    errno.EROFS: "read-only file system: choose an output on a writable file system",
    errno.EFBIG: "file too large for this file system: write the library to another one",
}
if hasattr(errno, "EDQUOT"):
    _ADVICE[errno.EDQUOT] = (
        "disk quota exceeded: free some of your quota (e.g. 'quota -s' or your site's "
        "tool shows it), or write the library to another file system"
    )


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of the library *output*: ``OUTPUT.lock``."""
    return Path(f"{os.fspath(output)}.lock")


def creating_path(output: str | os.PathLike) -> Path:
    """Where a new library is made before it is renamed to *output*: ``OUTPUT.creating``."""
    return Path(f"{os.fspath(output)}.creating")


def _filename(exc: OSError) -> str | None:
    """The file an OSError is about: its ``filename``, else the one HDF5 names in its text."""
    if exc.filename:
        return os.fspath(exc.filename)
    found = re.search(r"(?:file)?name = '([^']*)'", str(exc))
    return found[1] if found else None


def os_error_message(exc: BaseException, path: str | os.PathLike | None = None) -> str | None:
    """A message for a write refused by the file system (space, quota, permission), or None.

    Parameters
    ----------
    exc : BaseException
        The error; only an :class:`OSError` whose errno is in :data:`SPACE_ERRNOS`
        gets a message.
    path : path-like, optional
        The file being written, when the error does not name it.
    """
    if not isinstance(exc, OSError) or exc.errno not in SPACE_ERRNOS:
        return None
    name = _filename(exc) or (os.fspath(path) if path is not None else "the output")
    strerror = exc.strerror or os.strerror(exc.errno)
    if "[Errno" not in strerror:
        strerror = f"[Errno {exc.errno}] {os.strerror(exc.errno)}"
    return f"cannot write {name} ({strerror}): {_ADVICE.get(exc.errno, strerror)}"


def _directory(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_output_path(path: str | os.PathLike) -> None:
    """Refuse an output where no library file can be made (exit 2), before any work.

    The output must not be a directory, its directory must exist, be a
    directory and take a new file: a probe file is created there with
    ``O_CREAT|O_EXCL`` and removed (this finds ``/proc``, a read-only file
    system or a directory without write permission, as root too).

    Raises
    ------
    xrmod.errors.OutputError
        Naming the path and the problem.
    """
    path = Path(path)
    directory = _directory(path)
    if path.is_dir():
        raise OutputError(
            f"{path}: the output is a directory; give a file name, e.g. {path / 'library.h5'}"
        )
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise OutputError(
            f"{path}: directory {directory} does not exist; create it (mkdir -p "
            f"{directory}) or choose another output"
        ) from None
    except NotADirectoryError:
        raise OutputError(
            f"{path}: directory {directory} does not exist (a part of it is a file); "
            "choose another output"
        ) from None
    except OSError as e:
        raise OutputError(f"{path}: cannot reach directory {directory} ({e.strerror})") from e
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: {directory} is a file, not a directory; choose another output")
    probe = directory / f".{path.name}.probe-{socket.gethostname()}-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # the directory takes files (an earlier probe of ours is there)
    except OSError as e:
        reason = _ADVICE.get(e.errno, "choose another output")
        raise OutputError(
            f"{path}: no file can be created in directory {directory} "
            f"([Errno {e.errno}] {e.strerror}): {reason}"
        ) from e
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (Linux), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_start(pid: int) -> str | None:
    """Start time of process *pid* in clock ticks since boot (Linux), or None."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    """Whether process *pid* on this host is the one that took a lock (started at *start*)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    fields = _stat_fields(pid)
    if fields and fields[0] in ("Z", "X"):
        return False  # killed, not yet reaped (a zombie)
    if start is not None:
        now = _process_start(pid)
        if now is not None and now != start:
            return False  # the PID was reused by another process
    return True


class OutputLock:
    """The exclusive lock of one output, held by this process (use :meth:`acquire`).

    Parameters
    ----------
    output : path-like
        The library.
    info : dict
        What the lock file holds (host, pid, pid_start, started, command).
    """

    def __init__(self, output: str | os.PathLike, info: dict[str, Any]):
        self.output = Path(output)
        self.path = lock_path(output)
        self.info = info

    @classmethod
    def acquire(cls, output: str | os.PathLike, *, force: bool = False) -> OutputLock:
        """Take the lock of *output*, or refuse to (exit 2).

        A lock of a dead process on this host is taken over with a warning;
        with *force* any lock is (``--force-unlock``: the user knows no run
        writes the output).

        Raises
        ------
        xrmod.errors.OutputError
            Another run holds the lock (named with its host, PID and start
            time), or the lock file cannot be created.
        """
        path = lock_path(output)
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "output": os.path.abspath(output),
        }
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = _read_lock(path)
                if held is None:
                    continue  # removed meanwhile: try again
                cls._take_over_or_refuse(output, path, held, force=force)
                continue
            except OSError as e:
                message = os_error_message(e, path) or f"cannot create {path} ({e.strerror})"
                raise OutputError(f"{output}: {message}") from e
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(info) + "\n")
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                message = os_error_message(e, path) or f"cannot write {path} ({e.strerror})"
                raise OutputError(f"{output}: {message}") from e
            return cls(output, info)
        raise OutputError(
            f"{output}: its lock {path} keeps changing: another run is starting on this "
            "output; wait for it, or choose another output"
        )

    @staticmethod
    def _take_over_or_refuse(
        output: str | os.PathLike, path: Path, held: dict[str, Any], *, force: bool
    ) -> None:
        """Remove a stale (or, with *force*, any) lock; raise OutputError for a live one."""
        host = str(held.get("host", "?"))
        pid = held.get("pid")
        started = held.get("started", "?")
        who = f"host {host}, PID {pid}, started {started}"
        here = host == socket.gethostname()
        if force:
            log.warning("%s: --force-unlock: removing the lock %s (%s)", output, path, who)
        elif here and isinstance(pid, int) and not _alive(pid, held.get("pid_start")):
            log.warning(
                "%s: taking over the stale lock %s of a run that is no longer running "
                "(%s): it was killed or crashed; --resume continues its library",
                output,
                path,
                who,
            )
        elif here:
            raise OutputError(
                f"{output} is being written by another xrmod-gen run ({who}; lock file "
                f"{path}): wait for it to finish, or stop it (kill {pid}: it keeps every "
                "finished unit) and continue with --resume"
            )
        elif held.get("unreadable"):
            raise OutputError(
                f"{output}: its lock file {path} cannot be read ({held['unreadable']}); if "
                "no run is writing the output, remove it (or use --force-unlock)"
            )
        else:
            raise OutputError(
                f"{output} is locked by an xrmod-gen run on another host ({who}; lock file "
                f"{path}); this host cannot check whether it is still running. If it is, "
                "wait for it; if it is not (its job ended, its node failed), run again with "
                f"--force-unlock, or remove {path}"
            )
        if _read_lock(path) == held:  # still the lock judged stale: remove it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def release(self) -> None:
        """Remove the lock file if it is still this process's; never raises."""
        try:
            if _read_lock(self.path) == self.info:
                os.unlink(self.path)
        except OSError:
            log.warning("%s: cannot remove the lock file %s", self.output, self.path)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_lock(path: Path) -> dict[str, Any] | None:
    """What a lock file holds; None when it is gone; ``{"unreadable": why}`` if it is not JSON.

    A lock file is written right after its atomic creation: an empty one is
    read again for up to a second before it is declared unreadable.
    """
    why = "empty"
    for _ in range(20):
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            return {"unreadable": e.strerror or str(e)}
        if text.strip():
            try:
                found = json.loads(text)
            except ValueError:
                why = "not an xrmod lock file"
            else:
                if isinstance(found, dict):
                    return found
                why = "not an xrmod lock file"
            break
        time.sleep(0.05)
    return {"unreadable": why}
