"""A stage: one two-sided step of what happens to a client's update between local training and the server step.

The chain runs in one documented order (mpifl.stages.CHAIN):

- on the client, after training: attack (simulation) -> clip and DP noise
  share -> compress with error feedback -> secure mask;
- on the server, after the exchange: unmask -> decode -> (simulated
  omniscient attacks) -> aggregate -> central noise, accounting and the
  adaptive clip -> the strategy's server step.

A stage declares what the transport and the validation need: its wire
fields (as strategies do), its state (``client_state``, ``server_state``),
when a job turns it on (``enabled``), its own checks (``check``), and what
it needs and breaks (``declares``), as short reasons that the refused
combinations quote.  The round loop calls the hooks below and knows nothing
of what a stage does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mpifl.protocol import Field


@dataclass
class Outgoing:
    """One trained client's update on its way out, on the client's rank."""

    client: int  # the client's id
    slot: int  # its index among this rank's clients (per-client state rows)
    round: int
    delta: np.ndarray  # theta_k - theta in the model's dtype, changed in place by the stages
    downlink: Mapping[str, np.ndarray]  # this round's downlink views
    row: Mapping[str, np.ndarray]  # its payload row's views (delta, or a stage's message, and model-sized fields)
    stats: Mapping[str, np.ndarray]  # its statistics' views (weight, float64 uplink fields)
    rows: int  # training rows: its sample weight


@dataclass(frozen=True)
class OutgoingStack:
    """A cohort's trained updates at once (mpifl.cohort), for chains whose every stage takes them so."""

    clients: np.ndarray  # (m,) the clients' ids, ascending
    round: int
    deltas: np.ndarray  # (m, size) theta_k - theta in the model's dtype; valid until this round's exchange
    rows: np.ndarray  # (m,) training rows: the sample weights


class Stage:
    """The base of every stage; each hook does nothing unless a stage overrides it."""

    name: ClassVar[str] = ""
    section: ClassVar[str] = ""  # the config section of its keys
    downlink: ClassVar[tuple[Field, ...]] = ()
    uplink: ClassVar[tuple[Field, ...]] = ()
    releases_empty_rounds: ClassVar[bool] = False  # the server aggregates even a round in which no client trained
    takes_delta: ClassVar[bool] = False  # the delta does not travel in the payload row (a message or a mask does)
    weighs_clients_equally: ClassVar[bool] = False  # every client weighs 1 in the release (DP-FedAvg)
    brings_exchange: ClassVar[bool] = False  # replaces the Gatherv of rows with its own exchange (exchange())
    # no client's statistics (loss, accuracy, rows) may travel in the clear beside what this stage protects
    hides_client_stats: ClassVar[bool] = False
    carries_stats: ClassVar[bool] = False  # its exchange sums the active clients' statistics too (take_active)
    rank_stat_names: ClassVar[tuple[str, ...]] = ()  # what rank_stats() reports, one value per client rank a round
    summary_key: ClassVar[str] = ""  # its entry in summary.json (None when the stage is off), if it has one
    modes: ClassVar[tuple[str, ...]] = ("federated",)  # the job modes whose round it joins
    # Why its keys are refused in another mode ("secure aggregation hides federated clients' updates"); empty: in
    # another mode it just does not join (the Reduce, compression: distributed mode compresses its own sums).
    mode_reason: ClassVar[str] = ""
    message_bytes: int = 0  # a compressed delta's message size (then the payload carries it instead of delta)

    # -- declarations, read from the validated job before any rank trains --------------------------------------

    @staticmethod
    def enabled(cfg) -> bool:
        """Whether the job turns this stage on."""
        return False

    @classmethod
    def fits(cls, cfg, others: list[type[Stage]], declared: list[Declared]) -> bool:
        """Whether an enabled stage joins beside the ``others`` enabled, whose participants (with the strategy and
        the aggregator) declare ``declared`` (default: it does)."""
        return True

    @classmethod
    def settle(cls, comm, cfg, n_clients: int, dtype: np.dtype, is_root: bool) -> Any:
        """What every rank must agree on before the stage is built (privacy's noise multiplier), computed on
        every rank together; handed to the stage as StageBuild.settled."""
        return None

    @classmethod
    def wanted(cls, cfg, n_clients: int) -> bool:
        """Whether an enabled stage joins the chain once the number of clients is known (default: it does)."""
        return True

    @classmethod
    def check(cls, cfg, origin) -> None:
        """Refuse settings that only this stage knows are wrong (``origin(key)`` says where a key was set)."""

    @classmethod
    def declares(cls, cfg) -> Declared:
        """What this stage needs and breaks, for the refused combinations (mpifl.stages.check)."""
        return Declared(cls.name, cls.section)

    # -- client half ------------------------------------------------------------------------------------------

    def send(self, update: Outgoing) -> None:
        """Act on one trained client's update, in chain order, before it leaves the rank."""

    def takes_stacks(self) -> bool:
        """Whether send_stack can take a cohort's updates at once, as send would take them one by one."""
        return False

    def send_stack(self, stack: OutgoingStack) -> None:
        """send() for each update of a cohort, in one call (where takes_stacks() says so)."""
        raise NotImplementedError(f"The {self.name} stage takes one update at a time.")

    def client_state(self) -> dict[str, np.ndarray]:
        """Per-client state kept on this rank, checkpointed in its rank file."""
        return {}

    def prepare_data(self, data: list, clients: range, n_classes: int) -> list:
        """A client rank's data, changed before training (label flipping, on the attacker's own rank)."""
        return data

    # -- server half ------------------------------------------------------------------------------------------

    def downlink_values(self) -> dict[str, np.ndarray]:
        """This round's values of the declared downlink fields."""
        return {}

    def bind(self, comm, blocks: list[range]) -> None:
        """The communicator and who hosts whom, for a stage that brings its own exchange."""

    def release(self):
        """What replaces the aggregator's combined delta (mpifl.strategies.base.Release), or None."""
        return None

    def receive(self, results, key: tuple[int, int]):
        """Act on the round's results (RoundResults) after the exchange, in chain order; returns them."""
        return results

    def after_exchange(self, rank_stats: Mapping[str, np.ndarray]) -> None:
        """Take what the client ranks reported of this stage's work (rank_stats' columns, one value per rank)."""

    def after_aggregation(self) -> None:
        """The round's update was aggregated (not so in a round no client trained in, or a secure round that
        aborted)."""

    def round_metrics(self, rnd: int, training: bool, logged: bool) -> dict[str, Any]:
        """Metrics to report with the round (the running epsilon, say), after every round."""
        return {}

    def rank_stats(self) -> dict[str, float]:
        """A client rank's seconds of this stage's work in the round (its rank_stat_names), then a fresh count."""
        return {}

    def record_fields(self) -> dict[str, Any]:
        """RoundRecord fields this stage fills (timings of its own work), for the round just recorded."""
        return {}

    def server_state(self) -> dict[str, np.ndarray]:
        """Server-side state, checkpointed with the server's."""
        return {}

    def banner(self) -> list[str]:
        """Lines for the run's banner (the noise a target epsilon needs)."""
        return []

    def summary(self, records: list) -> dict[str, Any]:
        """Its part of summary.json, under its summary_key (the attack's malicious clients, privacy's epsilon)."""
        return {}


def restore(state: dict[str, np.ndarray], saved: Mapping[str, np.ndarray]) -> None:
    """Copy saved arrays into a stage's state arrays in place, by name."""
    for name, value in state.items():
        if name in saved:
            value[...] = saved[name]


@dataclass(frozen=True)
class Declared:
    """What one participant of a round (a stage, the strategy, the aggregator) needs and breaks.

    ``needs`` and ``breaks`` map a requirement to the reason, quoted in the
    message when one participant breaks what another needs.  The
    requirements: ``rows`` (each client's own update at the server),
    ``sum_step`` (the server step is the mean of the updates, which a
    release can replace), ``bounded_norms`` (no update grows after clipping),
    ``cohorts`` (each round is one sampled cohort, which an asynchronous server has not),
    ``whole_update`` (each client's whole update travels: every stage needs it; FedRep and FedPer send the body).
    """

    subject: str  # how messages name it: "server.aggregator 'krum'"
    key: str  # the config key that chose it
    needs: Mapping[str, str] = field(default_factory=dict)
    breaks: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageBuild:
    """What a stage is built from, on every rank."""

    cfg: Any  # the validated job (mpifl.config.Config)
    spec: Any  # the model (mpifl.model.ModelSpec)
    n_clients: int
    strategy: type  # the Strategy class
    hosted: int  # clients on this rank (0 on the server)
    settled: Any = None  # what the stage's settle() returned, the same on every rank
    unit_weights: bool = False  # a stage of the chain weighs every client 1 (DP-FedAvg)
