"""Federated algorithms by their config name (server.strategy): the one registry of them.

Each entry is a Strategy (the server's half) whose ``client`` attribute is
its client half; see mpifl.strategies.base.  A built-in is one module with
the pair and one ``STRATEGIES.register`` line here; a user's own is named in
a job as ``server.strategy = "my_fl.algos:FedExP"`` or handed to
``mpifl.run(..., strategy=FedExP)``.  Config validation, the wire buffers,
checkpoints and the docs' key table all follow from the declarations, which
``check_strategy`` checks the same way for both.
"""

from __future__ import annotations

from typing import Any

from mpifl.protocol import Field, check_declaration
from mpifl.registry import Registry
from mpifl.strategies.base import ClientUpdate, RoundResults, Setup, Strategy, weighted_mean
from mpifl.strategies.asynchronous import FedAsync, FedBuff
from mpifl.strategies.ditto import Ditto
from mpifl.strategies.fedavg import FedAvg
from mpifl.strategies.fednova import FedNova
from mpifl.strategies.heads import FedPer, FedRep
from mpifl.strategies.fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi
from mpifl.strategies.fedprox import FedProx
from mpifl.strategies.qfedavg import QFedAvg
from mpifl.strategies.scaffold import Scaffold


def check_strategy(cls: type) -> str | None:
    """The declarations beyond the parameters: the wire fields, the client half and its state, the flags."""
    for side in ("downlink", "uplink"):
        fields = getattr(cls, side)
        if not isinstance(fields, tuple) or not all(isinstance(f, Field) for f in fields):
            return f"its '{side}' must be a tuple of mpifl.protocol.Field; got {fields!r}."
    try:
        check_declaration(cls.__qualname__, cls.downlink, cls.uplink)
    except ValueError as exc:
        return str(exc)
    if not (isinstance(cls.client, type) and issubclass(cls.client, ClientUpdate)):
        return f"its 'client' must be a subclass of mpifl.strategies.ClientUpdate; got {cls.client!r}."
    if not (isinstance(cls.client.state, tuple) and all(isinstance(n, str) for n in cls.client.state)):
        return f"its client's 'state' must be a tuple of names; got {cls.client.state!r}."
    if not isinstance(cls.client.keeps_head, bool):
        return f"its client's 'keeps_head' must be a bool; got {cls.client.keeps_head!r}."
    for flag in ("averages_deltas", "needs_only_sums", "weighs_by_rows", "asynchronous", "steps_without_clients"):
        if not isinstance(getattr(cls, flag), bool):
            return f"its '{flag}' must be a bool; got {getattr(cls, flag)!r}."
    return None


STRATEGIES: Registry = Registry("strategy", "server.strategy", Strategy, check_strategy, group="mpifl.strategies")
for _cls in (FedAvg, FedProx, Scaffold, FedNova, FedAvgM, FedAdagrad, FedAdam, FedYogi, FedBuff, FedAsync, QFedAvg, Ditto,
             FedPer, FedRep):
    STRATEGIES.register(_cls)

__all__ = [
    "STRATEGIES", "ClientUpdate", "FedAvg", "RoundResults", "Setup", "Strategy", "strategy_keys",
    "strategy_params", "weighted_mean",
]


def strategy_keys() -> dict[str, list[str]]:
    """Every server.* key a registered strategy declares, with the strategies that declare it."""
    keys: dict[str, list[str]] = {}
    for name, cls in STRATEGIES.items():
        for key in cls.parameters:
            keys.setdefault(key, []).append(name)
    return keys


def strategy_params(cfg) -> dict[str, Any]:
    """The chosen strategy's own parameters (without the 'server.' prefix) from a validated config."""
    cls = STRATEGIES[cfg.server.strategy]
    return cfg.server.pick(cls.parameters)
