"""Scaling of the MPI driver: points/s on 1 and 2 ranks, writer times, merge time, rank memory.

    python bench/scaling.py [--points 20000] [--engine native|fake] [--mpirun mpirun]

Runs ``xrmod-gen`` on a grid of about ``--points`` points (10 temperatures
per θ, asimov noise): serially, then on 2 ranks with each writer this h5py
supports (``merge``; ``mpio`` when h5py has MPI), then the merge writer on a
grid 10x larger for the ranks' peak memory. Each process reports its peak
RSS; points/s comes from the driver's own timing (the loop, without start-up)
and the wall time around the whole command. ``--engine fake`` uses the
test suite's zero-cost engine, to time the driver and writers alone.

Not a test: targets (issue 5) are 2 ranks >= 1.8x the points/s of 1 rank on
>= 20,000 points, the writers within 10 % of each other, rank memory flat in
the grid size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
[source]
temperatures = {{ start = 1.0, stop = 10.0, num = 10, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = {{ start = 0.5, stop = 8.0, num = {n_mu} }}
sigma = {{ start = 0.2, stop = 2.0, num = 10 }}
amp = {{ start = -0.2, stop = 0.2, num = {n_amp} }}
"""

SUMMARY = re.compile(
    r"(\d+) points in ([\d.]+) s \(([\d.]+) points/s\) on (\d+) rank\(s\); compute ([\d.]+) s, "
    r"write ([\d.]+) s \(slowest rank\), merge ([\d.]+) s"
)


def worker(args: list[str]) -> int:
    """Inside each rank: run xrmod-gen, then record this process's peak RSS."""
    engine, rss_dir, *gen_args = args
    if engine == "fake":
        sys.path.insert(0, str(ROOT / "tests"))
        from fake_engine import use_fake_engine

        use_fake_engine()
    from xrmod.cli import gen_main
    from xrmod.driver import world_rank

    code = gen_main(gen_args)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(rss_dir, f"rss.{world_rank()}.json").write_text(json.dumps(rss_kb))
    return code


def _config(tmp: Path, points: int) -> Path:
    n_theta = max(1, points // 10)
    n_mu = 20
    n_amp = max(1, round(n_theta / (n_mu * 10)))
    cfg = tmp / f"grid{points}.toml"
    cfg.write_text(CONFIG.format(out=tmp / "lib.h5", n_mu=n_mu, n_amp=n_amp))
    return cfg


def _run(opts, tmp: Path, cfg: Path, ranks: int, writer: str) -> dict:
    out = tmp / f"lib-{cfg.stem}-{ranks}-{writer}.h5"
    rss_dir = tmp / f"rss-{cfg.stem}-{ranks}-{writer}"
    rss_dir.mkdir()
    cmd = [sys.executable, __file__, "--worker", opts.engine, str(rss_dir), str(cfg)]
    cmd += ["-o", str(out), "--writer", writer, "--no-progress"]
    if ranks > 1:
        cmd = [shutil.which(opts.mpirun) or opts.mpirun, "-n", str(ranks), *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    m = SUMMARY.search(proc.stderr)
    if not m:
        raise SystemExit(f"no summary line in:\n{proc.stderr}")
    rss = [json.loads(p.read_text()) / 1024 for p in sorted(rss_dir.glob("rss.*.json"))]
    out.unlink()
    return {
        "ranks": ranks,
        "writer": writer,
        "points": int(m[1]),
        "loop_s": float(m[2]),
        "rate": float(m[3]),
        "write_s": float(m[6]),
        "merge_s": float(m[7]),
        "wall_s": wall,
        "rss_mb": max(rss),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2:]))
    import h5py

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--engine", choices=("native", "fake"), default="native")
    parser.add_argument("--mpirun", default="mpirun")
    parser.add_argument("--no-large", action="store_true", help="skip the 10x grid")
    opts = parser.parse_args()
    writers = ["merge", "mpio"] if h5py.get_config().mpi else ["merge"]
    with tempfile.TemporaryDirectory(prefix="xrmod-scaling-") as name:
        tmp = Path(name)
        cfg = _config(tmp, opts.points)
        rows = [_run(opts, tmp, cfg, 1, "auto")]
        rows += [_run(opts, tmp, cfg, 2, w) for w in writers]
        if not opts.no_large:
            big = _config(tmp, 10 * opts.points)
            rows.append(_run(opts, tmp, big, 2, "merge"))
    print(f"engine {opts.engine}, h5py MPI: {h5py.get_config().mpi}, cores: {os.cpu_count()}")
    print(
        f"{'ranks':>5} {'writer':>6} {'points':>8} {'loop s':>8} {'pts/s':>9} {'write s':>8} "
        f"{'merge s':>8} {'wall s':>8} {'peak RSS MB':>12}"
    )
    for r in rows:
        print(
            f"{r['ranks']:>5} {r['writer']:>6} {r['points']:>8} {r['loop_s']:>8.2f} "
            f"{r['rate']:>9.1f} {r['write_s']:>8.2f} {r['merge_s']:>8.2f} {r['wall_s']:>8.2f} "
            f"{r['rss_mb']:>12.1f}"
        )
    one = rows[0]
    for r in rows[1 : 1 + len(writers)]:
        print(f"2 ranks ({r['writer']}) / 1 rank points/s: {r['rate'] / one['rate']:.2f}")
    if len(writers) == 2:
        a, b = rows[1]["wall_s"], rows[2]["wall_s"]
        print(f"mpio / merge total time: {b / a:.3f}")
    if not opts.no_large:
        ratio = rows[-1]["rss_mb"] / rows[1]["rss_mb"]
        print(f"peak RSS 10x grid / 1x grid (2 ranks, merge): {ratio:.2f}")


if __name__ == "__main__":
    main()
