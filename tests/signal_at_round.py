"""Run mpifl and send a signal to one rank at the end of a given round.

    mpiexec -n P python tests/signal_at_round.py ROUND RANK SIGNAL [mpifl arguments...]

SIGKILL plays a node crash; SIGTERM or SIGUSR1 play Slurm's warning.  Every
rank asks Checkpoints.due(round) once per round in both modes, so the signal
lands at the same point of the protocol whichever clients were sampled.
"""

import os
import signal
import sys

from mpi4py import MPI

import mpifl.checkpointing
from mpifl.__main__ import main

ROUND, RANK, SIGNAL = int(sys.argv[1]), int(sys.argv[2]), getattr(signal, sys.argv[3])
_due = mpifl.checkpointing.Checkpoints.due


def due_then_signal(self, rnd):
    if rnd == ROUND and MPI.COMM_WORLD.Get_rank() == RANK:
        os.kill(os.getpid(), SIGNAL)
    return _due(self, rnd)


mpifl.checkpointing.Checkpoints.due = due_then_signal
sys.exit(main(sys.argv[4:]))
