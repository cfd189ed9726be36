"""Tests that run on several ranks: `mpirun -n 2 python -m pytest -m mpi tests`."""

import numpy as np
import pytest

from xrmod.errors import ConfigError
from xrmod.job import load_job

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def test_every_rank_builds_the_same_job(comm):
    job = load_job(None)
    text = comm.bcast(job.config.text, root=0)
    units = comm.bcast(job.grid.units(), root=0)
    assert job.config.text == text
    np.testing.assert_array_equal(job.grid.units(), units)
    assert job.provenance()["rmf_sha256"] == comm.bcast(job.provenance()["rmf_sha256"])


def test_bad_config_fails_identically_on_every_rank(comm, tmp_path_factory):
    # each rank writes its own copy: nothing is shared but the outcome
    path = tmp_path_factory.mktemp(f"rank{comm.rank}") / "bad.toml"
    path.write_text(
        "[library]\nsead = 1\n[source]\ntemperatures = [1.0]\n"
        "[modifier.axes]\nmu = 1.0\nsigma = 0.5\namp = 0.1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_job(path)
    messages = comm.allgather(str(info.value).replace(str(path), "<file>"))
    assert len(set(messages)) == 1
    assert "library.sead" in messages[0] and "did you mean 'seed'" in messages[0]
