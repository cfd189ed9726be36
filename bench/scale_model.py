"""Scale model of the MPI driver: measure its costs here, then model 100 to 10,000 ranks.

    python bench/scale_model.py measure [--json bench/scale_model.json] [--mpirun mpirun]
    python bench/scale_model.py model [--json bench/scale_model.json] [--figure docs/scaling.png]

``measure`` times, on this machine, what the model needs (docs/scaling.md
explains each figure):

- the shared counter (:class:`xrmod.driver.counter.SharedCounter`): seconds
  per fetch with 2 and 3 ranks (3 oversubscribe 2 cores), every rank
  fetching back to back (the counter's service time), and the wait per
  fetch when every rank computes between fetches (what the prefetch hides);
- one work unit of the native engine on the bench grid (10 temperatures
  per θ, asimov noise): seconds per unit and per point;
- writing: a unit (one θ) written alone and in 4 MB batches into a
  library of 10⁶ points, by the direct/mpio path (:class:`LibraryWriter`,
  serial HDF5 here) and into a rank file (:class:`RankFileWriter`);
- the merge (:func:`xrmod.merge.merge_rank_files`): rows and points per
  second from 2 to 64 rank files, and its peak memory above the baseline;
- creating an empty HDF5 file (a per-rank file's metadata cost, local disk).

``model`` reads those figures and draws throughput against ranks for
each writer and the counter's utilisation (``docs/scaling.png``) with the
parameters of a parallel file system stated in :data:`FS` (Lustre-like).
Not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "scale_model.json"
DEFAULT_FIGURE = ROOT / "docs" / "scaling.png"
log = logging.getLogger("scale_model")

#: The bench grid (bench/scaling.py's): 10 temperatures per θ, asimov noise.
CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
[source]
temperatures = {{ start = 1.0, stop = 10.0, num = 10, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = {{ start = 0.5, stop = 8.0, num = 20 }}
sigma = {{ start = 0.2, stop = 2.0, num = 10 }}
amp = {{ start = -0.2, stop = 0.2, num = 5 }}
"""

#: A parallel file system as the model assumes it (stated, not measured; Lustre-like,
#: typical of a mid-size centre): per-OST streaming bandwidth, small-write operations
#: per second per OST (extent locks of a shared file), stripes of the library, the
#: metadata server's file creations and opens per second, one client's bandwidth.
FS = {
    "ost_bandwidth": 1.0e9,  # bytes/s per OST, large sequential writes
    "ost_small_iops": 2.0e4,  # small (< 64 KB) writes/s per OST into a shared file
    "stripes": 8,  # stripe count of the library (lfs setstripe -c 8)
    "osts": 64,  # OSTs the rank files spread over (stripe count 1 each)
    "mds_creates": 2.0e4,  # file creations/s of the metadata server
    "mds_opens": 5.0e4,  # opens/s of the metadata server
    "client_bandwidth": 1.5e9,  # bytes/s one process (rank 0 merging) reads or writes
    "open_latency": 2.0e-3,  # s per file open by one client (round trips to MDS and OSS)
}


# --------------------------------------------------------------------------- helpers
def _grid(n_mu: int = 100, n_sigma: int = 10, n_amp: int = 100, nt: int = 10):
    from xrmod.grid import Grid

    return Grid(
        [
            ("mu", np.linspace(0.5, 8.0, n_mu)),
            ("sigma", np.linspace(0.2, 2.0, n_sigma)),
            ("amp", np.linspace(-0.2, 0.2, n_amp)),
        ],
        np.geomspace(1.0, 10.0, nt),
    )


def _unit(grid, theta: int):
    """A fake finished unit of θ *theta* (values do not matter for I/O)."""
    from xrmod.engines.base import EXTRAS, UnitResult

    p = grid.points_per_theta
    start = theta * p
    res = np.full((p, 3), 1.0 + theta)
    ok = np.ones(p, dtype=np.int8)
    return UnitResult(start, start + p, res, res, ok, ok, {n: np.ones(p) for n in EXTRAS})


def _create(path: Path, grid) -> float:
    from xrmod.library import create_library

    t = time.perf_counter()
    create_library(path, grid, family="gaussian", units={}, attrs={"config": "bench"})
    return time.perf_counter() - t


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    return env


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Reset VmHWM (Linux: write 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


# --------------------------------------------------------------------------- counter
def counter_worker(fetches: int, unit_s: float) -> None:
    """In each rank: take positions until *fetches* are handed out; spin *unit_s* per unit."""
    from xrmod.driver.comm import world
    from xrmod.driver.counter import make_counter

    comm = world()
    counter = make_counter(comm, fetches)
    comm.Barrier()
    got, wait = [], 0.0
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        i = counter.take()
        wait += time.perf_counter() - t
        if i >= fetches:
            break
        got.append(i)
        end = time.perf_counter() + unit_s
        while time.perf_counter() < end:  # compute: no MPI call
            pass
    elapsed = time.perf_counter() - start
    counter.leave()
    rows = comm.gather((got, wait, elapsed), root=0)
    counter.close()
    if comm.rank == 0:
        every = sorted(i for g, _, _ in rows for i in g)
        assert every == list(range(fetches)), "a position lost or handed out twice"
        takes = sum(len(g) + 1 for g, _, _ in rows)
        print(
            json.dumps(
                {
                    "ranks": comm.size,
                    "fetches": fetches,
                    "unit_s": unit_s,
                    "wall_s": max(e for _, _, e in rows),
                    "s_per_fetch_served": max(e for _, _, e in rows) / takes,
                    "wait_per_take_s": sum(w for _, w, _ in rows) / takes,
                }
            )
        )


def measure_counter(mpirun: str) -> list[dict]:
    out = []
    for ranks in (2, 3):
        for fetches, unit_s in ((20000, 0.0), (1500, 0.004)):
            cmd = [shutil.which(mpirun) or mpirun, "-n", str(ranks), sys.executable, __file__]
            cmd += ["--counter-worker", str(fetches), str(unit_s)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            log.info("counter %s", row)
            out.append(row)
    return out


# --------------------------------------------------------------------------- compute
def measure_compute(tmp: Path, n_units: int = 40) -> dict:
    from xrmod.engines import get_engine
    from xrmod.job import load_job

    cfg = tmp / "bench.toml"
    cfg.write_text(CONFIG.format(out=tmp / "bench.h5"))
    job = load_job(cfg)
    engine = get_engine("native")
    t = time.perf_counter()
    engine.prepare(job)
    prepare_s = time.perf_counter() - t
    grid = job.grid
    rng = np.random.default_rng(1)
    ks = rng.choice(grid.n_units(), size=min(n_units, grid.n_units()), replace=False)
    engine.run_unit(grid.unit(int(ks[0])))  # warm
    t = time.perf_counter()
    for k in ks:
        engine.run_unit(grid.unit(int(k)))
    unit_s = (time.perf_counter() - t) / ks.size
    engine.close()
    row = {
        "prepare_s": prepare_s,
        "unit_s": unit_s,
        "points_per_unit": grid.points_per_theta,
        "point_s": unit_s / grid.points_per_theta,
    }
    log.info("compute %s", row)
    return row


# --------------------------------------------------------------------------- writes
def _library_writes(tmp: Path, grid, per_batch: int) -> dict:
    """Create a library, write units one at a time and in batches; seconds."""
    from xrmod.library import LibraryWriter

    out = {}
    lib = tmp / "w.h5"
    lib.unlink(missing_ok=True)
    out["create_s"] = _create(lib, grid)
    # one unit at a time (flush_seconds = 0), θ spread as on many ranks
    thetas = np.arange(0, grid.n_theta, 37)[:2000]
    with LibraryWriter(lib, grid) as w:
        t = time.perf_counter()
        for th in thetas:
            w.write(_unit(grid, int(th)))
        out["unit_s"] = (time.perf_counter() - t) / thetas.size
    # a 4 MB batch: θ consecutive (one rank, or blocks of units), every 16th (16 ranks)
    for label, stride in (("batch_contiguous_s", 1), ("batch_stride16_s", 16)):
        units = [_unit(grid, int(th)) for th in range(0, per_batch * stride, stride)]
        with LibraryWriter(lib, grid, flush_seconds=3600) as w:
            t = time.perf_counter()
            for u in units:
                w.write(u)
            w.flush()
            out[label] = time.perf_counter() - t
    lib.unlink()
    return out


def measure_writes(tmp: Path) -> dict:
    import xrmod.library
    from xrmod.library import FLUSH_BYTES, UnitBatch, unit_bytes
    from xrmod.merge import RankFileWriter

    grid = _grid()
    per_batch = UnitBatch(grid.points_per_theta).capacity
    out: dict = {
        "grid_points": grid.size,
        "unit_bytes": unit_bytes(grid.points_per_theta),
        "batch_bytes": FLUSH_BYTES,
        "units_per_batch": per_batch,
    }
    chunk_points = xrmod.library.CHUNK_POINTS
    for label, points in (("library_one_theta_chunks", 1), ("library", chunk_points)):
        xrmod.library.CHUNK_POINTS = points  # 1: one θ a chunk (xrmod before 2026-12-07)
        try:
            out[label] = _library_writes(tmp, grid, per_batch)
        finally:
            xrmod.library.CHUNK_POINTS = chunk_points
    rank_file = tmp / "w.rank0.h5"
    units = [_unit(grid, th) for th in range(per_batch)]
    with RankFileWriter(rank_file, grid, config_text="bench", rank=0, flush_seconds=0) as w:
        t = time.perf_counter()
        for u in units[:500]:
            w.write(u)
        out["rankfile_unit_s"] = (time.perf_counter() - t) / 500
    with RankFileWriter(rank_file, grid, config_text="bench", rank=0, flush_seconds=3600) as w:
        t = time.perf_counter()
        for u in units:  # the batch is full at the last one: written then
            w.write(u)
        w.flush()
        out["rankfile_batch_s"] = time.perf_counter() - t
    log.info("writes %s", out)
    return out


def measure_file_create(tmp: Path, n: int = 200) -> float:
    """Seconds to create and close an HDF5 file holding a few datasets (local disk)."""
    import h5py

    t = time.perf_counter()
    for i in range(n):
        with h5py.File(tmp / f"c{i}.h5", "w") as f:
            for name in ("a", "b", "c"):
                f.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
    seconds = (time.perf_counter() - t) / n
    for i in range(n):
        (tmp / f"c{i}.h5").unlink()
    return seconds


# --------------------------------------------------------------------------- merge
def merge_worker(tmp: str, files: int, n_amp: int, block_bytes: int = 0) -> None:
    """In a fresh process: write *files* rank files of a grid, merge them; print figures.

    *block_bytes* 0: the merge's default (:func:`xrmod.merge.merge_block_bytes`).
    """
    from xrmod.merge import RankFileWriter, merge_block_bytes, merge_rank_files

    d = Path(tmp)
    grid = _grid(n_amp=n_amp)
    lib = d / f"m{files}.h5"
    _create(lib, grid)
    paths = [d / f"m{files}.h5.rank{r}.h5" for r in range(files)]
    writers = [
        RankFileWriter(p, grid, config_text="bench", rank=r, flush_seconds=3600)
        for r, p in enumerate(paths)
    ]
    for th in range(grid.n_theta):  # dynamic scheduling: θ spread over the ranks
        writers[th % files].write(_unit(grid, th))
    for w in writers:
        w.close()
    import dask.threaded  # noqa: F401  (the writer imports it before the merge)

    base = _rss_mb()
    _reset_peak()
    t = time.perf_counter()
    report = merge_rank_files(
        lib, paths, grid, config_text="bench", block_bytes=block_bytes or None
    )
    seconds = time.perf_counter() - t
    peak = _rss_mb("VmHWM")
    assert report.units == grid.n_theta
    print(
        json.dumps(
            {
                "files": files,
                "block_bytes": block_bytes or merge_block_bytes(files),
                "points": grid.size,
                "units": grid.n_theta,
                "seconds": seconds,
                "units_per_s": grid.n_theta / seconds,
                "points_per_s": grid.size / seconds,
                "peak_above_base_mb": peak - base,
            }
        )
    )


def measure_merge(tmp: Path) -> list[dict]:
    out = []
    cases = ((2, 100, 0), (8, 100, 0), (64, 100, 0), (256, 100, 0), (2, 20, 0), (64, 100, 1 << 20))
    for files, n_amp, block in cases:
        cmd = [sys.executable, __file__, "--merge-worker", str(tmp), str(files), str(n_amp)]
        cmd.append(str(block))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        log.info("merge %s", row)
        out.append(row)
        for p in tmp.glob("m*.h5*"):
            p.unlink()
    return out


def measure(opts: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="xrmod-scale-") as name:
        tmp = Path(name)
        figures = {
            "machine": {"cores": os.cpu_count()},
            "counter": measure_counter(opts.mpirun),
            "compute": measure_compute(tmp),
            "writes": measure_writes(tmp),
            "file_create_s": measure_file_create(tmp),
            "merge": measure_merge(tmp),
        }
    opts.json.write_text(json.dumps(figures, indent=1) + "\n")
    log.info("wrote %s", opts.json)


# --------------------------------------------------------------------------- model
def units_per_fetch(ranks: np.ndarray) -> np.ndarray:
    """As :func:`xrmod.driver.counter.units_per_fetch` (no cap by the job's size)."""
    from xrmod.driver.counter import RANKS_PER_COUNTER

    return np.maximum(1, np.ceil(ranks / RANKS_PER_COUNTER))


def counter_model(ranks: np.ndarray, t_counter: float, t_fetch_work: np.ndarray) -> dict:
    """The shared counter as a single server: utilisation, wait per fetch, efficiency.

    Fetches arrive at rate N / t_fetch_work (one per unit, or per block of
    units), each served in *t_counter*: ρ = N·t_counter / t_fetch_work. The
    wait in the queue (M/D/1) is ρ·t_counter / (2(1 − ρ)); the prefetch hides
    it while it is shorter than the work of a fetch. Past ρ = 1 the counter
    serves 1 / t_counter fetches a second and no more.
    """
    rho = ranks * t_counter / t_fetch_work
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(rho < 1, rho * t_counter / (2 * (1 - rho)), np.inf)
    served = np.minimum(ranks / t_fetch_work, 1.0 / t_counter)  # fetches/s
    return {"rho": rho, "wait_s": wait, "efficiency": served * t_fetch_work / ranks}


def merge_fit(merge: list[dict], unit_bytes: float) -> dict:
    """The merge's cost from the measured runs: points/s, s per file, s per read.

    seconds = points / rate + files · t_file + reads · t_read, with
    reads = 13 datasets · files · blocks (every block reads every file),
    fitted by least squares to every measured merge.
    """
    from xrmod.merge import merge_block_bytes

    def blocks(row: dict) -> float:
        return math.ceil(row["units"] * unit_bytes / row["block_bytes"])

    a = np.array([[r["points"], r["files"], 13 * r["files"] * blocks(r)] for r in merge], float)
    b = np.array([r["seconds"] for r in merge])
    (per_point, t_file, t_read), *_ = np.linalg.lstsq(a, b, rcond=None)
    rate = 1.0 / per_point
    return {
        "rate": rate,
        "t_file": max(float(t_file), 0.0),
        "t_read": max(float(t_read), 0.0),
        "block_bytes": merge_block_bytes,
    }


def merge_seconds(files: np.ndarray, points: float, p: int, unit_bytes: float, fit: dict):
    """Rank 0's merge of *files* rank files of *points* points (the fit's terms)."""
    nbytes = points / p * unit_bytes
    blocks = np.ceil(nbytes / np.array([fit["block_bytes"](int(f)) for f in files]))
    return points / fit["rate"] + files * fit["t_file"] + 13 * files * blocks * fit["t_read"]


def writer_model(ranks, points, m: dict, fit: dict, fs: dict, t_counter: float) -> dict:
    """Seconds of a run of *points* on N ranks: compute alone, merge writer, mpio writer.

    Both: compute points · t_point / N, slowed by the counter (its
    efficiency at the implemented units per fetch k) and by each rank's own
    HDF5 work per unit (measured: a unit in a batch of consecutive θ vs one
    of scattered θ; a block of k consecutive θ is one run).
    merge: + rank files created at the metadata server's rate, + rank 0's
    merge (measured fit) with each file's open on the parallel file system.
    mpio: a batch writes one operation per dataset (11) per run of θ; the
    library's stripes serve stripes · small_iops of them a second, and
    stripes · ost_bandwidth bytes; past that the file system sets the pace.
    """
    c, w = m["compute"], m["writes"]
    p, point_s, unit_bytes = c["points_per_unit"], c["point_s"], w["unit_bytes"]
    k = units_per_fetch(ranks)
    batch = w["units_per_batch"]
    w_contig = w["library"]["batch_contiguous_s"] / batch
    w_scatter = w["library"]["batch_stride16_s"] / batch
    unit_s = p * point_s
    eff = counter_model(ranks, t_counter, k * unit_s)["efficiency"]
    ideal = points * point_s / ranks
    rank_s = points / p * (unit_s + w_contig + (w_scatter - w_contig) / k) / ranks / eff
    merge = (
        np.maximum(rank_s, points / p * w["rankfile_batch_s"] / batch / ranks)
        + ranks / fs["mds_creates"]
        + merge_seconds(ranks, points, p, unit_bytes, fit)
        + ranks * fs["open_latency"]
    )
    ops = points / (p * k) * 11 / (fs["stripes"] * fs["ost_small_iops"])
    stream = points / p * unit_bytes / (fs["stripes"] * fs["ost_bandwidth"])
    mpio = np.maximum(rank_s, np.maximum(ops, stream)) + ranks / fs["mds_opens"]
    return {"ideal": ideal, "rank": rank_s, "merge": merge, "mpio": mpio}


def model(opts: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xrmod.driver.counter import RANKS_PER_COUNTER

    m = json.loads(opts.json.read_text())
    c, w = m["compute"], m["writes"]
    unit_s = c["unit_s"]
    t_counter = max(r["s_per_fetch_served"] for r in m["counter"] if r["unit_s"] == 0)
    fit = merge_fit(m["merge"], w["unit_bytes"])
    ranks = np.unique(np.geomspace(100, 10000, 61).round())
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))

    ax = axes[0]
    for scale, style in ((1.0, "-"), (4.0, "--")):
        blocks = f"⌈N/{RANKS_PER_COUNTER}⌉ units/fetch"
        for k, color, what in ((1, "C3", "1 unit/fetch"), (None, "C0", blocks)):
            kk = units_per_fetch(ranks) if k is None else k
            rho = counter_model(ranks, scale * t_counter, kk * unit_s)["rho"]
            ax.plot(ranks, rho, style, color=color, label=f"{what}, t_c x{scale:g}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="ranks N", ylabel="counter utilisation ρ")
    ax.set_title(f"shared counter: t_c = {t_counter * 1e6:.1f} µs, unit {unit_s * 1e3:.1f} ms")
    ax.legend(fontsize=7)

    ax = axes[1]
    for points, color in ((1e6, "C0"), (1e7, "C2"), (1e8, "C1"), (1e9, "C4")):
        t = writer_model(ranks, points, m, fit, FS, t_counter)
        ax.plot(ranks, t["ideal"] / t["merge"], "--", color=color, label=f"merge {points:.0e}")
        ax.plot(ranks, t["ideal"] / t["mpio"], "-", color=color, label=f"mpio {points:.0e}")
    ax.axhline(0.5, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="ranks N", ylabel="efficiency (compute alone / run)")
    ax.set(ylim=(0, 1.05))
    ax.set_title("writers: efficiency by grid size (points)")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[2]
    rows = [r for r in m["merge"] if r["points"] == max(x["points"] for x in m["merge"])]
    default = [r for r in rows if r["block_bytes"] == fit["block_bytes"](r["files"])]
    files = np.array([r["files"] for r in default])
    ax.plot(files, [r["seconds"] for r in default], "o", label="measured (10⁶ points)")
    grid_files = np.unique(np.geomspace(2, 10000, 40).round())
    for points, color in ((1e6, "C0"), (1e8, "C1")):
        model_s = merge_seconds(grid_files, points, c["points_per_unit"], w["unit_bytes"], fit)
        ax.plot(grid_files, model_s, "-", color=color, label=f"model, {points:.0e} points")
    ax.set(xscale="log", yscale="log", xlabel="rank files", ylabel="merge seconds (rank 0)")
    ax.set_title(f"merge: {fit['rate']:.3g} points/s, {fit['t_file'] * 1e3:.1f} ms/file")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(opts.figure, dpi=100)
    log.info("wrote %s", opts.figure)
    _report(ranks, m, fit, t_counter)


def _half(ranks: np.ndarray, eff: np.ndarray) -> str:
    below = np.flatnonzero(eff < 0.5)
    return f"{ranks[below[0]]:.0f}" if below.size else "> 10000"


def _report(ranks: np.ndarray, m: dict, fit: dict, t_counter: float) -> None:
    from xrmod.driver.counter import RANKS_PER_COUNTER

    unit_s = m["compute"]["unit_s"]
    print(
        f"t_counter {t_counter * 1e6:.2f} us, unit {unit_s * 1e3:.2f} ms "
        f"({m['compute']['points_per_unit']} points), merge {fit['rate']:.3g} points/s + "
        f"{fit['t_file'] * 1e3:.1f} ms/file + {fit['t_read'] * 1e6:.0f} us/read"
    )
    for scale in (1.0, 4.0):
        n1 = unit_s / (scale * t_counter)
        print(f"counter, t_c x{scale:g}, 1 unit/fetch: ρ = 0.5 at N = {n1 / 2:.0f}, 1 at {n1:.0f}")
        rho = counter_model(ranks, scale * t_counter, units_per_fetch(ranks) * unit_s)["rho"]
        print(
            f"  ceil(N/{RANKS_PER_COUNTER}) units/fetch: max ρ over 100..10000 ranks = "
            f"{rho.max():.3f}"
        )
    for points in (1e5, 1e6, 1e7, 1e8, 1e9):
        t = writer_model(ranks, points, m, fit, FS, t_counter)
        merge, mpio = t["ideal"] / t["merge"], t["ideal"] / t["mpio"]
        at = np.flatnonzero(ranks == 1000)[0]
        print(
            f"{points:.0e} points: efficiency < 0.5 from N = merge {_half(ranks, merge)}, "
            f"mpio {_half(ranks, mpio)}; at 1000 ranks merge {merge[at]:.2f}, mpio {mpio[at]:.2f}"
        )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) > 1 and sys.argv[1] == "--counter-worker":
        counter_worker(int(sys.argv[2]), float(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--merge-worker":
        merge_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("measure", "model"))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--figure", type=Path, default=DEFAULT_FIGURE)
    parser.add_argument("--mpirun", default="mpirun")
    opts = parser.parse_args()
    measure(opts) if opts.what == "measure" else model(opts)


if __name__ == "__main__":
    main()
