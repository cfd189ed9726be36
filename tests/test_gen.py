"""End to end: `xrmod-gen CONFIG` writes a complete library."""

import shutil
import subprocess

import h5py
import numpy as np
import pytest

from xrmod.status import Status

CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
[source]
temperatures = [2.0, 5.0]
[modifier]
family = "{family}"
[modifier.axes]
{axes}
"""


def _gen(tmp_path, family, axes, *extra):
    out = tmp_path / "lib.h5"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG.format(out=out, family=family, axes=axes))
    exe = shutil.which("xrmod-gen")
    assert exe, "xrmod-gen is not on PATH: is xrmod installed?"
    proc = subprocess.run(
        [exe, str(cfg), "--no-progress", *extra], capture_output=True, text=True, timeout=600
    )
    return proc, out


@pytest.fixture(scope="module")
def gaussian_library(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    proc, out = _gen(tmp, "gaussian", "amp = [0.0, 0.2]\nmu = 1.5\nsigma = 0.5")
    assert proc.returncode == 0, proc.stderr
    return out


def test_library_is_complete_and_labelled(gaussian_library):
    with h5py.File(gaussian_library, "r") as f:
        assert list(f["PARAMS"].attrs["axes"]) == ["amp", "mu", "sigma"]
        status = f["LIBRARY/status"][()]
        assert status.shape == (2, 1, 1, 2)
        assert (status == Status.OK).all()
        for key in ("config", "engine", "model", "seed", "arf_sha256", "rmf_sha256", "end_time"):
            assert key in f.attrs, key
        assert "amp = [0.0, 0.2]" in f.attrs["config"]
        assert np.isfinite(f["LIBRARY/results"][()]).all()


def test_asimov_fit_with_the_true_arf_recovers_the_temperature(gaussian_library):
    with h5py.File(gaussian_library, "r") as f:
        temps = f["LIBRARY/temps"][()]
        t1 = f["LIBRARY/results"][()]
        t1m = f["LIBRARY/results_modified"][()]
    # amp = 0: both ARFs are the nominal one, both fits are the same fit
    np.testing.assert_array_equal(t1[0], t1m[0])
    # noiseless data fitted with the ARF that made them: kT = T
    np.testing.assert_allclose(t1[0, 0, 0, :, 1], temps, rtol=1e-4)
    np.testing.assert_allclose(t1m[1, 0, 0, :, 1], temps, rtol=1e-4)
    # a 20 % bump at 1.5 keV fitted with the nominal ARF: a biased temperature
    assert (np.abs(t1[1, 0, 0, :, 1] / temps - 1) > 0.01).all()
    lo, fit, hi = np.moveaxis(t1, -1, 0)
    assert (lo < fit).all() and (fit < hi).all()


def test_negative_arf_is_a_status_not_a_clip(tmp_path):
    # 1 + slope (E - pivot) < 0 above ~3 keV for slope = -0.5, pivot = 1
    proc, out = _gen(tmp_path, "linear", "slope = [0.0, -0.5]\npivot = 1.0")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["PARAMS/slope"][()], [-0.5, 0.0])  # stored sorted
        status = f["LIBRARY/status"][()]
        results = f["LIBRARY/results_modified"][()]
    assert (status[1] == Status.OK).all()
    assert (status[0] == Status.ARF_NEGATIVE).all()
    assert np.isnan(results[0]).all()
    assert "status -1" in proc.stderr


def test_existing_library_is_kept(tmp_path):
    out = tmp_path / "lib.h5"
    out.write_bytes(b"precious")
    proc, _ = _gen(tmp_path, "gaussian", "amp = 0.0\nmu = 1.5\nsigma = 0.5")
    assert proc.returncode == 2
    assert "exists" in proc.stderr and "--overwrite" in proc.stderr
    assert out.read_bytes() == b"precious"


def test_unwritable_output_directory(tmp_path):
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "missing" / "lib.h5"
    axes = "amp = 0.0\nmu = 1.5\nsigma = 0.5"
    cfg.write_text(CONFIG.format(out=out, family="gaussian", axes=axes))
    proc = subprocess.run(
        [shutil.which("xrmod-gen"), str(cfg)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
