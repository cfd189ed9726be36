"""Run a job on one process or on many MPI ranks.

``xrmod-gen CONFIG`` runs serially; ``mpirun -n N xrmod-gen CONFIG`` runs on N
ranks (with mpi4py; this package is the only part of xrmod that imports it,
and only when an MPI launcher started the process). Every rank, rank 0
included, computes: work units (one θ with all its points) are handed out by
a shared counter in an MPI RMA window on rank 0 (atomic fetch-and-add), so no
rank idles while another has a backlog and no rank is lost to coordination.
Each rank reserves its next unit while computing the current one, and a small
thread on rank 0 keeps MPI progressing while rank 0 computes, so a fetch never
waits for rank 0's unit to finish. No collective call happens between the
first unit and the last.

Output paths (``--writer``; ``auto`` picks by ``h5py.get_config().mpi``):
``direct`` (one process), ``mpio`` (parallel h5py: every rank writes the
library through MPI-IO) and ``merge`` (serial h5py: rank files that rank 0
merges with dask); see :mod:`xrmod.driver.writers`. All three give identical
datasets: a point's result depends only on the job and its flat index.

Failure policy: an exception escaping the engine for one unit marks that
unit's points ``Status.ERROR`` (NaN results), logs the traceback to the rank's
log ``<output>.rank<N>.log``, and the run goes on. A fatal error on any rank
(bad config or engine set-up on one rank, an unwritable output, a failed
write, a full disk) stops every rank at the next unit boundary and ends the
run on every rank with one message naming the rank and host; every step
that can fail is agreed on by all ranks, and logging never raises (a log
that cannot be written is dropped after one line on stderr), so the
collective calls of all ranks stay the same and nothing hangs. A rank that
dies outright is ended, with the whole job, by the MPI launcher.

SIGTERM and SIGINT (a batch system's time limit, Ctrl-C) stop the handing out
of units; every rank finishes and writes the unit in flight, the library (or
the merged rank files) keeps everything finished, and the run exits with
128 + signal number and a message saying how to resume. Killed outright
(SIGKILL, a node failure), a rank loses its unit in flight and the finished
units still in its batch (every writer writes in batches): those of the last
``XRMOD_FLUSH_SECONDS`` seconds (default 2; at most 60, a larger value is
clamped with a warning) and never more than a full 4 MB batch. ``--resume``
computes them again.

One run at a time writes an output: rank 0 takes ``OUTPUT.lock`` before the
output is touched and removes it when the run ends (:mod:`xrmod.output`); a
second run is refused (exit 2) on every rank. An output where no file can be
made is refused before any compute (exit 2); a new library is made under a
temporary name and renamed when complete, so a full disk leaves nothing
half-made.

Modules: :mod:`~xrmod.driver.comm` (ranks, agreement between them),
:mod:`~xrmod.driver.counter` (the shared counter), :mod:`~xrmod.driver.console`
(progress, rank logs), :mod:`~xrmod.driver.writers` (the output paths),
:mod:`~xrmod.driver.loop` (the run).
"""

from xrmod.driver.comm import world_rank
from xrmod.driver.loop import generate, run
from xrmod.driver.writers import FLUSH_ENV, WRITERS

__all__ = ["FLUSH_ENV", "WRITERS", "generate", "run", "world_rank"]
