"""The fault campaign's cases that fit in CI (bench/faults.py runs them all): launched under mpirun.

Not repeated here: SIGTERM/SIGINT and SIGKILL of the whole job
(tests/test_resume.py), a rank that kills itself (tests/test_driver.py),
locks, full disks and changed inputs (tests/test_faults.py). Every launched
job has a timeout: a hang fails the test.
"""

import json
import os
import signal
import time

import h5py
import pytest
from fake_engine import assert_same_library
from mpirun_helpers import (
    WRITERS,
    error_lines,
    fake_reference,
    fake_run,
    gen,
    needs_mpirun,
    rank_pids,
    start,
    units_done,
    wait_for,
)
from test_integrity import flip_byte

from xrmod.cli import main as xrmod_main
from xrmod.errors import EXIT_INPUT
from xrmod.integrity import ROOT_ATTR
from xrmod.library import pending_units
from xrmod.merge import find_rank_files, rank_file_path

pytestmark = needs_mpirun

N_UNITS = 30
TIMEOUT = 120


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted library, computed serially."""
    return fake_reference(tmp_path_factory, timeout=TIMEOUT)


def _grid(cfg):
    from xrmod.job import load_job

    return load_job(cfg).grid


def _finish(proc):
    try:
        _, stderr = proc.communicate(timeout=TIMEOUT)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this test started
        proc.communicate()
        raise AssertionError("the job hung") from None
    return stderr


def test_sigkill_of_rank_0_the_counters_host_ends_the_job_and_resume_completes(tmp_path, reference):
    # rank 0 holds the shared counter and merges: the others must not wait for it forever
    cfg, out, marks = fake_run(tmp_path)
    proc = start(3, str(cfg), XRMOD_FAKE_MARKS=str(marks), XRMOD_FAKE_SLEEP="0.1")
    pids = rank_pids(marks, 3)
    wait_for(lambda: units_done(marks) >= 6, what="some units to finish")
    os.kill(pids[0], signal.SIGKILL)
    _finish(proc)
    assert proc.returncode != 0
    assert pending_units(out, _grid(cfg)).size > 0  # really interrupted
    resumed = gen(3, str(cfg), "--resume", timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_library(reference, out)
    assert not find_rank_files(out)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_rank_stopped_longer_than_a_flush_interval_delays_nothing_else(
    tmp_path, reference, writer
):
    cfg, out, marks = fake_run(tmp_path)
    proc = start(
        2,
        str(cfg),
        "--writer",
        writer,
        XRMOD_FAKE_MARKS=str(marks),
        XRMOD_FAKE_SLEEP="0.1",
        XRMOD_FLUSH_SECONDS="0.3",
    )
    pids = rank_pids(marks, 2)
    wait_for(lambda: units_done(marks) >= 4, what="some units to finish")
    os.kill(pids[1], signal.SIGSTOP)
    try:
        before = units_done(marks)
        time.sleep(1.5)  # five flush intervals
        during = units_done(marks)
    finally:
        os.kill(pids[1], signal.SIGCONT)
    stderr = _finish(proc)
    assert proc.returncode == 0, stderr
    assert during > before  # rank 0 went on taking units while rank 1 was stopped
    assert_same_library(reference, out)


def _killed_merge_run(cfg, marks, after=15):
    """A merge run on 2 ranks killed outright (launcher and ranks) once units are flushed."""
    proc = start(
        2,
        str(cfg),
        "--writer",
        "merge",
        XRMOD_FAKE_MARKS=str(marks),
        XRMOD_FAKE_SLEEP="0.05",
        XRMOD_FLUSH_SECONDS="0",
    )
    pids = rank_pids(marks, 2)
    wait_for(lambda: units_done(marks) >= after, what="some units to finish")
    for pid in [*pids.values(), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _finish(proc)


@pytest.mark.skipif("merge" not in WRITERS, reason="no merge writer")
def test_a_rank_file_cut_short_is_refused_then_resume_completes_without_it(tmp_path, reference):
    # as a copy interrupted, or a node's local disk filling, leaves it: the first 60 %
    cfg, out, marks = fake_run(tmp_path)
    _killed_merge_run(cfg, marks)
    rank0 = rank_file_path(out, 0)
    assert rank0.exists()
    os.truncate(rank0, int(rank0.stat().st_size * 0.6))
    start_time = time.monotonic()
    proc = gen(2, str(cfg), "--resume", timeout=30)  # a few seconds when it works
    assert time.monotonic() - start_time < 30
    if proc.returncode == 0:  # merged what it could read: the rest was computed again
        assert_same_library(reference, out)
        return
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert str(rank0) in line and "remove it" in line
    rank0.unlink()
    proc = gen(2, str(cfg), "--resume", timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert_same_library(reference, out)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_corrupted_library_is_refused_by_resume_on_every_rank(
    tmp_path, reference, writer, capsys
):
    cfg, out, _ = fake_run(tmp_path)
    proc = gen(2, str(cfg), "--writer", writer, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(reference) as a, h5py.File(out) as b:  # checksums of the values alone
        assert a.attrs[ROOT_ATTR] == b.attrs[ROOT_ATTR]
        for name in json.loads(a.attrs[ROOT_ATTR])["datasets"]:
            assert a[name].attrs["crc32"].tobytes() == b[name].attrs["crc32"].tobytes()
    flip_byte(out, "LIBRARY/results_modified", (3, 1, 1, 0, 2))
    assert xrmod_main(["info", "--verify", str(out)]) == EXIT_INPUT
    assert "results_modified block 0" in capsys.readouterr().err
    proc = gen(2, str(cfg), "--resume", "--writer", writer, timeout=TIMEOUT)
    assert proc.returncode == EXIT_INPUT, proc.stderr
    (line,) = error_lines(proc.stderr)  # one message, though every rank exits
    assert "cannot resume, the library is damaged: dataset LIBRARY/results_modified" in line
    assert "checksum mismatch" in line and "--overwrite" in line
