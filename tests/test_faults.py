"""Faults around the output (issue 13): locks, full disks, damaged files, bad paths, resumes.

Each test names what a user saw before the fix. The runs use the fake engine
(``python -m fake_engine``, :mod:`fake_engine`); every subprocess has a timeout.
"""

import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess

import h5py
import pytest
from fake_engine import assert_same_library, fake_engine_in_test
from mpirun_helpers import FAKE_CONFIG, error_lines, gen, needs_mpirun, start, wait_for

from xrmod import driver
from xrmod.cli import main as xrmod_main
from xrmod.driver.writers import MAX_FLUSH_SECONDS, flush_seconds
from xrmod.errors import EXIT_INPUT, EXIT_OK, EXIT_RUN, EXIT_SIGTERM, OutputError, RunError
from xrmod.job import load_job
from xrmod.library import count_status, create_library
from xrmod.merge import RankFileWriter, find_rank_files, rank_file_path
from xrmod.output import OutputLock, check_output_path, creating_path, lock_path

N_UNITS = 30


def _config(tmp_path, out=None, text=FAKE_CONFIG):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(text.format(out=out or tmp_path / "lib.h5"))
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted library, computed serially."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = _config(tmp, tmp / "ref.h5")
    proc = gen(0, str(cfg), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return tmp / "ref.h5"


def _killed(tmp_path, cfg, die=3):
    """A library whose run was SIGKILLed at θ *die* (its lock left behind)."""
    proc = gen(0, str(cfg), timeout=120, XRMOD_FAKE_DIE=str(die), XRMOD_FLUSH_SECONDS="0")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return tmp_path / "lib.h5"


def _running(tmp_path, cfg, *args, ranks=0, sleep="0.2"):
    """A slow run started in the background (30 units: 6 s), once it has done a unit."""
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    proc = start(ranks, str(cfg), *args, XRMOD_FAKE_MARKS=str(marks), XRMOD_FAKE_SLEEP=sleep)
    try:
        wait_for(lambda: len(list(marks.glob("unit.*"))) >= 1, what="the first run's first unit")
    except BaseException:
        _finish(proc, kill=True)  # never leave the job running
        raise
    return proc


def _finish(proc, kill=False):
    if kill and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return stderr


# --------------------------------------------------------------------------- 1. the lock
def test_a_second_run_on_the_same_output_is_refused_naming_the_lock(tmp_path, reference):
    """Before: the loser ended in "internal error: FileExistsError" (exit 1)."""
    cfg = _config(tmp_path)
    first = _running(tmp_path, cfg)
    try:
        held = json.loads(lock_path(tmp_path / "lib.h5").read_text())
        assert held["pid"] == first.pid and held["host"] == socket.gethostname()
        second = gen(0, str(cfg), timeout=60)
        resumed = gen(0, str(cfg), "--resume", timeout=60)
    finally:
        stderr = _finish(first)
    assert first.returncode == EXIT_OK, stderr
    for proc in (second, resumed):
        assert proc.returncode == EXIT_INPUT, proc.stderr
        (line,) = error_lines(proc.stderr)
        assert "being written by another xrmod-gen run" in line
        assert f"PID {first.pid}" in line and socket.gethostname() in line
        assert "lib.h5.lock" in line and "--resume" in line
        assert "Traceback" not in proc.stderr
    assert_same_library(reference, tmp_path / "lib.h5")
    assert not lock_path(tmp_path / "lib.h5").exists()


def test_two_resumes_at_once_compute_the_grid_once(tmp_path, reference):
    """Before: both merged and deleted each other's rank files; one ended with a false exit 4."""
    cfg = _config(tmp_path)
    out = _killed(tmp_path, cfg)
    first = _running(tmp_path, cfg, "--resume")
    try:
        second = gen(0, str(cfg), "--resume", timeout=60)
    finally:
        stderr = _finish(first)
    assert first.returncode == EXIT_OK, stderr
    assert "taking over the stale lock" in stderr  # the killed run's
    assert second.returncode == EXIT_INPUT, second.stderr
    assert len(list((tmp_path / "marks").glob("unit.*"))) < N_UNITS  # only what was left
    assert_same_library(reference, out)
    assert not lock_path(out).exists()


def test_a_stale_lock_on_this_host_is_taken_over_with_a_warning(tmp_path, reference):
    cfg = _config(tmp_path)
    out = _killed(tmp_path, cfg)
    held = json.loads(lock_path(out).read_text())  # the killed process's
    proc = gen(0, str(cfg), "--resume", timeout=120)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "taking over the stale lock" in proc.stderr and f"PID {held['pid']}" in proc.stderr
    assert_same_library(reference, out)
    assert not lock_path(out).exists()


def test_a_lock_whose_pid_now_runs_another_process_is_stale(tmp_path):
    out = tmp_path / "lib.h5"
    other = {"host": socket.gethostname(), "pid": os.getppid(), "pid_start": "1", "started": "x"}
    lock_path(out).write_text(json.dumps(other))
    with OutputLock.acquire(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock_path(out).exists()


def test_a_lock_from_another_host_needs_force_unlock(tmp_path, reference):
    cfg = _config(tmp_path)
    out = tmp_path / "lib.h5"
    other = {"host": "node-other-17", "pid": 4242, "started": "2026-12-07T10:00:00+00:00"}
    lock_path(out).write_text(json.dumps(other))
    proc = gen(0, str(cfg), timeout=60)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "node-other-17" in line and "PID 4242" in line and "--force-unlock" in line
    assert str(lock_path(out)) in line
    assert not out.exists()
    proc = gen(0, str(cfg), "--force-unlock", timeout=120)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "--force-unlock: removing the lock" in proc.stderr
    assert_same_library(reference, out)
    assert not lock_path(out).exists()


def test_an_unreadable_lock_is_reported(tmp_path):
    out = tmp_path / "lib.h5"
    lock_path(out).write_text("garbage\n")
    with pytest.raises(OutputError, match=r"cannot be read.*remove it"):
        OutputLock.acquire(out)


def test_the_lock_is_removed_after_a_failed_run_and_after_sigterm(tmp_path):
    cfg = _config(tmp_path)
    out = tmp_path / "lib.h5"
    proc = gen(0, str(cfg), timeout=120, XRMOD_FAKE_BREAK_WRITER="3")
    assert proc.returncode == EXIT_RUN, proc.stderr
    assert not lock_path(out).exists()
    running = _running(tmp_path, cfg, "--resume")
    running.send_signal(signal.SIGTERM)
    stderr = _finish(running)
    assert running.returncode == EXIT_SIGTERM, stderr
    assert not lock_path(out).exists()


def test_a_lock_of_another_run_is_not_removed_by_this_one(tmp_path):
    out = tmp_path / "lib.h5"
    lock = OutputLock.acquire(out)
    lock_path(out).write_text(json.dumps({"host": "elsewhere", "pid": 1}))  # replaced
    lock.release()
    assert lock_path(out).exists()


@needs_mpirun
def test_under_mpirun_every_rank_ends_with_the_lock_error(tmp_path):
    cfg = _config(tmp_path)
    first = _running(tmp_path, cfg)
    try:
        proc = gen(2, str(cfg), "--resume", timeout=120)
    finally:
        stderr = _finish(first)
    assert first.returncode == EXIT_OK, stderr
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "being written by another xrmod-gen run" in line and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- 2. a full disk
@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (needs root and a sandbox that allows mounts); skipped otherwise."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    directory = tmp_path / "disk"
    directory.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)]
    mount = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    yield directory
    subprocess.run(["umount", str(directory)], check=True, timeout=30)


#: 24,000 points: a 2.2 MB library, more than the 2 MB disk.
TOO_BIG = """\
[library]
output = "{out}"
noise = "asimov"
[source]
temperatures = {{ start = 1.0, stop = 10.0, num = 30 }}
[modifier]
family = "gaussian"
[modifier.axes]
amp = {{ start = -0.2, stop = 0.2, num = 20 }}
mu = {{ start = 0.5, stop = 10.0, num = 20 }}
sigma = [0.2, 0.5]
"""


def test_a_full_disk_while_the_library_is_created_exits_2_leaving_nothing(tmp_path, tiny_disk):
    """Before: "internal error: OSError: [Errno 28] Can't close file", a corrupt file left."""
    out = tiny_disk / "lib.h5"
    cfg = _config(tmp_path, out, TOO_BIG)
    proc = gen(0, str(cfg), timeout=120)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"cannot write {out}" in line and "No space left on device" in line
    assert "free some space" in line and "MB are free" in line
    assert list(tiny_disk.iterdir()) == []  # no half-made library, no lock


def test_enospc_while_the_library_is_created_is_an_output_error(tmp_path, monkeypatch):
    """The same without a tmpfs: the skeleton's writer fails with ENOSPC half-way."""
    from xrmod import library

    def half_made(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n")
        raise OSError(errno.ENOSPC, "Unable to synchronously close file")

    monkeypatch.setattr(library, "_create_skeleton", half_made)
    job = load_job(_config(tmp_path))
    with pytest.raises(OutputError, match=r"No space left on device.*nothing was computed"):
        create_library(job.output, job.grid, family="gaussian", units={}, attrs={})
    assert list(tmp_path.iterdir()) == [tmp_path / "cfg.toml"]
    assert not creating_path(job.output).exists()


def test_a_failed_write_mid_run_names_the_space_problem_and_keeps_the_units(tmp_path, monkeypatch):
    """Rank files / finished units are kept; the message says what to do (exit 4)."""
    fake_engine_in_test(monkeypatch)
    job = load_job(_config(tmp_path))
    real_flush = RankFileWriter.flush
    calls = []

    def flush(self):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", str(self.path))
        real_flush(self)

    monkeypatch.setattr(RankFileWriter, "flush", flush)
    monkeypatch.setenv("XRMOD_FLUSH_SECONDS", "0")
    with pytest.raises(RunError) as info:
        driver.run(job, progress=False, writer="merge")
    message = str(info.value)
    assert info.value.exit_code == EXIT_RUN
    assert "Disk quota exceeded" in message and "quota" in message and "--resume" in message
    assert str(rank_file_path(job.output, 0)) in message
    done = count_status(job.output, job.grid)
    assert N_UNITS * 2 - done.get(0, 0) >= 2 * 2  # the units flushed before are kept
    assert not lock_path(job.output).exists()


# --------------------------------------------------------------------------- 3. damaged files
def _interrupted_with_rank_file(tmp_path, cfg):
    """A killed run's library and a rank file of it (as an interrupted merge run leaves)."""
    out = _killed(tmp_path, cfg)
    job = load_job(cfg)
    with RankFileWriter(
        rank_file_path(out, 1), job.grid, config_text=job.config.text, rank=1, flush_seconds=0
    ) as w:
        from fake_engine import FakeEngine

        engine = FakeEngine()
        engine.prepare(job)
        for theta in range(20, 26):
            w.write(engine.run_unit(job.grid.unit(theta)))
    return out


def test_a_truncated_rank_file_is_refused_with_what_to_do(tmp_path, reference):
    """Before: "internal error: RuntimeError: Can't decode global heap prefix" (exit 1)."""
    cfg = _config(tmp_path)
    out = _interrupted_with_rank_file(tmp_path, cfg)
    rank1 = rank_file_path(out, 1)
    os.truncate(rank1, 2000)
    proc = gen(0, str(cfg), "--resume", timeout=120)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"{rank1}: rank file is not readable" in line and "remove it" in line
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert rank1.exists()  # kept until the user decides
    rank1.unlink()
    proc = gen(0, str(cfg), "--resume", timeout=120)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert_same_library(reference, out)


@pytest.mark.parametrize("keep", [0.6, 0.95])
def test_a_rank_file_cut_short_is_refused_at_once(tmp_path, keep):
    """Before: HDF5's SWMR reader retried the missing metadata for minutes (a hang)."""
    cfg = _config(tmp_path)
    out = _interrupted_with_rank_file(tmp_path, cfg)
    rank1 = rank_file_path(out, 1)
    size = rank1.stat().st_size
    os.truncate(rank1, int(size * keep))
    proc = gen(0, str(cfg), "--resume", timeout=60)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"{rank1}: rank file is not readable (truncated: " in line and f"records {size}" in line
    assert "remove it" in line


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_rank_files_damaged_anywhere_never_end_in_an_internal_error(tmp_path, where):
    cfg = _config(tmp_path)
    out = _interrupted_with_rank_file(tmp_path, cfg)
    rank1 = rank_file_path(out, 1)
    data = bytearray(rank1.read_bytes())
    at = int(len(data) * where)
    data[at : at + 512] = b"\xa5" * 512
    rank1.write_bytes(bytes(data))
    proc = gen(0, str(cfg), "--resume", timeout=120)
    assert proc.returncode in (EXIT_OK, EXIT_INPUT), proc.stderr  # damaged rows are dropped
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    if proc.returncode == EXIT_INPUT:
        assert "rank file is not readable" in proc.stderr or str(rank1) in proc.stderr


@pytest.mark.parametrize("where", [0.2, 0.5, 0.8])
def test_a_damaged_library_is_refused_for_resume_without_an_internal_error(tmp_path, where):
    cfg = _config(tmp_path)
    out = _killed(tmp_path, cfg)
    data = bytearray(out.read_bytes())
    at = int(len(data) * where)
    data[at : at + 2048] = b"\x5a" * 2048
    out.write_bytes(bytes(data))
    proc = gen(0, str(cfg), "--resume", timeout=120)
    assert proc.returncode in (EXIT_OK, EXIT_INPUT), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- 4. flush interval
def test_a_flush_interval_above_the_cap_is_clamped_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("XRMOD_FLUSH_SECONDS", "3600")
    with caplog.at_level(logging.WARNING, logger="xrmod"):
        assert flush_seconds() == MAX_FLUSH_SECONDS == 60.0
    assert "XRMOD_FLUSH_SECONDS=3600 is more than 60 s: using 60 s" in caplog.text
    monkeypatch.setenv("XRMOD_FLUSH_SECONDS", "60")
    assert flush_seconds() == 60.0


# --------------------------------------------------------------------------- 5. changed inputs
def test_resume_with_a_changed_config_names_the_key(tmp_path):
    cfg = _config(tmp_path)
    _killed(tmp_path, cfg)
    cfg.write_text(cfg.read_text().replace("seed = 11", "seed = 12"))
    proc = gen(0, str(cfg), "--resume", timeout=120)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "key 'library.seed' differs: library has 11, config has 12" in line


# --------------------------------------------------------------------------- 6. output paths
def _bad_outputs(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    a_directory = tmp_path / "a-directory.h5"
    a_directory.mkdir()
    return {
        "/proc": ("/proc/x.h5", "no file can be created in directory /proc"),
        "missing": (str(tmp_path / "missing" / "x.h5"), "does not exist"),
        "file as directory": (str(a_file / "x.h5"), "is a file, not a directory"),
        "deeper": (str(a_file / "sub" / "x.h5"), "does not exist"),
        "a directory": (str(a_directory), "the output is a directory"),
    }


CASES = ["/proc", "missing", "file as directory", "deeper", "a directory"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("flags", [(), ("--overwrite",), ("--resume",)])
def test_an_output_where_no_file_can_be_made_exits_2_before_any_work(tmp_path, case, flags):
    """Before: /proc/x.h5 ended in "internal error: FileNotFoundError" (exit 1)."""
    out, words = _bad_outputs(tmp_path)[case]
    cfg = _config(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = gen(0, str(cfg), "-o", out, *flags, timeout=120, XRMOD_FAKE_MARKS=str(marks))
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert out in line and words in line, line
    assert "Traceback" not in proc.stderr
    assert not list(marks.iterdir())  # no engine was even prepared


@pytest.mark.parametrize("case", CASES)
def test_validate_and_check_refuse_such_an_output(tmp_path, case, capsys):
    out, words = _bad_outputs(tmp_path)[case]
    cfg = _config(tmp_path, out)
    assert xrmod_main(["validate", str(cfg)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert out in err and words in err
    proc = gen(0, str(cfg), "--check", timeout=120)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    assert words in proc.stderr


def test_check_output_path_accepts_a_writable_place_and_leaves_nothing(tmp_path):
    check_output_path(tmp_path / "lib.h5")
    (tmp_path / "lib.h5").write_text("an existing library is for --resume to judge")
    check_output_path(tmp_path / "lib.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.h5"]


def test_no_file_is_left_beside_a_finished_library(tmp_path, reference):
    cfg = _config(tmp_path)
    assert gen(0, str(cfg), timeout=120).returncode == EXIT_OK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml", "lib.h5"]
    assert not find_rank_files(tmp_path / "lib.h5")
    with h5py.File(tmp_path / "lib.h5", "r") as f:
        assert f.attrs["format"] == "xrmod-library"
