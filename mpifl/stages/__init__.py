"""The chain of stages between local training and the server step, in its one documented order.

    client: attack -> privacy (clip, noise share) -> compress (error feedback) -> secagg (mask)
    server: secagg (unmask) -> compress (decode) -> attack (omniscient, simulated) -> aggregate
            -> privacy (central noise, accounting, adaptive clip) -> the strategy's server step

Each stage is one module (mpifl.stages.attack, .privacy, .compress, .secagg)
that declares its wire fields, state, keys and what it needs and breaks
(mpifl.stages.base.Declared).  Which combinations are refused follows from
those declarations, together with the strategy's and the aggregator's
(``check``); the round loop calls the chain's hooks and names no stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from mpifl.errors import ConfigError
from mpifl.exchange import RowExchange
from mpifl.stages.attack import AttackStage
from mpifl.stages.base import Declared, Outgoing, OutgoingStack, Stage, StageBuild, restore
from mpifl.stages.compress import CompressStage
from mpifl.stages.privacy import PrivacyStage
from mpifl.stages.secagg import SecAggStage
from mpifl.stages.sums import SumStage

CHAIN: tuple[type[Stage], ...] = (AttackStage, PrivacyStage, CompressStage, SecAggStage, SumStage)

__all__ = ["CHAIN", "Chain", "Outgoing", "build_chain", "check"]


def enabled(cfg) -> list[type[Stage]]:
    """The stages a job turns on, in chain order: each that its keys enable in a mode it joins, and that fits
    beside the others."""
    on = [cls for cls in CHAIN if cfg.mode in cls.modes and cls.enabled(cfg)]
    joined = []
    for cls in on:
        others = [other for other in on if other is not cls]
        if cls.fits(cfg, others, participants(cfg, others)):
            joined.append(cls)
    return joined


def participants(cfg, stages: list[type[Stage]] | None = None) -> list[Declared]:
    """What every participant of a federated round declares: the strategy, the aggregator, the stages on (or
    ``stages``)."""
    from mpifl.strategies import STRATEGIES
    from mpifl.strategies.aggregators import AGGREGATORS

    name, agg = cfg.server.strategy, cfg.server.aggregator
    strategy, aggregator = STRATEGIES[name], AGGREGATORS[agg]
    breaks = {} if strategy.averages_deltas else {
        "sum_step": "does not average deltas, so the noised mean of clipped deltas cannot replace its server "
                    "step (use fedavg, fedprox, fedavgm, fedadagrad, fedadam or fedyogi)"}
    if strategy.client.keeps_head:
        breaks["whole_update"] = "sends only the body of each update (each client's head stays on its rank)"
    if strategy.uplink:
        breaks["noised_only"] = (f"sends {', '.join(f.name for f in strategy.uplink)} beside each update, which no "
                                 "stage noises")
    if strategy.asynchronous:
        breaks["cohorts"] = ("applies buffered updates trained from different versions as they arrive, so there is "
                            "no round of sampled clients")
    declared = [Declared(
        f"server.strategy {name!r}", "server.strategy",
        needs={"rows": "reads each client's own update (it declares needs_rows, or neither averages_deltas nor "
                       "needs_only_sums)"} if strategy.reads_rows() else {},
        breaks=breaks,
    )]
    if aggregator.needs_rows:
        declared.append(Declared(f"server.aggregator {agg!r}", "server.aggregator",
                                 needs={"rows": "needs the individual updates"},
                                 breaks={"sum_step": "is not a sum (use server.aggregator = \"mean\")"}))
    on = enabled(cfg) if stages is None else stages
    whole = {"whole_update": "acts on each client's whole update"}  # what every stage needs
    return declared + [replace(d, needs={**whole, **d.needs}) for d in (cls.declares(cfg) for cls in on)]


def check(cfg, origin: Callable[[str], str]) -> None:
    """Each stage's own checks: turned on in a mode it serves, and its own settings."""
    for cls in CHAIN:
        if cls.mode_reason and cfg.mode not in cls.modes and cls.enabled(cfg):
            key = cls.declares(cfg).key
            modes = " or ".join(f'"{mode}"' for mode in cls.modes)
            raise ConfigError(f"The '{key}' parameter in {origin(key)} turns on {cls.name}: {cls.mode_reason}. Set "
                              f"mode = {modes}.")
        cls.check(cfg, origin)


def check_round(cfg, origin: Callable[[str], str]) -> None:
    """Every pair of a federated round's participants where one breaks what another needs."""
    everyone = participants(cfg)
    for needer in everyone:
        for requirement, need in needer.needs.items():
            for breaker in everyone:
                if breaker is not needer and requirement in breaker.breaks:
                    raise ConfigError(
                        f"{needer.subject} {need}, but {breaker.subject} "
                        f"{breaker.breaks[requirement]}. Change {needer.key} (in {origin(needer.key)}) or "
                        f"{breaker.key} (in {origin(breaker.key)}).")


class Chain:
    """The stages a job runs, built on one rank, with the hooks the round loop calls in chain order."""

    def __init__(self, stages: list[Stage]):
        self.stages = stages

    @property
    def downlink(self) -> tuple:
        return tuple(f for stage in self.stages for f in stage.downlink)

    @property
    def uplink(self) -> tuple:
        return tuple(f for stage in self.stages for f in stage.uplink)

    @property
    def message_bytes(self) -> int:
        return max((stage.message_bytes for stage in self.stages), default=0)

    @property
    def takes_delta(self) -> bool:
        return any(stage.takes_delta for stage in self.stages)

    @property
    def releases_empty_rounds(self) -> bool:
        return any(stage.releases_empty_rounds for stage in self.stages)

    @property
    def hides_client_stats(self) -> bool:
        """Whether no client's own statistics may leave its rank in the clear (secure aggregation, local DP)."""
        return any(stage.hides_client_stats for stage in self.stages)

    @property
    def rank_stat_names(self) -> tuple[str, ...]:
        return tuple(name for stage in self.stages for name in stage.rank_stat_names)

    def exchange(self, comm, blocks: list[range]):
        """The stage that brings its own exchange, bound to the communicator, or None (the Gatherv of rows)."""
        own = next((stage for stage in self.stages if stage.brings_exchange), None)
        if own is not None:
            own.bind(comm, blocks)
        return own

    def release(self):
        """What replaces the aggregator's combined delta (differential privacy's noised mean), or None."""
        return next((r for r in (stage.release() for stage in self.stages) if r is not None), None)

    def send(self, update: Outgoing) -> None:
        for stage in self.stages:
            stage.send(update)

    def send_stack(self, stack: OutgoingStack) -> bool:
        """A cohort's updates through every stage at once; False (nothing sent) unless every stage takes stacks."""
        if not all(stage.takes_stacks() for stage in self.stages):
            return False
        for stage in self.stages:
            stage.send_stack(stack)
        return True

    def receive(self, results, key: tuple[int, int]):
        for stage in reversed(self.stages):  # unmask, decode, then the simulated attacks
            results = stage.receive(results, key)
        return results

    def merged(self, hook: str, *args) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for stage in self.stages:
            out.update(getattr(stage, hook)(*args))
        return out

    def round_metrics(self, rnd: int, training: bool, logged: bool) -> dict[str, Any]:
        """What each stage reports after a round, as "stage/field" (round_records.STAGE): the record files it under
        the stage's name."""
        return {f"{stage.name}/{key}": value for stage in self.stages
                for key, value in stage.round_metrics(rnd, training, logged).items()}

    def record_fields(self) -> dict[str, dict]:
        """Each stage's fields of the round just recorded, under its name (only the stages that have some)."""
        return {stage.name: fields for stage in self.stages if (fields := stage.record_fields())}

    def each(self, hook: str, *args) -> None:
        for stage in self.stages:
            getattr(stage, hook)(*args)

    def restore(self, hook: str, saved: Mapping[str, np.ndarray]) -> None:
        for stage in self.stages:
            restore(getattr(stage, hook)(), saved)

    def summary(self, records: list) -> dict[str, Any]:
        """Each stage's part of summary.json (the attack's malicious clients, privacy's epsilon), None when off."""
        out: dict[str, Any] = {cls.summary_key: None for cls in CHAIN if cls.summary_key}
        own = next((stage for stage in self.stages if stage.brings_exchange), None)
        out["exchange"] = (own or RowExchange).exchange
        for stage in self.stages:
            out.update(stage.summary(records))
        return out

    def prepare_data(self, data: list, clients: range, n_classes: int) -> list:
        """A client rank's data after the stages that change it (label flipping, on the attacker's own rank)."""
        for stage in self.stages:
            data = stage.prepare_data(data, clients, n_classes)
        return data

    def banner(self) -> list[str]:
        return [line for stage in self.stages for line in stage.banner()]


def build_chain(comm, cfg, spec, n_clients: int, strategy: type, hosted: int, is_root: bool) -> Chain:
    """The job's chain on this rank, built on every rank together: a stage that settles something collectively
    (privacy's noise multiplier) does it first, and a stage that refuses its settings fails every rank."""
    from mpifl.agree import collectively

    on = [cls for cls in enabled(cfg) if cls.wanted(cfg, n_clients)]
    settled = {cls.name: cls.settle(comm, cfg, n_clients, spec.dtype, is_root) for cls in on}
    unit = any(cls.weighs_clients_equally for cls in on)
    return collectively(comm, lambda: Chain([
        cls(StageBuild(cfg, spec, n_clients, strategy, hosted, settled[cls.name], unit)) for cls in on]))
