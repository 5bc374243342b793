"""The summing exchange (server.exchange = "reduce"): client ranks add their clients' updates in exact fixed point
and one integer Reduce replaces the Gatherv of rows. Against the Gatherv path, on 2 and 4 ranks."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from rank_counts import same_bytes_again_and_on_two_ranks

COMM = MPI.COMM_WORLD
BASE = dict(mode="federated", rounds=4, data__clients=9, server__fraction=0.7, train__momentum=0.5)

# every sum-only strategy, and the stages that keep to sums
SUM_ONLY = [
    ("fedavg", {}),
    ("fedprox", {"server__proximal_mu": 0.1}),
    ("fedavgm", {}),
    ("fedadam", {}),
    ("fedadagrad", {}),
    ("fedyogi", {}),
    ("scaffold", {}),
    ("fedavg", {"train__stragglers": 0.3}),
    ("fedavg", {"model__kind": "mlp", "model__hidden": [16]}),
    ("fedavg", {"privacy__clip": 1.0, "privacy__noise_multiplier": 0.5}),
]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("strategy, extra", SUM_ONLY)
def test_the_reduce_equals_the_gatherv_to_rounding_and_says_so(strategy, extra):
    common = dict(BASE, server__strategy=strategy, **extra)
    rows = mpifl.run(None, COMM, server__exchange="gather", **common)
    sums = mpifl.run(None, COMM, server__exchange="reduce", **common)
    scale = max(np.abs(rows.model).max(), 1.0)
    np.testing.assert_allclose(sums.model, rows.model, rtol=0, atol=1e-12 * scale)
    assert not np.array_equal(rows.model, np.zeros_like(rows.model))
    if COMM.rank == 0:
        assert (rows.summary["exchange"], sums.summary["exchange"]) == ("gather", "reduce")
        assert sums.summary["final_loss"] == pytest.approx(rows.summary["final_loss"], rel=1e-9)


@pytest.mark.mpi(min_size=3)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_reduce_gives_the_same_bytes_on_any_rank_count(dtype):
    """Integer sums are exact, so the order in which ranks add them cannot show."""
    common = dict(BASE, server__exchange="reduce", server__strategy="scaffold", model__dtype=dtype)
    same_bytes_again_and_on_two_ranks(COMM, **common)


@pytest.mark.mpi(min_size=2)
def test_auto_reduces_from_reduce_from_clients_a_round_and_gathers_below():
    small = mpifl.run(None, COMM, **BASE)  # 6 clients a round: below the default 64
    large = mpifl.run(None, COMM, server__reduce_from=5, **BASE)
    robust = mpifl.run(None, COMM, server__reduce_from=5, server__aggregator="median", **BASE)  # needs rows
    if COMM.rank == 0:
        assert small.summary["exchange"] == "gather" and large.summary["exchange"] == "reduce"
        assert robust.summary["exchange"] == "gather"



@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("extra", [{}, {"secagg__plus": True, "secagg__neighbours": 2, "secagg__dropout": 0.2}],
                         ids=["secagg", "secagg+ with dropouts"])
def test_secure_aggregation_reduces_its_masked_inputs_to_the_same_bytes(extra):
    """The ring sum of the masked inputs is the same whether the server adds gathered rows or a Reduce adds them."""
    common = dict(BASE, secagg__enabled=True, **extra)
    rows = mpifl.run(None, COMM, server__exchange="gather", **common)
    sums = same_bytes_again_and_on_two_ranks(COMM, server__exchange="reduce", **common)
    auto = mpifl.run(None, COMM, server__reduce_from=5, **common)
    assert sums.model.tobytes() == rows.model.tobytes() == auto.model.tobytes()
    assert not np.array_equal(rows.model, np.zeros_like(rows.model))
    if COMM.rank == 0:
        assert [r.summary["exchange"] for r in (rows, sums, auto)] == ["secagg", "secagg-reduce", "secagg-reduce"]
        if COMM.size > 2:  # several client ranks: each sends one vector instead of a row per surviving client
            assert sum(h["uplink_bytes"] for h in sums.history) < sum(h["uplink_bytes"] for h in rows.history)
