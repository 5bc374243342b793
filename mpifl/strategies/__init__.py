"""Aggregation strategies by their config name (server.strategy)."""

from __future__ import annotations

from mpifl.config import Config
from mpifl.strategies.base import Strategy, weighted_mean
from mpifl.strategies.fedavg import FedAvg

STRATEGIES: dict[str, type[Strategy]] = {"fedavg": FedAvg}

__all__ = ["STRATEGIES", "FedAvg", "Strategy", "make_strategy", "weighted_mean"]


def make_strategy(cfg: Config) -> Strategy:
    return STRATEGIES[cfg["server.strategy"]](cfg["server.fraction"], cfg["seed"])
