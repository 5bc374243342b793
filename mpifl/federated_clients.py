"""Federated mode, a client rank's side of every round (the protocol is in mpifl.federated's docstring).

For each of its clients that is active this round (in the plan, or sampled
to evaluate): evaluate the global model on recorded rounds, train when the
plan says, let the client's half of the strategy report, and send the
update through the stage chain; then the exchange.  A client's rows are
built when it is first used (mpifl.data.client_pool), and its state between
rounds (momentum, the strategy's rows, a module's own buffers) is a row of
this rank's client store (mpifl.client_state), so a rank's round costs what
its active clients cost, whatever the population it hosts.
"""

from __future__ import annotations

import time
from collections import ChainMap

import numpy as np

from mpifl import client_state
from mpifl import comm as collectives
from mpifl import hierarchy
from mpifl.client_state import CARRIED, STATE, VELOCITY
from mpifl.cohort import CohortTraining, trains_as_cohort
from mpifl.data.client_pool import ClientPool
from mpifl.data.validation import held_out_clients
from mpifl.federated import EARLY_STOP, SERVER, STOP_SIGNAL, exchange_of, halt, make_wire
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.loop import Loop
from mpifl.metrics import RoundTimer
from mpifl.progress import is_logged
from mpifl.protocol import Plan
from mpifl.round_members import members
from mpifl.stages import Chain, Outgoing
from mpifl.stages.base import OutgoingStack
from mpifl.strategies import Strategy, strategy_params
from mpifl.strategies.base import LocalRun



class ClientRounds:
    """A client rank's side of every round: for each of its active clients, evaluate the global model, train when
    planned, and send the update through the chain."""

    def __init__(self, loop: Loop, pool: ClientPool, clients: range, blocks: list[range], validating: bool,
                 strategy: type[Strategy], chain: Chain):
        self.loop, self.chain, self.cfg, self.clients, self.pool = loop, chain, loop.cfg, clients, pool
        self.validating = validating
        spec, cfg = loop.kernels.spec, loop.cfg
        self.edge, senders = hierarchy.edges(loop.comm, cfg, blocks)  # HierFAVG's edge (collective), or None
        self.wire = make_wire(strategy, chain, spec, blocks, senders, fraction=cfg.server.fraction)
        self.exchange = exchange_of(loop, chain, self.wire, blocks)
        self.settings = LocalSettings.from_config(cfg)
        self.n_clients = blocks[-1].stop
        self.held_out = held_out_clients(cfg.seed, self.n_clients, cfg.data.folds, cfg.data.fold)  # None: no folds
        self.half = strategy.client(strategy_params(cfg), spec.shape, spec.dtype)
        if self.half.keeps_head:
            self.half.head = slice(spec.size - spec.head_size, spec.size)
        self.store = client_state.open_for_rank(loop, self.half.state, self.settings, len(clients))
        self.store.load(loop.checkpoints.local)
        self.chain.restore("client_state", loop.checkpoints.local)
        self.grad = spec.zeros()  # gradient scratch, shared by the trainers this rank makes
        # the optimizer's state where it does not carry between rounds (plain SGD, or reset every round)
        self.scratch_velocity = loop.kernels.optimizer_state(self.settings.optimizer)
        self.columns = {name: s.start for name, s in self.wire.client_stats.slices.items()}
        # where a delta is made: its payload row, or scratch when a stage sends it in another form (a message, a mask)
        # or only its body travels
        self.update = spec.zeros() if chain.takes_delta or self.wire.shared is not None else None
        self.unused = np.empty(0)  # the receive side of a Gatherv, ignored off the root
        self.downlink = self.wire.downlink_buffer()
        self.down = self.wire.downlink_views(self.downlink)
        self.payload = self.wire.payload_buffer(0)  # grown to the most clients this rank has trained in a round
        self.rows_out: list[dict[str, np.ndarray]] = []
        self.epochs = np.zeros(self.n_clients, dtype=np.int64)  # the round's plan, one per client
        self.cohort = np.empty(0, dtype=np.int64)
        self.theta = spec.zeros()
        plain = trains_as_cohort(self.half, bool(self.store.fields), loop.kernels, self.settings)
        self.together = CohortTraining(loop.kernels, self.settings, cfg.seed) if plain and self.edge is None else None
        self.timer = RoundTimer()
        self.gather_stats = collectives.GatherToRoot(loop.comm, [0] * loop.comm.Get_size(), np.float64, SERVER)
        self.poll = False
        self.previous_comm = 0.0

    def run(self) -> None:
        try:
            for it in range(self.loop.checkpoints.start_round + 1, self.cfg.rounds + 2):
                if not self.round(it):
                    break
        finally:
            self.store.close_files()

    def local_state(self, rnd: int) -> dict[str, np.ndarray]:
        """What this rank's checkpoint file of round rnd holds: the store's rows (in memory; on disk they stay in
        place, journalled from here on) and the stages' state."""
        self.store.checkpoint(rnd)
        return {**self.store.saved(), **self.chain.merged("client_state")}

    def receive_plan(self) -> np.ndarray:
        """The downlink's plan as one dense array of local epochs per client (only the last cohort's are reset)."""
        overflow = self.wire.overflow_buffer(self.down)
        if overflow is not None:
            collectives.bcast(self.loop.comm, overflow, self.timer, root=SERVER, poll=self.poll)
        ids, epochs = self.wire.cohort_of(self.down, overflow)
        self.epochs[self.cohort] = 0
        self.epochs[ids] = epochs
        self.cohort = ids
        return Plan(self.epochs, ids)

    def round(self, it: int) -> bool:
        """One round; False once the server has ended the run early (stop.patience)."""
        timer, cfg = self.timer, self.cfg
        timer.reset()
        collectives.bcast(self.loop.comm, self.downlink, timer, root=SERVER, poll=self.poll)
        epochs = self.receive_plan()
        self.poll = bool(self.down["poll"][0])
        code = int(self.down["stop"][0])
        if code == EARLY_STOP:
            return False
        if code:
            halt(self.loop, it, self.theta, code, self.exchange, self.local_state(it - 1) if code == STOP_SIGNAL else {})
        started = time.perf_counter()
        self.theta[...] = self.down["theta"]
        scored, judged, active = members(cfg, self.wire, self.exchange, it - 1, self.cohort, self.held_out,
                                         is_logged(it - 1, cfg), self.validating)
        mine = active[np.searchsorted(active, self.clients.start) : np.searchsorted(active, self.clients.stop)]
        stats = self.wire.stats_buffer(mine.size)
        self.stat_rows, own = self.wire.stats_rows(stats, mine.size)
        self.evaluate_sampled(mine, scored, judged)  # theta_(it-1), before any client of this rank trains
        sent = self.train_planned(mine, np.asarray(epochs), it) if self.edge is None else self.edge_round(it)
        own["compute"][0] = time.perf_counter() - started
        own["stop"][0] = self.loop.stop.requested
        own["comm"][0] = self.previous_comm
        if self.wire.sealed_stats and self.exchange.carries_stats:  # the figures join the masked sum
            self.exchange.take_active(active, mine, self.stat_rows)
        self.exchange.client_send(it, epochs, self.payload[:sent], timer, self.poll)
        for name, value in self.chain.merged("rank_stats").items():
            own[name][0] = value
        self.gather_stats.set_counts(self.wire.stats_counts(active))
        self.gather_stats(self.wire.sent_stats(stats, mine.size), self.unused, timer, self.poll)
        self.previous_comm = timer.comm_seconds
        if self.loop.checkpoints.due(it):
            self.loop.save(it, self.theta, self.local_state(it))
        return True

    def train_planned(self, mine: np.ndarray, epochs: np.ndarray, it: int) -> int:
        """This rank's clients in the plan trained, into the payload's first rows: as one cohort where they can be
        (mpifl.cohort), else one by one; returns how many."""
        slots = np.flatnonzero(epochs[mine] > 0)
        self.grow_payload(slots.size)
        if not (self.together is not None and slots.size and self.train_together(mine[slots], slots, epochs, it)):
            for sent, slot in enumerate(slots.tolist()):
                k = int(mine[slot])
                self.train(slot, k, it, int(epochs[k]), sent)
        return slots.size

    def train_together(self, ids: np.ndarray, slots: np.ndarray, epochs: np.ndarray, it: int) -> bool:
        """Clients ``ids`` (statistics rows ``slots``) trained as one cohort, then each update through the chain as
        train() sends it; False (nothing done) where their rows are sparse."""
        deltas = (self.payload[: ids.size, self.wire.payload.slices["delta"]] if self.update is None
                  else self.together.scratch(ids.size, self.theta.size))
        rows = self.together.train(self.pool, ids, epochs[ids], it, self.theta, deltas)
        if rows is None:
            return False
        if self.chain.stages and not self.chain.send_stack(OutgoingStack(ids, it, deltas, rows)):
            for i, (k, slot) in enumerate(zip(ids.tolist(), slots.tolist())):
                stats = self.wire.client_stats.lazy_views(self.stat_rows[slot])
                self.chain.send(Outgoing(k, k - self.clients.start, it, deltas[i].reshape(self.theta.shape),
                                         self.down, self.rows_out[i], stats, int(rows[i])))
        self.stat_rows[slots, self.columns["weight"]] = rows
        return True

    def grow_payload(self, rows: int) -> None:
        """At least ``rows`` payload rows, keeping those filled; rows_out names each row's fields."""
        if rows > self.payload.shape[0]:
            grown = self.wire.payload_buffer(max(rows, 2 * self.payload.shape[0]))
            grown[: self.payload.shape[0]] = self.payload
            self.payload = grown
            self.rows_out = [self.wire.payload.views(row) for row in self.payload]

    def trainer(self, k: int, rows: dict[str, np.ndarray]) -> LocalTrainer:
        """Client k's trainer on its training rows, with its own optimizer and model state from the store."""
        return LocalTrainer(self.pool[k].train, self.loop.kernels, self.settings, self.cfg.seed, k,
                            rows.get(CARRIED), rows.get(VELOCITY, self.scratch_velocity), self.grad)

    def evaluate_sampled(self, mine: np.ndarray, scored: np.ndarray, judged: np.ndarray) -> None:
        """This rank's active clients that were sampled to evaluate (``mine``: their statistics rows, in order)."""
        scoring, judging = np.isin(mine, scored), np.isin(mine, judged)
        for slot, k in enumerate(mine.tolist()):
            if scoring[slot] or judging[slot]:
                self.evaluate(slot, k, bool(scoring[slot]), bool(judging[slot]))

    def edge_round(self, it: int) -> int:
        """Two-level averaging: every hosted client trains (mpifl.hierarchy)."""
        if not self.epochs.any():
            return 0
        rows = [self.store.open(k - self.clients.start) for k in self.clients]
        trainers = [self.trainer(k, r) for k, r in zip(self.clients, rows)]
        self.grow_payload(1)
        server = self.cfg.server
        sent = hierarchy.train_edges(self.edge, trainers, self.clients, self.theta, it, self.epochs, server.kappa1,
                                     server.kappa2, lambda anchor: self.half.objective(anchor, self.down, {}),
                                     self.rows_out, [self.wire.client_stats.views(row) for row in self.stat_rows])
        for k, r in zip(self.clients, rows):
            self.store.close(k - self.clients.start, r)
        return sent

    def evaluate(self, slot: int, k: int, scoring: bool, judging: bool) -> None:
        """Client k's sums on the global model: when sampled to score, its training rows and its own test rows;
        when sampled to evaluate, its validation rows; with its personal model where it keeps one."""
        j = k - self.clients.start
        data, row, at = self.pool[k], self.stat_rows[slot], self.columns
        tuning = bool(self.cfg.train.finetune_epochs)  # fine-tuning may move a module's own statistics
        rows = self.store.open(j) if tuning else self.store.peek(j)  # a read journals nothing
        trainer = self.trainer(k, rows)
        states = {name: rows[STATE + name] for name in self.half.state}
        tester = trainer.judge(data.test) if data.test is not None and scoring else None
        validator = trainer.judge(data.validation) if data.validation is not None and judging else None
        if scoring:
            row[at["loss"]], row[at["correct"]] = trainer.evaluate(self.theta)
            row[at["rows"]] = trainer.shard.n
        own = self.half.personal_model(self.theta, states) if tester is not None or validator is not None else None
        if validator is not None:
            row[at["val_loss"]], row[at["val_correct"]] = validator.evaluate(self.theta)
            row[at["val_rows"]] = validator.shard.n
            row[at["val_personal_correct"]] = (validator.evaluate(own)[1] if own is not None
                                               else row[at["val_correct"]])
        if tester is not None:
            row[at["test_loss"]], row[at["test_correct"]] = tester.evaluate(self.theta)
            row[at["test_rows"]] = tester.shard.n
            if own is not None:
                row[at["personal_correct"]] = tester.evaluate(own)[1]
            else:
                row[at["personal_correct"]] = (self.fine_tuned(trainer, tester) if self.cfg.train.finetune_epochs
                                               else row[at["test_correct"]])
        if tuning:
            self.store.close(j, rows)

    def fine_tuned(self, trainer, tester) -> int:
        """FedAvg+FT: the client's test rows predicted right by a copy of theta trained train.finetune_epochs on its
        training rows (its momentum left as it was, its batch orders those of a round no training uses)."""
        kept = trainer.velocity.copy()
        trainer.velocity[...] = 0
        copy = self.theta.copy()
        trainer.train(copy, 0, self.cfg.train.finetune_epochs)
        trainer.velocity[...] = kept
        return tester.evaluate(copy)[1]

    def train(self, slot: int, k: int, it: int, epochs: int, sent: int) -> None:
        """Client k's local training from theta, its half's report, then the chain, into payload row ``sent``."""
        j = k - self.clients.start
        rows = self.store.open(j)
        theta, trainer, out = self.theta, self.trainer(k, rows), self.rows_out[sent]
        mine = self.wire.client_stats.lazy_views(self.stat_rows[slot])
        own_state = {name: rows[STATE + name] for name in self.half.state}
        delta = out["delta"] if self.update is None else self.update
        start = trainer.evaluate(theta)[0] / trainer.shard.n if self.half.wants_loss else None
        self.half.start(theta, own_state, delta)
        hook = self.half.objective(theta, self.down, own_state)
        steps = sum(trainer.train(delta, it, n, hook, part) for n, part in self.half.phases(epochs))
        self.half.keep(delta, own_state)
        delta -= theta
        if self.wire.shared is not None:  # only the body travels; the head's delta stays here
            out["delta"][...] = delta.reshape(-1)[: self.wire.shared]
        run = LocalRun(steps, self.settings.lr, self.settings.momentum, start)
        own = self.half.personal(theta, own_state)
        if own is not None:  # a personal model (Ditto), trained on the same rows; its own momentum starts at 0
            model, hook = own
            kept = trainer.velocity.copy()
            trainer.velocity[...] = 0
            trainer.train(model, it, epochs, hook)
            trainer.velocity[...] = kept
        self.half.report(delta, self.down, own_state, run, ChainMap(mine, out))
        if self.chain.stages:
            self.chain.send(Outgoing(k, j, it, delta, self.down, out, mine, trainer.shard.n))
        mine["weight"][0] = trainer.shard.n
        self.store.close(j, rows)
