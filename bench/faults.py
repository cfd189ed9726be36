"""Fault campaign: interrupt, starve and damage ``xrmod-gen`` runs under mpirun, then resume.

Run it by hand (as root: the disk-full case mounts a tmpfs, the
unwritable-directory case runs the job as ``nobody``)::

    python bench/faults.py                       # every case, 2 and 3 ranks, each writer
    python bench/faults.py --ranks 2 --cases sigkill_one,sigstop_one
    python bench/faults.py --json faults.json --markdown faults.md

Each case runs the native engine on a small grid (100000 points, ~9 s on
2 ranks with today's engine; a fault comes once half the points are done
and the loop has run 2.5 flush intervals, so rank files hold a few batches) under ``mpirun -n N``
with every writer this h5py offers (``merge``; ``mpio`` with parallel
h5py), every process under a timeout (a hang is a failure and the job is killed). For each case it
records the exit code and the last lines the user sees, what is on disk
afterwards, the points done before the fault (the last progress line), the
points recovered and recomputed by ``--resume`` (its log: "merged N
unit(s)", "K of M units still to compute"), and whether the resumed library
is bit-identical to an uninterrupted serial reference (every dataset of
``/PARAMS`` and ``/LIBRARY``, by its bytes). It writes a Markdown table and
a JSON file. It is a script, not a test: some cases take tens of seconds,
and some need root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

# the process-tree walk of the tests' mpirun helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mpirun_helpers import descendants

log = logging.getLogger("faults")

CONFIG = """\
[library]
output = "{out}"
seed = 5
[instrument]
arf = "{arf}"
rmf = "{rmf}"
[source]
temperatures = {{ start = 1.0, stop = 10.0, num = 10, spacing = "log" }}
[modifier]
family = "gaussian"
[modifier.axes]
mu = {{ start = 0.5, stop = 8.0, num = 1000 }}
sigma = [0.3, 1.0]
amp = {{ start = -0.2, stop = 0.2, num = 5 }}
"""
#: Points of one θ (a work unit) in :data:`CONFIG`.
PER_THETA = 10
#: Longest a launched command may take, in seconds, before it counts as a hang.
TIMEOUT = 90.0
#: The writers' flush interval (``XRMOD_FLUSH_SECONDS``, default 2 s): the loss bound.
FLUSH_SECONDS = float(os.environ.get("XRMOD_FLUSH_SECONDS") or 2.0)
#: Points per second of one rank, measured by the reference run (set in :func:`main`).
RATE = 0.0
#: How long a stopped rank stays stopped (longer than the default flush interval, 2 s).
STOP_SECONDS = 6.0
MPIRUN = os.environ.get("XRMOD_TEST_MPIRUN", shutil.which("mpirun") or "mpirun")
XRMOD_GEN = shutil.which("xrmod-gen") or "xrmod-gen"
XRMOD = shutil.which("xrmod") or "xrmod"


def _bundled(name: str) -> Path:
    from importlib.resources import files

    return Path(str(files("xrmod") / "data" / name))


#: The bundled RMF (read where it is); the ARF is copied per case (one case changes it).
RMF = _bundled("pn.rmf")


# --------------------------------------------------------------------------- launching
@dataclass
class Outcome:
    """One launched command: how it ended and what it printed last."""

    command: str
    exit: int | None  # None: killed by the campaign after the timeout (a hang)
    seconds: float
    last_lines: list[str]
    stderr: str = field(repr=False, default="")

    @property
    def hung(self) -> bool:
        return self.exit is None


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_COMM"))}
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    return env


class Job:
    """A command started in its own session, its stderr in a file."""

    def __init__(self, args: list[str], workdir: Path, name: str, prefix: list[str] = ()):
        self.args = [*prefix, *args]
        self.err_path = workdir / f"{name}.stderr"
        self.out_path = workdir / f"{name}.stdout"
        self.start = time.monotonic()
        with open(self.err_path, "w") as err, open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=err,
                env=_env(),
                cwd=workdir,
                start_new_session=True,
            )

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def progress(self) -> int:
        """Points done by the last progress line (0 before the first)."""
        found = re.findall(r"xrmod\.driver: (\d+)/(\d+) points", self.stderr())
        return int(found[-1][0]) if found else 0

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = TIMEOUT) -> Outcome:
        """Wait for the end; after *timeout* the whole session is killed (a hang)."""
        left = max(0.1, timeout - (time.monotonic() - self.start))
        try:
            code: int | None = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the session this campaign started
            self.proc.wait()
            code = None
        text = self.stderr()
        lines = [line for line in text.splitlines() if not re.search(r"\d+/\d+ points \(", line)]
        return Outcome(
            command=" ".join(self.args),
            exit=code,
            seconds=round(time.monotonic() - self.start, 1),
            last_lines=lines[-3:],
            stderr=text,
        )

    def ranks(self) -> dict[int, int]:
        """PID of each rank (``xrmod-gen`` processes below the launcher), by rank."""
        found: dict[int, int] = {}
        for pid in descendants(self.proc.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if not any(part.endswith(b"xrmod-gen") for part in cmd):
                continue
            for item in environ:
                key, _, value = item.partition(b"=")
                if key in (b"PMI_RANK", b"OMPI_COMM_WORLD_RANK") and value.isdigit():
                    found[int(value)] = pid
        return found

    def wait_for_progress(self, points: int, loop_seconds: float = 0.0) -> bool:
        """Wait until *points* are done and the loop has run *loop_seconds*; False if it ended.

        The loop starts at the driver's "writing ..." line.
        """
        end = time.monotonic() + TIMEOUT
        writing = None
        while time.monotonic() < end:
            if not self.running():
                return False
            if writing is None and "xrmod.driver: writing" in self.stderr():
                writing = time.monotonic()
            looped = writing is not None and time.monotonic() - writing >= loop_seconds
            if looped and self.progress() >= points:
                return True
            time.sleep(0.02)
        return False


def run(args: list[str], workdir: Path, name: str, prefix: list[str] = ()) -> Outcome:
    return Job(args, workdir, name, prefix).wait()


# --------------------------------------------------------------------------- looking at it
def disk(workdir: Path, out: Path) -> list[str]:
    """What is next to the library: its name and its companions, with sizes."""
    found = []
    for p in sorted(out.parent.glob(f"{out.name}*")):
        found.append(f"{p.name} ({p.stat().st_size} B)")
    return found


def info(out: Path, workdir: Path, name: str, *extra: str) -> dict[str, Any]:
    """``xrmod info --json`` of the library: points, state, integrity; or its error."""
    o = run([XRMOD, "info", "--json", *extra, str(out)], workdir, name)
    text = (workdir / f"{name}.stdout").read_text()
    found: dict[str, Any] = {"exit": o.exit, "error": o.last_lines[-1] if o.exit else ""}
    with contextlib.suppress(ValueError):
        s = json.loads(text)
        found.update(
            state=s["state"],
            done=s["points"]["done"],
            in_rank_files=s["points"]["in_rank_files"],
            integrity=(s.get("integrity") or {}).get("damaged") or "ok",
        )
    return found


def identical(a: Path, b: Path) -> tuple[bool, str]:
    """Every dataset of /PARAMS and /LIBRARY the same, byte for byte (NaN included)."""
    try:
        with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            for group in ("PARAMS", "LIBRARY"):
                names = sorted(k for k, v in fa[group].items() if isinstance(v, h5py.Dataset))
                other = sorted(k for k, v in fb[group].items() if isinstance(v, h5py.Dataset))
                if names != other:
                    return False, f"/{group} holds {other}, the reference {names}"
                for n in names:
                    x, y = fa[group][n][()], fb[group][n][()]
                    if x.shape != y.shape or x.dtype != y.dtype or x.tobytes() != y.tobytes():
                        return False, f"/{group}/{n} differs"
    except OSError as e:
        return False, f"cannot read: {e}"
    return True, ""


def flip_byte(path: Path, dataset: str | None = None, fraction: float = 0.5) -> int:
    """Invert one byte: inside *dataset*'s stored data (an HDF5 file), else at *fraction*."""
    if dataset is None:
        offset = int(path.stat().st_size * fraction)
    else:
        # SWMR: a rank file whose writer was killed still has its "open for write" flag
        swmr = path.name.endswith(tuple(f".rank{r}.h5" for r in range(64)))
        with h5py.File(path, "r", swmr=swmr, libver="latest" if swmr else "earliest") as f:
            ds = f[dataset]
            if ds.chunks is None:
                offset = ds.id.get_offset() + ds.id.get_storage_size() // 2
            elif ds.id.get_num_chunks() == 0:
                raise ValueError(f"{path}: {dataset} has no data written")
            else:
                chunk = ds.id.get_chunk_info(0)  # its first rows are written (a rank file's)
                offset = chunk.byte_offset + min(chunk.size // 2, 100)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        old = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([old[0] ^ 0xFF]))
    return offset


def truncate(path: Path, fraction: float = 0.6) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(int(path.stat().st_size * fraction))


# --------------------------------------------------------------------------- one case
@dataclass
class Record:
    """What one case did and left, as the report shows it."""

    case: str
    ranks: int
    writer: str
    verdict: str = "?"  # pass, FAIL, skip
    note: str = ""
    first: dict[str, Any] = field(default_factory=dict)  # the faulted run (or command)
    disk_after: list[str] = field(default_factory=list)
    info_after: dict[str, Any] = field(default_factory=dict)
    done_before_fault: int | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # what the user does next
    recovered_points: int | None = None
    recomputed_points: int | None = None
    lost_points: int | None = None
    lost_bound: int | None = None  # flush interval x points/s of the ranks + units in flight
    identical: bool | None = None
    difference: str = ""


class Case:
    """The context of one case: its directory, config, launcher and reference."""

    def __init__(self, root: Path, name: str, ranks: int, writer: str, reference: Path):
        self.dir = root / f"{name}-n{ranks}-{writer}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ranks, self.writer, self.reference = ranks, writer, reference
        self.out = self.dir / "lib.h5"
        self.arf = self.dir / "pn.arf"
        shutil.copyfile(_bundled("pn.arf"), self.arf)
        self.cfg = self.dir / "cfg.toml"
        self.cfg.write_text(CONFIG.format(out=self.out, arf=self.arf, rmf=RMF))
        self.record = Record(case=name, ranks=ranks, writer=writer)
        self.total = _points(reference)
        self._n = 0

    def gen_args(self, *extra: str, ranks: int | None = None) -> list[str]:
        n = self.ranks if ranks is None else ranks
        return [MPIRUN, "-n", str(n), XRMOD_GEN, str(self.cfg), "--writer", self.writer,
                "--no-progress", *extra]  # fmt: skip

    def start(self, *extra: str, prefix: list[str] = (), env: dict[str, str] | None = None) -> Job:
        self._n += 1
        with _environ(env or {}):
            return Job(self.gen_args(*extra), self.dir, f"run{self._n}", prefix)

    def step(self, what: str, outcome: Outcome) -> dict[str, Any]:
        entry = {"step": what, "exit": outcome.exit, "seconds": outcome.seconds,
                 "last_lines": outcome.last_lines}  # fmt: skip
        self.record.steps.append(entry)
        return entry

    def faulted(self, job: Job, outcome: Outcome, done_before: int | None) -> None:
        r = self.record
        r.first = {"exit": outcome.exit, "seconds": outcome.seconds,
                   "last_lines": outcome.last_lines}  # fmt: skip
        r.done_before_fault = done_before
        r.disk_after = disk(self.dir, self.out)
        if self.out.exists():
            r.info_after = info(self.out, self.dir, "info-after")

    def resume(self, what: str = "--resume", prefix: list[str] = ()) -> Outcome:
        self._n += 1
        o = Job(self.gen_args("--resume"), self.dir, f"run{self._n}", prefix).wait()
        entry = self.step(what, o)
        merged = re.search(r"merged (\d+) unit\(s\) from (\d+) rank file", o.stderr)
        pending = re.search(r"resuming \S+: (\d+) of (\d+) units still to compute", o.stderr)
        dropped = re.search(r"(\d+) damaged unit\(s\)", o.stderr)
        entry["merged_units"] = int(merged[1]) if merged else 0
        entry["dropped_units"] = int(dropped[1]) if dropped else 0
        if pending:
            entry["pending_units"] = int(pending[1])
            r = self.record
            r.recomputed_points = int(pending[1]) * PER_THETA
            r.recovered_points = self.total - r.recomputed_points
            if r.done_before_fault is not None:
                r.lost_points = max(0, r.done_before_fault - r.recovered_points)
                r.lost_bound = int(FLUSH_SECONDS * RATE * self.ranks) + self.ranks * PER_THETA
        return o

    def compare(self) -> bool:
        same, why = identical(self.reference, self.out)
        self.record.identical, self.record.difference = same, why
        return same

    def verdict(self, ok: bool, note: str = "") -> Record:
        self.record.verdict = "pass" if ok else "FAIL"
        self.record.note = note
        return self.record

    def skip(self, note: str) -> Record:
        self.record.verdict, self.record.note = "skip", note
        return self.record


@contextlib.contextmanager
def _environ(extra: dict[str, str]):
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _points(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(np.prod(f["LIBRARY/status"].shape))


def _interrupt_mid_run(c: Case, job: Job, fraction: float = 0.5) -> int | None:
    """Wait until *fraction* of the points are done (a few flushes); None if it finished."""
    if not job.wait_for_progress(int(c.total * fraction), 2.5 * FLUSH_SECONDS):
        return None
    return job.progress()


def _resume_until_identical(c: Case, note: str = "") -> Record:
    o = c.resume()
    same = c.compare()
    ok = o.exit == 0 and same
    return c.verdict(ok, note or ("" if ok else f"resume exit {o.exit}; {c.record.difference}"))


# --------------------------------------------------------------------------- the cases
def case_sigterm_launcher(c: Case) -> Record:
    """SIGTERM to mpirun (a batch system's time limit reaching the launcher)."""
    job = c.start()
    done = _interrupt_mid_run(c, job)
    if done is None:
        return c.skip("the run finished before the signal: use a bigger grid")
    job.proc.send_signal(signal.SIGTERM)
    c.faulted(job, job.wait(), done)
    if c.record.first["exit"] is None:
        return c.verdict(False, "the job hung after SIGTERM to the launcher")
    return _resume_until_identical(c)


def case_sigkill_one_rank(c: Case) -> Record:
    """SIGKILL of the last rank (a process lost: OOM killer, a node's rank)."""
    job = c.start()
    done = _interrupt_mid_run(c, job)
    if done is None:
        return c.skip("the run finished before the kill")
    ranks = job.ranks()
    victim = ranks.get(c.ranks - 1)
    if victim is None:
        job.wait(5)
        return c.verdict(False, f"could not find rank {c.ranks - 1} among {ranks}")
    os.kill(victim, signal.SIGKILL)
    c.faulted(job, job.wait(), done)
    if c.record.first["exit"] is None:
        return c.verdict(False, f"the job hung after rank {c.ranks - 1} was killed")
    return _resume_until_identical(c)


def case_sigkill_all(c: Case) -> Record:
    """SIGKILL of every rank and the launcher at once (a node lost)."""
    job = c.start()
    done = _interrupt_mid_run(c, job)
    if done is None:
        return c.skip("the run finished before the kill")
    for pid in [*job.ranks().values(), *descendants(job.proc.pid), job.proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    c.faulted(job, job.wait(), done)
    return _resume_until_identical(c)


def case_sigstop_one_rank(c: Case) -> Record:
    """SIGSTOP of one rank for longer than a flush interval, then SIGCONT: the run completes."""
    job = c.start()
    done = _interrupt_mid_run(c, job)
    if done is None:
        return c.skip("the run finished before the stop")
    victim = job.ranks().get(c.ranks - 1)
    if victim is None:
        return c.verdict(False, "could not find the last rank")
    os.kill(victim, signal.SIGSTOP)
    time.sleep(STOP_SECONDS)
    during = job.progress()
    os.kill(victim, signal.SIGCONT)
    c.faulted(job, job.wait(), done)
    same = c.compare()
    ok = c.record.first["exit"] == 0 and same
    note = f"the other ranks went on while it was stopped ({done} -> {during} points)"
    return c.verdict(ok, note if ok else f"{note}; {c.record.difference}")


def case_disk_full(c: Case) -> Record:
    """The output's file system fills up mid-run (a tmpfs just big enough for the library)."""
    mount = c.dir / "small-fs"
    mount.mkdir(exist_ok=True)
    size_kb = max(64, int(c.reference.stat().st_size * 1.4) // 1024)
    if os.geteuid() != 0:
        return c.skip("needs root to mount a tmpfs")
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)],
                       capture_output=True, text=True)  # fmt: skip
    if m.returncode != 0:
        return c.skip(f"mount -t tmpfs failed: {m.stderr.strip()}")
    try:
        c.out = mount / "lib.h5"
        c.cfg.write_text(CONFIG.format(out=c.out, arf=c.arf, rmf=RMF))
        job = c.start()
        c.faulted(job, job.wait(), job.progress())
        c.record.note = f"tmpfs of {size_kb} kB"
        kept = c.dir / "as-left"  # the evidence, before --resume changes it
        shutil.copytree(mount, kept, dirs_exist_ok=True)
        c.record.info_after["rank_files"] = _rank_file_rows(kept)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        if not c.out.exists():
            o = run(c.gen_args(), c.dir, "after-space")
            c.step("space freed: run again", o)
            return c.verdict(o.exit == 0 and c.compare(), "the library was not created")
        rec = _resume_until_identical(c)
        first = c.record.first["exit"]
        if first in (0, None):
            rec.verdict = "FAIL"
            rec.note += f"; the full disk gave exit {first}"
        return rec
    finally:
        with contextlib.suppress(Exception):
            c.record.disk_after = c.record.disk_after or disk(c.dir, c.out)
        subprocess.run(["umount", str(mount)], capture_output=True)


def _rank_file_rows(directory: Path) -> dict[str, Any]:
    """Rows of each rank file in *directory*: written (start >= 0), or why unreadable."""
    found: dict[str, Any] = {}
    for p in sorted(directory.glob("*.rank*.h5")):
        head = p.read_bytes()[:36]
        recorded = int.from_bytes(head[28:36], "little") if len(head) == 36 else 0
        if p.stat().st_size < recorded:  # HDF5's SWMR reader would retry for minutes
            found[p.name] = f"cut short: {p.stat().st_size} of {recorded} bytes"
            continue
        try:
            with h5py.File(p, "r", swmr=True, libver="latest") as f:
                found[p.name] = int((f["start"][()] >= 0).sum())
        except Exception as e:  # what HDF5 says about it
            found[p.name] = f"unreadable: {e}"
    return found


def _obeying_permissions() -> list[str] | None:
    """A prefix that makes the job obey file modes as any user does; None if impossible.

    As root, ``setpriv`` drops CAP_DAC_OVERRIDE for the launched job (running
    it as ``nobody`` instead fails here: Hydra's proxy cannot exec the
    venv's interpreter under /root). Not root: no prefix needed.
    """
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        return None
    prefix = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override"]
    ok = subprocess.run([*prefix, MPIRUN, "-n", "1", XRMOD_GEN, "--version"], capture_output=True)
    return prefix if ok.returncode == 0 else None


def case_unwritable_dir(c: Case) -> Record:
    """The output directory made read-only mid-run (chmod 555 by its owner)."""
    prefix = _obeying_permissions()
    if prefix is None:
        return c.skip("root cannot drop CAP_DAC_OVERRIDE here (no setpriv)")
    out_dir = c.dir / "out"
    out_dir.mkdir(exist_ok=True)
    c.out = out_dir / "lib.h5"
    c.cfg.write_text(CONFIG.format(out=c.out, arf=c.arf, rmf=RMF))
    job = c.start(prefix=prefix)
    done = _interrupt_mid_run(c, job)
    if done is None:
        return c.skip("the run finished before the chmod")
    out_dir.chmod(0o555)
    c.faulted(job, job.wait(), done)
    out_dir.chmod(0o755)
    rec = _resume_until_identical_as(c, prefix)
    note = "directory chmod 555 mid-run, 755 before --resume"
    rec.note = f"{rec.note}; {note}" if rec.note else note
    return rec


def _resume_until_identical_as(c: Case, prefix: list[str]) -> Record:
    o = c.resume(prefix=prefix)
    same = c.compare()
    return c.verdict(o.exit == 0 and same, "" if same else c.record.difference)


def _killed_merge_run(c: Case) -> int | None:
    job = c.start()
    done = _interrupt_mid_run(c, job)
    if done is None:
        return None
    for pid in [*descendants(job.proc.pid), job.proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    c.faulted(job, job.wait(), done)
    return done


def case_truncated_rank_file(c: Case) -> Record:
    """A rank file cut short (a node's local disk, a copy interrupted) before --resume."""
    if c.writer != "merge":
        return c.skip("no rank files with this writer")
    if _killed_merge_run(c) is None:
        return c.skip("the run finished before the kill")
    rank_file = c.out.with_name(c.out.name + ".rank0.h5")
    if not rank_file.exists():
        return c.verdict(False, "no rank file left by the killed run")
    truncate(rank_file)
    o = c.resume("--resume after truncating rank file 0")
    if o.exit is None:  # a hang: what does the user get once the rank file is gone?
        rank_file.unlink(missing_ok=True)
        after = c.resume("rm rank file 0; --resume")
        same = c.compare()
        return c.verdict(
            False,
            f"--resume hung (killed after {TIMEOUT:.0f} s); after removing the rank file: "
            f"exit {after.exit}, identical {same}",
        )
    if o.exit == 0:
        return c.verdict(c.compare(), "the truncated rank file was merged as far as readable")
    if o.exit != 2:
        return c.verdict(False, f"exit {o.exit}, expected 2 with a message naming the rank file")
    rank_file.unlink(missing_ok=True)  # what the message asks for
    rec = _resume_until_identical(c)
    rec.note = "exit 2 naming the rank file; removed it, --resume recomputed its units"
    rec.steps[-1]["step"] = "rm rank file 0; --resume"
    return rec


def case_corrupted_rank_file(c: Case) -> Record:
    """A byte of a rank file's results flipped before --resume: the row checksum drops it."""
    if c.writer != "merge":
        return c.skip("no rank files with this writer")
    if _killed_merge_run(c) is None:
        return c.skip("the run finished before the kill")
    rank_file = c.out.with_name(c.out.name + ".rank0.h5")
    if not rank_file.exists():
        return c.verdict(False, "no rank file left by the killed run")
    flip_byte(rank_file, "results")
    o = c.resume()
    same = c.compare()
    dropped = c.record.steps[-1]["dropped_units"]
    ok = o.exit == 0 and same and dropped >= 1
    return c.verdict(ok, f"{dropped} damaged unit(s) dropped and recomputed")


def _complete_copy(c: Case) -> None:
    """The reference library as this case's output, its config naming the same ARF."""
    shutil.copyfile(c.reference, c.out)
    c.cfg.write_text(CONFIG.format(out=c.out, arf=c.reference.parent / "pn.arf", rmf=RMF))


def case_truncated_library(c: Case) -> Record:
    """A finished library cut short, given to xrmod info and to --resume."""
    _complete_copy(c)
    truncate(c.out)
    i = info(c.out, c.dir, "info-truncated")
    c.record.info_after = i
    c.record.disk_after = disk(c.dir, c.out)
    o = c.resume()
    ok = i["exit"] == 2 and o.exit == 2 and "damaged" in " ".join(o.last_lines)
    return c.verdict(ok, f"info exit {i['exit']}, --resume exit {o.exit}")


def case_corrupted_library(c: Case) -> Record:
    """A byte of a finished library's results flipped: info --verify and --resume."""
    _complete_copy(c)
    # the reference is serial: reseal is not needed, checksums depend on the values only
    flip_byte(c.out, "LIBRARY/results")
    quick = info(c.out, c.dir, "info-quick")
    full = info(c.out, c.dir, "info-verify", "--verify")
    c.record.info_after = {"info": quick, "info --verify": full}
    c.record.disk_after = disk(c.dir, c.out)
    o = c.resume()
    ok = full["exit"] == 2 and o.exit == 2 and "damaged" in " ".join(o.last_lines)
    return c.verdict(
        ok, f"info exit {quick['exit']} (quick check), info --verify exit {full['exit']}, "
        f"--resume exit {o.exit}"
    )  # fmt: skip


def case_two_runs(c: Case) -> Record:
    """A second run started on the same output while the first runs (plain, and --resume)."""
    first = c.start()
    done = _interrupt_mid_run(c, first)
    if done is None:
        return c.skip("the first run finished before the second started")
    plain_job = Job(c.gen_args(), c.dir, "second-plain")
    resume_job = Job(c.gen_args("--resume"), c.dir, "second-resume")
    plain, second = plain_job.wait(), resume_job.wait()
    c.step("second run, same command", plain)
    c.step("second run, --resume", second)
    c.faulted(first, first.wait(), done)
    same = c.compare()
    ok = plain.exit == 2 and second.exit == 2 and c.record.first["exit"] == 0 and same
    return c.verdict(ok, f"second runs: exit {plain.exit} and {second.exit} (--resume)")


def case_changed_config(c: Case) -> Record:
    """--resume with a changed seed after SIGTERM: refused; with the old config it completes."""
    job = c.start()
    done = _interrupt_mid_run(c, job)
    if done is None:
        return c.skip("the run finished before the signal")
    for pid in job.ranks().values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    c.faulted(job, job.wait(), done)
    text = c.cfg.read_text()
    c.cfg.write_text(text.replace("seed = 5", "seed = 6"))
    refused = c.resume("--resume with seed changed 5 -> 6")
    c.cfg.write_text(text)
    if refused.exit != 2:
        return c.verdict(False, f"a changed config was resumed (exit {refused.exit})")
    rec = _resume_until_identical(c)
    rec.note = rec.note or "refused with exit 2 naming library.seed; original config resumed"
    return rec


def case_changed_response(c: Case) -> Record:
    """The ARF's content changed (same name) before --resume: refused; restored, it completes."""
    from astropy.io import fits

    job = c.start()
    done = _interrupt_mid_run(c, job)
    if done is None:
        return c.skip("the run finished before the signal")
    for pid in job.ranks().values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    c.faulted(job, job.wait(), done)
    original = c.arf.read_bytes()
    with fits.open(c.arf, mode="update") as hdul:
        hdul["SPECRESP"].data["SPECRESP"][100] *= 1.01
    refused = c.resume("--resume with the ARF's content changed")
    c.arf.write_bytes(original)
    if refused.exit != 2:
        return c.verdict(False, f"a changed response was resumed (exit {refused.exit})")
    rec = _resume_until_identical(c)
    rec.note = rec.note or "refused with exit 2 naming the ARF's SHA-256; restored, resumed"
    return rec


CASES: dict[str, Callable[[Case], Record]] = {
    "sigterm_launcher": case_sigterm_launcher,
    "sigkill_one_rank": case_sigkill_one_rank,
    "sigkill_all": case_sigkill_all,
    "sigstop_one_rank": case_sigstop_one_rank,
    "disk_full": case_disk_full,
    "unwritable_dir": case_unwritable_dir,
    "truncated_rank_file": case_truncated_rank_file,
    "corrupted_rank_file": case_corrupted_rank_file,
    "truncated_library": case_truncated_library,
    "corrupted_library": case_corrupted_library,
    "two_runs": case_two_runs,
    "changed_config": case_changed_config,
    "changed_response": case_changed_response,
}


# --------------------------------------------------------------------------- report
def _cell(lines: list[str]) -> str:
    text = " / ".join(line.strip() for line in lines if line.strip())
    text = re.sub(r"/tmp/\S*/", "", text)
    return (text[:220] + "…") if len(text) > 220 else text


def markdown(records: list[Record], header: str) -> str:
    rows = [header, "",
            "| case | N | writer | verdict | faulted run: exit, last line | on disk after "
            "| done before / recovered / recomputed / lost (bound) points | next step(s): exit "
            "| identical | note |",
            "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in records:
        first = ""
        if r.first:
            first = f"{r.first['exit']}: {_cell(r.first['last_lines'][-1:])}"
        elif r.info_after:
            first = f"info: {_cell([json.dumps(r.info_after)])}"
        counts = " / ".join(
            "–" if v is None else str(v)
            for v in (r.done_before_fault, r.recovered_points, r.recomputed_points, r.lost_points)
        )
        if r.lost_bound is not None:
            counts += f" (≤ {r.lost_bound})"
        steps = "; ".join(
            f"{s['step']}: {s['exit']} ({_cell(s['last_lines'][-1:])})" for s in r.steps
        )
        same = "–" if r.identical is None else ("yes" if r.identical else "NO")
        files = ", ".join(r.disk_after)
        rows.append(
            f"| {r.case} | {r.ranks} | {r.writer} | {r.verdict} | {first} | {files} | "
            f"{counts} | {steps} | {same} | {_cell([r.note])} |"
        )
    return "\n".join(rows) + "\n"


def reference_library(root: Path) -> Path:
    """The uninterrupted serial library every case is compared with."""
    ref_dir = root / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    out = ref_dir / "ref.h5"
    arf = ref_dir / "pn.arf"
    shutil.copyfile(_bundled("pn.arf"), arf)
    cfg = ref_dir / "cfg.toml"
    cfg.write_text(CONFIG.format(out=out, arf=arf, rmf=RMF))
    o = run([XRMOD_GEN, str(cfg), "--no-progress", "--overwrite"], ref_dir, "reference")
    if o.exit != 0:
        raise SystemExit(f"the reference run failed (exit {o.exit}): {o.last_lines}")
    global RATE
    rate = re.search(r"\(([\d.]+) points/s\)", o.stderr)
    RATE = float(rate[1]) if rate else 0.0
    log.info(
        "reference: %s (%d points) in %.1f s, %.0f points/s", out, _points(out), o.seconds, RATE
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="2,3", help="rank counts (default 2,3)")
    parser.add_argument("--writers", default="", help="default: merge, and mpio if h5py has MPI")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--dir", default="", help="working directory (default: a new temp dir)")
    parser.add_argument("--json", default="faults.json", help="JSON output")
    parser.add_argument("--markdown", default="faults.md", help="Markdown output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    root = Path(args.dir or tempfile.mkdtemp(prefix="xrmod-faults-"))
    writers = args.writers.split(",") if args.writers else (
        ["merge", "mpio"] if h5py.get_config().mpi else ["merge"])  # fmt: skip
    ranks = [int(n) for n in args.ranks.split(",")]
    cases = [name for name in args.cases.split(",") if name]
    unknown = [n for n in cases if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    ref = reference_library(root)
    records = []
    started = time.time()
    for name in cases:
        for n in ranks:
            for writer in writers:
                t = time.monotonic()
                c = Case(root, name, n, writer, ref)
                try:
                    rec = CASES[name](c)
                except Exception as e:  # a campaign bug or an unforeseen state: recorded
                    log.exception("case %s on %d ranks (%s) raised", name, n, writer)
                    rec = c.verdict(False, f"campaign error: {type(e).__name__}: {e}")
                records.append(rec)
                log.info("%-20s n=%d %-5s %-4s %5.1f s  %s", name, n, writer, rec.verdict,
                         time.monotonic() - t, rec.note)  # fmt: skip
    import platform

    mpi = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"(Version:\s*\S+|\(Open MPI\) \S+)", mpi)
    launcher = re.sub(r"\s+", " ", version[0]) if version else "?"
    if "HYDRA" in mpi:
        launcher = f"MPICH Hydra, {launcher}"
    header = (
        f"Fault campaign, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}: "
        f"{platform.node()}, {os.cpu_count()} cores, "
        f"mpirun {launcher}, h5py {h5py.__version__} "
        f"(MPI: {h5py.get_config().mpi}), grid {_points(ref)} points, "
        f"{time.time() - started:.0f} s in all"
    )
    Path(args.markdown).write_text(markdown(records, header))
    Path(args.json).write_text(
        json.dumps({"header": header, "records": [asdict(r) for r in records]}, indent=1)
    )
    failed = [r for r in records if r.verdict == "FAIL"]
    log.info("%d cases: %d pass, %d FAIL, %d skip; %s, %s", len(records),
             len(records) - len(failed) - sum(r.verdict == "skip" for r in records), len(failed),
             sum(r.verdict == "skip" for r in records), args.markdown, args.json)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
