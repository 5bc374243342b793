"""Run mpifl with one rank raising mid-training, to test that the job aborts.

``fail_one_rank.py [--rank R] [--api] ARGS``: rank R (default 2, a client)
raises in round 2; with --api the job runs in-process through mpifl.run
instead of the command line.
"""

import sys

from mpi4py import MPI  # noqa: F401 - initialise MPI the way mpifl.__main__ would

import mpifl
import mpifl.federated
import mpifl.federated_clients
from mpifl.__main__ import main

args = sys.argv[1:]
FAILING_RANK = int(args[args.index("--rank") + 1]) if "--rank" in args else 2
API = "--api" in args
args = [a for i, a in enumerate(args) if a != "--api" and a != "--rank" and (i == 0 or args[i - 1] != "--rank")]


def failing(original):
    def round_(self, it):
        if self.loop.comm.Get_rank() == FAILING_RANK and it == 2:
            raise RuntimeError(f"injected failure on rank {FAILING_RANK}")
        return original(self, it)
    return round_


mpifl.federated_clients.ClientRounds.round = failing(mpifl.federated_clients.ClientRounds.round)
mpifl.federated.ServerRounds.round = failing(mpifl.federated.ServerRounds.round)
if API:
    mpifl.run(None, MPI.COMM_WORLD, rounds=4)
    sys.exit(0)
sys.exit(main(args))
