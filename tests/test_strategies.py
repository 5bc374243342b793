"""Aggregation maths, with no transport involved."""

from __future__ import annotations

import numpy as np
import pytest

from mpifl import config
from mpifl.strategies import FedAvg, make_strategy, weighted_mean


def test_fedavg_is_the_sample_weighted_mean():
    theta = np.zeros((2, 3))
    updates = np.array([[1.0] * 6, [4.0] * 6, [100.0] * 6])
    weights = np.array([1.0, 2.0, 0.0])
    new = FedAvg(1.0, 0).aggregate(theta, updates, weights)
    assert new.shape == (2, 3) and np.allclose(new, 3.0)


def test_fedavg_without_participants_keeps_the_model():
    theta = np.arange(6.0).reshape(2, 3)
    new = FedAvg(1.0, 0).aggregate(theta, np.ones((2, 6)), np.zeros(2))
    assert np.array_equal(new, theta) and new is not theta


def test_fedavg_keeps_float32():
    theta = np.zeros((1, 2), np.float32)
    assert FedAvg(1.0, 0).aggregate(theta, np.ones((2, 2), np.float32), np.ones(2)).dtype == np.float32


def test_weighted_mean_accumulates_in_float64():
    rows = np.array([[1e8 + 1], [1e8 - 1]], dtype=np.float32)
    assert weighted_mean(rows, np.array([1.0, 1.0]))[0] == pytest.approx(1e8)


@pytest.mark.parametrize("fraction, expected", [(1.0, 7), (0.5, 4), (0.01, 1)])
def test_sampling_count(fraction, expected):
    assert FedAvg(fraction, 0).sample_clients(3, 7).sum() == expected


def test_sampling_depends_on_seed_and_round_only():
    s = FedAvg(0.3, 11)
    assert np.array_equal(s.sample_clients(5, 100), FedAvg(0.3, 11).sample_clients(5, 100))
    assert not np.array_equal(s.sample_clients(5, 100), s.sample_clients(6, 100))


def test_invalid_fraction():
    with pytest.raises(ValueError, match="fraction"):
        FedAvg(0.0, 0)


def test_strategy_from_config():
    assert isinstance(make_strategy(config.load()), FedAvg)
