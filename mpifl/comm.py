"""Buffer-based collectives with timing; arrays never travel through pickle.

Each helper takes the communicator explicitly and adds its wall time
(transfer plus waiting for the slowest rank) to ``timer.comm_seconds``.  The
timing is two perf_counter calls, so a wrapped call costs about as much as a
raw mpi4py call even for tiny buffers (benchmarks/collectives.py).
"""

from __future__ import annotations

import os
from time import perf_counter

import numpy as np
from mpi4py import MPI
from mpi4py.util.dtlib import from_numpy_dtype

from mpifl.metrics import RoundTimer


def allreduce_sum(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    t0 = perf_counter()
    comm.Allreduce(send, recv, op=MPI.SUM)
    timer.comm_seconds += perf_counter() - t0


def allreduce_max(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    t0 = perf_counter()
    comm.Allreduce(send, recv, op=MPI.MAX)
    timer.comm_seconds += perf_counter() - t0


def allgather(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    t0 = perf_counter()
    comm.Allgather(send, recv)
    timer.comm_seconds += perf_counter() - t0


def bcast(comm: MPI.Comm, buf: np.ndarray, timer: RoundTimer, root: int = 0) -> None:
    t0 = perf_counter()
    comm.Bcast(buf, root=root)
    timer.comm_seconds += perf_counter() - t0


class GatherFromOthers:
    """Gather ``width`` values of ``dtype`` from every rank but the root, one row per rank.

    The Gatherv layout (counts, displacements, MPI type) is built once; the
    root's own count is zero, so it sends no dummy row.  recv is
    (size - 1) x width at the root and is ignored elsewhere.
    """

    def __init__(self, comm: MPI.Comm, width: int, dtype: np.dtype, root: int = 0):
        self.comm = comm
        self.root = root
        size = comm.Get_size()
        self.counts = [0 if r == root else width for r in range(size)]
        self.displs = [width * (r - (r > root)) for r in range(size)]
        self.mpi_type = from_numpy_dtype(np.dtype(dtype))
        self.my_count = self.counts[comm.Get_rank()]

    def __call__(self, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
        t0 = perf_counter()
        self.comm.Gatherv(
            [send, self.my_count, self.mpi_type], [recv, self.counts, self.displs, self.mpi_type], root=self.root
        )
        timer.comm_seconds += perf_counter() - t0


def node_occupancy(comm: MPI.Comm) -> tuple[int, int]:
    """(ranks on the busiest node, cores on the smallest node), the same on every rank.

    A scaling point with more ranks per node than cores measures the
    operating system's scheduler as much as mpifl, so results carry this.
    """
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        ranks_here = node.Get_size()
    finally:
        node.Free()
    busiest = comm.allreduce(ranks_here, op=MPI.MAX)
    cores = comm.allreduce(os.cpu_count() or 1, op=MPI.MIN)
    return busiest, cores
