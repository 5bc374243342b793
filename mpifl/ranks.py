"""The root rank: the one rank that writes the run directory, prints and holds the global checkpoint state."""

from __future__ import annotations

from mpi4py import MPI

ROOT = 0


def is_root(comm: MPI.Comm) -> bool:
    return comm.Get_rank() == ROOT
