"""The secure-aggregation stage: each client's update leaves its rank masked, and the server learns only the sum.

On the client it builds the vector to mask, [weight delta | model-sized
uplink fields | weight | within the clip] (mpifl.stages.summing); it then replaces the row
exchange with its own (mpifl.secagg.transport: SecAgg or SecAgg+ over MPI,
with simulated dropouts), whose outcome holds sums only.  The protocol and
the crypto stack are imported only when a job turns it on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpifl.errors import ConfigError, SecAggAborted
from mpifl.exchange import Outcome
from mpifl.stages.base import Declared, Outgoing, StageBuild
from mpifl.stages.summing import SummingStage, reduces
from mpifl.strategies.sampling import cohort_size
from mpifl.protocol import cohort as trained_ids

MIN_COHORT = 2  # a smaller cohort (a Poisson draw of one) is a round without an update: nothing is revealed


class SecAggStage(SummingStage):
    name = "secagg"
    section = "secagg"
    exchange = "secagg"  # summary.json's name for the exchange it brings
    rank_stat_names = ("secagg_agree", "secagg_share", "secagg_mask", "secagg_unmask")
    mode_reason = "secure aggregation hides federated clients' updates"

    @staticmethod
    def enabled(cfg) -> bool:
        return bool(cfg.secagg.enabled)

    @classmethod
    def check(cls, cfg, origin) -> None:
        if not cfg.secagg.enabled:
            return
        if cfg.secagg.plus and cfg.secagg.neighbours % 2:
            raise ConfigError(f"The 'secagg.neighbours' parameter in {origin('secagg.neighbours')} must be even "
                              f"(a Harary graph's degree). Got {cfg.secagg.neighbours}.")

    @classmethod
    def declares(cls, cfg) -> Declared:
        return Declared("secure aggregation", "secagg.enabled", needs={
            "cohorts": "masks a round's cohort together (an asynchronous buffer fills from clients dispatched at "
                      "different times, so no cohort agrees its masks)",
        }, breaks={
            "rows": "hides each client's update, so the server sees only the sum",
        })

    def __init__(self, build: StageBuild):
        super().__init__(build)
        cfg = build.cfg
        cohort = cohort_size(cfg.server.fraction, build.n_clients)
        if cfg.server.sampling == "fixed" and cohort < MIN_COHORT:
            raise ConfigError(f"secure aggregation needs at least {MIN_COHORT} clients a round (the sum of one "
                              f"client's update is that update); this job samples {cohort} of its {build.n_clients} "
                              "client(s). Use more clients (data.clients) or a larger server.fraction.")
        # server.exchange: the masked inputs reduced (one vector at the server) or gathered (one per survivor)
        self.summed = reduces(cfg, build.n_clients)
        self.exchange = "secagg-reduce" if self.summed else "secagg"
        self.seed = cfg.seed
        self.settings = {key: getattr(cfg.secagg, key) for key in ("plus", "neighbours", "threshold", "bits",
                                                               "clip_range", "dropout", "abort")}
        self.vectors: dict[int, np.ndarray] = {}
        self.parts: dict[str, float] = {}  # a client rank's seconds of the round's parts
        self.seconds = None  # the server's: the parts' seconds of the round that produced theta
        self.total = self.server_seconds = None

    def bind(self, comm, blocks: list[range]) -> None:
        """The communicator and who hosts whom: what the exchange needs."""
        self.comm, self.blocks = comm, blocks

    # -- the client half: the vector to mask ----------------------------------------------------------------

    def send(self, update: Outgoing) -> None:
        self.vectors[update.client] = self.vector(self.entry(update))

    def collectives(self, trained: int, size: int) -> list[tuple[str, int]]:
        """The masked vectors only (64-bit ring values): summed by a Reduce, or one per survivor; the key agreement
        and the shares are not modelled."""
        if self.summed:
            return super().collectives(trained, size)
        return [("Gather", self.vector_length(size) * 8 * trained)]

    def rank_stats(self) -> dict[str, float]:
        parts, self.parts = self.parts, {}
        return {f"secagg_{name}": parts.get(name, 0.0) for name in ("agree", "share", "mask", "unmask")}

    # -- the exchange ----------------------------------------------------------------------------------------

    def layout(self, rnd: int, epochs: np.ndarray):
        """Round ``rnd``'s plan, the same on every rank: the cohort (the clients that train), its neighbour graph,
        the fixed-point encoding, who hosts whom, and the simulated dropouts."""
        from mpifl.secagg import graph
        from mpifl.secagg.encoding import FixedPoint
        from mpifl.secagg.protocol import RoundPlan
        from mpifl.secagg.transport import RoundLayout, dropouts

        s = self.settings
        cohort = tuple(int(k) for k in trained_ids(epochs))
        degree = (s["neighbours"] or graph.default_degree(len(cohort))) if s["plus"] else None
        plan = RoundPlan(rnd, cohort, graph.neighbours(np.array(cohort), self.seed, rnd, degree), s["threshold"],
                         FixedPoint(s["bits"], s["clip_range"], len(cohort)), self.length)
        ids = trained_ids(epochs)
        hosted = [ids[(ids >= block.start) & (ids < block.stop)].tolist() for block in self.blocks]
        return RoundLayout(plan, hosted, dropouts(self.seed, rnd, cohort, s["dropout"]), self.summed)

    def client_send(self, rnd: int, epochs: np.ndarray, rows: np.ndarray, timer, poll: bool) -> None:
        from mpifl.secagg.transport import client_round

        if trained_ids(epochs).size >= MIN_COHORT:
            parts = client_round(self.comm, self.layout(rnd, epochs), self.vectors, timer, poll)
            self.parts = {"agree": parts.agree, "share": parts.share, "mask": parts.mask, "unmask": parts.unmask}
        self.vectors = {}

    def server_receive(self, rnd: int, epochs: np.ndarray, timer, poll: bool) -> None:
        from mpifl.secagg.transport import server_round

        self.total = self.server_seconds = None
        if trained_ids(epochs).size >= MIN_COHORT:
            self.total, self.server_seconds = server_round(self.comm, self.layout(rnd, epochs), timer, poll)

    def after_exchange(self, rank_stats) -> None:
        parts = {name: float(rank_stats[f"secagg_{name}"].max()) for name in ("agree", "share", "mask", "unmask")}
        if self.server_seconds is not None:
            parts["server_unmask"] = self.server_seconds.unmask
            parts["server_route"] = self.server_seconds.share
        self.pending_seconds = parts

    def outcome(self, rnd: int, epochs: np.ndarray, stats):
        """What the server has of a secure round: the survivors and their sums, no client's own update."""
        if trained_ids(epochs).size and self.total is None:  # too few survivors to unmask: no update, nothing revealed
            return Outcome(None, 0.0, {"secagg_aborted": 1.0}, stop=self.settings["abort"] == "stop")
        layout = self.layout(rnd, epochs)
        survivors = np.array(layout.survivors, dtype=np.int64)  # no client: zeros, and noise all the same
        return self.summed_outcome(rnd, survivors, self.total, {"secagg_dropped": float(len(layout.dropped))})

    def round_metrics(self, rnd: int, training: bool, logged: bool) -> dict[str, Any]:
        if training:
            self.seconds = self.pending_seconds
        return {}

    def record_fields(self) -> dict[str, Any]:
        return {"seconds": self.seconds} if self.seconds is not None else {}

    def halt_error(self, rnd: int) -> Exception:
        return SecAggAborted(rnd)
