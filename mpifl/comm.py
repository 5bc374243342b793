"""Buffer-based collectives with timing; arrays never travel through pickle.

Each helper takes the communicator explicitly and charges its wall time
(transfer plus waiting for the slowest rank) to the timer's comm clock.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI
from mpi4py.util.dtlib import from_numpy_dtype

from mpifl.metrics import RoundTimer


def allreduce_sum(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    with timer.comm():
        comm.Allreduce(send, recv, op=MPI.SUM)


def allreduce_max(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, timer: RoundTimer) -> None:
    with timer.comm():
        comm.Allreduce(send, recv, op=MPI.MAX)


def bcast(comm: MPI.Comm, buf: np.ndarray, timer: RoundTimer, root: int = 0) -> None:
    with timer.comm():
        comm.Bcast(buf, root=root)


def gather_from_others(
    comm: MPI.Comm, send: np.ndarray, recv: np.ndarray, width: int, timer: RoundTimer, root: int = 0
) -> None:
    """Gather ``width`` values from every rank but the root into recv at the root.

    recv is (size - 1) x width at the root and ignored elsewhere; the root
    passes an empty send of the same dtype, so it sends no dummy row.
    """
    counts = [0 if r == root else width for r in range(comm.Get_size())]
    displs = [width * (r - (r > root)) for r in range(comm.Get_size())]
    mpi_type = from_numpy_dtype(send.dtype)
    with timer.comm():
        comm.Gatherv([send, counts[comm.Get_rank()], mpi_type], [recv, counts, displs, mpi_type], root=root)
