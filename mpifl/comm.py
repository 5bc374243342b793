"""Buffer-based collectives with timing and byte counts; arrays never travel through pickle.

Each helper takes the communicator explicitly and adds its wall time
(transfer plus waiting for the slowest rank) to ``timer.comm_seconds``, and
the bytes of the buffers it hands MPI to ``timer``'s byte counts.  The
timing is two perf_counter calls, so a wrapped call costs about as much as a
raw mpi4py call even for tiny buffers (benchmarks/collectives.py).
"""

from __future__ import annotations

import os
from time import perf_counter, sleep

import numpy as np
from mpi4py import MPI
from mpi4py.util.dtlib import from_numpy_dtype

from mpifl.metrics import RoundTimer


def allreduce_sum(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    """Allreduce; counts what this rank put in (uplink) and got back (downlink)."""
    t0 = perf_counter()
    comm.Allreduce(send, recv, op=MPI.SUM)
    timer.comm_seconds += perf_counter() - t0
    timer.uplink_bytes += send.nbytes
    timer.downlink_bytes += recv.nbytes


def allreduce_max(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    t0 = perf_counter()
    comm.Allreduce(send, recv, op=MPI.MAX)
    timer.comm_seconds += perf_counter() - t0


def allgather(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    """Allgather; counts what this rank put in (uplink) and got back, its own part included (downlink)."""
    t0 = perf_counter()
    comm.Allgather(send, recv)
    timer.comm_seconds += perf_counter() - t0
    timer.uplink_bytes += send.nbytes
    timer.downlink_bytes += recv.nbytes


POLL_SECONDS = 5e-5  # the first sleep between tests while polling
POLL_SHARE = 0.05  # then each sleep is this share of the time waited so far: a wait overshoots by at most 5% ...
POLL_MAX_SECONDS = 2e-2  # ... or this


def wait_patiently(request: MPI.Request) -> None:
    """Wait for a non-blocking call by testing it between short sleeps, leaving the core to ranks that compute.

    MPI's own wait keeps polling the network, and on a node with more ranks
    than cores the waiting ranks then take CPU time from the working ones (in
    a federated round: the server, and the clients that finished first).
    Sleeping adds wake-up latency, so callers poll only where waits are long.
    Every rank must choose the same way for the same call, because a
    blocking collective never matches a non-blocking one.  Each sleep is
    POLL_SHARE of the time waited so far (from POLL_SECONDS up to
    POLL_MAX_SECONDS): a short wait still ends within microseconds, and a wait
    of a whole round wakes a few hundred times, not twenty thousand.  Each
    wake-up preempts a computing rank on a shared core, and on a virtual
    machine a waker every millisecond slowed two computing ranks by a fifth.
    """
    started = perf_counter()
    pause = POLL_SECONDS
    while not request.Test():
        sleep(pause)
        pause = min(max(POLL_SECONDS, POLL_SHARE * (perf_counter() - started)), POLL_MAX_SECONDS)


def allreduce_max_in_place(comm: MPI.Comm, buf: np.ndarray, poll: bool = False) -> None:
    """Allreduce(MAX) in place; with ``poll`` (the same on every rank), Iallreduce waited for by wait_patiently."""
    if poll:
        wait_patiently(comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX))
    else:
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)


def reduce_sum(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray | None, root: int, poll: bool = False) -> None:
    """Reduce(SUM) to root; with ``poll`` (the same on every rank), Ireduce waited for by wait_patiently."""
    if poll:
        wait_patiently(comm.Ireduce(send, recv, op=MPI.SUM, root=root))
    else:
        comm.Reduce(send, recv, op=MPI.SUM, root=root)


def bcast(comm: MPI.Comm, buf: np.ndarray, timer: RoundTimer, root: int = 0, poll: bool = False) -> None:
    """Bcast; with ``poll`` (the same on every rank), Ibcast waited for by wait_patiently."""
    t0 = perf_counter()
    if poll:
        wait_patiently(comm.Ibcast(buf, root=root))
    else:
        comm.Bcast(buf, root=root)
    timer.comm_seconds += perf_counter() - t0
    if comm.Get_rank() == root:
        timer.downlink_bytes += buf.nbytes * (comm.Get_size() - 1)  # the message each other rank receives


class GatherToRoot:
    """Gatherv of ``counts[r]`` values of ``dtype`` from each rank r into one array at the root.

    The layout (counts, displacements, MPI type) is kept between calls and
    rebuilt only by set_counts, which every rank calls with the same counts
    (they are computed, never communicated).  A root count of zero means the
    root sends no dummy row.  recv is ignored off the root.
    """

    def __init__(self, comm: MPI.Comm, counts: list[int], dtype: np.dtype, root: int = 0):
        self.comm = comm
        self.root = root
        self.mpi_type = from_numpy_dtype(np.dtype(dtype))
        self.set_counts(counts)

    def set_counts(self, counts: list[int]) -> None:
        self.counts = [int(c) for c in counts]
        self.displs = [0] * len(self.counts)
        for r in range(1, len(self.counts)):
            self.displs[r] = self.displs[r - 1] + self.counts[r - 1]
        self.total = self.displs[-1] + self.counts[-1]
        self.my_count = self.counts[self.comm.Get_rank()]

    def __call__(self, send: np.ndarray, recv: np.ndarray, timer: RoundTimer, poll: bool = False) -> None:
        """Gatherv; with ``poll`` (the same on every rank), Igatherv waited for by wait_patiently."""
        t0 = perf_counter()
        sendbuf = [send, self.my_count, self.mpi_type]
        recvbuf = [recv, self.counts, self.displs, self.mpi_type]
        if poll:
            wait_patiently(self.comm.Igatherv(sendbuf, recvbuf, root=self.root))
        else:
            self.comm.Gatherv(sendbuf, recvbuf, root=self.root)
        timer.comm_seconds += perf_counter() - t0
        if self.comm.Get_rank() == self.root:  # what the other ranks sent it, from the counts MPI was given
            timer.uplink_bytes += (self.total - self.my_count) * self.mpi_type.Get_size()


def scatter_bytes(comm: MPI.Comm, send: np.ndarray, counts: list[int], recv: np.ndarray, timer: RoundTimer,
                  root: int = 0, poll: bool = False) -> None:
    """Scatterv of ``counts[r]`` bytes to each rank r from the root's ``send`` (ignored elsewhere) into ``recv``;
    with ``poll``, Iscatterv waited for by wait_patiently.  The root counts what it sent the others (downlink)."""
    displs = [0] * len(counts)
    for r in range(1, len(counts)):
        displs[r] = displs[r - 1] + counts[r - 1]
    t0 = perf_counter()
    sendbuf = [send, counts, displs, MPI.BYTE] if comm.Get_rank() == root else None
    recvbuf = [recv, counts[comm.Get_rank()], MPI.BYTE]
    if poll:
        wait_patiently(comm.Iscatterv(sendbuf, recvbuf, root=root))
    else:
        comm.Scatterv(sendbuf, recvbuf, root=root)
    timer.comm_seconds += perf_counter() - t0
    if comm.Get_rank() == root:
        timer.downlink_bytes += sum(counts) - counts[root]


class GatherFromOthers(GatherToRoot):
    """``width`` values from every rank but the root: (size - 1) x width at the root."""

    def __init__(self, comm: MPI.Comm, width: int, dtype: np.dtype, root: int = 0):
        counts = [0 if r == root else width for r in range(comm.Get_size())]
        super().__init__(comm, counts, dtype, root)


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
