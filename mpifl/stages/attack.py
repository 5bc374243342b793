"""The attack stage: simulated Byzantine clients (mpifl.attacks) as the first step of the chain.

Data and model poisoning run on the malicious client's own rank; the
omniscient attacks replace the malicious rows at the server, after decoding
and before aggregation, so they need every client's row.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mpifl.attacks import ATTACKS, OFF, configured_attack
from mpifl.models import output_link
from mpifl.errors import ConfigError
from mpifl.stages.base import Declared, Outgoing, Stage, StageBuild


class AttackStage(Stage):
    name = "attack"
    section = "attack"
    summary_key = "attack"
    mode_reason = "attacks simulate federated clients"

    @staticmethod
    def enabled(cfg) -> bool:
        return cfg.attack.kind != OFF

    @classmethod
    def check(cls, cfg, origin) -> None:
        kind = cfg.attack.kind
        if ATTACKS[kind].needs_labels and output_link(cfg) == "linear":
            raise ConfigError(f"The 'attack.kind' parameter in {origin('attack.kind')} is {kind!r}, which needs "
                              "class labels; a regression task has none.")

    @classmethod
    def declares(cls, cfg) -> Declared:
        kind = cfg.attack.kind
        needs = {"rows": "is simulated at the server from every client's update"} if ATTACKS[kind].omniscient else {}
        return Declared(f"attack.kind {kind!r}", "attack.kind", needs=needs)

    def __init__(self, build: StageBuild):
        self.attack = configured_attack(build.cfg, build.n_clients)

    def prepare_data(self, data: list, clients: range, n_classes: int) -> list:
        """Data poisoning (label_flip), on the malicious clients' own rank and data only; others keep theirs."""
        return [replace(c, train=replace(c.train, y=self.attack.flip_labels(k, c.train.y, n_classes)))
                for c, k in zip(data, clients)]

    def send(self, update: Outgoing) -> None:
        self.attack.poison(update.client, update.round, update.delta)

    def receive(self, results, key):
        return self.attack.colluded(results)

    def summary(self, records: list) -> dict[str, Any]:
        a = self.attack
        return {"attack": {"kind": a.kind, "malicious": list(a.malicious), "scale": a.scale}}
