"""The shared counter handing out blocks of units (units per fetch > 1).

In-job tests (``-m mpi``) run under ``mpirun -n 2 pytest``; the launched test
runs ``xrmod-gen`` on 3 ranks itself (listed in .ci/run's MPI_LAUNCHED_TESTS).
"""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from fake_engine import assert_same_library
from mpirun_helpers import FAKE_CONFIG, gen, needs_mpirun

from xrmod.driver.counter import (
    RANKS_PER_COUNTER,
    UNITS_PER_FETCH_ENV,
    SharedCounter,
    units_per_fetch,
)
from xrmod.errors import InputError


@pytest.fixture(scope="module")
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def test_one_unit_per_fetch_up_to_the_counters_ranks(monkeypatch):
    monkeypatch.delenv(UNITS_PER_FETCH_ENV, raising=False)
    assert units_per_fetch(2) == 1
    assert units_per_fetch(RANKS_PER_COUNTER) == 1
    assert units_per_fetch(RANKS_PER_COUNTER + 1) == 2
    assert units_per_fetch(10_000) == 10_000 // RANKS_PER_COUNTER
    # a small job keeps at least 8 fetches a rank: blocks shrink, never below 1
    assert units_per_fetch(10_000, n_units=100_000) == 1
    assert units_per_fetch(1_000, n_units=1_000_000) == 1_000 // RANKS_PER_COUNTER
    monkeypatch.setenv(UNITS_PER_FETCH_ENV, "7")
    assert units_per_fetch(2) == 7
    monkeypatch.setenv(UNITS_PER_FETCH_ENV, "0")
    with pytest.raises(InputError, match=UNITS_PER_FETCH_ENV):
        units_per_fetch(2)


@pytest.mark.mpi
@pytest.mark.parametrize("block", [1, 5, 64])
def test_blocks_hand_out_every_position_once(comm, block):
    counter = SharedCounter(comm, block=block)
    n = 2000 + 3  # not a multiple of the block
    taken = []
    while (k := counter.take()) < n:
        taken.append(k)
        counter.add_done(1, 0)
    counter.leave()
    every = comm.allgather(taken)
    comm.Barrier()
    done = counter.read()
    counter.close()
    assert sorted(k for part in every for k in part) == list(range(n))
    assert done == (n, 0, comm.size)
    for part in every:  # a rank's positions come in runs of whole blocks
        starts = np.array(part)[np.flatnonzero(np.diff(part, prepend=-2) != 1)]
        assert (starts % block == 0).all()


@pytest.mark.mpi
def test_stop_all_drops_the_rest_of_the_block(comm):
    counter = SharedCounter(comm, block=10)
    first = counter.take()
    comm.Barrier()
    if comm.rank == 1:
        counter.stop_all(1000)
    comm.Barrier()
    if comm.rank == 1:
        assert counter.take() >= 1000  # not first + 1: the block is dropped
    else:
        assert counter.take() == first + 1  # its block was handed out before the stop
    counter.close()


@needs_mpirun
def test_three_ranks_with_blocks_compute_every_unit_once(tmp_path):
    cfg = tmp_path / "job.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    serial = gen(0, str(cfg), "-o", str(tmp_path / "serial.h5"), "--no-progress")
    assert serial.returncode == 0, serial.stderr
    out = tmp_path / "blocks.h5"
    run = gen(3, str(cfg), "-o", str(out), "--no-progress", **{UNITS_PER_FETCH_ENV: "4"})
    assert run.returncode == 0, run.stderr
    with h5py.File(out, "r") as f:
        size = f["LIBRARY/status"].size
        assert (f["LIBRARY/status"][()] != 0).all()
    # the points the ranks computed, summed over ranks: each unit once, none twice
    computed = re.search(r"(\d+) points in [\d.]+ s", run.stderr)
    assert computed and int(computed[1]) == size
    assert_same_library(tmp_path / "serial.h5", out)


def test_blocks_cover_the_engines_groups_where_every_rank_gets_four():
    assert units_per_fetch(2, n_units=2000, group=10) == 10
    ranks = 3 * RANKS_PER_COUNTER - 10  # 3 units a fetch, rounded up to a group of 4
    assert units_per_fetch(ranks, n_units=10**6, group=4) == 4
    assert units_per_fetch(2, n_units=50, group=10) == 1  # 5 blocks: too few for 2 ranks
    assert units_per_fetch(2, group=1) == 1
