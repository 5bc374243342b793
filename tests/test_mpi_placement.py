"""On an oversubscribed node whose ranks the launcher left unbound, every rank but the root keeps one core for the
run, and gets its placement back after (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import os

import pytest
from mpi4py import MPI

from mpifl import placement

COMM = MPI.COMM_WORLD


def node_ranks() -> list[int]:
    node = COMM.Split_type(MPI.COMM_TYPE_SHARED)
    ranks = node.allgather(COMM.rank)
    node.Free()
    return ranks


@pytest.mark.mpi(min_size=2)
def test_computing_ranks_keep_a_core_each_only_where_the_node_is_oversubscribed(monkeypatch):
    monkeypatch.delenv("MPIFL_PIN", raising=False)
    before = os.sched_getaffinity(0)
    ranks, allowed = node_ranks(), sorted(before)
    oversubscribed = len(ranks) > len(allowed) and len(allowed) == os.cpu_count()
    with placement.pinned(COMM, threads=1) as core:
        inside = os.sched_getaffinity(0)
    assert os.sched_getaffinity(0) == before
    if not oversubscribed or COMM.rank == 0:
        assert core is None and inside == before
    else:
        computing = [r for r in ranks if r != 0]
        assert inside == {allowed[computing.index(COMM.rank) % len(allowed)]} == {core}
    with placement.pinned(COMM, threads=2) as core:  # a rank of several threads is never pinned to one core
        assert core is None
    monkeypatch.setenv("MPIFL_PIN", "off")
    with placement.pinned(COMM, threads=1) as core:
        assert core is None and os.sched_getaffinity(0) == before
