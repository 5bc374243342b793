"""Two-level averaging (mpifl.hierarchy): the combinations it refuses, by name."""

from __future__ import annotations

import pytest

import mpifl
from mpifl.errors import ConfigError


@pytest.mark.parametrize("overrides, message", [
    ({"server__strategy": "fednova"}, "needs a strategy that steps on the mean of the clients' deltas"),
    ({"server__strategy": "scaffold"}, "whose clients keep no state"),
    ({"server__fraction": 0.5}, "trains every client every round"),
    ({"server__aggregator": "median"}, "the server's aggregator must take sums"),
    ({"privacy__noise_multiplier": 1.0}, "does not pass updates through privacy"),
    ({"server__exchange": "reduce"}, "sends each client's row of its edge's delta"),
])
def test_two_level_averaging_refuses_what_it_does_not_cover(overrides, message):
    with pytest.raises(ConfigError) as info:
        mpifl.job(None, mode="federated", server__hierarchy="groups", **overrides)
    assert message in str(info.value) and "server.hierarchy = 'groups'" in str(info.value)
