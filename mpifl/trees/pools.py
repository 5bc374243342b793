"""Who holds the rows of a fit: one participant alone, or ranks whose integer sums and maxima an Allreduce
combines.  The booster asks its pool; it never touches a communicator."""

from __future__ import annotations

import numpy as np


class Alone:
    """The sums and maxima of one participant that holds every row."""

    def sum_ints(self, values: np.ndarray) -> None:
        """values = their sum over the participants, in place (int64: exact in any order)."""

    def maximum(self, values: np.ndarray) -> None:
        """values = their maximum over the participants, in place."""

    def agree(self, step) -> None:
        """Run a check on every participant; if it fails on any, it fails on all."""
        step()


class Allreduced(Alone):
    """Ranks that each hold some rows (distributed mode): one Allreduce each; ``sent`` counts the bytes of the
    integer sums (the histograms, mostly) each rank contributed."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.comm, self.MPI, self.sent = comm, MPI, 0

    def sum_ints(self, values):
        self.sent += values.nbytes
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.SUM)

    def maximum(self, values):
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.MAX)

    def agree(self, step):
        from mpifl.agree import collectively

        collectively(self.comm, step)
