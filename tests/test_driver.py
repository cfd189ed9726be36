"""The driver on one process: writers, failure isolation, resume checks, rank files.

Multi-rank runs launched with mpirun are in test_resume.py; tests that run
inside an MPI job are in test_mpi_driver.py.
"""

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import zlib

import h5py
import numpy as np
import pytest
from fake_engine import (
    assert_same_library,
    expected_point,
    fake_engine_in_test,
    read_library,
)
from mpirun_helpers import (
    FAKE_CONFIG,
    WRITERS,
    error_lines,
    gen,
    needs_mpirun,
    start,
    wait_for,
    without_dac_override,
)

from xrmod import driver
from xrmod.driver.comm import LAUNCH_MARKERS, world
from xrmod.driver.console import Progress, QuietFileHandler
from xrmod.driver.writers import flush_seconds
from xrmod.engines.base import EXTRAS, UnitResult
from xrmod.errors import EXIT_INPUT, EXIT_RUN, EXIT_SIGTERM, InputError, RunError
from xrmod.grid import Grid
from xrmod.job import load_job
from xrmod.library import count_status, create_library, pending_units, theta_runs, unit_bytes
from xrmod.merge import (
    RankFileWriter,
    _row_checksums,
    find_rank_files,
    merge_rank_files,
    rank_file_path,
    rank_log_path,
)
from xrmod.status import Status

CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
seed = {seed}
[source]
temperatures = [2.0, 5.0, 7.0]
[modifier]
family = "gaussian"
[modifier.axes]
amp = [0.0, 0.1, 0.2, 0.3]
mu = [1.5, 2.5]
sigma = [0.5, 1.0]
"""


@pytest.fixture
def fake(monkeypatch):
    fake_engine_in_test(monkeypatch)
    return monkeypatch


def _job(tmp_path, name="lib.h5", seed=7):
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(CONFIG.format(out=tmp_path / name, seed=seed))
    return load_job(cfg)


def _expected(job):
    grid = job.grid
    out = np.empty((grid.size, 3))
    for flat in range(grid.size):
        out[flat] = expected_point(job.config.library.seed, flat, grid.temperatures[flat % 3])
    theta = np.arange(grid.size) // grid.points_per_theta
    out[theta % 5 == 4] = np.nan
    return out.reshape(*grid.shape, 3)


def test_direct_writer_stores_every_point(fake, tmp_path):
    job = _job(tmp_path)
    assert driver.run(job, progress=False) == 0
    data = read_library(job.output)
    np.testing.assert_array_equal(data["results"], _expected(job))
    status = data["status"].reshape(job.grid.n_theta, -1)
    assert (status[4] == Status.FIT_FAILED).all() and (status[:4] == Status.OK).all()
    # T1′ has its own status: the fake engine's -4 at θ % 5 == 2, where T1 is ok
    modified = data["status_modified"].reshape(job.grid.n_theta, -1)
    theta = np.arange(job.grid.n_theta)
    assert (modified[theta % 5 == 2] == Status.BOUND_AT_LIMIT).all()
    assert (status[theta % 5 == 2] == Status.OK).all()
    np.testing.assert_array_equal(modified[theta % 5 != 2], status[theta % 5 != 2])
    with h5py.File(job.output) as f:
        assert f.attrs["writer"] == "direct" and f.attrs["n_ranks"] == 1
        assert "end_time" in f.attrs
    assert not find_rank_files(job.output)
    assert not rank_log_path(job.output, 0).exists()  # nothing went wrong: no log


def test_merge_writer_on_one_process_is_identical(fake, tmp_path):
    a, b = _job(tmp_path, "a.h5"), _job(tmp_path, "b.h5")
    assert driver.run(a, progress=False) == 0
    assert driver.run(b, progress=False, writer="merge") == 0
    assert_same_library(a.output, b.output)
    assert not find_rank_files(b.output)  # merged, then removed
    with h5py.File(b.output) as f:
        assert f.attrs["writer"] == "merge"


@pytest.mark.skipif(h5py.get_config().mpi, reason="h5py has MPI here")
def test_mpio_writer_without_parallel_h5py_is_an_input_error(fake, tmp_path):
    job = _job(tmp_path)
    with pytest.raises(InputError, match=r"--writer mpio needs h5py built with MPI"):
        driver.run(job, writer="mpio")
    assert not job.output.exists()


def test_engine_exception_fails_its_unit_only(fake, tmp_path, caplog):
    fake.setenv("XRMOD_FAKE_RAISE", "2,5")
    job = _job(tmp_path)
    with caplog.at_level(logging.WARNING, logger="xrmod"):
        assert driver.run(job, progress=False) == 0
    data = read_library(job.output)
    status = data["status"].reshape(job.grid.n_theta, -1)
    results = data["results"].reshape(job.grid.n_theta, -1, 3)
    assert (status[[2, 5]] == Status.ERROR).all()
    assert np.isnan(results[[2, 5]]).all()
    assert (status[[0, 1, 3, 6, 7, 15]] == Status.OK).all()
    text = rank_log_path(job.output, 0).read_text()
    assert "unit 2 (θ 2, points 6..8) failed on rank 0" in text
    assert "Traceback" in text and "RuntimeError: injected failure in θ 5" in text
    assert "rank logs:" in caplog.text and "status -10" in caplog.text


def test_a_failed_write_is_fatal_and_keeps_finished_units(fake, tmp_path):
    fake.setenv("XRMOD_FAKE_BREAK_WRITER", "3")
    job = _job(tmp_path)
    with pytest.raises(RunError, match=r"KeyError.*bogus.*continue with --resume") as info:
        driver.run(job, progress=False)
    assert info.value.exit_code == 4
    status = read_library(job.output)["status"].reshape(job.grid.n_theta, -1)
    assert (status[:3] != 0).all() and (status[3:] == 0).all()
    assert "fatal error" in rank_log_path(job.output, 0).read_text()


def test_existing_library_needs_resume_or_overwrite(fake, tmp_path):
    job = _job(tmp_path)
    assert driver.run(job, progress=False) == 0
    with pytest.raises(InputError, match="use --resume to continue it, or --overwrite"):
        driver.run(job, progress=False)
    with pytest.raises(InputError, match="exclude each other"):
        driver.run(job, resume=True, overwrite=True)
    assert driver.run(job, progress=False, overwrite=True) == 0


def test_resume_refuses_a_library_of_another_config(fake, tmp_path):
    job = _job(tmp_path, seed=1)
    assert driver.run(job, progress=False) == 0
    other = _job(tmp_path, seed=2)  # same output, different config text
    with pytest.raises(InputError, match=r"different configuration.*refusing to resume"):
        driver.run(other, resume=True)


def test_resume_computes_only_missing_points(fake, tmp_path):
    ref, job = _job(tmp_path, "ref.h5"), _job(tmp_path, "lib.h5")
    assert driver.run(ref, progress=False) == 0
    fake.setenv("XRMOD_FAKE_BREAK_WRITER", "5")
    with pytest.raises(RunError):
        driver.run(job, progress=False)
    fake.delenv("XRMOD_FAKE_BREAK_WRITER")
    assert pending_units(job.output, job.grid).tolist() == list(range(5, 16))
    fake.setenv("XRMOD_FAKE_MARKS", str(tmp_path))
    assert driver.run(job, progress=False, resume=True) == 0
    done = sorted(int(p.suffix[1:]) for p in tmp_path.glob("unit.*"))
    assert done == list(range(5, 16))
    assert_same_library(ref.output, job.output)
    with h5py.File(job.output) as f:
        assert f.attrs["resumed"] == 1 and "end_time" in f.attrs


def test_resume_of_a_complete_library_does_nothing(fake, tmp_path, caplog):
    job = _job(tmp_path)
    assert driver.run(job, progress=False) == 0
    with caplog.at_level(logging.INFO, logger="xrmod"):
        assert driver.run(job, progress=False, resume=True) == 0
    assert "nothing to do" in caplog.text


def test_resume_without_a_library_starts_one(fake, tmp_path):
    job = _job(tmp_path)
    assert driver.run(job, progress=False, resume=True) == 0
    assert count_status(job.output, job.grid).get(0, 0) == 0


def test_progress_log_lines(fake, tmp_path, caplog):
    job = _job(tmp_path)
    with caplog.at_level(logging.INFO, logger="xrmod"):
        assert driver.run(job, progress=True) == 0  # stderr is not a terminal: log lines
    lines = [r.getMessage() for r in caplog.records if "points/s, ETA" in r.getMessage()]
    assert lines[-1].startswith("48/48 points (100%)")
    assert 10 <= len(lines) <= 16  # about every 5 %; a unit is 6.25 % of the points here
    # points with a failed fit: T1 where θ % 5 == 4, T1′ only where θ % 5 == 2 (3 θ each)
    assert "18 failed" in lines[-1]


def test_serial_without_a_launcher(monkeypatch):
    for name in LAUNCH_MARKERS:
        monkeypatch.delenv(name, raising=False)
    comm = world()
    assert (comm.rank, comm.size) == (0, 1)
    assert driver.world_rank() == 0


def test_launched_on_several_ranks_without_mpi4py(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    with pytest.raises(InputError, match=r"mpi4py is not installed"):
        world()
    assert driver.world_rank() == 1


# --------------------------------------------------------------------------- rank files
def _grid():
    return Grid(axes=[("a", [1.0, 2.0, 3.0]), ("b", [0.1, 0.2])], temperatures=[1.0, 2.0])


def _unit(grid, theta, value):
    p = grid.points_per_theta
    start = theta * p
    res = np.full((p, 3), float(value)) + np.arange(p)[:, None]
    extras = {name: np.full(p, value + k) for k, name in enumerate(EXTRAS)}
    # T1' gets its own status (-4), different from T1's, so a mix-up shows
    return UnitResult(
        start, start + p, res, -res, np.full(p, 1, np.int8), np.full(p, -4, np.int8), extras
    )


def _library(path, grid, text="cfg"):
    create_library(path, grid, family="f", units={}, attrs={"config": text})


def test_rank_files_merge_to_their_theta(tmp_path):
    grid = _grid()
    out = tmp_path / "lib.h5"
    _library(out, grid)
    with RankFileWriter(rank_file_path(out, 0), grid, config_text="cfg", rank=0) as w:
        for theta in (0, 2, 5):
            w.write(_unit(grid, theta, 10 * theta))
    with RankFileWriter(rank_file_path(out, 1), grid, config_text="cfg", rank=1) as w:
        w.write(_unit(grid, 3, 30))
    assert find_rank_files(out) == [rank_file_path(out, 0), rank_file_path(out, 1)]
    report = merge_rank_files(out, find_rank_files(out), grid, config_text="cfg", block_bytes=1)
    assert (report.units, report.damaged) == (4, 0)
    data = read_library(out)
    status = data["status"].reshape(6, 2)
    assert status[:, 0].tolist() == [1, 0, 1, 1, 0, 1]
    assert data["status_modified"].reshape(6, 2)[:, 0].tolist() == [-4, 0, -4, -4, 0, -4]
    results = data["results"].reshape(6, 2, 3)
    np.testing.assert_array_equal(results[5], _unit(grid, 5, 50).results)
    assert np.isnan(results[1]).all() and np.isnan(results[4]).all()
    np.testing.assert_array_equal(data["results_modified"].reshape(6, 2, 3)[3], -results[3])
    np.testing.assert_array_equal(data["counts"].reshape(6, 2)[2], [24.0, 24.0])


def test_a_damaged_row_is_dropped_not_merged(tmp_path, caplog):
    grid = _grid()
    out = tmp_path / "lib.h5"
    _library(out, grid)
    path = rank_file_path(out, 0)
    with RankFileWriter(path, grid, config_text="cfg", rank=0) as w:
        for theta in range(grid.n_theta):
            w.write(_unit(grid, theta, theta))
    with h5py.File(path, "r+") as f:  # as if the process died while writing row 4
        f["results"][4, 0, 0] = 99.0
    report = merge_rank_files(out, [path], grid, config_text="cfg")
    assert (report.units, report.damaged) == (5, 1)
    assert "damaged" in caplog.text
    assert pending_units(out, grid).tolist() == [4]


def test_a_damaged_t1_prime_status_is_caught_by_the_row_checksum(tmp_path):
    grid = _grid()
    out = tmp_path / "lib.h5"
    _library(out, grid)
    path = rank_file_path(out, 0)
    with RankFileWriter(path, grid, config_text="cfg", rank=0) as w:
        for theta in range(grid.n_theta):
            w.write(_unit(grid, theta, theta))
    with h5py.File(path, "r+") as f:
        f["status_modified"][2, 1] = 1
    assert merge_rank_files(out, [path], grid, config_text="cfg").damaged == 1
    assert pending_units(out, grid).tolist() == [2]


def test_rank_files_of_format_version_1_are_refused(tmp_path):
    """An older xrmod's rank file (one status for both fits) is not merged, with a way out."""
    grid = _grid()
    out = tmp_path / "lib.h5"
    _library(out, grid)
    path = rank_file_path(out, 0)
    with RankFileWriter(path, grid, config_text="cfg", rank=0) as w:
        w.write(_unit(grid, 0, 0))
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        del f["status_modified"]
    with pytest.raises(InputError, match=r"format version 1.*Remove it"):
        merge_rank_files(out, [path], grid, config_text="cfg")
    assert pending_units(out, grid).size == grid.n_theta  # nothing merged


def _make_version_1(path):
    """Turn a library into what xrmod wrote before the per-fit status (format 1)."""
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs.pop("checksums", None)  # recorded since format 2
        del f["LIBRARY/status_modified"]


def test_resume_refuses_a_version_1_library(fake, tmp_path):
    job = _job(tmp_path)
    fake.setenv("XRMOD_FAKE_BREAK_WRITER", "5")
    with pytest.raises(RunError):
        driver.run(job, progress=False)
    fake.delenv("XRMOD_FAKE_BREAK_WRITER")
    _make_version_1(job.output)
    before = read_library(job.output)
    with pytest.raises(InputError, match=r"format version 1.*cannot resume.*--overwrite"):
        driver.run(job, progress=False, resume=True)
    after = read_library(job.output)  # untouched
    assert sorted(after) == sorted(before)
    assert all(after[k].tobytes() == before[k].tobytes() for k in before)


def test_resume_of_a_version_1_library_exits_2_and_says_how_to_proceed(tmp_path, capsys):
    """``xrmod-gen --resume`` on a format-1 library: exit 2, a message, and info still reads it."""
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(CONFIG.format(out=out, seed=3))
    proc = gen(0, str(cfg))
    assert proc.returncode == 0, proc.stderr
    _make_version_1(out)
    proc = gen(0, str(cfg), "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "format version 1" in proc.stderr and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    from xrmod.cli import main

    assert main(["info", str(out)]) == 0
    assert "one status for both fits" in capsys.readouterr().out


def test_rank_files_of_another_config_are_refused(tmp_path):
    grid = _grid()
    out = tmp_path / "lib.h5"
    _library(out, grid)
    with RankFileWriter(rank_file_path(out, 0), grid, config_text="other", rank=0) as w:
        w.write(_unit(grid, 0, 0))
    with pytest.raises(InputError, match="different configuration"):
        merge_rank_files(out, find_rank_files(out), grid, config_text="cfg")


def test_rank_file_takes_whole_theta_units_only(tmp_path):
    grid = _grid()
    with RankFileWriter(tmp_path / "r.h5", grid, config_text="c", rank=0) as w:
        unit = _unit(grid, 1, 0)
        part = UnitResult(
            unit.start,
            unit.start + 1,
            unit.results[:1],
            unit.results[:1],
            unit.status[:1],
            unit.status_modified[:1],
            {k: v[:1] for k, v in unit.extras.items()},
        )
        with pytest.raises(ValueError, match="not one whole θ"):
            w.write(part)


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _rows_on_disk(path):
    """Units a reader sees in a rank file that is still open for writing (SWMR)."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return int((f["start"][()] >= 0).sum())


def test_rank_file_keeps_units_in_memory_until_a_flush_is_due(tmp_path):
    grid = _grid()
    path = tmp_path / "r.h5"
    clock = _Clock()
    with RankFileWriter(path, grid, config_text="c", rank=0, flush_seconds=2.0, clock=clock) as w:
        for theta, t in enumerate([0.5, 1.0, 1.9]):  # within 2 s of the start: buffered
            clock.now = t
            w.write(_unit(grid, theta, theta))
        assert _rows_on_disk(path) == 0 and w.rows == 0
        clock.now = 2.0  # 2 s since the last flush: this unit flushes all four
        w.write(_unit(grid, 3, 3))
        assert _rows_on_disk(path) == 4 and w.rows == 4
        clock.now = 3.5
        w.write(_unit(grid, 4, 4))
        assert _rows_on_disk(path) == 4
    assert _rows_on_disk(path) == 5  # close flushes the rest


def test_rank_file_flushes_a_full_buffer_and_every_unit_with_zero_seconds(tmp_path):
    grid = _grid()
    clock = _Clock()
    row = 2 * (24 + 24 + 1 + 1 + 8 * len(EXTRAS)) + 12  # bytes of one unit of 2 points
    path = tmp_path / "full.h5"
    with RankFileWriter(path, grid, config_text="c", rank=0, flush_bytes=3 * row, clock=clock) as w:
        for theta in range(5):
            w.write(_unit(grid, theta, theta))
            assert _rows_on_disk(path) == 3 * ((theta + 1) // 3)
    path = tmp_path / "zero.h5"
    with RankFileWriter(path, grid, config_text="c", rank=0, flush_seconds=0, clock=clock) as w:
        for theta in range(3):
            w.write(_unit(grid, theta, theta))
            assert _rows_on_disk(path) == theta + 1


def test_a_unit_the_writer_refuses_leaves_the_buffer_unchanged(tmp_path):
    grid = _grid()
    out = tmp_path / "lib.h5"
    _library(out, grid)
    path = rank_file_path(out, 0)
    with RankFileWriter(path, grid, config_text="cfg", rank=0) as w:
        w.write(_unit(grid, 0, 0))
        bad = _unit(grid, 1, 1)
        extras = dict(bad.extras)
        extras["bogus"] = extras.pop("counts")
        with pytest.raises(KeyError):
            w.write(
                UnitResult(
                    bad.start,
                    bad.stop,
                    bad.results,
                    bad.results,
                    bad.status,
                    bad.status_modified,
                    extras,
                )
            )
        w.write(_unit(grid, 2, 2))
    assert merge_rank_files(out, [path], grid, config_text="cfg").units == 2
    assert pending_units(out, grid).tolist() == [1, 3, 4, 5]


def test_row_checksum_is_the_crc_of_start_then_each_field():
    # rank files written by earlier versions chained the CRC field by field (the same value)
    grid = _grid()
    units = [_unit(grid, theta, 7 * theta) for theta in range(3)]
    fields = {
        "results": np.stack([u.results for u in units]),
        "results_modified": np.stack([u.results_modified for u in units]),
        "status": np.stack([u.status for u in units]),
        "status_modified": np.stack([u.status_modified for u in units]),
        **{name: np.stack([u.extras[name] for u in units]) for name in EXTRAS},
    }
    starts = np.array([u.start for u in units])
    for i, u in enumerate(units):
        crc = zlib.crc32(np.int64(u.start).tobytes())
        values = (
            u.results,
            u.results_modified,
            u.status,
            u.status_modified,
            *(u.extras[n] for n in EXTRAS),
        )
        dtypes = (np.float64, np.float64, np.int8, np.int8, *(np.float64 for _ in EXTRAS))
        for arr, dtype in zip(values, dtypes, strict=True):
            crc = zlib.crc32(np.ascontiguousarray(arr, dtype=dtype).tobytes(), crc)
        assert _row_checksums(starts, fields)[i] == crc


def test_merge_writes_runs_of_theta_within_a_row_of_the_last_axis():
    covered = np.array([1, 1, 0, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    assert theta_runs(10 + np.flatnonzero(covered), last=4) == [(10, 12), (13, 16), (16, 18)]
    assert theta_runs(np.flatnonzero(np.ones(8, dtype=bool)), last=8) == [(0, 8)]


def test_flush_seconds_from_the_environment(monkeypatch):
    monkeypatch.delenv(driver.FLUSH_ENV, raising=False)
    assert flush_seconds() == 2.0
    monkeypatch.setenv(driver.FLUSH_ENV, "0.5")
    assert flush_seconds() == 0.5
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv(driver.FLUSH_ENV, bad)
        with pytest.raises(InputError, match="XRMOD_FLUSH_SECONDS must be a number of seconds"):
            flush_seconds()


# --------------------------------------------------------------------------- under mpirun
NATIVE_CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
[source]
temperatures = [3.0]
[modifier]
family = "gaussian"
[modifier.axes]
sigma = [0.5, 1.0]
amp = [0.0, 0.1]
mu = 2.0
"""


@needs_mpirun
def test_native_engine_identical_on_1_2_3_ranks_and_both_writers(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(NATIVE_CONFIG.format(out=tmp_path / "lib.h5"))
    runs = [(0, "auto"), (2, "auto"), (3, "auto"), *((2, w) for w in WRITERS)]
    outputs = []
    for ranks, writer in runs:
        out = tmp_path / f"lib-{ranks}-{writer}.h5"
        proc = gen(ranks, str(cfg), "-o", str(out), "--writer", writer, "--no-progress", fake=False)
        assert proc.returncode == 0, proc.stderr
        outputs.append(out)
    for out in outputs[1:]:
        assert_same_library(outputs[0], out)
    with h5py.File(outputs[1]) as f:  # written by 2 ranks
        assert list(f["PARAMS"].attrs["axes"]) == ["sigma", "amp", "mu"]
        assert f["LIBRARY/results"].shape == (2, 2, 1, 1, 3)
        assert (f["LIBRARY/status"][()] == Status.OK).all()
        for key in ("config", "engine", "model", "seed", "rmf_sha256", "start_time", "end_time"):
            assert key in f.attrs, key
        assert f.attrs["n_ranks"] == 2
        assert f.attrs["writer"] == ("mpio" if h5py.get_config().mpi else "merge")
    assert not list(tmp_path.glob("*.rank*"))


@needs_mpirun
@pytest.mark.parametrize("writer", WRITERS)
def test_every_rank_computes_and_results_do_not_depend_on_ranks(tmp_path, writer):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    ref = tmp_path / "ref.h5"
    assert gen(0, str(cfg), "-o", str(ref)).returncode == 0
    for ranks in (2, 3):
        marks = tmp_path / f"marks{ranks}"
        marks.mkdir()
        out = tmp_path / f"lib{ranks}.h5"
        proc = gen(
            ranks,
            str(cfg),
            "-o",
            str(out),
            "--writer",
            writer,
            XRMOD_FAKE_MARKS=str(marks),
            XRMOD_FAKE_SLEEP="0.02",
        )
        assert proc.returncode == 0, proc.stderr
        assert_same_library(ref, out)
        by_rank = [p.read_text() for p in marks.glob("unit.*")]
        assert len(by_rank) == 30  # each unit computed once
        assert set(by_rank) == {str(r) for r in range(ranks)}  # rank 0 computes too


@needs_mpirun
def test_a_setup_error_on_one_rank_ends_every_rank_with_one_message(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    proc = gen(2, str(cfg), timeout=120, XRMOD_FAKE_PREPARE_FAIL="1")
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "rank 1 (" in lines[0] and "fake engine cannot start on rank 1" in lines[0]
    assert "Traceback" not in proc.stderr


@needs_mpirun
def test_missing_output_directory_under_mpi(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "missing" / "lib.h5"))
    proc = gen(2, str(cfg), timeout=120)
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "does not exist" in lines[0], proc.stderr


@needs_mpirun
@pytest.mark.parametrize("writer", WRITERS)
def test_a_failed_write_on_one_rank_stops_all_and_resume_completes(tmp_path, writer):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    ref = tmp_path / "ref.h5"
    assert gen(0, str(cfg), "-o", str(ref)).returncode == 0
    args = (str(cfg), "--writer", writer)
    proc = gen(2, *args, timeout=120, XRMOD_FAKE_BREAK_WRITER="7", XRMOD_FAKE_SLEEP="0.02")
    assert proc.returncode == 4, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "KeyError" in lines[0] and "--resume" in lines[0]
    proc = gen(2, *args, "--resume", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_same_library(ref, tmp_path / "lib.h5")


@needs_mpirun
def test_engine_exceptions_under_mpi_are_isolated_and_logged_per_rank(tmp_path):
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(FAKE_CONFIG.format(out=out))
    proc = gen(2, str(cfg), XRMOD_FAKE_RAISE=",".join(map(str, range(0, 30, 3))))
    assert proc.returncode == 0, proc.stderr
    status = read_library(out)["status"].reshape(30, 2)
    assert (status[::3] == Status.ERROR).all()
    assert (status[1::3] != Status.ERROR).all() and (status[1::3] != 0).all()
    logs = sorted(tmp_path.glob("lib.h5.rank*.log"))
    assert logs and "rank logs:" in proc.stderr
    text = "".join(p.read_text() for p in logs)
    assert text.count("RuntimeError: injected failure") == 10
    assert "Traceback" not in proc.stderr.split("rank logs:")[0].split("xrmod.driver: writing")[1]


@needs_mpirun
def test_a_dead_rank_ends_the_job_without_a_hang(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    ref = tmp_path / "ref.h5"
    assert gen(0, str(cfg), "-o", str(ref)).returncode == 0
    proc = gen(2, str(cfg), timeout=120, XRMOD_FAKE_DIE="9", XRMOD_FAKE_SLEEP="0.05")
    assert proc.returncode != 0
    proc = gen(2, str(cfg), "--resume", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_same_library(ref, tmp_path / "lib.h5")


@pytest.mark.parametrize("fail", [False, True], ids=["run", "failed-write"])
def test_engine_is_closed_after_the_run(fake, tmp_path, monkeypatch, fail):
    """The driver lets the engine release its scratch files, also when the run fails."""
    from fake_engine import FakeEngine

    closed = []
    monkeypatch.setattr(FakeEngine, "close", lambda self: closed.append(self), raising=False)
    job = _job(tmp_path)
    if fail:
        fake.setenv("XRMOD_FAKE_BREAK_WRITER", "3")
        with pytest.raises(RunError):
            driver.run(job, progress=False)
    else:
        assert driver.run(job, progress=False) == 0
    assert len(closed) == 1


# --------------------------------------------------------------------------- failure policy
class _FullDisk:
    """A file on a full disk: every write and flush fails with ENOSPC."""

    def write(self, *args):
        raise OSError(errno.ENOSPC, "No space left on device")

    flush = close = write


def _quiet_logger(handler):
    logger = logging.getLogger("xrmod.test-quiet")
    logger.propagate = False
    logger.addHandler(handler)
    return logger


@pytest.mark.parametrize("how", ["unopenable", "full-disk"])
def test_a_log_file_that_fails_never_raises_and_says_so_once(tmp_path, monkeypatch, capfd, how):
    path = tmp_path / "missing-directory" / "x.log"  # cannot be opened, even by root
    if how == "full-disk":
        path = tmp_path / "x.log"
        monkeypatch.setattr(logging.FileHandler, "_open", lambda self: _FullDisk())
    handler = QuietFileHandler(path)
    logger = _quiet_logger(handler)
    try:
        for k in range(50):
            logger.error("record %d", k)  # before: raised (unopenable), or a traceback each
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    err = capfd.readouterr().err
    assert err.count("cannot write the log") == 1 and str(path) in err, err
    assert "Logging error" not in err and "Traceback" not in err
    assert handler.failed


def test_a_bar_that_cannot_be_drawn_does_not_stop_the_run(caplog):
    class Broken:
        def update(self, n):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.EBADF, "closed")

    bar = Progress(10, enabled=False)
    bar._bar = Broken()  # as tqdm would be on a terminal whose stderr breaks
    with caplog.at_level(logging.INFO, logger="xrmod"):
        bar.show(5, 0, force=True)
        bar.show(10, 0)  # now as log lines
        bar.close()
    assert "the progress bar failed" in caplog.text
    assert "10/10 points (100%)" in caplog.text


def test_a_full_disk_ends_the_run_with_one_error_and_exit_4(fake, tmp_path, monkeypatch, capfd):
    """ENOSPC from the rank file and from the rank log (injected): one error, no traceback."""

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RankFileWriter, "flush", full)
    monkeypatch.setattr(logging.FileHandler, "_open", lambda self: _FullDisk())
    fake.setenv("XRMOD_FLUSH_SECONDS", "0")  # the first unit's write hits the full disk
    job = _job(tmp_path)
    with pytest.raises(RunError, match=r"\[Errno 28\] No space left on device.*--resume") as info:
        driver.run(job, progress=False, writer="merge")
    assert info.value.exit_code == EXIT_RUN
    err = capfd.readouterr().err
    assert err.count("cannot write the log") == 1, err
    assert "Logging error" not in err


def test_a_bad_flush_interval_is_refused_on_one_rank_before_anything_is_written(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    proc = gen(0, str(cfg), XRMOD_FLUSH_SECONDS="abc")
    assert proc.returncode == EXIT_INPUT, proc.stderr
    lines = error_lines(proc.stderr)
    assert lines == [
        "xrmod-gen: error: XRMOD_FLUSH_SECONDS must be a number of seconds >= 0, got 'abc'"
    ], proc.stderr
    assert not (tmp_path / "lib.h5").exists()


@needs_mpirun
def test_a_bad_flush_interval_is_refused_on_many_ranks_the_same_way(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp_path / "lib.h5"))
    serial = gen(0, str(cfg), XRMOD_FLUSH_SECONDS="abc")
    proc = gen(2, str(cfg), timeout=120, XRMOD_FLUSH_SECONDS="abc")
    assert proc.returncode == serial.returncode == EXIT_INPUT, proc.stderr
    assert error_lines(proc.stderr) == error_lines(serial.stderr), proc.stderr
    assert not (tmp_path / "lib.h5").exists()


def _interrupt_after(proc, marks, units=6):
    """SIGTERM to both ranks once *units* are done; stderr (a hang fails after 60 s)."""
    try:
        wait_for(lambda: len(list(marks.glob("pid.*"))) == 2, what="ranks to start")
        wait_for(lambda: len(list(marks.glob("unit.*"))) >= units, what="some units")
        for p in marks.glob("pid.*"):
            os.kill(int(p.suffix[1:]), signal.SIGTERM)
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:  # hung: end the whole job before failing
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@needs_mpirun
@pytest.mark.parametrize("writer", WRITERS)
def test_an_unwritable_rank_log_then_sigterm_ends_without_a_hang(tmp_path, writer):
    """Before: rank 1's log.warning raised (the file cannot be opened), rank 0 waited forever."""
    prefix = without_dac_override()
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(FAKE_CONFIG.format(out=out))
    rank_log = rank_log_path(out, 1)
    rank_log.touch()
    rank_log.chmod(0o444)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = start(
        2,
        str(cfg),
        "--writer",
        writer,
        prefix=prefix,
        XRMOD_FAKE_MARKS=str(marks),
        XRMOD_FAKE_SLEEP="0.1",
    )
    stderr = _interrupt_after(proc, marks)
    assert proc.returncode == EXIT_SIGTERM, stderr
    assert "interrupted by SIGTERM" in stderr and "--resume" in stderr, stderr
    assert stderr.count(f"cannot write the log {rank_log}") == 1, stderr
    assert "Logging error" not in stderr and not error_lines(stderr)
    proc = gen(2, str(cfg), "--writer", writer, "--resume", timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_mpirun
def test_an_output_directory_made_unwritable_mid_run_ends_without_a_hang(tmp_path):
    """The rank files cannot be removed after the merge: exit 4, one message, every rank."""
    prefix = without_dac_override()
    directory = tmp_path / "out"
    directory.mkdir()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=directory / "lib.h5"))
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = start(
        2,
        str(cfg),
        "--writer",
        "merge",
        prefix=prefix,
        XRMOD_FAKE_MARKS=str(marks),
        XRMOD_FAKE_SLEEP="0.05",
    )
    try:
        wait_for(lambda: len(list(marks.glob("unit.*"))) >= 4, what="some units")
        directory.chmod(0o555)
        _, stderr = proc.communicate(timeout=60)
    finally:
        directory.chmod(0o755)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == EXIT_RUN, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and "Permission denied" in lines[0] and "--resume" in lines[0], stderr
    proc = gen(2, str(cfg), "--writer", "merge", "--resume", timeout=120)
    assert proc.returncode == 0, proc.stderr


#: 60,000 points: a 5.7 MB library (chunks of whole θ up to 4096 points), and rank files
#: that do not fit beside it in 9 MB.
BIG_CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
seed = 11
[source]
temperatures = {{ start = 1.0, stop = 8.0, num = 15 }}
[modifier]
family = "gaussian"
[modifier.axes]
amp = {{ start = 0.0, stop = 0.2, num = 20 }}
mu = {{ start = 1.0, stop = 8.0, num = 20 }}
sigma = {{ start = 0.3, stop = 1.0, num = 10 }}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 9 MB tmpfs (needs root, and a sandbox that allows mounts); skipped otherwise."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a 9 MB tmpfs needs root")
    directory = tmp_path / "disk"
    directory.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=9m", "tmpfs", str(directory)]
    mount = subprocess.run(cmd, capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a 9 MB tmpfs here: {mount.stderr.strip()}")
    yield directory
    subprocess.run(["umount", str(directory)], check=True)


@needs_mpirun
def test_a_full_disk_under_mpirun_ends_with_one_message_and_exit_4(tmp_path, small_disk):
    """Before: "internal error" on both ranks, ~200 "--- Logging error ---" lines, a segfault."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(BIG_CONFIG.format(out=small_disk / "lib.h5"))
    proc = gen(2, str(cfg), "--writer", "merge", "--no-progress", timeout=120)
    assert proc.returncode == EXIT_RUN, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "[Errno 28]" in lines[0] and "--resume" in lines[0], proc.stderr
    assert "Logging error" not in proc.stderr
    assert "Segmentation fault" not in proc.stderr and "signal 11" not in proc.stderr


def _merge_peak(tmp_path, n_theta):
    """Peak memory (bytes, numpy and Python) of merging two rank files of *n_theta* θ."""
    import tracemalloc

    import dask.threaded  # noqa: F401  (imported before measuring)

    axes = [("b", np.arange(n_theta / 20)), ("a", np.arange(20.0))]
    grid = Grid(axes=axes, temperatures=np.arange(1.0, 11.0))
    out = tmp_path / f"lib{n_theta}.h5"
    _library(out, grid)
    p = grid.points_per_theta
    paths = [rank_file_path(out, r) for r in range(2)]
    writers = [
        RankFileWriter(path, grid, config_text="cfg", rank=r) for r, path in enumerate(paths)
    ]
    ranks = np.random.default_rng(1).integers(0, 2, n_theta)  # as the counter hands out
    for theta in range(n_theta):
        writers[ranks[theta]].write(UnitResult.failed(theta * p, (theta + 1) * p, Status.OK))
    for w in writers:
        w.close()
    tracemalloc.start()
    try:
        report = merge_rank_files(out, paths, grid, config_text="cfg", block_bytes=1 << 18)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.units == n_theta and pending_units(out, grid).size == 0
    return peak


def test_merge_memory_follows_the_block_size_not_the_grid(tmp_path):
    small, large = _merge_peak(tmp_path, 2_000), _merge_peak(tmp_path, 16_000)
    # 14,000 θ more (13 MB of rows): only the per-θ index grows (~50 bytes a θ), not the
    # blocks in flight
    rows = 14_000 * unit_bytes(10)  # 10 temperatures a θ
    assert large - small < rows / 10, (small, large)
    assert large < 4 << 20, large  # a few blocks of 256 kB
