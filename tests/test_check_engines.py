"""``xrmod check-engines``: agreement, disagreement, an unavailable engine, bad input.

The comparison runs for real here with ``--engines native,reference`` (the
reference engine is the NumPy oracle the native engine is built to match).
PyXSPEC's absence is made certain with a module ``xspec`` on PYTHONPATH that
fails to import, so the "unavailable" path is tested even inside the container.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from xrmod.check import EngineRun, _deviation, check_engines, choose_points
from xrmod.cli import EXIT_DISAGREE, EXIT_ENGINE, EXIT_INPUT, EXIT_OK, main
from xrmod.engines.xspec import MISSING_PYXSPEC
from xrmod.grid import Grid
from xrmod.status import Status

CONFIG = """
[library]
seed = 7
noise = "poisson"
[instrument]
exposure = 20000.0
[source]
temperatures = [2.0, 5.0]
[modifier]
family = "linear"
[modifier.axes]
slope = [-0.5, 0.01, 0.03]
pivot = [3.0]
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "check.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def no_pyxspec(tmp_path_factory):
    """A directory whose ``xspec`` module fails to import like a missing PyXSPEC."""
    shim = tmp_path_factory.mktemp("no-pyxspec")
    (shim / "xspec.py").write_text("raise ImportError('No module named xspec (test shim)')\n")
    return shim


def xrmod(*args, pythonpath=None):
    exe = shutil.which("xrmod")
    assert exe, "xrmod is not on PATH: is xrmod installed?"
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )


def test_native_and_reference_agree(config):
    proc = xrmod("check-engines", str(config), "--engines", "native,reference", "--points", "3")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    out = proc.stdout
    assert '"asimov"' in out  # the forced noise is said
    assert "native: kT" in out and "reference: kT" in out
    assert "ARF_NEGATIVE" in out  # θ slope = -0.5 fails in both, alike
    assert "result: all 3 points agree within 0.5 sigma" in out
    assert "Traceback" not in proc.stderr


JUMP_CONFIG = """
[library]
noise = "asimov"
[source]
temperatures = [10.0]
[modifier]
family = "gaussian"
[modifier.axes]
mu = 1.0
sigma = 0.3
amp = -0.3
"""


def test_native_and_reference_agree_at_the_zbremss_jump(tmp_path):
    """The user's report: T1 has its global minimum at the 13.58 keV jump (both engines now
    say so, MODEL_JUMP, with the same hull of the two islands), T1′ is an ordinary fit."""
    path = tmp_path / "jump.toml"
    path.write_text(JUMP_CONFIG)
    report = check_engines(path, engines="native,reference", points=1)
    assert report.outcome == "agree", report.format()
    for name in ("native", "reference"):
        run = report.runs[name]
        assert run.status[0] == Status.MODEL_JUMP and run.status_modified[0] == Status.OK
        lo, fit, hi = run.results[0]
        assert fit == pytest.approx(13.58, abs=1e-4)
        assert lo == pytest.approx(13.509, abs=2e-3) and hi == pytest.approx(15.24, abs=2e-3)
    assert "MODEL_JUMP" in report.format()


def test_a_disagreement_exits_5(config):
    proc = xrmod(
        "check-engines",
        str(config),
        "--engines",
        "native,reference",
        "--points",
        "2",
        "--tolerance",
        "1e-12",
    )
    assert proc.returncode == EXIT_DISAGREE == 5, proc.stdout + proc.stderr
    assert "DIFFER" in proc.stdout
    assert "result: reference DISAGREES with native at 1 of 2 points" in proc.stdout


def test_missing_pyxspec_exits_3_after_running_native(config, no_pyxspec):
    proc = xrmod("check-engines", str(config), "--points", "2", pythonpath=no_pyxspec)
    assert proc.returncode == EXIT_ENGINE == 3, proc.stdout + proc.stderr
    out = proc.stdout
    assert "native: kT" in out
    assert re.search(r"T1'  \d+\.\d{4} -\d+\.\d{4} \+\d+\.\d{4}", out)  # native's values shown
    assert f"xspec: UNAVAILABLE here, not compared: {MISSING_PYXSPEC}" in out
    assert "result: NOT CHECKED: xspec could not run here (ran: native)" in out
    assert "agree" not in out.splitlines()[-1]


def test_disagreement_wins_over_an_unavailable_engine(config, no_pyxspec):
    proc = xrmod(
        "check-engines",
        str(config),
        "--engines",
        "native,xspec,reference",
        "--points",
        "2",
        "--tolerance",
        "1e-12",
        pythonpath=no_pyxspec,
    )
    assert proc.returncode == EXIT_DISAGREE, proc.stdout + proc.stderr
    assert "xspec: UNAVAILABLE" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--engines", "native,bogus"], "unknown engine(s) 'bogus'"),
        (["--engines", "native"], "two or more different engines"),
        (["--engines", "native,native"], "two or more different engines"),
        (["--points", "0"], "--points must be an integer >= 1"),
        (["--tolerance", "-1"], "--tolerance must be a number > 0"),
    ],
)
def test_bad_arguments_exit_2(config, capsys, args, fragment):
    assert main(["check-engines", str(config), *args]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "xrmod check-engines: error:" in err and fragment in err


def test_bad_config_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace("[library]\n", "[library]\nsead = 1\n"))
    assert main(["check-engines", str(path), "--engines", "native,reference"]) == EXIT_INPUT
    assert "library.sead" in capsys.readouterr().err


def test_report_api(config):
    report = check_engines(config, engines="native,reference", points=2)
    assert report.outcome == "agree" and report.flats == [0, 5]
    assert report.temperatures == [2.0, 5.0]
    assert report.thetas[1] == {"slope": 0.03, "pivot": 3.0}
    dev = report.deviation["reference"]
    assert dev.shape == (2, 2) and (dev <= 0.05).all()  # the fast path tracks the oracle


# --------------------------------------------------------------------------- parts


def test_choose_points_spreads_over_theta_and_temperature():
    axes = [("a", np.arange(20.0)), ("b", [1.0, 2.0, 3.0])]
    grid = Grid(axes=axes, temperatures=np.arange(1, 11))
    flats = choose_points(grid, 5)
    assert flats == choose_points(grid, 5) and len(set(flats)) == 5
    theta = grid.theta_index(flats)
    temp = grid.temperature_index(flats)
    assert theta.min() == 0 and theta.max() == grid.n_theta - 1
    assert temp.min() == 0 and temp.max() == 9 and len(set(temp.tolist())) == 5


def test_choose_points_fills_a_small_grid():
    grid = Grid(axes=[("a", [1.0, 2.0])], temperatures=[1.0, 2.0])
    assert choose_points(grid, 3) == [0, 2, 3]  # diagonal 0 and 3, then evenly spread
    assert choose_points(grid, 10) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="--points"):
        choose_points(grid, 0)


def _run(name, fits, codes):
    """An EngineRun from (T1, T1′) results and (T1, T1′) status codes per point."""
    r = np.array([f[0] for f in fits], dtype=float)
    rm = np.array([f[1] for f in fits], dtype=float)
    status = np.array([c[0] for c in codes], dtype=np.int8)
    return EngineRun(name, None, r, rm, status, np.array([c[1] for c in codes], dtype=np.int8))


def test_deviation_in_sigma_units():
    ok, bound = int(Status.OK), int(Status.BOUND_AT_LIMIT)
    nan3 = [math.nan] * 3
    a = _run(
        "a",
        [
            ([4.0, 5.0, 6.0], [4.0, 5.0, 6.0]),
            ([4.0, 5.0, 6.0], [4.0, 5.0, 6.0]),
            (nan3, nan3),
            ([math.nan, 0.1, 0.5], [4.0, 5.0, 6.0]),
        ],
        [(ok, ok), (ok, ok), (int(Status.ARF_NEGATIVE),) * 2, (bound, ok)],
    )
    b = _run(
        "b",
        [
            ([4.0, 5.5, 6.0], [4.0, 5.0, 6.0]),
            ([4.0, 5.0, 6.0], [4.0, 5.0, 6.0]),
            (nan3, nan3),
            ([0.05, 0.1, 0.5], [4.0, 5.0, 6.0]),  # a bound where a has none
        ],
        [(ok, ok), (int(Status.FIT_FAILED), ok), (int(Status.ARF_NEGATIVE),) * 2, (bound, ok)],
    )
    dev = _deviation(a, b, delta=4.0)  # σ = half-width / 2 = 0.5
    np.testing.assert_allclose(dev[0], [1.0, 0.0])
    # T1's statuses differ, T1′'s agree: compared per fit
    assert np.isinf(dev[1, 0]) and dev[1, 1] == 0.0
    np.testing.assert_array_equal(dev[2], [0.0, 0.0])  # failed alike
    assert np.isinf(dev[3, 0]) and dev[3, 1] == 0.0
    # a T1′ status that differs while T1's agree is caught on T1′ alone
    c = _run("c", [f for f in [([4.0, 5.0, 6.0], [4.0, 5.0, 6.0])]], [(ok, bound)])
    d = _run("d", [f for f in [([4.0, 5.0, 6.0], [4.0, 5.0, 6.0])]], [(ok, ok)])
    dev = _deviation(c, d, delta=4.0)
    assert dev[0, 0] == 0.0 and np.isinf(dev[0, 1])
