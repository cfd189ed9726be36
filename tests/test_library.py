import json

import h5py
import numpy as np
import pytest

from xrmod.analysis import describe, open_library
from xrmod.errors import OutputError
from xrmod.grid import Grid
from xrmod.library import (
    EXTRAS,
    FORMAT_NAME,
    FORMAT_VERSION,
    RESULT_COLUMNS,
    LibraryWriter,
    UnitResult,
    create_library,
    unit_bytes,
)
from xrmod.status import Status


def _grid(realizations=1):
    # deliberately non-alphabetical axis order
    return Grid(
        axes=(
            ("sigma", np.array([0.2, 0.5, 1.0])),
            ("amp", np.array([-0.1, 0.1])),
            ("mu", np.array([1.0, 2.0, 3.0, 4.0])),
        ),
        temperatures=np.array([1.0, 2.0, 4.0, 8.0, 16.0]),
        realizations=realizations,
    )


def _create(path, grid):
    create_library(
        path,
        grid,
        family="gaussian",
        units={"mu": "keV", "sigma": "keV", "amp": ""},
        attrs={"engine": "native", "seed": 7, "config": "[library]\n"},
    )


def _unit_result(start, stop, fill):
    n = stop - start
    flat = np.arange(start, stop, dtype=np.float64)
    return UnitResult(
        start=start,
        stop=stop,
        results=np.stack([flat - 0.5, flat, flat + 0.5], axis=1),
        results_modified=np.stack([flat, flat + 1, flat + 2], axis=1) * fill,
        status=np.full(n, Status.OK, dtype=np.int8),
        status_modified=_t1_prime_codes(np.arange(start, stop)),  # differs from status
        extras={name: flat + i for i, name in enumerate(EXTRAS)},
    )


def _t1_prime_codes(flat):
    """The T1′ status the test units give flat index *flat*: 1, −4, −6 in turn."""
    codes = np.array([Status.OK, Status.BOUND_AT_LIMIT, Status.MODEL_JUMP], dtype=np.int8)
    return codes[np.asarray(flat) % 3]


def test_new_library_matches_schema(tmp_path):
    path = tmp_path / "lib.h5"
    grid = _grid()
    _create(path, grid)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME
        assert f.attrs["seed"] == 7
        assert list(f["PARAMS"].attrs["axes"]) == ["sigma", "amp", "mu"]
        assert f["PARAMS"].attrs["family"] == "gaussian"
        np.testing.assert_array_equal(f["PARAMS/mu"][()], [1, 2, 3, 4])
        assert f["PARAMS/mu"].attrs["units"] == "keV"
        np.testing.assert_array_equal(f["LIBRARY/temps"][()], grid.temperatures)
        for name in ("results", "results_modified"):
            ds = f["LIBRARY"][name]
            assert ds.shape == (3, 2, 4, 5, 3)
            assert ds.dtype == np.float64
            assert list(ds.attrs["columns"]) == list(RESULT_COLUMNS)
            assert ds.chunks == (1, 1, 4, 5, 3)  # whole θ along the last axis
            assert np.isnan(ds[()]).all()  # not computed = NaN, never zero
        assert f.attrs["format_version"] == FORMAT_VERSION == 2
        for name in ("status", "status_modified"):  # the point and T1; T1′
            status = f["LIBRARY"][name]
            assert status.dtype == np.int8 and status.shape == (3, 2, 4, 5)
            assert status.chunks == (1, 1, 4, 5)
            assert status.fillvalue == 0 and (status[()] == Status.NOT_COMPUTED).all()
            assert list(status.attrs["dims"]) == ["sigma", "amp", "mu", "temps"]
            codes = json.loads(status.attrs["codes"])
            assert codes[str(int(Status.ARF_NEGATIVE))] == Status.ARF_NEGATIVE.description
            assert codes[str(int(Status.MODEL_JUMP))] == Status.MODEL_JUMP.description
        assert "T1'" in f["LIBRARY/status_modified"].attrs["description"]
        for name in EXTRAS:
            assert f["LIBRARY"][name].shape == (3, 2, 4, 5)


def test_existing_file_is_not_overwritten(tmp_path):
    path = tmp_path / "lib.h5"
    _create(path, _grid())
    with pytest.raises(OutputError, match="exists; use --resume"):
        _create(path, _grid())


@pytest.mark.parametrize("realizations", [1, 3])
def test_units_land_at_their_multi_index(tmp_path, realizations):
    path = tmp_path / "lib.h5"
    grid = _grid(realizations)
    _create(path, grid)
    per_theta = grid.size // grid.n_theta
    with LibraryWriter(path, grid) as writer:
        for k in range(grid.n_units(max_points=2)):  # partial θ chunks as well
            u = grid.unit(k, max_points=2)
            writer.write(_unit_result(u.start, u.stop, fill=2.0))
    with h5py.File(path, "r") as f:
        results = f["LIBRARY/results"][()]
        modified = f["LIBRARY/results_modified"][()]
        status = f["LIBRARY/status"][()]
        status_modified = f["LIBRARY/status_modified"][()]
        norm = f["LIBRARY/norm"][()]
    assert results.shape == (*grid.shape, 3)
    # the value written for flat index i sits at np.unravel_index(i, shape)
    expected = np.arange(grid.size, dtype=np.float64).reshape(grid.shape)
    np.testing.assert_array_equal(results[..., 1], expected)
    np.testing.assert_array_equal(results[..., 0], expected - 0.5)
    np.testing.assert_array_equal(modified[..., 2], 2 * (expected + 2))
    np.testing.assert_array_equal(norm, expected)
    assert (status == Status.OK).all()
    np.testing.assert_array_equal(status_modified, _t1_prime_codes(expected.astype(int)))
    assert per_theta == realizations * 5


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("realizations", [1, 3])
def test_batched_writes_equal_unit_writes(tmp_path, realizations):
    """Units batched (out of order, flushed by time, count and close) land as unit writes do."""
    grid = _grid(realizations)
    units = [grid.unit(k) for k in np.random.default_rng(3).permutation(grid.n_units())]
    _create(tmp_path / "one.h5", grid)
    _create(tmp_path / "batch.h5", grid)
    with LibraryWriter(tmp_path / "one.h5", grid) as writer:
        for k, u in enumerate(units):
            writer.write(_unit_result(u.start, u.stop, fill=k))
    clock = _Clock()
    full = 7 * unit_bytes(grid.points_per_theta)  # a batch of 7 units is full
    writer = LibraryWriter(
        tmp_path / "batch.h5", grid, flush_seconds=2.0, flush_bytes=full, clock=clock
    )
    for k, u in enumerate(units):
        clock.now = 0.3 * k  # a batch every 2 s, i.e. every 7 units, and a full one
        writer.write(_unit_result(u.start, u.stop, fill=k))
        assert len(writer._pending) < 7
    assert writer._pending  # the last ones wait for close
    # a part of a θ (a resumed chunk) is written at once, beside the batch
    part = grid.unit(0, max_points=2)
    writer.write(_unit_result(part.start, part.stop, fill=-1.0))
    writer.close()
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(tmp_path / "batch.h5", "r") as b:
        for name in a["LIBRARY"]:
            x, y = a["LIBRARY"][name][()], b["LIBRARY"][name][()]
            if name == "results_modified":  # the part rewrote points 0 and 1 of θ 0
                x.reshape(-1, 3)[:2] = _unit_result(0, 2, fill=-1.0).results_modified
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_batched_writer_writes_nothing_before_a_batch_is_due(tmp_path):
    grid = _grid()
    _create(tmp_path / "lib.h5", grid)
    clock = _Clock()
    with LibraryWriter(tmp_path / "lib.h5", grid, flush_seconds=2.0, clock=clock) as writer:
        for k in range(3):
            u = grid.unit(k)
            writer.write(_unit_result(u.start, u.stop, fill=1.0))
        assert len(writer._pending) == 3
        status = writer._lib["status"][()]
        assert (status == 0).all()  # still in memory
        clock.now = 2.0
        u = grid.unit(3)
        writer.write(_unit_result(u.start, u.stop, fill=1.0))
        assert not writer._pending
        assert (writer._lib["status"][()].reshape(grid.n_theta, -1)[:4] == Status.OK).all()


def test_unit_result_checks_shapes():
    with pytest.raises(ValueError, match="results_modified has shape"):
        UnitResult(
            0,
            2,
            np.zeros((2, 3)),
            np.zeros((3, 3)),
            np.zeros(2, np.int8),
            np.zeros(2, np.int8),
            {},
        )


def test_describe_and_xarray(tmp_path):
    xr = pytest.importorskip("xarray")
    path = tmp_path / "lib.h5"
    grid = _grid()
    _create(path, grid)
    with LibraryWriter(path, grid) as writer:
        u = grid.unit(0)
        writer.write(_unit_result(u.start, u.stop, 1.0))
    text = describe(path)
    assert "axes (in order):" in text
    assert text.index("sigma:") < text.index("amp:") < text.index("mu:")
    # counts per code for each fit: θ 0's 5 points are 1 for T1 and 1, -4, -6, 1, -4 for T1′
    rows = {int(line.split()[1].rstrip(":")): line.split()[2:4] for line in _status_lines(text)}
    assert rows == {-6: ["0", "1"], -4: ["0", "2"], 0: ["115", "115"], 1: ["5", "2"]}, text
    assert "status per fit" in text and "T1'" in text
    with open_library(path) as ds:
        assert isinstance(ds, xr.Dataset)
        dims = ("sigma", "amp", "mu", "kT_true")
        assert ds["T1"].dims == ds["T1_modified_hi"].dims == dims
        assert ds["status_modified"].dims == ds["status"].dims == dims
        point = {"sigma": 0.2, "amp": -0.1, "mu": 1.0}  # θ 0
        np.testing.assert_array_equal(ds["status_modified"].sel(point), [1, -4, -6, 1, -4])
        np.testing.assert_array_equal(ds["status"].sel(point), [1] * 5)
        with h5py.File(path, "r") as f:
            results = f["LIBRARY/results"][0, 0, 0]  # θ 0: (temps, column)
            modified = f["LIBRARY/results_modified"][0, 0, 0]
        for name, column in (("T1_lo", 0), ("T1", 1), ("T1_hi", 2)):
            np.testing.assert_array_equal(ds[name].sel(point), results[:, column])
            np.testing.assert_array_equal(
                ds[name.replace("T1", "T1_modified")].sel(point), modified[:, column]
            )
        assert ds["T1"].attrs["units"] == "keV" and ds["kT_true"].attrs["units"] == "keV"
        assert ds["mu"].attrs["units"] == "keV" and ds["amp"].attrs["units"] == ""
        assert ds.attrs["family"] == "gaussian" and ds.attrs["format"] == "xrmod-library"


def test_open_library_is_lazy_and_reads_what_it_selects(tmp_path, monkeypatch):
    pytest.importorskip("xarray")
    dask = pytest.importorskip("dask.array")
    path = tmp_path / "lib.h5"
    grid = _grid()
    _create(path, grid)
    with LibraryWriter(path, grid) as writer:
        for k in range(grid.n_units()):
            u = grid.unit(k)
            writer.write(_unit_result(u.start, u.stop, float(k + 1)))
    reads = []
    read = h5py.Dataset.__getitem__
    monkeypatch.setattr(
        h5py.Dataset, "__getitem__", lambda self, key: (reads.append(self.name), read(self, key))[1]
    )
    with open_library(path) as ds:
        assert isinstance(ds["T1"].data, dask.Array)
        assert not [r for r in reads if r.startswith("/LIBRARY/results")]  # nothing read yet
        one = ds["T1"].isel(sigma=0, amp=1, mu=1, kT_true=2).compute()
        flat = np.ravel_multi_index((0, 1, 1, 2), ds["T1"].shape)
    assert float(one) == flat  # every point's T1 is its flat index
    assert reads.count("/LIBRARY/results") == 1, reads


def _status_lines(text):
    """The lines of ``describe`` that count one status code ("status  -4: ...")."""
    import re

    return [line for line in text.splitlines() if re.match(r"\s+status +-?\d+:", line)]


def _make_version_1(path):
    """Turn a library into what xrmod wrote before the per-fit status (format 1)."""
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs.pop("checksums", None)  # recorded since format 2
        del f["LIBRARY/status_modified"]


def test_describe_reads_a_version_1_library(tmp_path):
    path = tmp_path / "lib.h5"
    grid = _grid()
    _create(path, grid)
    with LibraryWriter(path, grid) as writer:
        u = grid.unit(0)
        writer.write(_unit_result(u.start, u.stop, 1.0))
    _make_version_1(path)
    text = describe(path)
    assert "format_version: 1" in text
    assert "format version 1: one status for both fits" in text
    rows = {int(line.split()[1].rstrip(":")): line.split()[2] for line in _status_lines(text)}
    assert rows == {0: "115", 1: "5"}, text
    pytest.importorskip("xarray")
    with open_library(path) as ds:
        assert "status_modified" not in ds and int(ds["status"].sum()) == 5


def test_a_unit_lands_status_last(tmp_path, monkeypatch):
    """Direct and batched writes: ``status`` (the done marker) after ``status_modified``."""
    import xrmod.library as library

    grid = _grid()
    order = []
    put, many = library.LibraryWriter._put, library._BlockWriter.write_many
    monkeypatch.setattr(
        library.LibraryWriter,
        "_put",
        lambda self, name, *a: (order.append(name), put(self, name, *a)),
    )
    monkeypatch.setattr(
        library._BlockWriter,
        "write_many",
        lambda self, leads, values: (
            order.append(h5py.h5i.get_name(self._id)),
            many(self, leads, values),
        ),
    )
    for flush in (0.0, 60.0):
        order.clear()
        path = tmp_path / f"lib{flush}.h5"
        _create(path, grid)
        with LibraryWriter(path, grid, flush_seconds=flush) as writer:
            u = grid.unit(0)
            writer.write(_unit_result(u.start, u.stop, 1.0))
        names = [n.decode().rsplit("/", 1)[-1] if isinstance(n, bytes) else n for n in order]
        assert names[-2:] == ["status_modified", "status"], names
        assert set(names) == {"results", "results_modified", *EXTRAS, "status_modified", "status"}


def test_describe_rejects_other_files(tmp_path):
    from xrmod.errors import InputError

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="not an xrmod library"):
        describe(other)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        describe(garbage)


def test_batched_writer_refuses_an_unstorable_unit_at_once(tmp_path):
    """A unit with an unknown extra fails when written, and the batch before it is kept."""
    grid = _grid()
    _create(tmp_path / "lib.h5", grid)
    writer = LibraryWriter(tmp_path / "lib.h5", grid, flush_seconds=60.0)
    u = grid.unit(0)
    writer.write(_unit_result(u.start, u.stop, fill=1.0))
    bad = _unit_result(grid.unit(1).start, grid.unit(1).stop, fill=1.0)
    bad.extras["bogus"] = bad.extras.pop("counts")
    with pytest.raises(KeyError, match="bogus"):
        writer.write(bad)
    writer.close()
    with h5py.File(tmp_path / "lib.h5", "r") as f:
        status = f["LIBRARY/status"][()].reshape(grid.n_theta, -1)
    assert (status[0] == Status.OK).all() and (status[1:] == 0).all()


def test_open_library_reads_a_library_another_process_is_writing(tmp_path):
    """A writer's HDF5 lock does not stop open_library (it opens without the lock then)."""
    import subprocess
    import sys

    pytest.importorskip("xarray")
    path = tmp_path / "lib.h5"
    grid = _grid()
    _create(path, grid)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import h5py, sys; f = h5py.File({str(path)!r}, 'r+'); "
            "print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(OSError, match="lock"):
            h5py.File(path, "r")  # what the lock does to a plain reader
        with open_library(path) as ds:
            assert int((ds["status"] == 0).sum()) == ds["status"].size  # nothing computed yet
    finally:
        holder.communicate("", timeout=30)
