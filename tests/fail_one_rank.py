"""Run mpifl with one client rank raising mid-training, to test that the job aborts."""

import sys

from mpi4py import MPI  # noqa: F401 - initialise MPI the way mpifl.__main__ would

import mpifl.federated_clients
from mpifl.__main__ import main

FAILING_RANK = 2
_round = mpifl.federated_clients.ClientRounds.round


def failing_round(self, it):
    if self.loop.comm.Get_rank() == FAILING_RANK and it == 2:
        raise RuntimeError("injected failure on a client")
    return _round(self, it)


mpifl.federated_clients.ClientRounds.round = failing_round
sys.exit(main(sys.argv[1:]))
