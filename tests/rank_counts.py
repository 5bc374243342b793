"""The promise checked in many MPI tests: a federated job repeats bitwise and gives the same bytes on fewer ranks."""

from __future__ import annotations

from mpi4py import MPI

import mpifl


def same_bytes_again_and_on_two_ranks(comm, **job):
    """Run ``job`` twice on ``comm`` and once on its first two ranks; assert the three models are the same bytes
    (on the ranks that ran it); return the first result."""
    first = mpifl.run(None, comm, **job)
    again = mpifl.run(None, comm, **job)
    assert first.model.tobytes() == again.model.tobytes()
    pair = comm.Split(0 if comm.rank < 2 else MPI.UNDEFINED, comm.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(None, pair, **job)
        pair.Free()
        assert fewer.model.tobytes() == first.model.tobytes()
    return first


def on_first_ranks(comm, n: int, test) -> None:
    """Run ``test(sub)`` on a communicator of ``comm``'s first ``n`` ranks, for checks worked out for that layout
    (byte counts, default client counts); the other ranks skip it."""
    sub = comm.Split(0 if comm.rank < n else MPI.UNDEFINED, comm.rank)
    if sub != MPI.COMM_NULL:
        try:
            test(sub)
        finally:
            sub.Free()
