"""The collective helpers and collective failure, under mpiexec."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.agree import collectively
from mpifl.errors import DataError, MpiflError
from mpifl.metrics import RoundTimer

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_from_others_places_rows_by_rank(dtype):
    width = 3
    send = np.full(width, COMM.rank, dtype=dtype) if COMM.rank else np.empty(0, dtype)
    recv = np.full((COMM.size - 1, width), -1, dtype=dtype)
    timer = RoundTimer()
    collectives.GatherFromOthers(COMM, width, dtype)(send, recv, timer)
    if COMM.rank == 0:
        assert np.array_equal(recv, np.repeat(np.arange(1, COMM.size, dtype=dtype)[:, None], width, axis=1))
    assert timer.comm_seconds > 0


@pytest.mark.mpi(min_size=2)
def test_allreduce_and_bcast():
    timer = RoundTimer()
    out = np.empty(2)
    collectives.allreduce_sum(COMM, np.array([1.0, COMM.rank]), out, timer)
    assert out.tolist() == [COMM.size, sum(range(COMM.size))]
    buf = np.arange(4.0) if COMM.rank == 0 else np.zeros(4)
    collectives.bcast(COMM, buf, timer)
    assert buf.tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.mpi(min_size=2)
def test_an_error_on_one_rank_fails_every_rank_with_its_message():
    def step():
        if COMM.rank == 1:
            raise DataError("client 0 has no rows")
        return COMM.rank

    with pytest.raises(MpiflError, match=r"^rank 1: client 0 has no rows$") as err:
        collectively(COMM, step)
    assert err.value.collective


@pytest.mark.mpi(min_size=2)
def test_the_same_error_everywhere_is_reported_once_without_rank():
    def step():
        raise DataError("bad alpha")

    with pytest.raises(MpiflError, match=r"^bad alpha$"):
        collectively(COMM, step)


@pytest.mark.mpi(min_size=2)
def test_success_returns_each_ranks_value():
    assert collectively(COMM, lambda: COMM.rank * 10) == COMM.rank * 10
