"""A 10⁶-point grid: library creation, rank memory, ``xrmod info``, the merge.

    python bench/big_grid.py [--points 1000000] [--real 100000] [--json FILE]

Measures, on a grid of ``--points`` points (10 temperatures per θ: 10⁵ θ):

- creating the empty library (:func:`xrmod.library.create_library`): seconds,
  file size, chunks per dataset;
- ``xrmod info`` on it (the command, start-up included, and
  :func:`xrmod.analysis.summary` alone);
- a whole run on 2 ranks with the merge writer and the test suite's
  zero-cost engine (``tests/fake_engine.py``): points/s, the merge step, peak
  RSS per rank, against a grid 10x smaller (rank memory must not follow the
  grid); then ``xrmod info`` on the finished library;
- a real run (native engine) of ``--real`` points on 2 ranks (0: skipped).

Uses bench/scaling.py's worker (``--engine fake`` there) for the runs. Not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCALING = ROOT / "bench" / "scaling.py"
log = logging.getLogger("big_grid")

CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
[source]
temperatures = {{ start = 1.0, stop = 10.0, num = 10, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = {{ start = 0.5, stop = 8.0, num = 100 }}
sigma = {{ start = 0.2, stop = 2.0, num = 10 }}
amp = {{ start = -0.2, stop = 0.2, num = {n_amp} }}
"""

SUMMARY = re.compile(r"(\d+) points in ([\d.]+) s \(([\d.]+) points/s\).*merge ([\d.]+) s")


def _config(tmp: Path, points: int) -> Path:
    n_amp = max(1, points // (100 * 10 * 10))
    cfg = tmp / f"grid{points}.toml"
    cfg.write_text(CONFIG.format(out=tmp / "lib.h5", n_amp=n_amp))
    return cfg


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def skeleton(tmp: Path, cfg: Path) -> dict:
    """Create the empty library of *cfg*; seconds, size, chunks."""
    import h5py

    from xrmod.job import load_job
    from xrmod.library import create_library

    job = load_job(cfg)
    path = tmp / "skeleton.h5"
    start = time.perf_counter()
    create_library(
        path, job.grid, family=job.family.name, units=job.family.units, attrs=job.provenance()
    )
    seconds = time.perf_counter() - start
    with h5py.File(path, "r") as f:
        ds = f["LIBRARY/results"]
        chunks = ds.id.get_num_chunks()
        chunk_shape = ds.chunks
    row = {
        "points": job.grid.size,
        "create_s": seconds,
        "file_mb": path.stat().st_size / 2**20,
        "chunks_per_dataset": chunks,
        "chunk_shape": list(chunk_shape),
    }
    row.update(info(path))
    log.info("skeleton %s", row)
    path.unlink()
    return row


def info(path: Path) -> dict:
    """Seconds of ``xrmod info PATH`` (the command: wall and CPU) and of summary() alone."""
    from xrmod.analysis import summary

    exe = shutil.which("xrmod") or "xrmod"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([exe, "info", str(path)], check=True, capture_output=True)
    command = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    start = time.perf_counter()
    summary(path)
    return {
        "info_command_s": command,
        "info_command_cpu_s": cpu,
        "info_summary_s": time.perf_counter() - start,
    }


def run(tmp: Path, cfg: Path, engine: str, ranks: int = 2) -> dict:
    """``mpirun -n RANKS`` xrmod-gen with the merge writer; figures and peak RSS per rank."""
    out = tmp / f"{cfg.stem}-{engine}.h5"
    rss_dir = tmp / f"rss-{cfg.stem}-{engine}"
    rss_dir.mkdir()
    cmd = [shutil.which("mpirun") or "mpirun", "-n", str(ranks), sys.executable, str(SCALING)]
    cmd += ["--worker", engine, str(rss_dir), str(cfg), "-o", str(out)]
    cmd += ["--writer", "merge", "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    m = SUMMARY.search(proc.stderr)
    if not m:
        raise SystemExit(f"no summary line in:\n{proc.stderr}")
    rss = [json.loads(p.read_text()) / 1024 for p in sorted(rss_dir.glob("rss.*.json"))]
    row = {
        "engine": engine,
        "points": int(m[1]),
        "loop_s": float(m[2]),
        "points_per_s": float(m[3]),
        "merge_s": float(m[4]),
        "wall_s": wall,
        "peak_rss_mb": rss,
    }
    row.update(info(out))
    log.info("run %s", row)
    out.unlink()
    return row


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--real", type=int, default=100_000, help="native points (0: none)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "big_grid.json")
    opts = parser.parse_args()
    figures: dict = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="xrmod-big-") as name:
        tmp = Path(name)
        big, small = _config(tmp, opts.points), _config(tmp, opts.points // 10)
        figures["skeleton"] = skeleton(tmp, big)
        figures["fake"] = [run(tmp, small, "fake"), run(tmp, big, "fake")]
        if opts.real:
            figures["native"] = run(tmp, _config(tmp, opts.real), "native")
    rss = np.array([r["peak_rss_mb"] for r in figures["fake"]])
    figures["rss_ratio_10x_grid"] = (rss[1] / rss[0]).tolist()
    opts.json.write_text(json.dumps(figures, indent=1) + "\n")
    log.info("wrote %s", opts.json)


if __name__ == "__main__":
    main()
