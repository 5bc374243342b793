"""The CNN on real ranks: distributed full-batch GD equals serial GD, repeats and rank counts give the same
bytes in federated mode (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from rank_counts import same_bytes_again_and_on_two_ranks

COMM = MPI.COMM_WORLD
NET = {"model__kind": "cnn", "model__architecture": "custom",
       "model__layers": ["conv 3 4 same", "pool", "conv 3 6 valid", "dense 12"], "train__lr": 0.05}


@pytest.mark.mpi(min_size=2)
def test_distributed_full_batch_gd_on_every_rank_equals_serial_gd_on_the_union():
    common = dict(mode="distributed", rounds=3, train__algorithm="gradient_averaging", train__batch_size=0,
                  data__test_fraction=0.0, data__partition="iid", **NET)
    parallel = mpifl.run(None, COMM, **common)
    serial = mpifl.run(None, MPI.COMM_SELF, **common)
    np.testing.assert_allclose(parallel.model, serial.model, rtol=1e-9, atol=1e-12)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_federated_cnn_repeats_bitwise_and_gives_the_same_bytes_on_fewer_ranks(dtype):
    common = dict(rounds=3, data__clients=6, server__fraction=0.5, train__momentum=0.9, model__dtype=dtype, **NET)
    first = same_bytes_again_and_on_two_ranks(COMM, **common)
    assert first.history[-1]["accuracy"] > first.history[0]["accuracy"]
