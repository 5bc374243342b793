"""Robust aggregators against plain references and their defining properties, inside strategies (whole runs:
tests/test_mpi_attacks.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpifl import config
from mpifl.errors import ConfigError
from mpifl.strategies import STRATEGIES, RoundResults, Setup
from mpifl.strategies.aggregators import NAMES, create

RNG = np.random.default_rng(0)
ROWS = RNG.standard_normal((9, 6))
WEIGHTS = RNG.integers(10, 50, 9).astype(np.float64)


def geomed(iterations, smoothing):
    agg = create("geomed", robust_iterations=iterations)
    agg.smoothing = smoothing
    return agg


def reference_krum_scores(rows, f):
    n = len(rows)
    scores = []
    for i in range(n):
        d = sorted(float(np.sum((rows[i] - rows[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(d[:n - f - 2]))
    return np.array(scores)


def test_mean_is_the_sample_weighted_mean():
    np.testing.assert_allclose(create("mean")(ROWS, WEIGHTS).delta, np.average(ROWS, axis=0, weights=WEIGHTS))


def test_median_and_trimmed_mean_match_per_coordinate_references():
    np.testing.assert_allclose(create("median")(ROWS, WEIGHTS).delta,
                               [sorted(ROWS[:, j])[4] for j in range(6)])
    trimmed = create("trimmed_mean", trim=0.25)(ROWS, WEIGHTS).delta  # floor(0.25 * 9) = 2 at each end
    np.testing.assert_allclose(trimmed, [np.mean(sorted(ROWS[:, j])[2:7]) for j in range(6)])


def test_krum_and_multikrum_pick_by_the_smallest_scores():
    scores = reference_krum_scores(ROWS, 2)
    krum = create("krum", byzantine=2)(ROWS, WEIGHTS)
    assert krum.selected.tolist() == [int(np.argmin(scores))]
    np.testing.assert_array_equal(krum.delta, ROWS[np.argmin(scores)])
    multi = create("multikrum", byzantine=2, select=3)(ROWS, WEIGHTS)
    best3 = sorted(np.argsort(scores)[:3].tolist())
    assert multi.selected.tolist() == best3
    np.testing.assert_allclose(multi.delta, ROWS[best3].mean(axis=0))


def test_bulyan_averages_the_values_nearest_the_median_of_its_krum_picks():
    rows = RNG.standard_normal((11, 4))  # n = 11 >= 4f + 3 for f = 2
    result = create("bulyan", byzantine=2)(rows, np.ones(11))
    left, picked = list(range(11)), []
    for _ in range(11 - 4):
        scores = reference_krum_scores(rows[left], 2)
        picked.append(left.pop(int(np.argmin(scores))))
    chosen = rows[picked]
    want = []
    for j in range(4):
        med = np.median(chosen[:, j])
        nearest = sorted(chosen[:, j], key=lambda v: abs(v - med))[:len(picked) - 4]
        want.append(np.mean(nearest))
    np.testing.assert_allclose(result.delta, want)
    assert result.selected.tolist() == sorted(picked)


def test_the_geometric_median_minimises_the_weighted_distance_sum():
    result = geomed(500, 1e-12)(ROWS, WEIGHTS).delta

    def cost(z):
        return float(WEIGHTS @ np.linalg.norm(ROWS - z, axis=1))

    for direction in np.eye(6):
        assert cost(result) <= cost(result + 1e-4 * direction) and cost(result) <= cost(result - 1e-4 * direction)


def test_centered_clipping_and_norm_bounding_follow_their_formulas():
    agg = create("centered_clip", radius=0.5, robust_iterations=1)
    agg.previous = np.zeros(6)
    diff = ROWS
    scale = np.minimum(1.0, 0.5 / np.linalg.norm(diff, axis=1))
    np.testing.assert_allclose(agg(ROWS, WEIGHTS).delta, (scale[:, None] * diff).mean(axis=0))
    np.testing.assert_allclose(agg.previous, (scale[:, None] * diff).mean(axis=0))  # kept for the next round
    bounded = create("norm_bound", radius=0.5)(ROWS, WEIGHTS).delta
    np.testing.assert_allclose(bounded, np.average(ROWS * scale[:, None], axis=0, weights=WEIGHTS))


def test_the_median_is_unchanged_when_f_points_move_to_plus_minus_1e12():
    rows = ROWS.copy()
    rows[0] = ROWS.max(axis=0) + 1.0  # above the median in every coordinate
    rows[1] = ROWS.min(axis=0) - 1.0  # below it in every coordinate
    before = create("median")(rows, WEIGHTS).delta
    rows[0], rows[1] = 1e12, -1e12
    np.testing.assert_array_equal(create("median")(rows, WEIGHTS).delta, before)


def test_the_trimmed_mean_drops_exactly_floor_beta_n_at_each_end():
    rows = np.arange(10.0)[:, None] * np.ones((1, 3))  # values 0..9 in every coordinate
    for beta in (0.0, 0.1, 0.25, 0.45):
        k = math.floor(beta * 10)
        np.testing.assert_allclose(create("trimmed_mean", trim=beta)(rows, np.ones(10)).delta,
                                   np.full(3, np.mean(np.arange(k, 10 - k))))


@pytest.mark.parametrize("name, bounded", [("mean", False), ("median", True), ("krum", True),
                                            ("trimmed_mean", True), ("geomed", True), ("norm_bound", True)])
def test_two_attackers_scaling_their_updates_by_1e6(name, bounded):
    """FedAvg's model follows the attackers; the robust aggregators keep it bounded."""
    setup = Setup(params={}, n_clients=10, seed=0, fraction=1.0, epochs=1, stragglers=0.0, drop_stragglers=False,
                  local_lr=0.1, local_momentum=0.0, shape=(2, 3), dtype=np.dtype("float64"),
                  aggregator=create(name, byzantine=2, trim=0.2))
    strategy = STRATEGIES["fedavg"](setup)
    theta = np.zeros((2, 3))
    for rnd in range(5):
        deltas = 0.01 * RNG.standard_normal((10, 2, 3))
        deltas[:2] *= 1e6
        theta, metrics = strategy.aggregate(rnd, theta, RoundResults(np.arange(10), deltas, np.ones(10), {}))
    assert (np.abs(theta).max() < 1.0) == bounded, np.abs(theta).max()


def test_centered_clipping_state_is_checkpointed_with_the_strategy():
    setup = Setup(params={"lr": 1.0, "momentum": 0.9}, n_clients=4, seed=0, fraction=1.0, epochs=1, stragglers=0.0,
                  drop_stragglers=False, local_lr=0.1, local_momentum=0.0, shape=(3,), dtype=np.dtype("float64"),
                  aggregator=create("centered_clip", radius=0.1))
    strategy = STRATEGIES["fedavgm"](setup)
    strategy.aggregate(1, np.zeros(3), RoundResults(np.arange(4), RNG.standard_normal((4, 3)), np.ones(4), {}))
    saved = {k: v.copy() for k, v in strategy.state().items()}
    assert set(saved) == {"aggregator_previous", "velocity"} and np.abs(saved["aggregator_previous"]).max() > 0
    again = STRATEGIES["fedavgm"](Setup(**{**setup.__dict__, "aggregator": create("centered_clip", radius=0.1)}))
    again.load_state(saved)
    np.testing.assert_array_equal(again.aggregator.previous, saved["aggregator_previous"])


def test_a_strategy_that_does_not_average_deltas_refuses_a_robust_aggregator():
    with pytest.raises(ConfigError, match="server.strategy 'scaffold' does not average deltas.*Robust aggregators "
                                          "work with 'fedavg', 'fedprox', 'fedavgm'"):
        config.load(overrides=["server.strategy=scaffold", "server.aggregator=median"])
    assert set(NAMES) == set(config.SCHEMA["server.aggregator"][1].options)



@pytest.mark.parametrize("name, f, n, message", [
    ("krum", 2, 6, "needs more than 2f + 2 = 6 updates a round; this job has 6"),
    ("bulyan", 1, 6, "needs at least 4f + 3 = 7 updates a round; this job has 6"),
    ("trimmed_mean", 0, 2, "drops all 2 updates"),
])
def test_each_aggregator_names_the_numbers_it_needs(name, f, n, message):
    assert message in create(name, byzantine=f, trim=0.5 if name == "trimmed_mean" else 0.1).problem(n)
