"""Launching ``xrmod-gen`` (or the fake-engine twin) under mpirun from a serial pytest."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import pytest

TESTS = Path(__file__).resolve().parent
#: The launcher; CI's parallel-h5py venv points this at Debian's Open MPI mpirun.
MPIRUN = os.environ.get("XRMOD_TEST_MPIRUN", "mpirun")

needs_mpirun = pytest.mark.skipif(
    not (shutil.which(MPIRUN) and importlib.util.find_spec("mpi4py")),
    reason=f"needs {MPIRUN} and mpi4py (CI's MPI step installs them)",
)

#: Writers a multi-rank run can use with this h5py.
WRITERS = ["merge", "mpio"] if h5py.get_config().mpi else ["merge"]

FAKE_CONFIG = """\
[library]
output = "{out}"
noise = "asimov"
seed = 11
[source]
temperatures = [2.0, 6.0]
[modifier]
family = "gaussian"
[modifier.axes]
amp = [0.0, 0.05, 0.1, 0.15, 0.2]
mu = [1.5, 2.5, 3.5]
sigma = [0.5, 1.0]
"""


def env(**extra: str) -> dict[str, str]:
    """The environment of a launched job: fake engine importable, Open MPI as root allowed."""
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PMI_", "PMIX_", "OMPI_COMM_WORLD", "XRMOD_FAKE_"))
    }
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), out.get("PYTHONPATH")]))
    out.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    out.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    out.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    out.update(extra)
    return out


def command(ranks: int, *args: str, fake: bool = True, prefix: Sequence[str] = ()) -> list[str]:
    """``[PREFIX] [mpirun -n R] (python -m fake_engine | xrmod-gen) ARGS``; ranks = 0: no mpirun."""
    if fake:
        program = [sys.executable, "-m", "fake_engine"]
    else:
        exe = shutil.which("xrmod-gen")
        assert exe, "xrmod-gen is not on PATH: is xrmod installed?"
        program = [exe]
    launcher = [shutil.which(MPIRUN) or MPIRUN, "-n", str(ranks)] if ranks else []
    return [*prefix, *launcher, *program, *args]


def gen(
    ranks: int,
    *args: str,
    fake: bool = True,
    timeout: float = 300,
    prefix: Sequence[str] = (),
    **extra: str,
):
    """Run to the end; the CompletedProcess."""
    return subprocess.run(
        command(ranks, *args, fake=fake, prefix=prefix),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra),
    )


def start(ranks: int, *args: str, prefix: Sequence[str] = (), **extra: str) -> subprocess.Popen:
    """Start a fake-engine job in the background (its own session)."""
    return subprocess.Popen(
        command(ranks, *args, prefix=prefix),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra),
        start_new_session=True,
    )


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def fake_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(config, output, marks directory) of a fake-engine run in *tmp_path*."""
    cfg = tmp_path / "cfg.toml"
    out = tmp_path / "lib.h5"
    cfg.write_text(FAKE_CONFIG.format(out=out))
    marks = tmp_path / "marks"
    marks.mkdir()
    return cfg, out, marks


def fake_reference(tmp_path_factory, timeout: float | None = None) -> Path:
    """The uninterrupted fake-engine library, computed serially (for a module fixture)."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = tmp / "cfg.toml"
    cfg.write_text(FAKE_CONFIG.format(out=tmp / "ref.h5"))
    proc = gen(0, str(cfg), timeout=timeout) if timeout else gen(0, str(cfg))
    assert proc.returncode == 0, proc.stderr
    return tmp / "ref.h5"


def units_done(marks: Path) -> int:
    """Units the fake engine has finished (it marks each one)."""
    return len(list(marks.glob("unit.*")))


def rank_pids(marks: Path, ranks: int) -> dict[int, int]:
    """PID of each rank, by rank, once every rank has written its pid.<pid> file."""

    def written() -> bool:  # a file may exist before its rank is written into it
        files = list(marks.glob("pid.*"))
        return len(files) == ranks and all(p.read_text().strip() for p in files)

    wait_for(written, what="ranks to start")
    return {int(p.read_text()): int(p.suffix[1:]) for p in marks.glob("pid.*")}


def descendants(pid: int) -> list[int]:
    """Every process below *pid* (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "xrmod-gen: error:" in line]


def without_dac_override() -> list[str]:
    """A command prefix that makes root obey file permissions (as any user does), or [].

    Root ignores a file's mode (CAP_DAC_OVERRIDE); ``setpriv`` drops that
    capability for the launched job. [] when not root; skips the test when
    root cannot drop it here.
    """
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override"]
    if not shutil.which("setpriv") or subprocess.run([*prefix, "true"]).returncode != 0:
        pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
    return prefix
