"""Run mpifl with one client rank raising mid-training, to test that the job aborts."""

import sys

from mpi4py import MPI  # noqa: F401 - initialise MPI the way mpifl.__main__ would

import mpifl.federated
from mpifl.__main__ import main

FAILING_RANK = 2
_participate = mpifl.federated.participate


def failing_participate(loop, *args):
    if loop.comm.Get_rank() == FAILING_RANK:
        raise RuntimeError("injected failure on a client")
    return _participate(loop, *args)


mpifl.federated.participate = failing_participate
sys.exit(main(sys.argv[1:]))
