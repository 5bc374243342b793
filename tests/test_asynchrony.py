"""The asynchronous server's virtual clock (mpifl.asynchrony), staleness weights, client speeds, refusals."""

from __future__ import annotations

import numpy as np
import pytest

import mpifl
from mpifl.asynchrony import Arrival, build
from mpifl.client_speeds import ClientProfiles, read_trace
from mpifl.errors import ConfigError
from mpifl.strategies.asynchronous import staleness_weight


def fake(seconds_per_example, rows=10, online=0.0, offline=0.0) -> ClientProfiles:
    """Clients whose jobs take rows x seconds_per_example (an instant link)."""
    k = len(seconds_per_example)
    return ClientProfiles(np.array(seconds_per_example, dtype=float), np.full(k, 1e30), np.full(k, rows),
                          model_bytes=8, online_mean=online, offline_mean=offline, seed=0)


def test_the_event_order_on_a_fake_clock():
    """Two clients always in flight, jobs of 10 s and 25 s, FedAsync's buffer of one (worked by hand)."""
    schedule = build(fake([1.0, 2.5]), epochs=1, concurrency=2, buffer=1, versions=4, max_staleness=0, seed=0)
    assert schedule.buffers == [[Arrival(0, 0, 10.0)], [Arrival(0, 1, 20.0)], [Arrival(1, 0, 25.0)],
                                [Arrival(0, 2, 30.0)]]
    assert schedule.times == [10.0, 20.0, 25.0, 30.0]
    assert [schedule.staleness(v).tolist() for v in range(4)] == [[0], [0], [2], [1]]
    assert schedule.train == [[0, 1], [0], [0], []]  # client 1's job from version 3 lands after the run: not trained


def test_updates_staler_than_the_limit_are_dropped_and_their_client_redispatched():
    schedule = build(fake([1.0, 2.5]), epochs=1, concurrency=2, buffer=1, versions=4, max_staleness=1, seed=0)
    assert [(a.client, a.version) for b in schedule.buffers for a in b] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert schedule.stale == [0, 0, 1, 0] and schedule.times == [10.0, 20.0, 30.0, 40.0]


def test_a_fedbuff_buffer_fills_with_k_updates_and_no_client_trains_twice_from_one_version():
    profiles = fake(list(np.random.default_rng(3).lognormal(0, 1, 20)))
    schedule = build(profiles, epochs=2, concurrency=6, buffer=4, versions=30, max_staleness=0, seed=5)
    assert all(len(b) == 4 for b in schedule.buffers)
    assert schedule.times == sorted(schedule.times)
    for v, clients in enumerate(schedule.train):
        assert len(clients) == len(set(clients))
        assert all(a.version <= v for a in schedule.buffers[v])
    assert max(s for v in range(30) for s in schedule.staleness(v)) > 0
    again = build(profiles, epochs=2, concurrency=6, buffer=4, versions=30, max_staleness=0, seed=5)
    assert again.buffers == schedule.buffers


def test_clients_going_offline_lose_their_jobs_and_the_schedule_counts_them():
    profiles = fake([1.0] * 8, rows=10, online=15.0, offline=5.0)
    schedule = build(profiles, epochs=1, concurrency=4, buffer=2, versions=40, max_staleness=0, seed=1)
    assert sum(schedule.offline) > 0
    for buffer in schedule.buffers:
        for a in buffer:
            assert profiles.online(a.client, a.time - 1e-6)  # it was online when its update left


def test_staleness_weights_by_hand():
    s = np.array([0, 1, 3, 8])
    np.testing.assert_allclose(staleness_weight(s, "constant", 0.5, 4), [1, 1, 1, 1])
    np.testing.assert_allclose(staleness_weight(s, "polynomial", 0.5, 4), [1, 2 ** -0.5, 0.5, 1 / 3])
    np.testing.assert_allclose(staleness_weight(s, "hinge", 2.0, 1), [1, 1, 1 / 5, 1 / 15])


def test_lognormal_speeds_come_from_the_seed_and_the_client_alone(tmp_path):
    from mpifl import config
    from mpifl.client_speeds import profiles
    from mpifl.data.catalog import DATA_SOURCES  # noqa: F401 - the registry the config resolves against

    cfg = mpifl.job(None, clients__speed="lognormal", clients__speed_sigma=0.8)
    ten = profiles(cfg, [5] * 10, 100)
    three = profiles(cfg, [5] * 3, 100)
    np.testing.assert_array_equal(ten.seconds_per_example[:3], three.seconds_per_example)
    assert np.std(np.log(ten.seconds_per_example)) > 0.3
    uniform = profiles(mpifl.job(None), [5] * 4, 100)
    assert np.unique(uniform.seconds_per_example).size == 1
    assert config is not None


def test_a_speed_trace_is_read_and_a_bad_one_named(tmp_path):
    trace = tmp_path / "speeds.csv"
    trace.write_text("client,seconds_per_example,link_mbps\n1,0.5,8\n0,0.25,16\n")
    spe, link = read_trace(str(trace), 2)
    assert spe.tolist() == [0.25, 0.5] and link.tolist() == [2e6, 1e6]
    with pytest.raises(ConfigError, match=r"speeds.csv' has no row for 1 client\(s\), the first \[2\]"):
        read_trace(str(trace), 3)
    trace.write_text("client,seconds_per_example,link_mbps\n0,-1,8\n")
    with pytest.raises(ConfigError, match="line 2: client 0 must be in 0..0 with positive"):
        read_trace(str(trace), 1)


@pytest.mark.parametrize("overrides, message", [
    ({"server__strategy": "fedbuff"}, "server.strategy 'fedbuff' is asynchronous. Set server.mode = 'async'"),
    ({"server__mode": "async"}, "server.strategy 'fedavg' is synchronous"),
    ({"server__strategy": "fedbuff", "server__mode": "async", "privacy__noise_multiplier": 1.0},
     "accounts each round as one release of a sampled cohort"),
    ({"server__strategy": "fedasync", "server__mode": "async", "secagg__enabled": True},
     "but secure aggregation hides each client's update"),
    ({"server__strategy": "fedbuff", "server__mode": "async", "server__exchange": "reduce"},
     "server.strategy 'fedbuff' reads each client's own update (it declares needs_rows, or neither "
     "averages_deltas nor needs_only_sums), but server.exchange \"reduce\""),
])
def test_refused_asynchronous_combinations_say_why(overrides, message):
    with pytest.raises(ConfigError) as info:
        mpifl.job(None, mode="federated", rounds=1, **overrides)
    assert message in str(info.value)

