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
from mpifl.protocol import CLIENT_STATS
from mpifl.protocol import cohort as trained_ids

STAT_NAMES = tuple(f.name for f in CLIENT_STATS)  # the clients' figures that join the masked sum

MIN_COHORT = 2  # a smaller cohort (a Poisson draw of one) is a round without an update: nothing is revealed


class SecAggStage(SummingStage):
    name = "secagg"
    section = "secagg"
    exchange = "secagg"  # summary.json's name for the exchange it brings
    rank_stat_names = ("secagg_agree", "secagg_share", "secagg_mask", "secagg_unmask", "secagg_caught")
    mode_reason = "secure aggregation hides federated clients' updates"
    hides_client_stats = True  # the clients' figures join the masked sum (carries_stats), never a row in the clear
    carries_stats = True

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
        if cfg.secagg.server_lies != "none" and not cfg.secagg.malicious:
            raise ConfigError(f"The 'secagg.server_lies' parameter in {origin('secagg.server_lies')} simulates a "
                              "lying server, which only the active-adversary protocol defends against. Set "
                              "secagg.malicious = true (the semi-honest protocol's exposure is on the threat-model "
                              "page).")
        if cfg.evaluate.per_client:
            raise ConfigError(f"The 'evaluate.per_client' parameter in {origin('evaluate.per_client')} writes each "
                              "client's figures, but under secure aggregation they reach the server only as a masked "
                              "sum. Set evaluate.per_client = false.")

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
                                                               "clip_range", "dropout", "abort", "malicious",
                                                               "server_lies")}
        self.identities: dict = {}  # a client rank's: each hosted client's long-term signing key, made when first used
        self.earlier: dict[int, bytes] = {}  # the server's: the last round's adverts (a replaying liar reuses them)
        self.vectors: dict[int, np.ndarray] = {}
        self.active: np.ndarray | None = None  # the round's clients that train or evaluate: the secure round's
        self.figures: dict[int, np.ndarray] = {}  # a client rank's: each active client's statistics
        self.summed_figures: dict[str, float] | None = None  # the server's: their sum over the survivors
        self.masked_length = self.length + len(STAT_NAMES)
        self.parts: dict[str, float] = {}  # a client rank's seconds of the round's parts
        self.seconds = None  # the server's: the parts' seconds of the round that produced theta
        self.total = self.server_seconds = None
        self.round_layout: tuple | None = None  # the server's: (round, its layout) of the round just received

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

    def identities_of(self, clients: list[int]) -> dict | None:
        """Each client's long-term signing key (the signed protocol), made the first time the client joins."""
        if not self.settings["malicious"]:
            return None
        from mpifl.secagg import crypto

        for u in clients:
            if u not in self.identities:
                self.identities[u] = crypto.new_signing_key()
        return self.identities

    def rank_stats(self) -> dict[str, float]:
        parts, self.parts = self.parts, {}
        return {f"secagg_{name}": parts.get(name, 0.0) for name in ("agree", "share", "mask", "unmask", "caught")}

    # -- the exchange ----------------------------------------------------------------------------------------

    def take_active(self, active: np.ndarray, mine: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        """The round's active clients (every rank); on a client rank, its active clients' statistics rows (the
        built-in figures lead each row): every active client joins the masked sum, and one that only evaluates
        adds zeros for its update."""
        self.active = np.asarray(active, dtype=np.int64)
        if mine is not None:
            self.figures = {int(u): rows[i, : len(STAT_NAMES)].copy() for i, u in enumerate(mine.tolist())}

    def masked_vector(self, u: int) -> np.ndarray:
        out = np.zeros(self.masked_length)
        if u in self.vectors:
            out[: self.length] = self.vectors[u]
        out[self.length:] = self.figures.get(u, 0.0)
        return out

    def members(self, epochs: np.ndarray) -> np.ndarray:
        """Who joins the round's secure sum: the active clients (the cohort and those evaluating)."""
        return self.active if self.active is not None else trained_ids(epochs)

    def layout(self, rnd: int, epochs: np.ndarray):
        """Round ``rnd``'s plan, the same on every rank: the cohort (the clients that train), its neighbour graph,
        the fixed-point encoding, who hosts whom, and the simulated dropouts."""
        from mpifl.secagg import graph
        from mpifl.secagg.encoding import FixedPoint
        from mpifl.secagg.protocol import RoundPlan
        from mpifl.secagg.transport import RoundLayout, dropouts

        s = self.settings
        ids = self.members(epochs)
        cohort = tuple(int(k) for k in ids)
        degree = (s["neighbours"] or graph.default_degree(len(cohort))) if s["plus"] else None
        plan = RoundPlan(rnd, cohort, graph.neighbours(np.array(cohort), self.seed, rnd, degree), s["threshold"],
                         FixedPoint(s["bits"], s["clip_range"], len(cohort)), self.masked_length)
        hosted = [ids[(ids >= block.start) & (ids < block.stop)].tolist() for block in self.blocks]
        return RoundLayout(plan, hosted, dropouts(self.seed, rnd, cohort, s["dropout"]), self.summed,
                           s["malicious"], s["server_lies"])

    def client_send(self, rnd: int, epochs: np.ndarray, rows: np.ndarray, timer, poll: bool) -> None:
        from mpifl.secagg.transport import client_round

        if trained_ids(epochs).size < MIN_COHORT:  # one update's sum is that update: it stays here
            self.vectors = {}
        if self.members(epochs).size >= MIN_COHORT:
            layout = self.layout(rnd, epochs)
            mine = layout.hosted[self.comm.Get_rank() - 1]
            vectors = {u: self.masked_vector(u) for u in mine}
            parts = client_round(self.comm, layout, vectors, timer, poll, self.identities_of(mine))
            self.parts = {"agree": parts.agree, "share": parts.share, "mask": parts.mask, "unmask": parts.unmask,
                          "caught": float(len(parts.caught))}
            if parts.caught:
                say_caught(self.comm.Get_rank(), parts.caught)
        self.vectors, self.figures = {}, {}

    def server_receive(self, rnd: int, epochs: np.ndarray, timer, poll: bool) -> None:
        from mpifl.secagg.transport import server_round

        self.total = self.server_seconds = self.summed_figures = None
        if self.members(epochs).size >= MIN_COHORT:
            layout = self.layout(rnd, epochs)
            self.round_layout = (rnd, layout)  # outcome() reads the survivors from it: the graph is built once
            earlier = self.earlier if layout.signed and layout.lie != "none" else None
            total, self.server_seconds = server_round(self.comm, layout, timer, poll, earlier)
            if total is not None:
                self.total = total[: self.length] if trained_ids(epochs).size >= MIN_COHORT else None
                self.summed_figures = dict(zip(STAT_NAMES, total[self.length:].tolist()))

    def figures_sum(self) -> dict[str, float] | None:
        """The server's: the sum of the active survivors' statistics (None when no secure sum completed)."""
        return self.summed_figures

    def after_exchange(self, rank_stats) -> None:
        parts = {name: float(rank_stats[f"secagg_{name}"].max()) for name in ("agree", "share", "mask", "unmask")}
        if self.server_seconds is not None:
            parts["server_unmask"] = self.server_seconds.unmask
            parts["server_route"] = self.server_seconds.share
        self.pending_seconds = parts

    def outcome(self, rnd: int, epochs: np.ndarray, stats):
        """What the server has of a secure round: the survivors and their sums, no client's own update."""
        if trained_ids(epochs).size and self.total is None:  # too few survivors to unmask: no update, nothing revealed
            refused = self.server_seconds.refused if self.server_seconds is not None else 0
            after = {"secagg_aborted": 1.0, **({"secagg_caught": float(refused)} if refused else {})}
            return Outcome(None, 0.0, after, stop=self.settings["abort"] == "stop")
        made = self.round_layout
        layout = made[1] if made is not None and made[0] == rnd else self.layout(rnd, epochs)
        survivors = np.intersect1d(np.array(layout.survivors, dtype=np.int64), trained_ids(epochs))  # who trained
        return self.summed_outcome(rnd, survivors, self.total, {"secagg_dropped": float(len(layout.dropped))})

    def round_metrics(self, rnd: int, training: bool, logged: bool) -> dict[str, Any]:
        if training:
            self.seconds = self.pending_seconds
        return {}

    def record_fields(self) -> dict[str, Any]:
        return {"seconds": self.seconds} if self.seconds is not None else {}

    def halt_error(self, rnd: int) -> Exception:
        return SecAggAborted(rnd)


def say_caught(rank: int, caught: list[str]) -> None:
    """A client rank's line when its clients caught the server: the first reason, and how many refused."""
    import sys

    first = next((why for why in caught if "caught the server" in why), caught[0])  # a lie over its consequences
    more = f" ({len(caught)} of this rank's clients refused this round)" if len(caught) > 1 else ""
    print(f"mpifl: rank {rank}: {first}; it reveals no share this round{more}.", file=sys.stderr, flush=True)
