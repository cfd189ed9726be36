"""``xrmod info [--json]``: the summary against the file, and libraries still being written."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpirun_helpers import FAKE_CONFIG, env, needs_mpirun, start, wait_for

from xrmod.analysis import describe, summary
from xrmod.cli import main
from xrmod.errors import InputError
from xrmod.status import Status

describe_module = sys.modules["xrmod.analysis.describe"]

NATIVE = """\
[library]
output = "{out}"
noise = "poisson"
realizations = 2
seed = 5
[instrument]
exposure = 20000.0
band = [0.5, 8.0]
[source]
temperatures = [1.5, 4.0, 9.0]
[modifier]
family = "gaussian"
[modifier.axes]
amp = [-1.5, 0.0, 0.2]
mu = [2.0, 5.0]
sigma = 0.8
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """A small native-engine library: 2 realizations, a θ whose ARF goes negative (status -1)."""
    from xrmod import driver

    tmp = tmp_path_factory.mktemp("info")
    cfg = tmp / "cfg.toml"
    out = tmp / "lib.h5"
    cfg.write_text(NATIVE.format(out=out))
    assert driver.generate(cfg, progress=False) == 0
    return out


def _info_json(path, *extra):
    """``xrmod info PATH --json`` in a process of its own: (exit code, parsed stdout, stderr)."""
    proc = subprocess.run(
        [_exe("xrmod"), "info", str(path), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
    )
    return proc.returncode, (json.loads(proc.stdout) if proc.returncode == 0 else None), proc


def _exe(name):
    found = Path(sys.executable).with_name(name)
    assert found.exists(), f"{name} is not installed next to {sys.executable}"
    return str(found)


def _counts(array):
    codes, n = np.unique(array, return_counts=True)
    return dict(zip(codes.tolist(), n.tolist(), strict=True))


# --------------------------------------------------------------------------- the JSON
def test_json_holds_what_the_file_holds(lib):
    code, s, proc = _info_json(lib)
    assert code == 0, proc.stderr
    with h5py.File(lib, "r") as f:
        params, libg = f["PARAMS"], f["LIBRARY"]
        axes = [str(a) for a in params.attrs["axes"]]
        assert [a["name"] for a in s["axes"]] == axes == ["amp", "mu", "sigma"]
        for a in s["axes"]:
            np.testing.assert_array_equal(a["values"], params[a["name"]][()])
            assert a["units"] == params[a["name"]].attrs["units"]
        np.testing.assert_array_equal(s["temperatures"]["values"], libg["temps"][()])
        assert s["realizations"] == libg["realization"].size == 2
        assert s["dims"] == [*axes, "realization", "kT_true"]
        assert s["shape"] == list(libg["status"].shape) == [3, 2, 1, 2, 3]
        for fit, dataset in (("T1", "status"), ("T1'", "status_modified")):
            expected = _counts(libg[dataset][()])
            got = {e["code"]: e["count"] for e in s["status"][fit]}
            assert got == expected, fit
            for e in s["status"][fit]:
                assert e["name"] == Status(e["code"]).name
                assert e["description"] == Status(e["code"]).description
        assert expected[Status.ARF_NEGATIVE] == 2 * 2 * 3  # amp = -1.5: both mu, every point
        status = libg["status"][()]
        attrs = dict(f.attrs)
    assert s["points"] == {
        "total": status.size,
        "done": int((status != 0).sum()),
        "not_computed": int((status == 0).sum()),
        "in_rank_files": 0,
    }
    assert s["state"] == "complete" and s["writing"]["processes"] == []
    assert s["family"] == "gaussian" and s["format"] == "xrmod-library"
    assert s["format_version"] == 2
    assert s["engine"] == "native" and s["model"] == "tbabs*zbremss"
    assert s["seed"] == 5 and s["noise"] == "poisson" and s["exposure"] == 20000.0
    assert s["band"] == [0.5, 8.0] and s["n_ranks"] == 1 and s["writer"] == "direct"
    assert s["times"] == {"start": attrs["start_time"], "end": attrs["end_time"]}
    for key in ("arf", "rmf"):
        response = s["responses"][key]
        assert response["path"] == attrs[key]
        assert response["sha256"] == hashlib.sha256(Path(attrs[key]).read_bytes()).hexdigest()
    assert s["responses"]["background"] is None
    assert s["config"] == attrs["config"] == NATIVE.format(out=lib)
    assert set(s["attributes"]) == set(attrs) - {"config", "status_codes", "checksums"}
    assert s["attributes"]["arf_sha256"] == s["responses"]["arf"]["sha256"]


def test_json_is_one_object_of_json_types_and_summary_is_the_same(lib, capsys):
    assert main(["info", str(lib), "--json"]) == 0
    out = capsys.readouterr().out
    parsed = json.loads(out)
    direct = summary(lib)
    # what changes between two reads: nothing but the age of the last write (0.1 s steps)
    parsed["writing"].pop("seconds_since_last_write")
    direct["writing"].pop("seconds_since_last_write")
    assert parsed == json.loads(json.dumps(direct, allow_nan=False))  # JSON types, no NaN
    assert parsed == direct


def test_the_text_prints_the_summary(lib, capsys):
    s = summary(lib)
    text = describe(lib)
    assert main(["info", str(lib)]) == 0
    assert capsys.readouterr().out.rstrip("\n") == text
    lines = text.splitlines()
    assert "    realization: 2" in lines
    assert "    sigma: 0.8 keV" in lines and "    amp: 3 values -1.5 .. 0.2" in lines
    points = s["points"]
    assert f"  progress: complete, {points['done']} of {points['total']} points computed" in lines
    rows = {}
    for line in lines:
        m = re.match(r"    status +(-?\d+): +(\d+) +(\d+)  (.*)", line)
        if m:
            rows[int(m[1])] = (int(m[2]), int(m[3]), m[4])
    for fit, column in (("T1", 0), ("T1'", 1)):
        assert {c: r[column] for c, r in rows.items() if r[column]} == {
            e["code"]: e["count"] for e in s["status"][fit]
        }
    assert rows[-1][2] == Status.ARF_NEGATIVE.description
    for key, value in s["attributes"].items():
        assert any(line.startswith(f"  {key}: ") for line in lines), key
        if key == "band":
            assert f"  band: {value[0]:g}–{value[1]:g} keV" in lines


def test_a_version_1_library_has_one_status_for_both_fits(lib, tmp_path):
    old = tmp_path / "v1.h5"
    old.write_bytes(lib.read_bytes())
    with h5py.File(old, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs.pop("checksums", None)  # recorded since format 2
        expected = _counts(f["LIBRARY/status"][()])
        del f["LIBRARY/status_modified"]
    s = summary(old)
    assert list(s["status"]) == ["both"]
    assert {e["code"]: e["count"] for e in s["status"]["both"]} == expected
    assert "format version 1: one status for both fits" in describe(old)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not hdf5 at all"), "not a readable HDF5 file"),
        (lambda p: h5py.File(p, "w").close(), "not an xrmod library"),
        (lambda p: None, "not a readable HDF5 file"),  # missing
    ],
    ids=["garbage", "other-hdf5", "missing"],
)
def test_not_a_library_is_exit_2_with_a_message(tmp_path, make, message):
    path = tmp_path / "x.h5"
    make(path)
    for extra in ((), ("--json",)):
        proc = subprocess.run(
            [_exe("xrmod"), "info", str(path), *extra], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr.startswith(f"xrmod info: error: {path}: {message}"), proc.stderr
        assert "Traceback" not in proc.stderr


def test_an_unreadable_file_is_refused_at_once_not_retried(tmp_path, monkeypatch):
    path = tmp_path / "x.h5"
    path.write_bytes(b"garbage written just now")  # recent, but no HDF5 signature
    monkeypatch.setattr(describe_module.time, "sleep", lambda s: pytest.fail("retried"))
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        summary(path)


# --------------------------------------------------------------------------- a torn read
def test_a_read_torn_by_the_writer_is_retried(lib, monkeypatch):
    calls, waits = [], []
    real = describe_module._summary

    def flaky(path, name):
        calls.append(1)
        if len(calls) < 3:
            raise OSError("Unable to synchronously open object (bad object header)")
        return real(path, name)

    monkeypatch.setattr(describe_module, "_summary", flaky)
    monkeypatch.setattr(describe_module.time, "sleep", waits.append)
    monkeypatch.setattr(describe_module, "_writing_processes", lambda paths: [4242])
    assert summary(lib)["points"]["total"] == 36
    assert len(calls) == 3 and waits == [0.05, 0.1]


def test_a_library_that_keeps_changing_is_reported_clearly(lib, monkeypatch):
    waits = []

    def torn(path, name):
        raise KeyError("Unable to open object (component not found)")

    monkeypatch.setattr(describe_module, "_summary", torn)
    monkeypatch.setattr(describe_module.time, "sleep", waits.append)
    monkeypatch.setattr(describe_module, "_writing_processes", lambda paths: [4242])
    with pytest.raises(InputError) as info:
        summary(lib)
    message = str(info.value)
    assert message.startswith(f"{lib}: the library is being written by process 4242")
    assert "changed while it was read, 6 times over 1.6 s" in message
    assert "KeyError" in message and "component not found" in message
    assert "try again" in message
    assert len(waits) == 5 and sum(waits) == pytest.approx(1.55)


def test_a_broken_library_no_one_writes_is_an_input_error_at_once(lib, tmp_path, monkeypatch):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(lib.read_bytes())
    with h5py.File(broken, "r+") as f:
        del f["LIBRARY/temps"]
    old = os.stat(lib).st_mtime - 3600
    os.utime(broken, (old, old))  # not modified lately, and no process has it open
    monkeypatch.setattr(describe_module.time, "sleep", lambda s: pytest.fail("retried"))
    with pytest.raises(InputError, match=r"broken\.h5: not a readable xrmod library \(KeyError"):
        summary(broken)


# --------------------------------------------------------------------------- while it runs
def _done_points(path):
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int((f["LIBRARY/status"][()] != 0).sum())
    except (OSError, KeyError):  # not there yet, or caught while it is created
        return 0


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def test_info_while_xrmod_gen_writes_the_library(tmp_path):
    """The direct writer holds the library open (and HDF5's lock) for the whole run."""
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(FAKE_CONFIG.format(out=out))
    proc = start(0, str(cfg), "--no-progress", XRMOD_FAKE_SLEEP="0.1")  # 30 units: 3 s
    try:
        wait_for(lambda: out.exists() and _done_points(out) > 0, timeout=60, what="a first unit")
        text = subprocess.run(
            [_exe("xrmod"), "info", str(out)], capture_output=True, text=True, timeout=60
        )
        code, s, json_proc = _info_json(out)
        assert proc.poll() is None, "the run ended before info was run: make it slower"
    finally:
        _stop(proc)
    assert text.returncode == 0, text.stderr
    assert code == 0, json_proc.stderr
    assert s["state"] == "being written"
    assert s["writing"]["processes"] == [proc.pid]
    assert 0 < s["points"]["done"] < s["points"]["total"] == 60
    assert s["points"]["done"] + s["points"]["not_computed"] == 60
    assert s["times"]["end"] is None and s["times"]["start"]
    progress = next(line for line in text.stdout.splitlines() if line.startswith("  progress:"))
    m = re.match(
        rf"  progress: being written by process {proc.pid}: (\d+) of 60 points computed "
        r"\((\d+)%\); no end time yet, last write \d+ s ago$",
        progress,
    )
    assert m, progress
    assert 0 < int(m[1]) < 60


def test_info_on_an_interrupted_run_says_resume(tmp_path):
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(FAKE_CONFIG.format(out=out))
    proc = start(0, str(cfg), "--no-progress", XRMOD_FAKE_SLEEP="0.1")
    try:
        wait_for(lambda: out.exists() and _done_points(out) >= 4, timeout=60, what="4 points")
    finally:
        _stop(proc)  # SIGKILL: no end time, nothing closed
    s = summary(out)
    assert s["state"] == "incomplete" and s["writing"]["processes"] == []
    assert s["points"]["done"] == _done_points(out) and s["points"]["not_computed"] > 0
    progress = next(line for line in describe(out).splitlines() if "progress:" in line)
    assert progress.startswith(f"  progress: incomplete: {s['points']['done']} of 60 points")
    assert "xrmod-gen --resume continues" in progress


@needs_mpirun
def test_info_during_a_two_rank_merge_run_counts_the_rank_files(tmp_path):
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(FAKE_CONFIG.format(out=out))
    # every unit flushed to its rank file at once; 30 units of 0.2 s on 2 ranks: 3 s
    proc = start(
        2,
        str(cfg),
        "--no-progress",
        "--writer",
        "merge",
        XRMOD_FAKE_SLEEP="0.2",
        XRMOD_FLUSH_SECONDS="0",
    )
    try:
        wait_for(lambda: len(list(tmp_path.glob("lib.h5.rank*.h5"))) == 2, 60, "rank files")
        code, s, json_proc = (None, None, None)

        def some_in_rank_files():
            nonlocal code, s, json_proc
            code, s, json_proc = _info_json(out)
            return code != 0 or s["points"]["in_rank_files"] >= 4

        wait_for(some_in_rank_files, timeout=60, what="units in the rank files")
        text = subprocess.run(
            [_exe("xrmod"), "info", str(out)], capture_output=True, text=True, timeout=60
        )
        assert proc.poll() is None, "the run ended before info was run: make it slower"
    finally:
        _stop(proc)
    assert code == 0, json_proc.stderr
    assert text.returncode == 0, text.stderr
    assert s["state"] == "being written" and len(s["writing"]["processes"]) >= 2
    assert s["points"]["done"] == 0  # merged at the end
    files = s["writing"]["rank_files"]
    assert [Path(r["path"]).name for r in files] == ["lib.h5.rank0.h5", "lib.h5.rank1.h5"]
    assert all(r["usable"] for r in files)
    assert s["points"]["in_rank_files"] == sum(r["points"] for r in files)
    assert s["points"]["in_rank_files"] == 2 * sum(r["units"] for r in files)  # 2 temps a θ
    assert "more in 2 rank files (merged into the library at the end)" in text.stdout


def test_a_rank_file_of_another_configuration_is_named(lib, tmp_path):
    from xrmod.grid import Grid
    from xrmod.merge import RankFileWriter, rank_file_path

    copy = tmp_path / "lib.h5"
    copy.write_bytes(lib.read_bytes())
    grid = Grid(axes=(("a", np.array([1.0])),), temperatures=np.array([1.0, 2.0]))
    RankFileWriter(rank_file_path(copy, 0), grid, config_text="other", rank=0).close()
    s = summary(copy)
    (entry,) = s["writing"]["rank_files"]
    assert not entry["usable"] and "another configuration" in entry["note"]
    assert s["points"]["in_rank_files"] == 0 and s["state"] == "incomplete"
    assert "lib.h5.rank0.h5: of another configuration" in describe(copy)
