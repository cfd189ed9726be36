"""The use side on a library written by ``mpirun -n 2 xrmod-gen``: emulate, infer, plot.

Launched from a serial pytest (CI runs this file in both MPI environments,
with each writer its h5py has). The two-rank library must give the same
emulator as a one-process run of the same config, and every command of the
use side must work on it.
"""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from library_helpers import build, config_text, observe_at, write_csv
from mpirun_helpers import WRITERS, gen, needs_mpirun

pytest.importorskip("emcee")
pytest.importorskip("matplotlib")

from xrmod.analysis.emulator import Emulator

AXES = "mu = [1.0, 2.0, 3.0, 4.0, 5.0]\nsigma = [0.3, 0.7]\namp = [-0.2, -0.1, 0.0, 0.1]\n"
TEMPS = '{ start = 1.5, stop = 9.0, num = 6, spacing = "log" }'


def _xrmod(*args):
    return subprocess.run(
        [sys.executable, "-m", "xrmod.cli", *args], capture_output=True, text=True, timeout=600
    )


@needs_mpirun
@pytest.mark.parametrize("writer", WRITERS)
def test_emulate_infer_plot_on_a_two_rank_library(tmp_path, writer):
    out = tmp_path / "mpi.h5"
    cfg = tmp_path / "mpi.toml"
    cfg.write_text(config_text(out, axes=AXES, temperatures=TEMPS))
    run = gen(2, str(cfg), "--writer", writer, fake=False)
    assert run.returncode == 0, run.stderr
    with h5py.File(out, "r") as f:
        assert int(f.attrs["n_ranks"]) == 2 and f.attrs["writer"] == writer
        assert (f["LIBRARY/status"][()] != 0).all()

    serial = build(tmp_path, "serial", axes=AXES, temperatures=TEMPS)
    q = {"kT_true": [1.7, 3.3, 8.1], "mu": 2.6, "sigma": 0.41, "amp": -0.07}
    a = Emulator.from_library(out).predict(**q)
    b = Emulator.from_library(serial).predict(**q)
    np.testing.assert_array_equal(a.T1, b.T1)
    np.testing.assert_array_equal(a.T1_error, b.T1_error)

    emulate = _xrmod("emulate", str(out))
    assert emulate.returncode == 0, emulate.stderr
    assert "leave-one-slice-out" in emulate.stdout

    rows = observe_at(tmp_path, "obs", {"mu": 2.6, "sigma": 0.41, "amp": -0.15},
                      [1.7, 2.2, 3.0, 4.1, 5.5, 7.5], exposures=(50000.0, 100000.0))  # fmt: skip
    csv = write_csv(tmp_path / "obs.csv", rows)
    png = tmp_path / "posterior.png"
    infer = _xrmod("infer", str(out), str(csv), "--json", "--steps", "800",
                   "--live-points", "100", "--plot", str(png))  # fmt: skip
    assert infer.returncode == 0, infer.stderr
    result = json.loads(infer.stdout)
    assert result["ranking"][0]["library"] == str(out)
    assert result["ranking"][0]["family"] == "gaussian"
    amp = result["parameters"]["amp"]
    assert amp["ci95"][0] <= -0.15 <= amp["ci95"][1]
    assert png.stat().st_size > 20000

    plot = _xrmod("plot", str(out), "-o", str(tmp_path / "map.png"))
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "map.png").stat().st_size > 20000
