"""Library checksums: recorded when a run ends, verified by ``xrmod info`` and ``--resume``."""

import json
import shutil

import h5py
import numpy as np
import pytest
from fake_engine import fake_engine_in_test
from mpirun_helpers import FAKE_CONFIG

from xrmod.cli import gen_main, main
from xrmod.errors import EXIT_INPUT
from xrmod.integrity import ROOT_ATTR, seal_library, unseal_library, verify_library


@pytest.fixture
def lib(tmp_path, monkeypatch):
    """A complete library of the fake engine (30 units, serial), and its config."""
    fake_engine_in_test(monkeypatch)
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(FAKE_CONFIG.format(out=out))
    assert gen_main([str(cfg), "--no-progress"]) == 0
    return cfg, out


def flip_byte(path, dataset, index, byte=3):
    """Invert one byte of the stored value at *index* of *dataset* (contiguous or chunked)."""
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        if ds.chunks is None:
            offset = ds.id.get_offset()
            position = np.ravel_multi_index(index, ds.shape)
        else:
            chunk = tuple(i // c * c for i, c in zip(index, ds.chunks, strict=True))
            offset = ds.id.get_chunk_info_by_coord(chunk).byte_offset
            within = tuple(i - c for i, c in zip(index, chunk, strict=True))
            position = np.ravel_multi_index(within, ds.chunks)
        offset += int(position) * ds.dtype.itemsize + byte
    with open(path, "r+b") as fh:
        fh.seek(offset)
        old = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([old[0] ^ 0xFF]))


def test_a_finished_library_records_checksums_that_verify(lib, capsys):
    _, out = lib
    with h5py.File(out) as f:
        recorded = json.loads(f.attrs[ROOT_ATTR])
        assert recorded["algorithm"] == "crc32"
        assert "LIBRARY/results" in recorded["datasets"] and "PARAMS/amp" in recorded["datasets"]
        assert f["LIBRARY/results"].attrs["crc32"].dtype == np.uint32
    report = verify_library(out, full=True)
    assert report.ok and report.full and len(report.checked) == len(recorded["datasets"])
    assert main(["info", str(out)]) == 0
    assert "integrity: crc32 checksums of 6 datasets verified" in capsys.readouterr().out
    assert main(["info", "--verify", str(out)]) == 0
    assert "checksums of all" in capsys.readouterr().out


def test_checksums_depend_on_the_values_only(lib, tmp_path):
    _, out = lib
    copy = tmp_path / "copy.h5"
    shutil.copyfile(out, copy)
    unseal_library(copy)
    assert not verify_library(copy).recorded
    seal_library(copy)
    with h5py.File(out) as a, h5py.File(copy) as b:
        assert a.attrs[ROOT_ATTR] == b.attrs[ROOT_ATTR]
        for name in json.loads(a.attrs[ROOT_ATTR])["datasets"]:
            assert a[name].attrs["crc32"].tobytes() == b[name].attrs["crc32"].tobytes(), name


def test_a_flipped_byte_in_the_results_is_found_by_verify_and_resume(lib, capsys):
    cfg, out = lib
    flip_byte(out, "LIBRARY/results", (2, 1, 0, 1, 1))
    # the quick check (default) reads the status and axes only: it says how to check more
    assert main(["info", str(out)]) == 0
    assert "xrmod info --verify checks the results too" in capsys.readouterr().out
    assert main(["info", "--verify", str(out)]) == EXIT_INPUT
    captured = capsys.readouterr()
    assert "integrity: damaged: dataset LIBRARY/results block 0" in captured.out
    assert "damaged: dataset LIBRARY/results block 0" in captured.err
    assert "checksum mismatch" in captured.err
    assert main(["info", "--verify", "--json", str(out)]) == EXIT_INPUT
    found = json.loads(capsys.readouterr().out)["integrity"]
    assert found["full"] and found["damaged"] == [
        "dataset LIBRARY/results block 0 (rows 0-4 of its first axis) checksum mismatch"
    ]
    assert gen_main([str(cfg), "--resume", "--no-progress"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "cannot resume, the library is damaged: dataset LIBRARY/results block 0" in err
    assert "--overwrite" in err


def test_a_flipped_byte_in_a_status_is_found_by_plain_info(lib, capsys):
    _, out = lib
    flip_byte(out, "LIBRARY/status", (4, 2, 1, 0), byte=0)
    assert main(["info", str(out)]) == EXIT_INPUT
    assert "damaged: dataset LIBRARY/status block 0" in capsys.readouterr().err


def test_a_truncated_library_is_named_damaged(lib, capsys):
    cfg, out = lib
    size = out.stat().st_size
    with open(out, "r+b") as fh:
        fh.truncate(size // 2)
    assert main(["info", str(out)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "damaged: the file is truncated" in err and "Traceback" not in err
    assert gen_main([str(cfg), "--resume", "--no-progress"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "cannot resume, damaged: the file is truncated" in err and "--overwrite" in err


def test_a_library_without_checksums_is_read_and_resumed(lib, capsys):
    cfg, out = lib
    unseal_library(out)  # as an older xrmod wrote it
    assert main(["info", str(out)]) == 0
    assert "integrity: no checksums recorded" in capsys.readouterr().out
    assert gen_main([str(cfg), "--resume", "--no-progress"]) == 0  # nothing to do
    assert verify_library(out).ok and verify_library(out).recorded  # sealed again


def test_resume_removes_the_checksums_and_records_new_ones(lib, capsys):
    cfg, out = lib
    with h5py.File(out, "r+") as f:  # forget a unit: --resume computes it again
        f["LIBRARY/status"][0, 0, 0] = 0
    seal_library(out)  # as a run stopped by a signal records them
    assert gen_main([str(cfg), "--resume", "--no-progress"]) == 0
    report = verify_library(out, full=True)
    assert report.ok and report.recorded
    with h5py.File(out) as f:
        assert f["LIBRARY/status"][0, 0, 0].all()
