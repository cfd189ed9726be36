"""``xrmod-gen``'s progress display, seen from a terminal (a pseudo-terminal) and from a pipe.

On a terminal rank 0 draws a tqdm bar on stderr (points done, points/s, ETA,
failures); with ``--no-progress``, or when stderr is not a terminal, it logs
a line every 5 % of the points instead.
"""

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time

import pytest
from mpirun_helpers import FAKE_CONFIG, env

#: 1000 points, 100 units: about a second with the native engine.
NATIVE_CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
[source]
temperatures = {{ start = 1.0, stop = 10.0, num = 10, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = {{ start = 0.5, stop = 8.0, num = 10 }}
sigma = {{ start = 0.2, stop = 2.0, num = 5 }}
amp = [-0.1, 0.1]
"""
TOTAL = 1000

#: One state of a tqdm bar: "42%|####      | 420/1000 [00:00<00:01, 1234.56pt/s, failed=3]".
BAR = re.compile(
    r"(?P<pct>\d+)%\|[^|\r\n]*\| (?P<done>\d+)/(?P<total>\d+) "
    r"\[(?P<elapsed>\d\d:\d\d)<(?P<eta>\d\d:\d\d|\?), +(?P<rate>[\d.]+|\?)pt/s(?P<post>[^\]]*)\]"
)
#: The driver's periodic log line.
LOG_LINE = re.compile(
    r"xrmod\.driver: (?P<done>\d+)/(?P<total>\d+) points \((?P<pct>\d+)%\), "
    r"(?P<rate>[\d.]+) points/s, ETA (?P<eta>\d+) s, (?P<failed>\d+) failed"
)

XRMOD_GEN = shutil.which("xrmod-gen")
needs_cli = pytest.mark.skipif(XRMOD_GEN is None, reason="xrmod-gen is not on PATH")


def _in_pty(cmd, *, cwd, stderr_to_pty=True, size=(24, 100), extra_env=None, timeout=120):
    """Run *cmd* with stdin and stdout (and stderr) on a pseudo-terminal.

    Returns (exit code, what the terminal showed, stderr when piped). *size*
    is the terminal's (rows, columns); None leaves it unset (0 x 0).
    """
    master, slave = os.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc_env = env(**(extra_env or {}))
    proc_env.pop("COLUMNS", None)
    proc_env.pop("LINES", None)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdin=slave,
        stdout=slave,
        stderr=slave if stderr_to_pty else subprocess.PIPE,
        env=proc_env,
        close_fds=True,
    )
    os.close(slave)
    shown = bytearray()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal has gone
                    break
                if not data:
                    break
                shown += data
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"{cmd} did not finish in {timeout} s")
        piped = "" if stderr_to_pty else proc.stderr.read().decode()
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.stderr is not None:
            proc.stderr.close()
    return code, shown.decode(errors="replace"), piped


def _states(text):
    """Every state a tqdm bar drew (they are separated by carriage returns)."""
    return [m.groupdict() for m in BAR.finditer(text)]


@pytest.fixture
def native_config(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(NATIVE_CONFIG.format(out=tmp_path / "lib.h5"))
    return cfg


@needs_cli
def test_a_terminal_shows_a_bar_with_points_rate_and_eta(tmp_path, native_config):
    code, shown, _ = _in_pty([XRMOD_GEN, str(native_config)], cwd=tmp_path)
    assert code == 0, shown
    states = _states(shown)
    assert states, f"no progress bar in:\n{shown}"
    assert {int(s["total"]) for s in states} == {TOTAL}
    final = states[-1]
    assert final["done"] == str(TOTAL) and final["pct"] == "100"
    assert float(final["rate"]) > 0 and final["eta"] == "00:00"
    # on the way: fewer points done, a measured rate and an estimated time left
    middle = [s for s in states if 0 < int(s["done"]) < TOTAL and s["rate"] != "?"]
    assert middle, f"no intermediate state of the bar in:\n{shown}"
    assert all(re.fullmatch(r"\d\d:\d\d", s["eta"]) for s in middle)
    dones = [int(s["done"]) for s in states]
    assert dones == sorted(dones)
    assert not LOG_LINE.search(shown)  # the bar replaces the log lines
    assert shown.rindex("points/s) on 1 rank(s)") > shown.rindex("pt/s")  # summary after it


@needs_cli
def test_a_terminal_without_a_size_still_shows_the_bar(tmp_path, native_config):
    code, shown, _ = _in_pty([XRMOD_GEN, str(native_config)], cwd=tmp_path, size=None)
    assert code == 0, shown
    states = _states(shown)
    assert states and states[-1]["done"] == str(TOTAL), shown


def _log_lines(text):
    return [m.groupdict() for m in LOG_LINE.finditer(text)]


def _assert_periodic_log_lines(text):
    lines = _log_lines(text)
    assert lines, f"no progress log line in:\n{text}"
    assert lines[-1]["done"] == str(TOTAL) and lines[-1]["pct"] == "100"
    assert 10 <= len(lines) <= 21  # about every 5 % (a unit is 1 % here)
    pcts = [int(line["pct"]) for line in lines]
    assert pcts == sorted(pcts) and pcts[0] <= 10
    assert all(float(line["rate"]) > 0 for line in lines)
    assert not _states(text) and "pt/s" not in text


@needs_cli
def test_no_progress_on_a_terminal_logs_lines_instead(tmp_path, native_config):
    code, shown, _ = _in_pty([XRMOD_GEN, str(native_config), "--no-progress"], cwd=tmp_path)
    assert code == 0, shown
    _assert_periodic_log_lines(shown)


@needs_cli
def test_stderr_not_a_terminal_logs_lines_instead(tmp_path, native_config):
    cmd = [XRMOD_GEN, str(native_config)]
    code, shown, stderr = _in_pty(cmd, cwd=tmp_path, stderr_to_pty=False)
    assert code == 0, stderr
    _assert_periodic_log_lines(stderr)
    assert "\r" not in stderr  # no bar redrawn in a log file
    assert not shown.strip()  # nothing goes to stdout


def test_the_bar_counts_failed_points(tmp_path):
    # the fake engine fails every fifth θ (status FIT_FAILED): 6 of 30 units, 2 points each
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    code, shown, _ = _in_pty(
        [sys.executable, "-m", "fake_engine", str(cfg)],
        cwd=tmp_path,
        extra_env={"XRMOD_FAKE_SLEEP": "0.02"},
    )
    assert code == 0, shown
    states = _states(shown)
    assert states and states[-1]["done"] == states[-1]["total"] == "60", shown
    assert "failed=24" in states[-1]["post"]  # a fit failed: T1 (θ % 5 == 4) or T1′ (θ % 5 == 2)
