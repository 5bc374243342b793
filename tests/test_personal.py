"""Each client's own test rows, the spread of personal accuracy, FedAvg+FT and q-FedAvg (serial parts)."""

from __future__ import annotations

import numpy as np
import pytest

from mpifl.data.shards import ClientData, Shard, with_client_tests
from mpifl.round_records import spread
from mpifl.strategies import STRATEGIES, RoundResults, Setup


def shard(n: int, seed: int = 0) -> Shard:
    rng = np.random.default_rng(seed)
    return Shard(np.ascontiguousarray(rng.random((n, 3))), np.arange(n, dtype=np.float64))


def test_a_clients_test_rows_depend_on_the_seed_and_the_client_not_on_its_neighbours():
    clients = [ClientData(shard(20, k)) for k in range(4)]
    together = with_client_tests(clients, range(4), 0.25, seed=3)
    alone = with_client_tests(clients[2:3], range(2, 3), 0.25, seed=3)
    assert together[2].test.y.tolist() == alone[0].test.y.tolist()
    for data, split in zip(clients, together):
        assert split.train.n == 15 and split.test.n == 5
        rows = sorted(split.train.y.tolist() + split.test.y.tolist())
        assert rows == data.train.y.tolist()  # a partition of the client's rows
    kept = ClientData(shard(10), shard(4, 9))  # a source's own split stays
    assert with_client_tests([kept], [0], 0.5, 0)[0] is kept


def test_the_spread_of_personal_accuracy_by_hand():
    got = spread(np.array([1.0, 0.5, 0.5, 0.0, 1.0]))
    assert got["mean"] == pytest.approx(0.6) and got["worst"] == 0.0
    assert got["p10"] == pytest.approx(np.percentile([1, 0.5, 0.5, 0, 1], 10))
    assert got["jain"] == pytest.approx(3.0 ** 2 / (5 * 2.5))
    assert spread(np.full(7, 0.8))["jain"] == pytest.approx(1.0)


def qfedavg(q: float, lr: float):
    cls = STRATEGIES["qfedavg"]
    return cls(Setup(params={"q": q}, n_clients=3, seed=0, fraction=1.0, epochs=1, stragglers=0.0,
                     drop_stragglers=False, local_lr=lr, local_momentum=0.0, shape=(4,), dtype=np.dtype("float64")))


def test_qfedavg_follows_the_papers_update_and_is_the_unweighted_mean_at_q_0():
    rng = np.random.default_rng(1)
    deltas, losses, theta = rng.standard_normal((3, 4)), np.array([0.5, 2.0, 1.2]), rng.standard_normal(4)
    results = RoundResults(clients=np.arange(3), deltas=deltas, weights=np.array([10.0, 20.0, 5.0]),
                           fields={"start_loss": losses.reshape(3, 1)})
    new, _ = qfedavg(0.0, 0.1).aggregate(1, theta, results)
    np.testing.assert_allclose(new, theta + deltas.mean(axis=0), rtol=1e-12)
    q, L = 2.0, 1 / 0.1  # Li et al. 2020, Algorithm 2, written out
    dw = L * (theta - (theta + deltas))
    h = [q * f ** (q - 1) * (d @ d) + L * f ** q for f, d in zip(losses, dw)]
    expected = theta - sum(f ** q * d for f, d in zip(losses, dw)) / sum(h)
    new, said = qfedavg(q, 0.1).aggregate(1, theta, results)
    np.testing.assert_allclose(new, expected, rtol=1e-12)
    assert said["max_client_loss"] == 2.0


MLP = {"model__kind": "mlp", "model__hidden": [16]}


@pytest.mark.parametrize("overrides, message", [
    ({"server__strategy": "fedrep"}, "model.kind 'softmax' (in <defaults>) declares no layers below its output layer"),
    ({"server__strategy": "fedper", "model__kind": "mlp", "model__hidden": []}, "model.kind 'mlp'"),
    ({"server__strategy": "fedper", "model__kind": "cnn", "model__architecture": "custom"}, "model.kind 'cnn'"),
    ({"server__strategy": "fedrep", **MLP, "privacy__noise_multiplier": 1.0},
     "acts on each client's whole update, but server.strategy 'fedrep' sends only the body of each update"),
    ({"server__strategy": "fedper", **MLP, "compress__uplink": "topk"}, "server.strategy 'fedper' sends only the body"),
    ({"server__strategy": "fedper", **MLP, "secagg__enabled": True}, "server.strategy 'fedper' sends only the body"),
    ({"server__strategy": "fedrep", **MLP, "server__exchange": "reduce"},
     "sends only the body of each update (each client's head stays on its rank)"),
    ({"server__strategy": "fedrep", **MLP, "server__hierarchy": "groups"}, "whose clients keep no state"),
    ({"server__strategy": "fedrep", **MLP, "server__head_epochs": 0}, "server.head_epochs"),
])
def test_fedrep_and_fedper_refuse_what_they_cannot_run_and_say_why(overrides, message):
    import mpifl
    from mpifl.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        mpifl.job(None, mode="federated", **overrides)
    assert message in str(info.value)


def test_automatic_reduce_stays_off_when_only_the_body_travels():
    """From server.reduce_from clients a round the exchange would sum; the body-only rows keep the Gatherv."""
    import mpifl
    from mpifl.stages import enabled
    from mpifl.stages.sums import SumStage

    wide = dict(mode="federated", data__clients=80, server__reduce_from=2)
    assert SumStage in enabled(mpifl.job(None, **wide))
    assert SumStage not in enabled(mpifl.job(None, **wide, server__strategy="fedper", **MLP))
