"""The PyTorch adapter on real ranks: FedAvg, FedProx and SCAFFOLD with the 2NN equal the Numba MLP from the
same start, and the model is the same bytes on fewer ranks (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl

torch = pytest.importorskip("torch")  # the optional extra: pip install "mpifl[torch]"

from torch_nets import from_mlp_theta  # noqa: E402

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("strategy, extra", [("fedavg", {}), ("fedprox", {"server__proximal_mu": 0.1}),
                                             ("scaffold", {})])
def test_five_federated_rounds_of_the_2nn_equal_the_numba_mlps(strategy, extra):
    common = dict(rounds=5, data__clients=6, server__fraction=0.5, server__strategy=strategy, train__lr=0.05,
                  train__batch_size=10, model__dtype="float64", **extra)
    mlp = mpifl.run(None, COMM, model__kind="mlp", model__hidden=[200, 200], **common)
    adapted = mpifl.run(None, COMM, model__kind="torch", model__module="torch_nets:two_nn_from_the_mlps_start",
                        **common)
    np.testing.assert_allclose(adapted.model, from_mlp_theta(mlp.model, (64, 200, 200, 10)), rtol=0, atol=1e-6)
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(None, pair, model__kind="torch", model__module="torch_nets:two_nn_from_the_mlps_start",
                          **common)
        pair.Free()
        assert fewer.model.tobytes() == adapted.model.tobytes()
