"""What keeps big grids cheap (docs/scaling.md): chunks of many θ, merge blocks by file count.

No timings here (bench/big_grid.py measures them): the tests check the
behaviour the timings follow from.
"""

from __future__ import annotations

import h5py
import numpy as np

from xrmod.grid import Grid
from xrmod.library import CHUNK_POINTS, create_library
from xrmod.merge import merge_block_bytes


def _grid(n_last: int, nt: int) -> Grid:
    return Grid(
        [("mu", np.linspace(1, 8, 10)), ("sigma", [0.3, 1.0]), ("amp", np.linspace(-1, 1, n_last))],
        np.geomspace(1.0, 10.0, nt),
    )


def _create(path, grid):
    create_library(path, grid, family="gaussian", units={}, attrs={"config": "x"})


def test_chunks_hold_many_small_theta(tmp_path):
    # 10 points per θ: a chunk takes a whole row of the last axis (100 θ, 1000 points),
    # so the chunk index has n_theta / 100 entries, not n_theta
    grid = _grid(n_last=100, nt=10)
    _create(tmp_path / "lib.h5", grid)
    with h5py.File(tmp_path / "lib.h5", "r") as f:
        for name, ds in f["LIBRARY"].items():
            if ds.ndim < 4:
                continue
            assert ds.chunks[:4] == (1, 1, 100, 10), name
            assert ds.id.get_num_chunks() == grid.n_theta // 100, name


def test_a_chunk_never_exceeds_its_points_unless_one_theta_does(tmp_path):
    grid = _grid(n_last=100, nt=CHUNK_POINTS // 8)  # 8 θ per chunk
    _create(tmp_path / "a.h5", grid)
    big = _grid(n_last=3, nt=CHUNK_POINTS + 1)  # one θ is more than a chunk's points
    _create(tmp_path / "b.h5", big)
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
        assert a["LIBRARY/status"].chunks == (1, 1, 8, CHUNK_POINTS // 8)
        assert b["LIBRARY/status"].chunks == (1, 1, 1, CHUNK_POINTS + 1)


def test_merge_blocks_grow_with_the_files_within_bounds():
    # every block reads every rank file: 256 KB a file, 1 MB to 64 MB (the merge's memory)
    assert merge_block_bytes(1) == 1 << 20
    assert merge_block_bytes(64) == 64 * (256 << 10)
    assert merge_block_bytes(10_000) == 64 << 20
    sizes = [merge_block_bytes(n) for n in range(1, 2000, 7)]
    assert sizes == sorted(sizes)


def test_info_reads_the_statuses_and_never_the_results(tmp_path, monkeypatch):
    # what xrmod info costs on a big library: the status datasets (1 byte a point
    # each), the axes and temperatures; the results (48 bytes a point) and extras
    # (40) are never read
    from xrmod.analysis import summary

    grid = _grid(n_last=100, nt=10)
    _create(tmp_path / "lib.h5", grid)
    read: dict[str, int] = {}
    getitem = h5py.Dataset.__getitem__

    def counting(self, *args, **kwargs):
        out = getitem(self, *args, **kwargs)
        read[self.name] = read.get(self.name, 0) + int(np.asarray(out).nbytes)
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    monkeypatch.setattr(h5py.Dataset, "read_direct", None)  # every read goes through []
    s = summary(tmp_path / "lib.h5")
    assert s["points"]["not_computed"] == grid.size
    big = {name: n for name, n in read.items() if n > 1000}
    assert "/LIBRARY/status" in big  # the counting sees info's reads
    assert set(big) <= {"/LIBRARY/status", "/LIBRARY/status_modified"}, big
    assert all(n <= 2 * grid.size for n in big.values())  # each read at most twice
