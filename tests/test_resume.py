"""Interrupt a run (SIGTERM, SIGINT, SIGKILL of the whole job), resume it: identical library."""

import os
import re
import signal

import pytest
from fake_engine import assert_same_library
from mpirun_helpers import (
    WRITERS,
    descendants,
    fake_reference,
    fake_run,
    gen,
    needs_mpirun,
    rank_pids,
    start,
    units_done,
    wait_for,
)

from xrmod.library import count_status, pending_units
from xrmod.merge import find_rank_files

N_UNITS = 30


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted library, computed serially."""
    return fake_reference(tmp_path_factory)


def _interrupt(proc, marks, ranks, how, after=6):
    """Wait until *after* units are done, then interrupt the job."""
    pids = list(rank_pids(marks, ranks).values()) if ranks else [proc.pid]
    wait_for(lambda: units_done(marks) >= after, what="some units to finish")
    if how == "sigkill":  # the whole job at once, launcher included
        for pid in [*descendants(proc.pid), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    else:  # as a batch system does: every task gets the signal
        for pid in pids:
            os.kill(pid, how)
    _, stderr = proc.communicate(timeout=120)
    return stderr


def _resume_and_compare(cfg, out, ranks, writer, reference):
    assert count_status(out, _grid(cfg)).get(0, 0) > 0  # really interrupted mid-way
    args = (str(cfg), "--resume") + (("--writer", writer) if ranks else ())
    proc = gen(ranks, *args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_same_library(reference, out)
    assert not find_rank_files(out)
    return proc.stderr


def _grid(cfg):
    from xrmod.job import load_job

    return load_job(cfg).grid


@needs_mpirun
@pytest.mark.parametrize("writer", WRITERS)
def test_sigterm_flushes_and_resume_completes(tmp_path, reference, writer):
    cfg, out, marks = fake_run(tmp_path)
    proc = start(
        2, str(cfg), "--writer", writer, XRMOD_FAKE_MARKS=str(marks), XRMOD_FAKE_SLEEP="0.1"
    )
    stderr = _interrupt(proc, marks, 2, signal.SIGTERM)
    assert proc.returncode != 0
    assert "interrupted by SIGTERM" in stderr and "--resume" in stderr, stderr
    assert "mpirun -n 2 xrmod-gen" in stderr
    # every unit a rank finished is in the library (merged from the rank files)
    done = N_UNITS - pending_units(out, _grid(cfg)).size
    assert done == units_done(marks)
    assert not find_rank_files(out)
    _resume_and_compare(cfg, out, 2, writer, reference)


@needs_mpirun
@pytest.mark.parametrize("writer", WRITERS)
def test_sigkill_of_the_whole_job_then_resume(tmp_path, reference, writer):
    cfg, out, marks = fake_run(tmp_path)
    proc = start(
        2, str(cfg), "--writer", writer, XRMOD_FAKE_MARKS=str(marks), XRMOD_FAKE_SLEEP="0.1"
    )
    _interrupt(proc, marks, 2, "sigkill")
    assert proc.returncode != 0
    if writer == "merge":
        assert find_rank_files(out)  # nothing merged: the job was killed
    stderr = _resume_and_compare(cfg, out, 2, writer, reference)
    if writer == "merge":
        assert "from 2 rank file(s) of an interrupted run" in stderr


@needs_mpirun
@pytest.mark.parametrize(("flush_seconds", "lost_per_rank"), [("0", 1), ("0.3", 5)])
def test_sigkill_loses_at_most_the_units_of_the_flush_interval(
    tmp_path, reference, flush_seconds, lost_per_rank
):
    # A unit takes >= 0.1 s: within 0.3 s a rank buffers at most 3 finished units,
    # plus the one in flight; with 0 s only the unit in flight is lost.
    if "merge" not in WRITERS:
        pytest.skip("the merge writer is not available")
    cfg, out, marks = fake_run(tmp_path)
    proc = start(
        2,
        str(cfg),
        "--writer",
        "merge",
        XRMOD_FAKE_MARKS=str(marks),
        XRMOD_FAKE_SLEEP="0.1",
        XRMOD_FLUSH_SECONDS=flush_seconds,
    )
    _interrupt(proc, marks, 2, "sigkill", after=20)
    done = units_done(marks)
    assert done < N_UNITS, "the job finished before the kill"
    stderr = _resume_and_compare(cfg, out, 2, "merge", reference)
    merged = int(re.search(r"merged (\d+) unit\(s\) from 2 rank file\(s\)", stderr)[1])
    assert done - 2 * lost_per_rank <= merged <= done, (done, merged)


def test_serial_sigint_then_resume(tmp_path, reference):
    cfg, out, marks = fake_run(tmp_path)
    proc = start(0, str(cfg), XRMOD_FAKE_MARKS=str(marks), XRMOD_FAKE_SLEEP="0.1")
    stderr = _interrupt(proc, marks, 0, signal.SIGINT)
    assert proc.returncode == 130, stderr
    assert "interrupted by SIGINT" in stderr and "--resume" in stderr
    _resume_and_compare(cfg, out, 0, "auto", reference)


def test_serial_sigkill_then_resume(tmp_path, reference):
    cfg, out, marks = fake_run(tmp_path)
    proc = start(0, str(cfg), XRMOD_FAKE_MARKS=str(marks), XRMOD_FAKE_SLEEP="0.1")
    _interrupt(proc, marks, 0, "sigkill")
    assert proc.returncode == -signal.SIGKILL
    _resume_and_compare(cfg, out, 0, "auto", reference)


@needs_mpirun
def test_sigterm_to_the_launcher_then_resume_on_three_ranks(tmp_path, reference):
    # what the launcher does with the signal is its business: the library stays resumable
    cfg, out, marks = fake_run(tmp_path)
    proc = start(2, str(cfg), XRMOD_FAKE_MARKS=str(marks), XRMOD_FAKE_SLEEP="0.1")
    rank_pids(marks, 2)
    wait_for(lambda: units_done(marks) >= 6, what="some units to finish")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    _resume_and_compare(cfg, out, 3, "merge" if "mpio" not in WRITERS else "mpio", reference)
