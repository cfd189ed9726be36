"""The command line: bad input gives one message naming the problem and exit code 2."""

import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xrmod.responses import write_arf

BUNDLED_ARF = str(files("xrmod") / "data" / "pn.arf")
BUNDLED_RMF = str(files("xrmod") / "data" / "pn.rmf")

GOOD = """\
[library]
output = "{out}"
[instrument]
arf = "{arf}"
rmf = "{rmf}"
[source]
temperatures = [2.0, 4.0]
[modifier]
family = "gaussian"
[modifier.axes]
mu = [1.0, 2.0]
sigma = 0.5
amp = [-0.1, 0.1]
"""


def _exe(name):
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: is xrmod installed?"
    return path


def _run(*args, cwd=None):
    return subprocess.run(
        [_exe(args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _config(tmp_path, text=None, **subs):
    values = {"out": str(tmp_path / "lib.h5"), "arf": BUNDLED_ARF, "rmf": BUNDLED_RMF}
    values.update(subs)
    path = tmp_path / "config.toml"
    path.write_text((text or GOOD).format(**values))
    return path


def _assert_input_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], proc.stderr


def test_check_accepts_a_good_config(tmp_path):
    cfg = _config(tmp_path)
    proc = _run("xrmod-gen", str(cfg), "--check")
    assert proc.returncode == 0, proc.stderr
    assert "8 points" in proc.stderr
    assert not (tmp_path / "lib.h5").exists()


def test_unknown_key(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("[library]\n", "[library]\nsead = 3\n"))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(cfg), "library.sead", "seed")


def test_wrong_type(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("[instrument]\n", '[instrument]\nexposure = "fifty"\n'))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(cfg), "instrument.exposure", "fifty")


def test_empty_axis(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("mu = [1.0, 2.0]", "mu = []"))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(cfg), "mu")


def test_missing_fits_file(tmp_path):
    missing = tmp_path / "nope.arf"
    cfg = _config(tmp_path, arf=str(missing))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(missing))


def test_corrupt_fits_file(tmp_path):
    broken = tmp_path / "broken.rmf"
    broken.write_bytes(Path(BUNDLED_RMF).read_bytes()[:20000])  # truncated
    cfg = _config(tmp_path, rmf=str(broken))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(broken))


def test_mismatched_arf_and_rmf(tmp_path):
    with fits.open(BUNDLED_ARF) as hdul:
        data = hdul["SPECRESP"].data
        columns = ("ENERG_LO", "ENERG_HI", "SPECRESP")
        lo, hi, area = (np.array(data[c], dtype=np.float64) for c in columns)
    other = tmp_path / "short.arf"
    write_arf(other, lo[:-5], hi[:-5], area[:-5])
    cfg = _config(tmp_path, arf=str(other))
    _assert_input_error(_run("xrmod-gen", str(cfg)), str(other), BUNDLED_RMF)


def test_missing_config_file(tmp_path):
    _assert_input_error(_run("xrmod-gen", str(tmp_path / "absent.toml")), "absent.toml")


def test_debug_shows_the_traceback(tmp_path):
    cfg = _config(tmp_path, GOOD.replace("[library]\n", "[library]\nsead = 3\n"))
    proc = _run("xrmod-gen", str(cfg), "--debug")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_init_writes_a_template_that_validates(tmp_path):
    target = tmp_path / "mine.toml"
    proc = _run("xrmod", "init", str(target))
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    assert text.count("#") > 20  # commented
    proc = _run("xrmod", "validate", str(target))
    assert proc.returncode == 0, proc.stderr
    assert "modifier:" in proc.stdout
    again = _run("xrmod", "init", str(target))
    assert again.returncode == 2 and "exists" in again.stderr
    assert target.read_text() == text


@pytest.mark.parametrize("command", [("xrmod-gen", "--version"), ("xrmod", "--version")])
def test_version(command):
    proc = _run(*command)
    assert proc.returncode == 0 and proc.stdout.strip()
