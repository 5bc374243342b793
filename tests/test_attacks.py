"""Simulated Byzantine clients: exactly the malicious clients' data or uplink change, deterministically."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from mpifl import config
from mpifl.attacks import Attack
from mpifl.errors import ConfigError
from mpifl.strategies import RoundResults

RNG = np.random.default_rng(0)


def test_the_malicious_clients_are_a_fixed_seeded_share():
    attack = Attack.configured("sign_flip", 0.2, 0.0, seed=7, n_clients=20)
    assert len(attack.malicious) == 4 and list(attack.malicious) == sorted(attack.malicious)
    assert attack == Attack.configured("sign_flip", 0.2, 0.0, seed=7, n_clients=20)
    assert attack.malicious != Attack.configured("sign_flip", 0.2, 0.0, seed=8, n_clients=20).malicious
    assert Attack.configured("none", 0.2, 0.0, 7, 20).malicious == ()


@pytest.mark.parametrize("kind, expected", [
    ("sign_flip", lambda d: -2.0 * d), ("scaling", lambda d: 2.0 * d),
])
def test_model_poisoning_changes_only_a_malicious_update(kind, expected):
    attack = Attack(kind, (3,), 2.0, 0)
    for client in range(5):
        delta = RNG.standard_normal((2, 4))
        before = delta.copy()
        attack.poison(client, 1, delta)
        np.testing.assert_array_equal(delta, expected(before) if client == 3 else before)


def test_a_gaussian_attacker_sends_seeded_noise_of_its_scale():
    attack = Attack("gaussian", (1,), 3.0, 5)
    first, again, other_round = (np.zeros(10_000) for _ in range(3))
    attack.poison(1, 4, first)
    attack.poison(1, 4, again)
    attack.poison(1, 5, other_round)
    assert np.array_equal(first, again) and not np.array_equal(first, other_round)
    assert np.std(first) == pytest.approx(3.0, rel=0.05)
    honest = np.ones(3)
    attack.poison(0, 4, honest)
    assert honest.tolist() == [1.0, 1.0, 1.0]


def test_label_flip_maps_c_to_c_minus_1_minus_c_on_malicious_clients_only():
    attack = Attack("label_flip", (2,), 0.0, 0)
    y = np.array([0.0, 3.0, 9.0])
    assert attack.flip_labels(2, y, 10).tolist() == [9.0, 6.0, 0.0]
    assert attack.flip_labels(1, y, 10) is y


def test_the_omniscient_attacks_replace_exactly_the_malicious_rows():
    deltas = RNG.standard_normal((6, 2, 3))
    clients = np.array([0, 2, 3, 5, 7, 8])
    benign = deltas[[0, 2, 3, 4]].reshape(4, -1)  # rows of clients 0, 3, 5, 7
    ipm = Attack("ipm", (2, 8), 0.5, 0).collude(clients, deltas)
    alie = Attack("alie", (2, 8), 0.0, 0).collude(clients, deltas)
    n, f = 6, 2
    z = NormalDist().inv_cdf((n - (math.floor(n / 2 + 1) - f)) / n)
    for out, crafted in ((ipm, -0.5 * benign.mean(axis=0)), (alie, benign.mean(axis=0) - z * benign.std(axis=0))):
        np.testing.assert_array_equal(out[[0, 2, 3, 4]], deltas[[0, 2, 3, 4]])
        np.testing.assert_allclose(out[1].reshape(-1), crafted)
        np.testing.assert_allclose(out[5].reshape(-1), crafted)
    results = RoundResults(clients, deltas, np.ones(6), {})
    assert Attack("sign_flip", (2,), 1.0, 0).colluded(results) is results  # runs on the client's rank instead


def test_attacks_are_federated_and_label_flip_needs_classes():
    with pytest.raises(ConfigError, match="attacks simulate federated clients"):
        config.load(overrides=["mode=distributed", "attack.kind=sign_flip"])
    with pytest.raises(ConfigError, match="'label_flip', which needs class labels"):
        config.load(overrides=["data.name=synthetic", "model.kind=linear", "data.partition=iid",
                               "attack.kind=label_flip"])
