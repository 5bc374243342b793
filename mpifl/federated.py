"""Federated mode: rank 0 is the server; ranks 1..p-1 host the K clients, a contiguous block each.

A round, as seen by every rank (mpifl.protocol lays out every buffer from
the declared fields of the strategy and the stages, so neither writes
transport code):
1. Bcast of the downlink [theta | declared fields | stop | poll | cohort |
   plan] (stop: 0 to go on, STOP_SIGNAL after a signal, STOP_SIGNAL + a
   Diverged code once the server saw a non-finite loss or model, STAGE_HALT
   when an exchange aborted and the job must stop; the plan: the ids and
   local epochs of the clients that train, mpifl.protocol);
2. each client rank evaluates theta on those of its clients sampled to
   evaluate (on recorded rounds, mpifl.strategies.sampling.evaluated), and
   trains its clients in the plan, one after another, from theta under its
   algorithm's local objective; each update then goes through the stage
   chain (mpifl.stages) in its documented order;
3. the exchange (mpifl.exchange: a Gatherv of one payload row per trained
   client, or a stage's own, such as secure aggregation's) and a Gatherv of
   the active clients' statistics and the per-rank timings;
4. the server runs the chain's server half, the strategy aggregates, and
   the server tests the new theta on its test set.

The clients' evaluation of theta_r arrives with round r+1, so the row for
round r is written then, and a final evaluation-only round (no client
trains) closes the run.  The server holds the test split and nothing else.
Every message and every loop of a round grows with the clients it samples,
not with the population.
This module and mpifl.roles are the only places that know which rank plays
which role; nothing here knows what a stage does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mpifl import client_state
from mpifl import comm as collectives
from mpifl import hierarchy
from mpifl import round_records
from mpifl.data.shards import Shard
from mpifl.errors import Diverged
from mpifl.exchange import Exchange, RowExchange
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.loop import Loop
from mpifl.metrics import RoundTimer
from mpifl.model import ModelSpec
from mpifl.progress import is_logged, time_breakdown
from mpifl.protocol import Plan, Wire, cohort
from mpifl.ranks import ROOT
from mpifl.round_members import members, server_figures
from mpifl.stages import Chain
from mpifl.stopping import divergence, watched_loss
from mpifl.strategies import Strategy
from mpifl.strategies.sampling import plan_capacity

SERVER = ROOT  # the server is the root rank (mpifl.ranks)
STOP_SIGNAL = 1  # the downlink's stop code after SIGTERM/SIGUSR1; above it, 1 + a Diverged code
STAGE_HALT = 64  # the downlink's stop code after an exchange that aborted and stops the job (secagg.abort = "stop")
EARLY_STOP = 65  # the downlink's stop code after early stopping (stop.patience): every rank finishes the run
# On a node with more ranks than cores, rounds whose compute took longer than this are waited for by polling with sleeps
# (mpifl.comm.wait_patiently); shorter ones wait in MPI, where a sleep's wake-up latency would dominate.
LONG_ROUND_SECONDS = 2e-3
# server-state key: the last round's (downlink, uplink) bytes, their running totals, and the uplink's running total
# had every delta travelled whole
BYTES = "wire_bytes"
CLOCK = "virtual_clock"  # server-state key: the virtual seconds so far
CLIENT_ROUNDS = "client_rounds"  # server-state key: client updates trained so far


def make_wire(strategy: type[Strategy], chain: Chain, spec: ModelSpec, blocks: list[range],
              senders: np.ndarray | None = None, shape: tuple[int, ...] | None = None,
              fraction: float = 1.0) -> Wire:
    """The round's buffers for this algorithm and chain, the same on every rank; blocks[h] are client rank h+1's;
    ``senders``: the clients that send a row (two-level averaging's edges), None: every one that trains;
    ``shape``: another model's (a traffic model's projection), None: the spec's; ``fraction``: server.fraction,
    which sizes the plan's slots."""
    shared = spec.size - spec.head_size if strategy.client.keeps_head and shape is None else None
    n_clients = blocks[-1].stop
    return Wire((*strategy.downlink, *chain.downlink), (*strategy.uplink, *chain.uplink), shape or spec.shape, spec.dtype,
                blocks, chain.message_bytes, shared, senders, chain.rank_stat_names,
                plan_capacity(fraction, n_clients), sealed_stats=chain.hides_client_stats)


def exchange_of(loop: Loop, chain: Chain, wire: Wire, blocks: list[range]) -> Exchange:
    """The chain's own exchange if a stage brings one, else the Gatherv of payload rows."""
    return chain.exchange(loop.comm, blocks) or RowExchange(loop.comm, wire, loop.kernels.spec.dtype)


class ServerRounds:
    """The server's side of every round: downlink, exchange, the chain's server half, aggregation, records."""

    def __init__(self, loop: Loop, test: Shard, blocks: list[range], validating: bool, strategy: Strategy,
                 chain: Chain):
        self.loop, self.strategy, self.chain, self.cfg = loop, strategy, chain, loop.cfg
        spec, saved = loop.kernels.spec, loop.checkpoints
        _, senders = hierarchy.edges(loop.comm, self.cfg, blocks)  # collective: the client ranks make their edges
        self.wire = make_wire(type(strategy), chain, spec, blocks, senders, fraction=self.cfg.server.fraction)
        self.exchange = exchange_of(loop, chain, self.wire, blocks)
        client_state.server_side(loop.comm)  # while the client ranks open their stores
        self.held_out, self.validating = strategy.setup.held_out, validating
        self.tester = LocalTrainer(test, loop.kernels, LocalSettings.from_config(self.cfg), self.cfg.seed, SERVER)
        self.theta = saved.theta.copy() if saved.resumed else loop.initial()
        strategy.load_state(saved.server)
        chain.restore("server_state", saved.server)
        self.pending = round_records.load_pending(saved.server)
        loop.best.load_state(saved.server)
        self.client_rounds = int(saved.server.get(CLIENT_ROUNDS, np.zeros(1))[0])
        self.downlink = self.wire.downlink_buffer()
        self.down = self.wire.downlink_views(self.downlink)
        self.timer = RoundTimer()
        self.gather_stats = collectives.GatherToRoot(loop.comm, [0] * loop.comm.Get_size(), np.float64, SERVER)
        self.poll = False  # how every rank waits in this round's collectives; the server decides, the downlink tells
        # timings of the round that produced theta, reported with the next round's record
        self.last_seconds, self.last_compute, self.last_server = 0.0, 0.0, (0.0, 0.0)
        self.last_rank_compute = np.zeros(len(blocks))
        counted = saved.server.get(BYTES, np.zeros(5)).astype(np.int64)  # counted at the collectives
        self.last_bytes, self.totals = (int(counted[0]), int(counted[1])), [int(c) for c in counted[2:5]]
        self.halt = 0
        self.watched = 0.0  # the last recorded round's loss that tells divergence (watched_loss)
        # the virtual clock of the simulated client speeds (mpifl.client_speeds): a synchronous round lasts as long
        # as its slowest client; an asynchronous strategy reports its own event times
        self.clock = float(saved.server.get(CLOCK, np.zeros(1))[0])

    def run(self) -> np.ndarray:
        for it in range(self.loop.checkpoints.start_round + 1, self.cfg.rounds + 2):
            if not self.round(it):
                break
        return self.theta

    def server_state(self) -> dict[str, np.ndarray]:
        return {**self.strategy.state(), **self.chain.merged("server_state"), **self.loop.best.state(),
                **round_records.pending_state(self.pending),
                BYTES: np.array([*self.last_bytes, *self.totals], dtype=np.float64),
                CLOCK: np.array([self.clock]), CLIENT_ROUNDS: np.array([float(self.client_rounds)])}

    def round(self, it: int) -> bool:
        """One round; False once early stopping has ended the run (every client rank was told)."""
        timer, cfg = self.timer, self.cfg
        timer.reset()
        self.halt = 0 if self.halt == STOP_SIGNAL and it > cfg.rounds else self.halt  # the last round ends anyway
        training = it <= cfg.rounds and not self.halt
        epochs = Plan(self.strategy.plan(it)) if training else Plan(np.zeros(self.wire.n_clients, dtype=np.int64))
        self.broadcast(epochs)
        if self.halt == EARLY_STOP:
            return False
        if self.halt:
            halt(self.loop, it, self.theta, self.halt, self.exchange, {}, self.server_state())
        logged = is_logged(it - 1, cfg)
        scored, _, active = members(cfg, self.wire, self.exchange, it - 1, cohort(epochs), self.held_out, logged,
                                    self.validating)
        if self.wire.sealed_stats and self.exchange.carries_stats:
            self.exchange.take_active(active)
        self.exchange.server_receive(it, epochs, timer, self.poll)
        self.gather_stats.set_counts(self.wire.stats_counts(active))
        gathered = np.empty(self.gather_stats.total)
        self.gather_stats(np.empty(0), gathered, timer, self.poll)
        stats, rank_stats = self.wire.split_stats(gathered, active)
        figures = server_figures(self.wire, self.exchange, stats, epochs)
        self.chain.each("after_exchange", rank_stats)
        with timer.compute():
            record = self.record(it - 1, stats, rank_stats, figures, scored.size) if logged else None
            # the record judges theta_(it-1): when it ends the run, this round's updates are not applied
            early = record is not None and self.loop.best.judge(record, self.theta, can_stop=training)
            stop = self.aggregate(it, epochs, stats, training) if not early else False
        if record is not None:
            self.loop.report(record)
        self.account(epochs if not early else np.zeros_like(epochs), rank_stats)
        if self.loop.checkpoints.due(it):
            self.loop.save(it, self.theta, {}, self.server_state())  # not committed if diverged
        if record is not None:
            self.watched = watched_loss(record, self.wire.sealed_stats and not (figures or {}).get("rows"))
        diverged = divergence(self.theta, self.watched if record is not None else 0.0)
        signalled = self.loop.stop.requested or bool(rank_stats["stop"].max() > 0)
        self.halt = STOP_SIGNAL + diverged if diverged else int(signalled)
        if training and stop and not diverged:
            self.halt = STAGE_HALT
        if early and not diverged:
            self.halt = EARLY_STOP
        return True

    def broadcast(self, epochs: np.ndarray) -> None:
        down = self.down
        down["theta"][...] = self.theta
        for name, value in {**self.strategy.downlink_values(), **self.chain.merged("downlink_values")}.items():
            down[name][...] = value
        overflow = self.wire.put_plan(down, epochs)
        down["stop"][0] = self.halt
        down["poll"][0] = self.loop.patient and self.last_compute > LONG_ROUND_SECONDS  # compute: no wait feedback
        collectives.bcast(self.loop.comm, self.downlink, self.timer, root=SERVER, poll=self.poll)
        if overflow is not None:  # a cohort beyond the plan's slots: the rest, which every rank expects
            collectives.bcast(self.loop.comm, overflow, self.timer, root=SERVER, poll=self.poll)
        self.poll = bool(down["poll"][0])

    def aggregate(self, it: int, epochs: np.ndarray, stats, training: bool) -> bool:
        """The chain's server half and the strategy's step; whether the exchange says the job must stop."""
        outcome = self.exchange.outcome(it, epochs, stats)
        if outcome.results is None:  # the exchange produced no update this round, and revealed nothing
            self.pending = {"participants": outcome.participants, **outcome.after}
        elif cohort(epochs).size or ((self.chain.releases_empty_rounds or self.strategy.steps_without_clients) and training):
            results = self.chain.receive(outcome.results, (self.cfg.seed, it))
            self.theta, metrics = self.strategy.aggregate(it, self.theta, results)
            self.pending = {"participants": outcome.participants, **metrics, **outcome.after}
            self.chain.each("after_aggregation")
        self.pending.update(self.chain.round_metrics(it, training, is_logged(it, self.cfg)))
        profiles = self.strategy.setup.profiles
        if training and profiles is not None and not self.strategy.asynchronous:
            self.clock += profiles.round_time(epochs)
            self.pending["virtual_time"] = self.clock
        return outcome.stop

    def record(self, rnd: int, stats, rank_stats, figures=None, scored: int = 0):
        record, detail = round_records.record(rnd, self.theta, stats, self.tester, self.cfg.model.l2, self.last_seconds,
                                              self.last_compute, self.pending,
                                              (figures, scored) if self.wire.sealed_stats else None)
        if self.cfg.evaluate.per_client and self.loop.details is not None:
            self.loop.details(rnd, detail)
        record = replace(record, downlink_bytes=self.last_bytes[0], uplink_bytes=self.last_bytes[1],
                         downlink_bytes_total=self.totals[0], uplink_bytes_total=self.totals[1],
                         uplink_bytes_uncompressed_total=self.totals[2] if self.chain.message_bytes else None,
                         client_rounds=self.client_rounds,
                         stages=round_records.merge_stages(record.stages, self.chain.record_fields()))
        if rnd > 0:
            spread, slowest = time_breakdown(np.concatenate(([self.last_server[0]], self.last_rank_compute)),
                                             np.concatenate(([self.last_server[1]], rank_stats["comm"])))
            record = replace(record, breakdown=spread, slowest_rank=slowest)
        return record

    def account(self, epochs: np.ndarray, rank_stats) -> None:
        """This round's timings and bytes, reported with the next record."""
        timer = self.timer
        self.last_seconds = timer.elapsed()
        self.last_compute = float(rank_stats["compute"].max()) + timer.compute_seconds
        self.last_rank_compute = rank_stats["compute"].copy()
        self.last_server = (timer.compute_seconds, timer.comm_seconds)
        self.last_bytes = (timer.downlink_bytes, timer.uplink_bytes)
        trained = int(cohort(epochs).size)
        self.client_rounds += trained
        self.totals = [self.totals[0] + self.last_bytes[0], self.totals[1] + self.last_bytes[1],
                       self.totals[2] + self.last_bytes[1] + self.wire.saved_bytes(trained)]


def halt(loop: Loop, it: int, theta: np.ndarray, code: int, exchange, local: dict, server: dict | None = None) -> None:
    """Act on the downlink's stop code, on every rank alike: report divergence, or checkpoint and stop."""
    if code == STAGE_HALT:
        raise exchange.halt_error(it - 1)
    if code > STOP_SIGNAL:
        raise Diverged(it - 1, code - STOP_SIGNAL, loop.cfg.train.lr)
    loop.stop_after(it - 1, theta, local, server)
