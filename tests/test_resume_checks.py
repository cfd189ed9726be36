"""What ``--resume`` compares: the parsed configuration (not its text) and the responses."""

import hashlib
import shutil
from importlib.resources import files

import h5py
import numpy as np
import pytest
from astropy.io import fits
from fake_engine import assert_same_library, fake_engine_in_test
from mpirun_helpers import error_lines, gen

from xrmod import driver
from xrmod.errors import InputError, RunError
from xrmod.job import load_job
from xrmod.merge import find_rank_files

BUNDLED = files("xrmod") / "data"

CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
seed = 7
[instrument]
arf = "{arf}"
rmf = "{rmf}"
[source]
temperatures = [2.0, 5.0, 7.0]
[modifier]
family = "gaussian"
[modifier.axes]
amp = [0.0, 0.1, 0.2, 0.3]
mu = [1.5, 2.5]
sigma = [0.5, 1.0]
"""

#: The same job: comments, keys in another order, defaults written out, a list as a range.
SAME = """\
# the same job, written differently
[source]
temperatures = [2.0, 5.0, 7.0]   # keV
model = "TBabs * zbremss"
[instrument]
rmf = "{rmf}"
arf = "{arf}"
band = [0.5, 10]
[library]
seed = 7
noise = "asimov"
output = "{out}"
engine = "native"
[fit]
kt_limits = [0.05, 64]
[modifier.axes]
amp = [0.0, 0.1, 0.2, 0.3]
mu = [1.5, 2.5]
sigma = { start = 0.5, stop = 1.0, num = 2 }
"""

#: Root attributes that may differ between a resumed and a fresh library.
RUN_ATTRS = {"start_time", "end_time", "resumed", "resume_time"}


@pytest.fixture
def fake(monkeypatch):
    fake_engine_in_test(monkeypatch)
    return monkeypatch


@pytest.fixture
def responses(tmp_path):
    """Copies of the bundled ARF and RMF, next to the configs."""
    for name in ("pn.arf", "pn.rmf"):
        shutil.copyfile(BUNDLED / name, tmp_path / name)
    return tmp_path / "pn.arf", tmp_path / "pn.rmf"


def _text(text, directory, out="lib.h5", arf="pn.arf", rmf="pn.rmf"):
    for key, value in (("out", directory / out), ("arf", arf), ("rmf", rmf)):
        text = text.replace(f"{{{key}}}", str(value))
    return text


def _config(directory, name, text=CONFIG, **values):
    path = directory / name
    path.write_text(_text(text, directory, **values))
    return path


def _interrupted(fake, cfg, at=5):
    """A library of *cfg* whose units from θ *at* on are not computed."""
    job = load_job(cfg)
    fake.setenv("XRMOD_FAKE_BREAK_WRITER", str(at))
    with pytest.raises(RunError):
        driver.run(job, progress=False)
    fake.delenv("XRMOD_FAKE_BREAK_WRITER")
    return job


def _root_attrs(path):
    with h5py.File(path, "r") as f:
        return {k: f.attrs[k] for k in f.attrs if k not in RUN_ATTRS}


def _assert_same_as_fresh(resumed, fresh):
    """The same datasets, bit for bit, and the same root attributes but for the run times."""
    assert_same_library(fresh, resumed)
    a, b = _root_attrs(fresh), _root_attrs(resumed)
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the configuration


def test_comments_key_order_and_defaults_do_not_block_a_resume(fake, tmp_path, responses):
    first = _config(tmp_path, "first.toml")
    again = _config(tmp_path, "again.toml", SAME)
    fresh = load_job(_config(tmp_path, "fresh.toml", SAME, out="fresh.h5"))
    assert driver.run(fresh, progress=False) == 0
    _interrupted(fake, first)
    job = load_job(again)
    assert job.config.text != load_job(first).config.text
    assert driver.run(job, progress=False, resume=True) == 0
    # the library is the one a fresh run of the new text makes (but where it is written)
    with h5py.File(job.output, "r+") as f:
        f.attrs["config"] = f.attrs["config"].replace("lib.h5", "fresh.h5")
        f.attrs["config_path"] = str(tmp_path / "fresh.toml")
        assert f.attrs["resumed"] == 1
    _assert_same_as_fresh(job.output, fresh.output)


def test_the_output_does_not_count(fake, tmp_path, responses):
    cfg = _config(tmp_path, "a.toml")
    job = _interrupted(fake, cfg)
    moved = _config(tmp_path, "b.toml", out="elsewhere.h5")  # library.output changed, -o given
    assert driver.run(load_job(moved, output=str(job.output)), progress=False, resume=True) == 0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("seed = 7", "seed = 8", "key 'library.seed' differs: library has 7, config has 8"),
        (
            "mu = [1.5, 2.5]",
            "mu = [1.5, 3.0]",
            "key 'modifier.axes.mu' differs: library has [1.5, 2.5], config has [1.5, 3.0]",
        ),
        (
            "temperatures = [2.0, 5.0, 7.0]",
            "temperatures = [2.0, 5.0, 7.5]",
            "key 'source.temperatures' differs: library has [2.0, 5.0, 7.0], "
            "config has [2.0, 5.0, 7.5]",
        ),
        (
            "[source]\n",
            "[source]\nnH = 0.06\n",
            "key 'source.nH' differs: library has 0.05, config has 0.06",
        ),
        (  # a range that is not quite the list: numpy.linspace's values are quoted exactly
            "amp = [0.0, 0.1, 0.2, 0.3]",
            "amp = { start = 0.0, stop = 0.3, num = 4 }",
            "key 'modifier.axes.amp' differs: library has [0.0, 0.1, 0.2, 0.3], "
            "config has [0.0, 0.09999999999999999, 0.19999999999999998, 0.3]",
        ),
        (
            "[modifier.axes]\n",
            "[fit]\nerror_delta = 2.706\n[modifier.axes]\n",
            "key 'fit.error_delta' differs: library has 1.0, config has 2.706",
        ),
        (  # the axis order is the order of the library's dimensions
            "mu = [1.5, 2.5]\nsigma = [0.5, 1.0]",
            "sigma = [0.5, 1.0]\nmu = [1.5, 2.5]",
            "key 'modifier.axes' differs: library has amp, mu, sigma, config has amp, sigma, mu",
        ),
        (
            "[source]\n",
            "[source]\nredshift = 0.2\nnorm = 2e-3\n",
            "key 'source.redshift' differs: library has 0.1, config has 0.2; "
            "key 'source.norm' differs: library has 0.001, config has 0.002",
        ),
    ],
)
def test_a_changed_value_is_refused_naming_the_key(fake, tmp_path, responses, old, new, message):
    job = _interrupted(fake, _config(tmp_path, "a.toml"))
    assert old in CONFIG
    changed = load_job(_config(tmp_path, "b.toml", CONFIG.replace(old, new)))
    with h5py.File(job.output, "r") as f:
        before = {k: f.attrs[k] for k in f.attrs}
    with pytest.raises(InputError, match="different configuration") as info:
        driver.run(changed, progress=False, resume=True)
    assert info.value.exit_code == 2
    assert message in str(info.value)
    assert "refusing to resume" in str(info.value) and "--overwrite" in str(info.value)
    with h5py.File(job.output, "r") as f:  # untouched
        assert {k: f.attrs[k] for k in f.attrs}.keys() == before.keys()
        assert f.attrs["config"] == before["config"]


def test_paths_are_compared_as_the_files_they_name(fake, tmp_path, responses, monkeypatch):
    arf, _ = responses
    job = _interrupted(fake, _config(tmp_path, "rel.toml"))  # relative to the config's directory
    # the same files, written otherwise and read from another working directory
    (tmp_path / "sub").mkdir()
    _config(tmp_path / "sub", "abs.toml", arf=arf, rmf="../sub/../pn.rmf", out="../lib.h5")
    monkeypatch.chdir(tmp_path / "sub")
    assert driver.run(load_job("abs.toml"), progress=False, resume=True) == 0
    with h5py.File(job.output, "r") as f:  # it now records where this run read them
        assert f.attrs["config_path"] == "abs.toml"
        assert f.attrs["rmf"] == str(tmp_path / "sub" / "../sub/../pn.rmf")
    # copies elsewhere are other files, even with the same text and contents
    for name in ("pn.arf", "pn.rmf"):
        shutil.copyfile(tmp_path / name, tmp_path / "sub" / name)
    with h5py.File(job.output, "r+") as f:
        f["LIBRARY/status"][0] = 0  # something left to do
    moved = load_job(_config(tmp_path / "sub", "moved.toml", out="../lib.h5"))
    with pytest.raises(InputError, match=r"key 'instrument.arf' differs: library has '") as info:
        driver.run(moved, progress=False, resume=True)
    assert str(arf) in str(info.value) and str(tmp_path / "sub" / "pn.arf") in str(info.value)


@pytest.mark.parametrize("comment", ["", "# moved\n"])
def test_a_project_moved_as_a_whole_resumes(fake, tmp_path, responses, comment):
    job = _interrupted(fake, _config(tmp_path, "cfg.toml"))  # arf, rmf relative to it
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("pn.arf", "pn.rmf", job.output.name):
        shutil.move(tmp_path / name, moved / name)
    cfg = _config(moved, "cfg.toml", comment + CONFIG)
    assert driver.run(load_job(cfg), progress=False, resume=True) == 0
    with h5py.File(moved / job.output.name, "r") as f:
        assert f.attrs["arf"] == str(moved / "pn.arf")
        assert (f["LIBRARY/status"][()] != 0).all()


def test_a_library_of_the_embedded_default_resumes_from_its_text(fake, tmp_path):
    from xrmod.config import default_config_text

    out = tmp_path / "default.h5"
    job = load_job(None, output=str(out))
    fake.setenv("XRMOD_FAKE_BREAK_WRITER", "3")
    with pytest.raises(RunError):
        driver.run(job, progress=False)
    fake.delenv("XRMOD_FAKE_BREAK_WRITER")
    cfg = tmp_path / "mine.toml"  # the default job, copied and annotated: bundled response
    cfg.write_text("# my copy\n" + default_config_text().replace("seed = ", "seed    = "))
    assert driver.run(load_job(cfg, output=str(out)), progress=False, resume=True) == 0
    cfg.write_text(default_config_text().replace("nH = 0.05", "nH = 0.5"))
    with pytest.raises(InputError) as info:
        driver.run(load_job(cfg, output=str(out)), progress=False, resume=True)
    assert "key 'source.nH' differs: library has 0.05, config has 0.5" in str(info.value)


def test_rank_files_of_a_run_from_an_equivalent_text_are_merged(tmp_path, responses):
    """Interrupted twice, resumed with two other texts of one job: rank files merged each time."""
    texts = [CONFIG, SAME, "# a third text\n" + SAME]
    cfgs = [_config(tmp_path, f"c{i}.toml", text) for i, text in enumerate(texts)]
    fresh = _config(tmp_path, "fresh.toml", texts[2], out="fresh.h5")
    assert gen(0, str(fresh), "--writer", "merge").returncode == 0
    env = {"XRMOD_FLUSH_SECONDS": "0"}  # each finished unit is in the rank file
    killed = gen(0, str(cfgs[0]), "--writer", "merge", XRMOD_FAKE_DIE="5", **env)
    assert killed.returncode == -9 and find_rank_files(tmp_path / "lib.h5")
    killed = gen(0, str(cfgs[1]), "--writer", "merge", "--resume", XRMOD_FAKE_DIE="11", **env)
    assert killed.returncode == -9, killed.stderr
    assert "merged 5 unit(s) from 1 rank file(s)" in killed.stderr
    done = gen(0, str(cfgs[2]), "--writer", "merge", "--resume", **env)
    assert done.returncode == 0, done.stderr
    assert "merged 6 unit(s) from 1 rank file(s)" in done.stderr
    assert not find_rank_files(tmp_path / "lib.h5")
    with h5py.File(tmp_path / "lib.h5", "r+") as f:
        assert f.attrs["config"] == _text(texts[2], tmp_path)
        f.attrs["config"] = f.attrs["config"].replace("lib.h5", "fresh.h5")
        f.attrs["config_path"] = str(fresh)
    _assert_same_as_fresh(tmp_path / "lib.h5", tmp_path / "fresh.h5")


# --------------------------------------------------------------------------- the responses


def _change_one_value(path):
    with fits.open(path, mode="update") as hdul:
        hdul["SPECRESP"].data["SPECRESP"][100] *= 1.01


def test_a_changed_arf_is_refused_naming_the_file_and_both_checksums(fake, tmp_path, responses):
    arf, _ = responses
    job = _interrupted(fake, _config(tmp_path, "a.toml"))
    before = _sha256(arf)
    _change_one_value(arf)
    after = _sha256(arf)
    assert after != before
    changed = load_job(tmp_path / "a.toml")
    with pytest.raises(InputError, match="was computed with another ARF") as info:
        driver.run(changed, progress=False, resume=True)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert f"{arf} has SHA-256 {after}" in message
    assert f"the library's ARF had {before}" in message
    assert "refusing to resume" in message
    with h5py.File(job.output, "r") as f:  # the library keeps the checksum of its points
        assert f.attrs["arf_sha256"] == before


def test_a_changed_rmf_is_refused_too(fake, tmp_path, responses):
    _, rmf = responses
    _interrupted(fake, _config(tmp_path, "a.toml"))
    before = _sha256(rmf)
    with fits.open(rmf, mode="update") as hdul:
        hdul["EBOUNDS"].header["COMMENT"] = "edited"
    with pytest.raises(InputError, match="was computed with another RMF") as info:
        driver.run(load_job(tmp_path / "a.toml"), progress=False, resume=True)
    assert before in str(info.value) and _sha256(rmf) in str(info.value)


def test_xrmod_gen_resume_with_a_changed_arf_exits_2(tmp_path, responses):
    arf, _ = responses
    cfg = _config(tmp_path, "a.toml")
    killed = gen(0, str(cfg), XRMOD_FAKE_DIE="4")
    assert killed.returncode == -9
    before = _sha256(arf)
    _change_one_value(arf)
    proc = gen(0, str(cfg), "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert str(arf) in line and before in line and _sha256(arf) in line
