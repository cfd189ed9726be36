"""The driver inside an MPI job: `mpirun -n 2 python -m pytest -m mpi tests`.

Each test runs on every rank at once; a shared directory comes from rank 0.
"""

import logging
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from fake_engine import assert_same_library, read_library, use_fake_engine
from mpirun_helpers import FAKE_CONFIG, WRITERS

from xrmod import driver
from xrmod.driver.comm import Serial, agree, on_root
from xrmod.driver.counter import SharedCounter
from xrmod.errors import RunError
from xrmod.job import load_job
from xrmod.merge import find_rank_files, rank_log_path
from xrmod.status import Status

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture
def shared(comm):
    path = comm.bcast(tempfile.mkdtemp(prefix="xrmod-mpi-") if comm.rank == 0 else None)
    yield Path(path)
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake(monkeypatch):
    from xrmod.engines import ENGINES

    monkeypatch.setitem(ENGINES, "native", ENGINES["native"])
    use_fake_engine()
    return monkeypatch


def _job(comm, shared, name="lib.h5"):
    cfg = shared / f"{name}.toml"
    if comm.rank == 0:
        cfg.write_text(FAKE_CONFIG.format(out=shared / name))
    comm.Barrier()
    return load_job(cfg)


def _serial_reference(comm, shared):
    job = _job(comm, shared, "ref.h5")
    if comm.rank == 0:
        assert driver.run(job, progress=False, comm=Serial()) == 0
    comm.Barrier()
    return job.output


@pytest.mark.parametrize("writer", ["auto", *WRITERS])
def test_two_ranks_write_what_one_process_writes(comm, shared, fake, writer):
    ref = _serial_reference(comm, shared)
    job = _job(comm, shared)
    assert driver.run(job, writer=writer, progress=False, comm=comm) == 0
    comm.Barrier()
    if comm.rank == 0:
        assert_same_library(ref, job.output)
        with h5py.File(job.output) as f:
            assert f.attrs["n_ranks"] == comm.size
            assert "end_time" in f.attrs
        assert not find_rank_files(job.output)


def test_unit_exceptions_stay_in_their_unit(comm, shared, fake):
    fake.setenv("XRMOD_FAKE_RAISE", "1,2,17")
    job = _job(comm, shared)
    assert driver.run(job, progress=False, comm=comm) == 0
    comm.Barrier()
    if comm.rank == 0:
        status = read_library(job.output)["status"].reshape(30, -1)
        assert (status[[1, 2, 17]] == Status.ERROR).all()
        assert (status[[0, 3, 16, 18]] != Status.ERROR).all()
        assert (status != 0).all()
        logs = [rank_log_path(job.output, r) for r in range(comm.size)]
        text = "".join(p.read_text() for p in logs if p.exists())
        assert text.count("RuntimeError: injected failure") == 3


def test_setup_error_on_one_rank_is_raised_on_every_rank(comm, shared, fake):
    fake.setenv("XRMOD_FAKE_PREPARE_FAIL", "1")
    job = _job(comm, shared)
    with pytest.raises(RunError) as info:
        driver.run(job, progress=False, comm=comm)
    messages = comm.allgather(str(info.value))
    assert len(set(messages)) == 1
    assert messages[0].startswith("rank 1 (") and "cannot start on rank 1" in messages[0]


def test_fatal_write_on_one_rank_stops_every_rank(comm, shared, fake):
    fake.setenv("XRMOD_FAKE_BREAK_WRITER", "4")
    fake.setenv("XRMOD_FAKE_SLEEP", "0.01")
    job = _job(comm, shared)
    with pytest.raises(RunError) as info:
        driver.run(job, progress=False, comm=comm)
    assert info.value.exit_code == 4
    assert len(set(comm.allgather(str(info.value)))) == 1
    comm.Barrier()
    if comm.rank == 0:  # the finished units are kept, the rest not computed
        status = read_library(job.output)["status"].reshape(30, -1)
        assert (status[:4] != 0).all() and (status == 0).any()


def test_shared_counter_hands_out_each_unit_once(comm):
    counter = SharedCounter(comm)
    n = 3000
    taken = []
    while (k := counter.take()) < n:
        taken.append(k)
        counter.add_done(2, k % 2)
    counter.leave()
    every = comm.allgather(taken)
    comm.Barrier()
    done = counter.read()
    counter.close()
    assert sorted(k for part in every for k in part) == list(range(n))
    assert all(part for part in every)  # every rank got work
    assert done == (2 * n, n // 2, comm.size)


def test_stop_all_stops_every_rank(comm):
    counter = SharedCounter(comm)
    if comm.rank == 1:
        counter.stop_all(10)
    comm.Barrier()
    assert counter.take() >= 10
    counter.close()


def test_agree_raises_the_same_error_everywhere(comm):
    def fail_on_rank_1():
        if comm.rank == 1:
            raise ValueError("boom")
        return comm.rank

    with pytest.raises(RunError, match=r"^rank 1 \(.*\): internal error: ValueError: boom"):
        agree(comm, fail_on_rank_1)
    assert agree(comm, lambda: comm.rank) == comm.rank
    assert np.all(on_root(comm, lambda: np.arange(3)) == np.arange(3))


class _RaisingHandler(logging.Handler):
    """What logging.FileHandler(delay=True) does when its file cannot be opened: raise."""

    def emit(self, record):
        raise PermissionError("the log file cannot be opened")


def test_agree_is_reached_by_every_rank_even_when_logging_raises(comm):
    logger = logging.getLogger("xrmod")
    handler = _RaisingHandler(level=logging.ERROR)
    logger.addHandler(handler)

    def fail_on_rank_1():
        if comm.rank == 1:
            raise ValueError("boom")  # agree logs it: the handler raises on rank 1
        return comm.rank

    try:
        with pytest.raises(RunError, match=r"^rank 1 \(.*\): internal error: ValueError: boom"):
            agree(comm, fail_on_rank_1)
    finally:
        logger.removeHandler(handler)
    assert comm.allgather(comm.rank) == list(range(comm.size))  # every rank still in step
