"""What the two exchanges that deliver sums share: the vector each client adds, and the results its sum gives.

The integer Reduce (mpifl.stages.sums) and secure aggregation
(mpifl.stages.secagg) both replace the Gatherv of rows with one sum over the
round's clients of the float64 vector

    [weight * delta | each model-sized uplink field | weight | within the clip]

so the server learns that sum and nothing per client.  This base builds the
vector from a trained client's update and turns the summed vector back into
RoundResults whose per-client rows are undelivered (reading them raises a
clear error: mpifl.strategies.base.Undelivered).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mpifl.exchange import Outcome
from mpifl.protocol import MODEL
from mpifl.stages.base import Outgoing, Stage, StageBuild
from mpifl.stages.privacy import WITHIN
from mpifl.strategies.base import RoundResults
from mpifl.strategies.sampling import cohort_size

Entry = tuple[float, np.ndarray, float]  # (weight, [delta | fields] in the model's dtype, within the clip)


def reduces(cfg, n_clients: int) -> bool:
    """Whether a round's sum travels as one Reduce: server.exchange "reduce", or "auto" from server.reduce_from
    clients a round (below that, rows cost the root little)."""
    return cfg.server.exchange == "reduce" or (cfg.server.exchange == "auto"
                                               and cohort_size(cfg.server.fraction, n_clients) >= cfg.server.reduce_from)


class SummingStage(Stage):
    """A stage whose exchange delivers the sum of the clients' vectors (see the module docstring)."""

    takes_delta = True  # the delta travels inside the summed vector, not in a payload row
    brings_exchange = True
    delivers_rows: ClassVar[bool] = False

    def __init__(self, build: StageBuild):
        self.size = build.spec.size
        self.extra = [(f.name, f.count(self.size)) for f in build.strategy.uplink if f.dtype == MODEL]
        self.unit_weights = build.unit_weights or not build.strategy.weighs_by_rows
        self.length = self.size + sum(count for _, count in self.extra) + 2

    def entry(self, update: Outgoing) -> Entry:
        """What one trained client adds, kept in the model's dtype until its vector is made."""
        weight = 1.0 if self.unit_weights else float(update.rows)
        within = update.stats[WITHIN][0] if WITHIN in update.stats else 0.0
        extra = [update.row[name].reshape(-1) for name, _ in self.extra]
        return weight, np.concatenate([update.delta.reshape(-1), *extra]), float(within)

    def vector(self, entry: Entry) -> np.ndarray:
        """One client's float64 vector [weight delta | fields | weight | within]."""
        weight, values, within = entry
        vector = np.empty(self.length)
        vector[: self.size] = values[: self.size]
        vector[: self.size] *= weight
        vector[self.size: -2] = values[self.size:]
        vector[-2:] = (weight, within)
        return vector

    def summed_outcome(self, rnd: int, clients: np.ndarray, total: np.ndarray | None, after=None) -> Outcome:
        """The round's results from the summed vector (zeros when nobody took part)."""
        total = total if total is not None else np.zeros(self.length)
        sums, offset = {}, self.size
        for name, count in self.extra:
            sums[name] = total[offset: offset + count]
            offset += count
        results = RoundResults.of_sums(clients, rnd, self.exchange, total[: self.size], float(total[offset]),
                                       float(total[offset + 1]), sums)
        return Outcome(results, float(clients.size), after or {})

    def halt_error(self, rnd: int) -> Exception | None:
        return None

    def vector_length(self, size: int) -> int:
        """The summed vector's length for a model of ``size`` values (its model-sized fields grow with it)."""
        return size + sum(size if count == self.size else count for _, count in self.extra) + 2

    def collectives(self, trained: int, size: int) -> list[tuple[str, int]]:
        """The round's collectives a client rank takes part in, for the traffic model of scaling studies: (the
        collective whose fit prices it, bytes per rank) for a rank whose ``trained`` clients took part, with a
        model of ``size`` values."""
        return [("Allreduce", self.vector_length(size) * 8)]  # a Reduce, priced as an Allreduce (an upper bound)
