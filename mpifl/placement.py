"""On a node with more ranks than cores, keep each computing rank on one core.

When a node runs more ranks than it has cores and the launcher bound none of
them, the operating system moves a computing rank to the other core whenever
a waiting rank wakes, and each move costs the rank its caches.  The FedAvg
2NN through the torch adapter (3 ranks on 2 cores, the server waiting) took
2.7 s a round so, and 2.2 s with each client rank on a core of its own
(benchmarks/mlp_federated.py's job; AMD EPYC, 2 cores).  So, there, every
rank but the root is pinned to one core, round-robin by its place on the
node, and the root (a federated server, which mostly waits) stays free.
Ranks that the launcher bound (``--bind-to``, ``srun --cpu-bind``), nodes
with a core per rank, and runs with more than one thread per rank are left
as they are; ``MPIFL_PIN=off`` leaves every rank to the operating system.
The run restores each rank's own placement when it ends.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from mpi4py import MPI

from mpifl.ranks import ROOT


def _core(comm: MPI.Comm, threads: int) -> int | None:
    """The core this rank keeps, or None to leave it be (a collective: every rank calls it)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        ranks = node.allgather(comm.Get_rank())
    finally:
        node.Free()
    if not hasattr(os, "sched_setaffinity") or os.environ.get("MPIFL_PIN", "auto").lower() == "off":
        return None
    allowed = sorted(os.sched_getaffinity(0))
    unbound = len(allowed) == (os.cpu_count() or 0)
    if threads != 1 or not unbound or len(ranks) <= len(allowed) or comm.Get_rank() == ROOT:
        return None
    computing = [rank for rank in ranks if rank != ROOT]
    return allowed[computing.index(comm.Get_rank()) % len(allowed)]


@contextmanager
def pinned(comm: MPI.Comm, threads: int):
    """Pin this rank for the run (as the module docstring says), and give its placement back after."""
    core = _core(comm, threads)
    if core is None:
        yield None
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)
