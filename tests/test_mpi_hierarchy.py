"""Two-level averaging (HierFAVG) on edge sub-communicators: at kappa1 = kappa2 = 1 it is FedAvg (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl

COMM = MPI.COMM_WORLD


def common():
    return dict(mode="federated", rounds=4, data__clients=2 * (COMM.size - 1), train__momentum=0.5,
                data__alpha=0.3)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("hierarchy", ["groups", "node"])
@pytest.mark.parametrize("strategy, extra", [("fedavg", {}), ("fedprox", {"server__proximal_mu": 0.1})])
def test_one_local_and_one_edge_round_per_cloud_round_is_flat_fedavg(hierarchy, strategy, extra):
    flat = mpifl.run(None, COMM, server__strategy=strategy, **extra, **common())
    edges = mpifl.run(None, COMM, server__strategy=strategy, server__hierarchy=hierarchy, server__edge_ranks=2,
                      **extra, **common())
    np.testing.assert_allclose(edges.model, flat.model, rtol=0, atol=1e-12 * np.abs(flat.model).max())
    assert np.abs(flat.model).max() > 0
    if COMM.rank == 0:  # one row an edge reaches rank 0, not one a client
        n_edges = {"groups": -(-(COMM.size - 1) // 2), "node": 1}[hierarchy]  # (this test runs on one node)
        rows = [h["participants"] for h in edges.history if h["participants"]]
        assert rows and set(rows) == {n_edges}
        row = (flat.history[1]["uplink_bytes"] - edges.history[1]["uplink_bytes"]) / (2 * (COMM.size - 1) - n_edges)
        assert row == flat.model.nbytes  # each row no longer sent is one model's delta


@pytest.mark.mpi(min_size=2)
def test_more_edge_rounds_do_more_work_and_repeat_bitwise():
    job = dict(common(), server__hierarchy="groups", server__edge_ranks=1, server__kappa1=2, server__kappa2=3)
    first = mpifl.run(None, COMM, **job)
    again = mpifl.run(None, COMM, **job)
    flat = mpifl.run(None, COMM, **common())
    assert first.model.tobytes() == again.model.tobytes()
    assert not np.allclose(first.model, flat.model)
    if COMM.rank == 0:  # six local rounds a cloud round train further than one
        assert first.history[-1]["loss"] < flat.history[-1]["loss"]
