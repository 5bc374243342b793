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

import numpy as np
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.ranks import ROOT, is_root
from mpifl.stages.base import Declared, Outgoing, OutgoingStack, Stage, StageBuild
from mpifl.stages.summing import Entry, SummingStage, reduces
from mpifl.protocol import cohort

BLOCK = 256  # values sharing one fixed-point exponent
BITS = 62  # the sum of every client's integers stays below 2^BITS in magnitude


class SumStage(SummingStage):
    name = "sums"
    section = "server"
    exchange = "reduce"

    @staticmethod
    def enabled(cfg) -> bool:
        """Asked for: server.exchange is not "gather", in a one-level job (two-level averaging already sums at its
        edges and sends rows of edge deltas)."""
        return cfg.server.exchange != "gather" and cfg.server.hierarchy == "none"

    @classmethod
    def fits(cls, cfg, others: list[type[Stage]], declared: list[Declared]) -> bool:
        """Not beside a stage with an exchange of its own (secure aggregation reduces, or not, itself); under
        "auto", only where no participant needs each client's row."""
        if any(other.brings_exchange for other in others):
            return False
        return cfg.server.exchange == "reduce" or not any(
            "rows" in p.needs or "whole_update" in p.breaks for p in declared)

    @classmethod
    def wanted(cls, cfg, n_clients: int) -> bool:
        """auto: only from server.reduce_from clients a round (below, rows cost the root little)."""
        return reduces(cfg, n_clients)

    @classmethod
    def declares(cls, cfg) -> Declared:
        if cfg.server.exchange != "reduce":
            return Declared(cls.name, "server.exchange")  # auto: on only where nothing needs rows
        return Declared('server.exchange "reduce"', "server.exchange", breaks={
            "rows": "adds the updates on the client ranks, so the server receives only their sum "
                    "(set server.exchange = \"gather\")",
        })

    def __init__(self, build: StageBuild):
        super().__init__(build)
        self.vectors: list[Entry] = []  # a rank keeps its clients' updates in the model's dtype until they are summed
        self.stacks: list[tuple[np.ndarray, np.ndarray]] = []  # a cohort's (weights, deltas), summed the same way
        self.total: np.ndarray | None = None

    def bind(self, comm, blocks: list[range]) -> None:
        self.comm = comm

    def send(self, update: Outgoing) -> None:
        self.vectors.append(self.entry(update))

    def takes_stacks(self) -> bool:
        """A cohort's deltas are its vectors' bodies, where no uplink field travels beside them (nothing but this
        stage is in a chain that sends stacks, so nothing clips: within is 0)."""
        return not self.extra

    def send_stack(self, stack: OutgoingStack) -> None:
        weights = np.ones(stack.clients.size) if self.unit_weights else stack.rows.astype(np.float64)
        self.stacks.append((weights, stack.deltas))

    # -- the exchange: every rank calls _sum with its vectors (the server with none) --------------------------

    def client_send(self, rnd: int, epochs: np.ndarray, rows: np.ndarray, timer, poll: bool) -> None:
        if cohort(epochs).size:
            self._sum(int(cohort(epochs).size), timer, poll)
        self.vectors, self.stacks = [], []

    def server_receive(self, rnd: int, epochs: np.ndarray, timer, poll: bool) -> None:
        trained = cohort(epochs).size
        self.total = self._sum(int(trained), timer, poll) if trained else None

    def _sum(self, count: int, timer, poll: bool) -> np.ndarray | None:
        """The exact sum of every rank's vectors, at the server (None elsewhere).  With ``poll`` (an oversubscribed
        node's long round) the waits sleep between tests, so the waiting server leaves its core to the clients."""
        blocks = -(-self.length // BLOCK)
        peak = np.zeros(blocks)
        chunks = [np.stack([self.vector(entry) for entry in self.vectors[at : at + CHUNK]])
                  for at in range(0, len(self.vectors), CHUNK)]  # many clients' vectors at once, not one by one
        chunks += [self.stacked(weights[at : at + CHUNK], deltas[at : at + CHUNK])
                   for weights, deltas in self.stacks for at in range(0, weights.size, CHUNK)]
        for chunk in chunks:
            np.maximum(peak, block_peaks(chunk, blocks), out=peak)
        with timer.comm():
            collectives.allreduce_max_in_place(self.comm, peak, poll)
        exponents = scale_exponents(peak, count)
        local = np.zeros(self.length, dtype=np.int64)
        for chunk in chunks:  # integers: the sum is exact, in any order
            local += to_fixed(chunk, exponents).sum(axis=0)
        total = np.empty(self.length, dtype=np.int64) if is_root(self.comm) else None
        with timer.comm():
            collectives.reduce_sum(self.comm, local, total, ROOT, poll)
        if total is not None:  # what the client ranks sent: their block maxima and their sums
            timer.uplink_bytes += (self.comm.Get_size() - 1) * (local.nbytes + peak.nbytes)
        return from_fixed(total, exponents) if total is not None else None

    def stacked(self, weights: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """The vectors [weight delta | weight | 0] of a cohort's rows, each the float64 vector() makes of it alone."""
        vectors = np.empty((weights.size, self.length))
        vectors[:, : self.size] = deltas
        vectors[:, : self.size] *= weights[:, None]
        vectors[:, -2] = weights
        vectors[:, -1] = 0.0
        return vectors

    def collectives(self, trained: int, size: int) -> list[tuple[str, int]]:
        blocks = -(-self.vector_length(size) // BLOCK)
        return [("Allreduce", blocks * 8), *super().collectives(trained, size)]  # the block maxima, then the sums

    def outcome(self, rnd: int, epochs: np.ndarray, stats):
        return self.summed_outcome(rnd, cohort(epochs), self.total)


CHUNK = 256  # client vectors stacked at once: a bounded scratch for large models


def block_peaks(vectors: np.ndarray, blocks: int) -> np.ndarray:
    """The largest magnitude in each block of BLOCK values (the last block padded with zeros), over one vector or
    a stack of them (m, n)."""
    stack = np.atleast_2d(vectors)
    padded = np.zeros((stack.shape[0], blocks * BLOCK))
    np.abs(stack, out=padded[:, : stack.shape[1]])
    return padded.reshape(stack.shape[0], blocks, BLOCK).max(axis=(0, 2))


def scale_exponents(peak: np.ndarray, count: int) -> np.ndarray:
    """Per block, the power of two that scales ``count`` values of magnitude up to ``peak`` below 2^BITS."""
    _, exponent = np.frexp(peak * count)  # peak * count < 2^exponent
    return np.where(peak > 0, BITS - exponent, 0).astype(np.int64)


def to_fixed(vector: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """vector * 2^exponent of its block, rounded to the nearest integer (a stack (m, n): each row)."""
    scale = np.repeat(exponents, BLOCK)[: vector.shape[-1]]
    return np.rint(np.ldexp(vector, scale)).astype(np.int64)


def from_fixed(total: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    scale = np.repeat(exponents, BLOCK)[: total.size]
    return np.ldexp(total.astype(np.float64), -scale)


assert math.ldexp(1.0, BITS) < 2.0 ** 63
