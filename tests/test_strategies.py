"""Server and client halves of each algorithm, the round plan and the wire layout, with no transport."""

from __future__ import annotations

import naive
import numpy as np
import pytest

from mpifl import config
from mpifl.errors import ConfigError
from mpifl.protocol import Field, Wire
from mpifl.strategies import STRATEGIES, RoundResults, Setup, strategy_params, weighted_mean
from mpifl.strategies.base import LocalRun
from mpifl.strategies.fednova import effective_steps
from mpifl.strategies.sampling import round_plan, sample_clients

SHAPE = (2, 3)


def setup(name, n_clients=5, **params):
    declared = {k: v[0] for k, v in STRATEGIES[name].parameters.items()}
    return Setup(params={**declared, **params}, n_clients=n_clients, seed=0, fraction=1.0, epochs=2, stragglers=0.0,
                 drop_stragglers=False, local_lr=0.1, local_momentum=0.0, shape=SHAPE, dtype=np.dtype("float64"))


def results(deltas, weights, **fields):
    deltas = np.asarray(deltas, dtype=np.float64).reshape(-1, *SHAPE)
    return RoundResults(np.arange(len(deltas)), deltas, np.asarray(weights, dtype=np.float64), fields)


def test_fedavg_adds_the_sample_weighted_mean_delta():
    theta = np.ones(SHAPE)
    new, metrics = STRATEGIES["fedavg"](setup("fedavg")).aggregate(1, theta, results([[1.0] * 6, [4.0] * 6], [1, 2]))
    assert np.allclose(new, 4.0) and metrics["update_norm"] == pytest.approx(3.0 * np.sqrt(6))


def test_aggregation_keeps_float32():
    theta = np.zeros(SHAPE, np.float32)
    new, _ = STRATEGIES["fedavg"](setup("fedavg")).aggregate(1, theta, results([[1.0] * 6], [1]))
    assert new.dtype == np.float32


def test_weighted_mean_accumulates_in_float64():
    rows = np.array([[1e8 + 1], [1e8 - 1]], dtype=np.float32)
    assert weighted_mean(rows, np.array([1.0, 1.0]))[0] == pytest.approx(1e8)


def test_scaffold_takes_the_unweighted_mean_and_moves_c_by_one_over_n():
    strategy = STRATEGIES["scaffold"](setup("scaffold", n_clients=4, lr=0.5))
    dc = np.stack([np.full(SHAPE, 2.0), np.full(SHAPE, 6.0)])
    new, _ = strategy.aggregate(1, np.zeros(SHAPE), results([[1.0] * 6, [3.0] * 6], [1, 100], delta_control=dc))
    assert np.allclose(new, 0.5 * 2.0)  # unweighted: the 100-row client counts once
    assert np.allclose(strategy.downlink_values()["control"], (2.0 + 6.0) / 4)


def test_scaffold_client_option_two():
    half = STRATEGIES["scaffold"].client({}, SHAPE, np.float64)
    c, c_k = np.full(SHAPE, 0.3), np.full(SHAPE, 0.1)
    state, down = {"control": c_k.copy()}, {"control": c}
    anchor, mu, correction = half.objective(np.zeros(SHAPE), down, state)
    assert mu == 0.0 and np.allclose(correction, c - c_k)
    delta = np.full(SHAPE, -0.5)  # y - x after K = 10 steps of lr 0.1
    out = {"delta_control": np.empty(SHAPE)}
    half.report(delta, down, state, LocalRun(10, 0.1, 0.0), out)
    expected = c_k - c + 0.5 / (10 * 0.1)  # c_k+ = c_k - c + (x - y) / (K lr)
    assert np.allclose(state["control"], expected) and np.allclose(out["delta_control"], expected - c_k)


def test_fednova_normalises_by_local_steps():
    strategy = STRATEGIES["fednova"](setup("fednova"))
    deltas = [[2.0] * 6, [10.0] * 6]
    new, metrics = strategy.aggregate(1, np.zeros(SHAPE), results(deltas, [1, 1], steps=np.array([2.0, 10.0])))
    # d_k = delta_k / tau_k = 1 for both; tau_eff = 6
    assert np.allclose(new, 6.0) and metrics["tau_eff"] == pytest.approx(6.0)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_fednova_momentum_norm_is_the_sum_of_the_momentum_coefficients(rho):
    tau = 7
    coefficients = [sum(rho**j for j in range(tau - t)) for t in range(tau)]  # a_k of the paper, entry by entry
    assert float(effective_steps(tau, rho)) == pytest.approx(sum(coefficients))
    assert float(effective_steps(tau, rho)) == pytest.approx(naive.fednova_norm(tau, rho))


def test_fedavgm_with_no_momentum_and_unit_lr_is_fedavg_bit_for_bit():
    theta = np.random.default_rng(0).standard_normal(SHAPE)
    r = results(np.random.default_rng(1).standard_normal((3, 6)), [3, 1, 7])
    avg, _ = STRATEGIES["fedavg"](setup("fedavg")).aggregate(1, theta, r)
    avgm, _ = STRATEGIES["fedavgm"](setup("fedavgm", momentum=0.0, lr=1.0)).aggregate(1, theta, r)
    assert np.array_equal(avg, avgm)


@pytest.mark.parametrize("name", ["fedadagrad", "fedadam", "fedyogi"])
def test_adaptive_servers_follow_reddi_algorithm_2(name):
    params = {"lr": 0.3, "beta1": 0.9, "beta2": 0.99, "tau": 1e-2}
    strategy = STRATEGIES[name](setup(name, **params))
    theta = np.zeros(SHAPE)
    rng = np.random.default_rng(2)
    m, v = np.zeros(SHAPE), np.full(SHAPE, params["tau"] ** 2)
    for rnd in range(1, 4):
        deltas, weights = rng.standard_normal((2, 6)), np.array([1.0, 3.0])
        d = (weights @ deltas / 4).reshape(SHAPE)
        m = 0.9 * m + 0.1 * d
        v = {"fedadagrad": v + d**2, "fedadam": 0.99 * v + 0.01 * d**2,
             "fedyogi": v - 0.01 * d**2 * np.sign(v - d**2)}[name]
        expected = theta + 0.3 * m / (np.sqrt(v) + 1e-2)
        theta, _ = strategy.aggregate(rnd, theta, results(deltas, weights))
        assert np.allclose(theta, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", ["scaffold", "fedavgm", "fedadam"])
def test_server_state_round_trips(name):
    a = STRATEGIES[name](setup(name))
    extra = {"delta_control": np.ones((1, *SHAPE))} if name == "scaffold" else {}
    a.aggregate(1, np.zeros(SHAPE), results([[1.0] * 6], [1], **extra))
    b = STRATEGIES[name](setup(name))
    b.load_state({k: v.copy() for k, v in a.state().items()})
    assert all(np.array_equal(a.state()[k], b.state()[k]) for k in a.state())
    r = results([[0.5] * 6], [1], **extra)
    assert np.array_equal(a.aggregate(2, np.ones(SHAPE), r)[0], b.aggregate(2, np.ones(SHAPE), r)[0])


@pytest.mark.parametrize("fraction, expected", [(1.0, 7), (0.5, 4), (0.01, 1)])
def test_sampling_count(fraction, expected):
    assert sample_clients(0, 3, 7, fraction).sum() == expected


def test_sampling_depends_on_seed_and_round_only():
    assert np.array_equal(sample_clients(11, 5, 100, 0.3), sample_clients(11, 5, 100, 0.3))
    assert not np.array_equal(sample_clients(11, 5, 100, 0.3), sample_clients(11, 6, 100, 0.3))


def test_stragglers_are_a_share_of_the_sampled_clients_with_1_to_e_epochs():
    plans = [round_plan(3, rnd, 30, 1 / 3, 20, 0.5, False) for rnd in range(1, 200)]
    for plan in plans:
        assert (plan > 0).sum() == 10  # all sampled clients train
        assert ((plan > 0) & (plan < 20)).sum() <= 5 and set(plan[plan > 0]) <= set(range(1, 21))
    shortened = np.concatenate([p[(p > 0) & (p < 20)] for p in plans])
    assert 8 < shortened.mean() < 12  # uniform on 1..20 (20 itself is drawn too, and then looks unshortened)
    assert np.array_equal(round_plan(3, 7, 30, 1 / 3, 20, 0.5, False), plans[6])


def test_dropped_stragglers_do_not_train():
    kept = round_plan(1, 4, 30, 1 / 3, 20, 0.9, False)
    dropped = round_plan(1, 4, 30, 1 / 3, 20, 0.9, True)
    assert (dropped > 0).sum() == 1 and (kept > 0).sum() == 10
    assert set(np.flatnonzero(dropped)) <= set(np.flatnonzero(kept))


def test_no_stragglers_runs_every_sampled_client_the_full_epochs():
    plan = round_plan(0, 1, 9, 1.0, 3, 0.0, True)
    assert np.array_equal(plan, np.full(9, 3))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_payload_is_delta_alone_except_for_scaffold_which_doubles_it(name):
    cls = STRATEGIES[name]
    wire = Wire(cls.downlink, cls.uplink, SHAPE, np.float64, [range(0, 2), range(2, 5)])
    assert wire.payload.width == (12 if name == "scaffold" else 6)
    assert wire.down.width == (12 if name == "scaffold" else 6)
    assert wire.payload_counts(np.array([1, 0, 2, 2, 0])) == [0, wire.payload.width, 2 * wire.payload.width]


def test_wire_views_name_every_field():
    wire = Wire((Field("control"),), (Field("delta_control"), Field("steps", 1, "float64")), SHAPE, np.float32,
                [range(0, 1), range(1, 3)])
    buffer = wire.downlink_buffer()
    down = wire.downlink_views(buffer)
    assert set(down) == {"theta", "control", "stop", "poll", "cohort", "plan"} and down["control"].shape == SHAPE
    assert wire.put_plan(down, np.array([0, 2, 3])) is None  # clients 1 and 2 train, for 2 and 3 epochs
    assert buffer.dtype == np.float32 and down["cohort"][0] == 2
    ids, epochs = wire.cohort_of(wire.downlink_views(buffer.copy()), None)
    assert ids.tolist() == [1, 2] and epochs.tolist() == [2, 3]
    active = np.array([0, 2])  # client 0 (rank 1) and client 2 (rank 2) send statistics
    stats = wire.stats_buffer(1)  # rank 2's: one client row
    rows, own = wire.stats_rows(stats, 1)
    wire.client_stats.views(rows[0])["steps"][0] = 7.0
    own["compute"][0] = 0.5
    first = np.zeros(wire.stats_counts(active)[1])
    per_client, per_rank = wire.split_stats(np.concatenate([first, stats]), active)
    assert list(per_client["steps"]) == [0.0, 7.0] and list(per_rank["compute"]) == [0.0, 0.5]
    assert per_client.at(np.array([2])).tolist() == [1]


def test_a_cohort_beyond_the_plans_slots_travels_in_a_second_message():
    wire = Wire((), (), SHAPE, np.float64, [range(0, 50), range(50, 100)], capacity=3)
    down = wire.downlink_views(wire.downlink_buffer())
    epochs = np.zeros(100, dtype=np.int64)
    epochs[[4, 8, 15, 16, 23, 42, 77]] = [1, 2, 3, 1, 2, 3, 1]
    overflow = wire.put_plan(down, epochs)
    assert overflow.shape == (2, 4) and down["cohort"][0] == 7
    received = wire.overflow_buffer(down)
    received[...] = overflow
    ids, got = wire.cohort_of(down, received)
    assert ids.tolist() == [4, 8, 15, 16, 23, 42, 77] and got.tolist() == [1, 2, 3, 1, 2, 3, 1]


def test_a_field_the_round_already_carries_is_refused():
    with pytest.raises(ValueError, match="already carries"):
        Wire((), (Field("weight", 1, "float64"),), SHAPE, np.float64, [range(0, 1)])


def test_the_config_takes_every_registered_strategy_and_refuses_another_naming_them_all():
    for name, cls in STRATEGIES.items():
        mode = ["server.mode=async"] if cls.asynchronous else []
        body = ["model.kind=mlp"] if cls.client.keeps_head else []
        assert config.load(overrides=[f"server.strategy={name}", *mode, *body])["server.strategy"] == name
    with pytest.raises(ConfigError) as refused:
        config.load(overrides=["server.strategy=fedsgd"])
    assert all(repr(name) in str(refused.value) for name in STRATEGIES)


def test_each_strategy_gets_its_declared_defaults():
    cfg = config.load(overrides=["server.strategy=fedadam"])
    assert strategy_params(cfg) == {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}
    assert "server.proximal_mu" not in cfg.values


@pytest.mark.parametrize("overrides, message", [
    (["server.proximal_mu=0.1"], "'server.proximal_mu' parameter in --set server.proximal_mu=0.1 is not used by "
                                  "server.strategy 'fedavg'; it belongs to 'fedprox'"),
    (["server.strategy=fedadagrad", "server.beta2=0.9"], "belongs to 'fedadam', 'fedyogi'"),
    (["server.strategy=fedadam", "server.beta1=1.0"], "'server.beta1' parameter in --set server.beta1=1.0 must be "
                                                       "a float in the range [0, 1). Got 1.0 instead."),
    (["server.strategy=scaffold", "server.lr=0"], "must be a float in the range (0, inf)"),
    (["server.strategy=fedprox", "server.proximal_mu=-1"], "must be a float in the range [0, inf)"),
    (["server.strategy=fedsgd"], "'server.strategy' parameter in --set server.strategy=fedsgd must be a registered strategy ('fedavg'"),
    (["mode=distributed", "train.stragglers=0.5"], "applies to federated mode only"),
    (["data.fedprox_alpha=1"], "applies to data.name = 'fedprox_synthetic'"),
    (["data.fedprox_iid=true"], "applies to data.name = 'fedprox_synthetic'"),
])
def test_strategy_parameters_are_validated_with_clear_messages(overrides, message):
    with pytest.raises(ConfigError) as info:
        config.load(overrides=overrides)
    assert message in str(info.value)
