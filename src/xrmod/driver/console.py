"""What a run shows and logs: rank 0's progress, each rank's log file.

Nothing here may stop a run: a progress display that cannot be drawn falls
back to silence, and a rank log that cannot be opened or written (an
unwritable directory, a full disk) drops its records after one line on
stderr. A logging call that raised would make one rank skip a collective
step that the others wait in, and the job would hang.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from xrmod.driver.comm import host
from xrmod.merge import rank_log_path

__all__ = ["RANK_ONLY", "SUMMARY", "Progress", "QuietFileHandler", "RankLog"]

log = logging.getLogger("xrmod.driver")

#: ``extra`` of rank 0's report of the whole run: the console's, not a rank log's.
SUMMARY = {"xrmod_summary": True}
#: ``extra`` of a failed unit's traceback: the rank log's, not the console's.
RANK_ONLY = {"xrmod_rank_only": True}


def _terminal_size(stream: Any) -> tuple[int, int]:
    """(columns, lines) of the terminal *stream* writes to; 0 where unknown."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


class Progress:
    """Rank 0's progress: a tqdm bar on a terminal, else a log line every 5 % of the points.

    A bar that fails to draw (a closed or full stderr) is dropped with a
    warning; the run goes on.
    """

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self._shown = (0, 0)
        self._next_log = 0.05
        self._start = time.perf_counter()
        self._last = 0.0
        self._bar: Any = None
        if enabled and total and sys.stderr.isatty():
            self._guard(self._open_bar)

    def _open_bar(self) -> None:
        from tqdm import tqdm

        # a terminal that reports no size (some ptys) would hide the bar: assume 80x24
        size = {"dynamic_ncols": True} if all(_terminal_size(sys.stderr)) else {}
        self._bar = tqdm(
            total=self.total,
            unit="pt",
            smoothing=0.05,
            file=sys.stderr,
            **(size or {"ncols": 80, "nrows": 24}),
        )

    def _guard(self, func: Any, *args: Any) -> None:
        """Call *func*; a failure ends the bar (the progress goes on as log lines)."""
        try:
            func(*args)
        except Exception:
            bar, self._bar = self._bar, None
            log.warning("the progress bar failed; progress goes to the log", exc_info=True)
            if bar is not None:
                with contextlib.suppress(Exception):
                    bar.close()

    def show(self, done: int, failed: int, *, force: bool = False) -> None:
        """Display *done* points (of which *failed*) finished by all ranks."""
        if (done, failed) == self._shown or not self.total:
            return
        now = time.perf_counter()
        if self._bar is not None:
            if force or now - self._last > 0.1 or done == self.total:
                self._guard(self._draw, done, failed, now)
            return
        self._shown = (done, failed)
        if done >= self._next_log * self.total or done == self.total:
            elapsed = now - self._start
            rate = done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            log.info(
                "%d/%d points (%.0f%%), %.1f points/s, ETA %.0f s, %d failed",
                done,
                self.total,
                100 * done / self.total,
                rate,
                eta,
                failed,
            )
            self._next_log = (int(20 * done / self.total) + 1) / 20

    def _draw(self, done: int, failed: int, now: float) -> None:
        self._bar.update(done - self._shown[0])
        if failed:
            self._bar.set_postfix(failed=failed, refresh=False)
        self._shown, self._last = (done, failed), now

    def close(self) -> None:
        """End the bar (idempotent, never raises)."""
        bar, self._bar = self._bar, None
        if bar is not None:
            with contextlib.suppress(Exception):
                bar.close()


class QuietFileHandler(logging.FileHandler):
    """A log file, opened at its first record, that never raises.

    ``logging.FileHandler(delay=True)`` opens its file in ``emit`` outside
    its own error handling, so a file that cannot be opened raises out of
    ``log.error(...)``; a full disk makes every record print a traceback.
    Here the first failure (to open, write, flush or close) prints one line
    on stderr, and the file's records are dropped from then on.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__(path, delay=True, encoding="utf-8")
        self.opened = False  # the file was opened (something was written to it)
        self.failed = False

    def _open(self) -> IO[str]:
        stream = super()._open()
        self.opened = True
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        """Write *record* (opening the file the first time); a failure is reported once."""
        if self.failed:
            return
        try:
            super().emit(record)
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord | None) -> None:
        """Report the first failure on stderr, then drop the file's records."""
        if self.failed:
            return
        self.failed = True
        error = sys.exc_info()[1]
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"xrmod: cannot write the log {self.baseFilename} "
                f"({type(error).__name__}: {error}); its records are dropped\n"
            )
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def flush(self) -> None:
        """Flush the file; a failure is reported once."""
        if self.failed:
            return
        try:
            super().flush()
        except Exception:
            self.handleError(None)

    def close(self) -> None:
        """Close the file (never raises)."""
        if self.failed:
            self.stream = None
        try:
            super().close()  # detaches the handler even when the flush raises
        except Exception:
            self.handleError(None)


class _AtLeast(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def _not_summary(record: logging.LogRecord) -> bool:
    return not getattr(record, "xrmod_summary", False)


def _not_rank_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "xrmod_rank_only", False)


class RankLog:
    """Warnings and errors of this rank (failed units' tracebacks) to ``<output>.rank<N>.log``.

    The file is created only when there is something to write. A failed unit's
    traceback goes there only; on ranks other than 0 the console shows only
    critical records: rank 0 reports for all.
    """

    def __init__(self, output: Path, rank: int):
        self.path = rank_log_path(output, rank)
        self._logger = logging.getLogger("xrmod")
        self._handler: QuietFileHandler | None = None
        directory = self.path.parent
        if directory.is_dir() and os.access(directory, os.W_OK):
            self._handler = QuietFileHandler(self.path)
            self._handler.setLevel(logging.WARNING)
            self._handler.addFilter(_not_summary)
            self._handler.setFormatter(
                logging.Formatter(
                    f"%(asctime)s rank {rank} {host()} %(levelname)s %(name)s: %(message)s"
                )
            )
            self._logger.addHandler(self._handler)
        # the console: rank 0 without failed units' tracebacks, other ranks critical only
        self._filter = _AtLeast(logging.CRITICAL) if rank != 0 else _not_rank_only
        self._quiet = list(logging.getLogger().handlers)
        for h in self._quiet:
            h.addFilter(self._filter)

    @property
    def written(self) -> bool:
        """Whether this run wrote to the rank log."""
        return self._handler is not None and self._handler.opened and not self._handler.failed

    def close(self) -> None:
        """Detach the rank log and the console filters (never raises)."""
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler.close()
        for h in self._quiet:
            h.removeFilter(self._filter)
