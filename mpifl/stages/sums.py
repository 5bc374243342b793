"""The summing exchange: client ranks add their clients' updates and one integer Reduce brings the sum to rank 0.

For rounds that need only sums (the strategy averages deltas or declares
``needs_only_sums``, the aggregator is the mean, and no stage needs each
client's row) the server never holds K rows of P values: each client rank
adds its clients' vectors [weight delta | model-sized uplink fields |
weight | within the clip], and a Reduce over the ranks replaces the Gatherv.

A floating-point Reduce would sum in an order that depends on how many
ranks host the clients, and a federated model in mpifl is the same bytes on
any rank count.  So the sum is exact: every client's vector is written in
fixed point, one exponent per block of BLOCK values, chosen from the
round's largest magnitude in that block over all clients (an Allreduce of
the block maxima) so that K of them cannot overflow 62 bits; the integers
then add exactly, in any order, with MPI's int64 sum.  Each value is
rounded once, to within 2^-63 K of its block's largest value, which is
float64 rounding for the deltas that matter in the block; the results equal
the Gatherv path's to rounding and are bitwise the same on any rank count.

``server.exchange`` chooses: "gather" (rows, the default below
``server.reduce_from`` clients a round), "reduce", or "auto" (reduce when
every participant can take sums and the round has at least
``server.reduce_from`` clients).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from mpi4py import MPI

from mpifl.protocol import MODEL
from mpifl.stages.base import Declared, Outgoing, Stage, StageBuild
from mpifl.stages.privacy import WITHIN

SERVER = 0
BLOCK = 256  # values sharing one fixed-point exponent
BITS = 62  # the sum of every client's integers stays below 2^BITS in magnitude


def takes_sums(cfg) -> bool:
    """Whether every other participant of the round (strategy, aggregator, stages) can do with sums."""
    from mpifl.stages import CHAIN, participants

    others = [cls for cls in CHAIN if cls is not SumStage and cls.enabled(cfg)]
    everyone = participants(cfg, others)
    return (not any("rows" in p.needs or "whole_update" in p.breaks for p in everyone)
            and not cfg.secagg.enabled)


class SumStage(Stage):
    name = "sums"
    section = "server"
    takes_delta = True
    exchange = "reduce"

    @staticmethod
    def enabled(cfg) -> bool:
        from mpifl.stages import CHAIN

        if cfg.mode != "federated" or cfg.server.exchange == "gather" or cfg.server.hierarchy != "none":
            return False  # (two-level averaging already sums at its edges and sends rows of edge deltas)
        if any(cls is not SumStage and hasattr(cls, "server_receive") and cls.enabled(cfg) for cls in CHAIN):
            return False  # a stage with an exchange of its own (secure aggregation) reduces, or not, itself
        return cfg.server.exchange == "reduce" or takes_sums(cfg)

    @classmethod
    def wanted(cls, cfg, n_clients: int) -> bool:
        """auto: only from server.reduce_from clients a round (below, rows cost the root little)."""
        cohort = round(cfg.server.fraction * n_clients)
        return cfg.server.exchange == "reduce" or cohort >= cfg.server.reduce_from

    @classmethod
    def declares(cls, cfg) -> Declared:
        if cfg.server.exchange != "reduce":
            return Declared(cls.name, "server.exchange")  # auto: on only where nothing needs rows
        return Declared('server.exchange "reduce"', "server.exchange", breaks={
            "rows": "adds the updates on the client ranks, so the server receives only their sum "
                    "(set server.exchange = \"gather\")",
        })

    def __init__(self, build: StageBuild):
        spec = build.spec
        self.size = spec.size
        self.extra = [(f.name, f.count(spec.size)) for f in build.strategy.uplink if f.dtype == MODEL]
        self.unit_weights = build.unit_weights or not build.strategy.weighs_by_rows
        self.length = self.size + sum(count for _, count in self.extra) + 2
        self.vectors: list[tuple[float, np.ndarray, float]] = []  # (weight, [delta | fields] in the model dtype, within)
        self.total: np.ndarray | None = None

    def bind(self, comm, blocks: list[range]) -> None:
        self.comm = comm

    def send(self, update: Outgoing) -> None:
        weight = 1.0 if self.unit_weights else float(update.rows)
        within = update.stats[WITHIN][0] if WITHIN in update.stats else 0.0
        extra = [update.row[name].reshape(-1) for name, _ in self.extra]
        self.vectors.append((weight, np.concatenate([update.delta.reshape(-1), *extra]), float(within)))

    def _vector(self, entry) -> np.ndarray:
        """One client's float64 vector [weight delta | fields | weight | within], made when it is summed (a rank
        keeps its clients' updates in the model's dtype until then, as the Gatherv path keeps its rows)."""
        weight, values, within = entry
        vector = np.empty(self.length)
        vector[: self.size] = values[: self.size]
        vector[: self.size] *= weight
        vector[self.size: -2] = values[self.size:]
        vector[-2:] = (weight, within)
        return vector

    # -- the exchange: every rank calls sum_round with its vectors (the server with none) ---------------------

    def client_send(self, rnd: int, epochs: np.ndarray, rows: np.ndarray, timer, poll: bool) -> None:
        if (epochs > 0).any():
            self._sum(int(np.count_nonzero(epochs)), timer)
        self.vectors = []

    def server_receive(self, rnd: int, epochs: np.ndarray, timer, poll: bool) -> None:
        self.total = self._sum(int(np.count_nonzero(epochs)), timer) if (epochs > 0).any() else None

    def _sum(self, count: int, timer) -> np.ndarray | None:
        """The exact sum of every rank's vectors, at the server (None elsewhere)."""
        blocks = -(-self.length // BLOCK)
        peak = np.zeros(blocks)
        for entry in self.vectors:
            np.maximum(peak, block_peaks(self._vector(entry), blocks), out=peak)
        with timer.comm():
            self.comm.Allreduce(MPI.IN_PLACE, peak, op=MPI.MAX)
        exponents = scale_exponents(peak, count)
        local = np.zeros(self.length, dtype=np.int64)
        for entry in self.vectors:
            local += to_fixed(self._vector(entry), exponents)
        total = np.empty(self.length, dtype=np.int64) if self.comm.Get_rank() == SERVER else None
        with timer.comm():
            self.comm.Reduce(local, total, op=MPI.SUM, root=SERVER)
        if total is not None:  # what the client ranks sent: their block maxima and their sums
            timer.uplink_bytes += (self.comm.Get_size() - 1) * (local.nbytes + peak.nbytes)
        return from_fixed(total, exponents) if total is not None else None

    def outcome(self, rnd: int, epochs: np.ndarray, stats):
        from mpifl.exchange import Outcome
        from mpifl.strategies import RoundResults

        trained = np.flatnonzero(epochs)
        total = self.total if self.total is not None else np.zeros(self.length)
        sums, offset = {}, self.size
        for name, count in self.extra:
            sums[name] = total[offset: offset + count]
            offset += count
        results = RoundResults(clients=trained, deltas=np.empty((0, self.size)), weights=np.empty(0), fields={},
                               round=rnd, summed=total[: self.size], summed_weight=float(total[offset]),
                               summed_within=float(total[offset + 1]), summed_fields=sums)
        return Outcome(results, float(trained.size))

    def halt_error(self, rnd: int) -> Exception | None:
        return None

    def record_fields(self) -> dict[str, Any]:
        return {}


def block_peaks(vector: np.ndarray, blocks: int) -> np.ndarray:
    """The largest magnitude in each block of BLOCK values (the last block padded with zeros)."""
    padded = np.zeros(blocks * BLOCK)
    np.abs(vector, out=padded[: vector.size])
    return padded.reshape(blocks, BLOCK).max(axis=1)


def scale_exponents(peak: np.ndarray, count: int) -> np.ndarray:
    """Per block, the power of two that scales ``count`` values of magnitude up to ``peak`` below 2^BITS."""
    _, exponent = np.frexp(peak * count)  # peak * count < 2^exponent
    return np.where(peak > 0, BITS - exponent, 0).astype(np.int64)


def to_fixed(vector: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """vector * 2^exponent of its block, rounded to the nearest integer."""
    scale = np.repeat(exponents, BLOCK)[: vector.size]
    return np.rint(np.ldexp(vector, scale)).astype(np.int64)


def from_fixed(total: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    scale = np.repeat(exponents, BLOCK)[: total.size]
    return np.ldexp(total.astype(np.float64), -scale)


assert math.ldexp(1.0, BITS) < 2.0 ** 63
