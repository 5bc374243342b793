"""Federated algorithms by their config name (server.strategy): the one list of them.

Each entry is a Strategy (the server's half) whose ``client`` attribute is
its client half; see mpifl.strategies.base.  To add an algorithm, write one
module with the pair and add it here: config validation, the wire buffers,
checkpoints and the docs' key table all follow from its declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpifl.protocol import check_declaration
from mpifl.strategies.base import ClientUpdate, RoundResults, Setup, Strategy, weighted_mean
from mpifl.strategies.fedavg import FedAvg
from mpifl.strategies.fednova import FedNova
from mpifl.strategies.fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi
from mpifl.strategies.fedprox import FedProx
from mpifl.strategies.scaffold import Scaffold

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (FedAvg, FedProx, Scaffold, FedNova, FedAvgM, FedAdagrad, FedAdam, FedYogi)
}
for _cls in STRATEGIES.values():
    check_declaration(_cls.name, _cls.downlink, _cls.uplink)

# Every server.* key some strategy declares; a job may set only those of its own strategy.
STRATEGY_KEYS: dict[str, list[str]] = {}
for _cls in STRATEGIES.values():
    for _key in _cls.parameters:
        STRATEGY_KEYS.setdefault(_key, []).append(_cls.name)

__all__ = [
    "STRATEGIES", "STRATEGY_KEYS", "ClientUpdate", "FedAvg", "RoundResults", "Setup", "Strategy",
    "strategy_params", "weighted_mean",
]


def strategy_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The chosen strategy's own parameters (without the 'server.' prefix) from a validated config."""
    cls = STRATEGIES[values["server.strategy"]]
    return {key: values[f"server.{key}"] for key in cls.parameters}
