"""The uplink of a federated round: how the trained clients' updates reach the server.

``Exchange`` is the contract every exchange keeps, and the round loops call
nothing else.  ``RowExchange`` is the default: one Gatherv of a payload row
per trained client (delta or a stage's message, and the model-sized uplink
fields).  A stage that changes the transport itself brings its own exchange
(mpifl.stages.summing: the integer Reduce, secure aggregation), which
delivers sums only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from mpifl import comm as collectives
from mpifl.protocol import Wire, cohort
from mpifl.ranks import ROOT, is_root
from mpifl.strategies import RoundResults


@dataclass(frozen=True)
class Outcome:
    """What the server has of a round's uplink: the results (None when the round produced no update), how many
    clients took part, and metrics that go after the strategy's in the record."""

    results: RoundResults | None
    participants: float
    after: dict[str, Any] = field(default_factory=dict)
    stop: bool = False  # the job must stop after this round (an exchange that aborted and says so)


class Exchange(Protocol):
    """How a round's updates travel from the client ranks to the server; every rank calls its side once a round.

    ``delivers_rows``: the server's RoundResults hold each client's row
    (deltas, weights, fields); else only their sums (``summed``...), and a
    strategy that reads rows is refused before round 1 (mpifl.stages.check)
    or, undeclared, stopped by RoundResults with the way out.
    """

    exchange: str  # its name in summary.json: "gather", "reduce", "secagg", "secagg-reduce"
    delivers_rows: bool
    carries_stats: bool  # it also sums the active clients' statistics (take_active; figures_sum at the server)

    def client_send(self, rnd: int, epochs: np.ndarray, rows: np.ndarray, timer, poll: bool) -> None:
        """A client rank's side: send this rank's trained clients' updates (``rows``: their payload rows)."""

    def server_receive(self, rnd: int, epochs: np.ndarray, timer, poll: bool) -> None:
        """The server's side: receive what the client ranks sent."""

    def outcome(self, rnd: int, epochs: np.ndarray, stats: dict[str, np.ndarray]) -> Outcome:
        """What the server has of the round, once received (``stats``: the per-client statistics)."""

    def halt_error(self, rnd: int) -> Exception | None:
        """The error every rank raises when this exchange stopped the job (Outcome.stop), or None."""


class RowExchange:
    """Gatherv of one payload row per trained client, in client order; the server decodes nothing here."""

    exchange: ClassVar[str] = "gather"
    delivers_rows: ClassVar[bool] = True
    carries_stats: ClassVar[bool] = False

    def __init__(self, comm, wire: Wire, dtype: np.dtype):
        self.wire = wire
        self.gather = collectives.GatherToRoot(comm, [0] * comm.Get_size(), dtype, ROOT)
        self.payload = wire.payload_buffer(0)  # the root's, grown to the largest cohort yet: not the population
        self._nothing = np.empty(0, dtype=dtype)

    def client_send(self, rnd: int, epochs: np.ndarray, rows: np.ndarray, timer, poll: bool) -> None:
        """Send this rank's filled payload rows (one per trained client, in client order)."""
        if cohort(epochs).size:
            self.gather.set_counts(self.wire.payload_counts(epochs))
            self.gather(rows, self._nothing, timer, poll)

    def server_receive(self, rnd: int, epochs: np.ndarray, timer, poll: bool) -> None:
        if cohort(epochs).size:
            counts = self.wire.payload_counts(epochs)
            rows = sum(counts) // self.wire.payload.width
            if rows > self.payload.shape[0]:
                self.payload = self.wire.payload_buffer(rows)
            self.gather.set_counts(counts)
            self.gather(self._nothing, self.payload, timer, poll)

    def outcome(self, rnd: int, epochs: np.ndarray, stats: dict[str, np.ndarray]) -> Outcome:
        """The trained clients' rows by field name, in client order."""
        trained = self.wire.sending(epochs)
        at = stats.at(trained)  # the trained clients' entries among the round's statistics
        columns = self.wire.payload.columns(self.payload[: trained.size])
        fields = {name: columns[name] if name in columns else stats[name][at] for name in self.wire.uplink_names}
        fields.update({name: value for name, value in columns.items() if name != "delta" and name not in fields})
        deltas = (self.wire.whole_deltas(columns["delta"]) if "delta" in columns
                  else np.empty((trained.size, 0), dtype=self.wire.dtype))
        results = RoundResults(clients=trained, deltas=deltas, weights=stats["weight"][at], fields=fields,
                               round=rnd)
        return Outcome(results, float(trained.size))

    def halt_error(self, rnd: int) -> Exception | None:
        return None
