"""Scaling of the MPI driver: points/s on 1 and 2 ranks, writer times, merge time, rank memory.

    python bench/scaling.py [--points 20000] [--engine native|fake] [--mpirun mpirun]
                            [--no-large] [--repeat 1] [--json FILE]

Runs ``xrmod-gen`` on a grid of about ``--points`` points (10 temperatures
per θ, asimov noise): serially, then on 2 ranks with each writer this h5py
supports (``merge``; ``mpio`` when h5py has MPI), then on 2 ranks with each
writer on a grid 10x larger (rank memory, and the writers on a long run).
``--repeat`` runs the whole set several times, interleaved, so that ratios
come from runs made under the same load (the machine may be shared): every
ratio is computed within one repetition, and the median over repetitions
is reported with the spread.

Each process reports its peak RSS (per rank); points/s comes from the
driver's own timing (the loop, without start-up); ``wall`` is the time
around the whole command (start-up, loop, merge) and is the "total time"
the writers are compared on. ``--engine fake`` uses the test suite's
zero-cost engine, to time the driver and writers alone.

Not a test: targets (issue 5) are 2 ranks >= 1.8x the points/s of 1 rank on
>= 20,000 points, the writers within 10 % of each other in total time, rank
memory flat in the grid size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
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


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for name in (  # Open MPI's mpirun as root, more ranks than cores
        "OMPI_ALLOW_RUN_AS_ROOT",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
        "OMPI_MCA_rmaps_base_oversubscribe",
    ):
        env.setdefault(name, "1")
    return env


def _run(opts, tmp: Path, cfg: Path, ranks: int, writer: str, rep: int) -> dict:
    tag = f"{cfg.stem}-{ranks}-{writer}-{rep}"
    out = tmp / f"lib-{tag}.h5"
    rss_dir = tmp / f"rss-{tag}"
    rss_dir.mkdir()
    cmd = [sys.executable, __file__, "--worker", opts.engine, str(rss_dir), str(cfg)]
    cmd += ["-o", str(out), "--writer", writer, "--no-progress"]
    if ranks > 1:
        cmd = [shutil.which(opts.mpirun) or opts.mpirun, "-n", str(ranks), *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    m = SUMMARY.search(proc.stderr)
    if not m:
        raise SystemExit(f"no summary line in:\n{proc.stderr}")
    rss = [
        json.loads(p.read_text()) / 1024
        for p in sorted(rss_dir.glob("rss.*.json"), key=lambda p: int(p.suffixes[0][1:]))
    ]
    out.unlink()
    row = {
        "grid": cfg.stem,
        "rep": rep,
        "ranks": ranks,
        "writer": writer,
        "points": int(m[1]),
        "loop_s": float(m[2]),
        "rate": float(m[3]),
        "write_s": float(m[6]),
        "merge_s": float(m[7]),
        "wall_s": wall,
        "rss_mb": rss,
    }
    print(_format(row), flush=True)
    return row


HEADER = (
    f"{'grid':>10} {'rep':>3} {'ranks':>5} {'writer':>6} {'points':>8} {'loop s':>8} "
    f"{'pts/s':>9} {'write s':>8} {'merge s':>8} {'wall s':>8}  peak RSS MB per rank"
)


def _format(r: dict) -> str:
    rss = " ".join(f"{x:.0f}" for x in r["rss_mb"])
    return (
        f"{r['grid']:>10} {r['rep']:>3} {r['ranks']:>5} {r['writer']:>6} {r['points']:>8} "
        f"{r['loop_s']:>8.2f} {r['rate']:>9.1f} {r['write_s']:>8.2f} {r['merge_s']:>8.2f} "
        f"{r['wall_s']:>8.2f}  {rss}"
    )


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def _pick(rows: list[dict], **key) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in key.items())]


def _summary(rows: list[dict], grids: list[str], writers: list[str]) -> None:
    for grid in grids:
        print(f"grid {grid}:")
        one = _pick(rows, grid=grid, ranks=1)
        for w in writers:
            two = _pick(rows, grid=grid, ranks=2, writer=w)
            if one:
                ratios = [b["rate"] / a["rate"] for a, b in zip(one, two, strict=True)]
                print(f"  2 ranks ({w}) / 1 rank points/s: {_spread(ratios)}")
            print(f"  {w}: merge step {_spread([r['merge_s'] for r in two])} s")
            for rank in range(2):
                rss = [r["rss_mb"][rank] for r in two]
                print(f"  {w}: peak RSS rank {rank} {_spread(rss)} MB")
        if len(writers) == 2:
            merge = _pick(rows, grid=grid, ranks=2, writer="merge")
            mpio = _pick(rows, grid=grid, ranks=2, writer="mpio")
            wall = [a["wall_s"] / b["wall_s"] for a, b in zip(merge, mpio, strict=True)]
            print(f"  merge / mpio total (wall) time: {_spread(wall)}")
            inner = [
                (a["loop_s"] + a["merge_s"]) / b["loop_s"] for a, b in zip(merge, mpio, strict=True)
            ]
            print(f"  merge / mpio loop + merge time: {_spread(inner)}")
    if len(grids) == 2:
        print("memory, 10x grid / 1x grid (2 ranks):")
        for w in writers:
            for rank in range(2):
                ratios = [
                    b["rss_mb"][rank] / a["rss_mb"][rank]
                    for a, b in zip(
                        _pick(rows, grid=grids[0], ranks=2, writer=w),
                        _pick(rows, grid=grids[1], ranks=2, writer=w),
                        strict=True,
                    )
                ]
                print(f"  {w} rank {rank}: {_spread(ratios)}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2:]))
    import h5py

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--engine", choices=("native", "fake"), default="native")
    parser.add_argument("--mpirun", default="mpirun")
    parser.add_argument("--no-large", action="store_true", help="skip the 10x grid")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions, interleaved")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    opts = parser.parse_args()
    writers = ["merge", "mpio"] if h5py.get_config().mpi else ["merge"]
    print(f"engine {opts.engine}, h5py MPI: {h5py.get_config().mpi}, cores: {os.cpu_count()}")
    print(HEADER, flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="xrmod-scaling-") as name:
        tmp = Path(name)
        cfgs = [_config(tmp, opts.points)]
        if not opts.no_large:
            cfgs.append(_config(tmp, 10 * opts.points))
        for rep in range(opts.repeat):
            rows.append(_run(opts, tmp, cfgs[0], 1, "auto", rep))
            for cfg in cfgs:
                rows += [_run(opts, tmp, cfg, 2, w, rep) for w in writers]
    _summary(rows, [c.stem for c in cfgs], writers)
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
