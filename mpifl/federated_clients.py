"""Federated mode, a client rank's side of every round (the protocol is in mpifl.federated's docstring).

For each client it hosts: evaluate the global model on recorded rounds,
train when the downlink plans it, let the client's half of the strategy
report, and send the update through the stage chain; then the exchange.
Each client's momentum and algorithm state stay on this rank.
"""

from __future__ import annotations

import time

import numpy as np

from mpifl import comm as collectives
from mpifl import hierarchy
from mpifl.data.shards import ClientData
from mpifl.data.validation import held_out_clients
from mpifl.federated import EARLY_STOP, SERVER, exchange_of, halt, make_wire
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.loop import Loop
from mpifl.metrics import RoundTimer
from mpifl.progress import is_logged
from mpifl.stages import Chain, Outgoing
from mpifl.strategies import Strategy, strategy_params
from mpifl.strategies.base import LocalRun
from mpifl.strategies.sampling import evaluation_sample


class ClientRounds:
    """A client rank's side of every round: for each of its clients, evaluate the global model, train when
    planned, and send the update through the chain."""

    def __init__(self, loop: Loop, data: list[ClientData], clients: range, blocks: list[range],
                 strategy: type[Strategy], chain: Chain):
        self.loop, self.chain, self.cfg, self.clients = loop, chain, loop.cfg, clients
        spec, cfg = loop.kernels.spec, loop.cfg
        self.edge, senders = hierarchy.edges(loop.comm, cfg, blocks)  # HierFAVG's edge (collective), or None
        self.wire = make_wire(strategy, chain, spec, blocks, senders)
        self.exchange = exchange_of(loop, chain, self.wire, blocks)
        self.settings = LocalSettings.from_config(cfg)
        self.trainers = [LocalTrainer(c.train, loop.kernels, self.settings, cfg.seed, k)
                         for c, k in zip(data, clients)]
        self.testers = [None if c.test is None else trainer.judge(c.test) for c, trainer in zip(data, self.trainers)]
        self.validators = [None if c.validation is None else trainer.judge(c.validation)
                           for c, trainer in zip(data, self.trainers)]
        n_clients = blocks[-1].stop
        self.held_out = held_out_clients(cfg.seed, n_clients, cfg.data.folds, cfg.data.fold)  # None without folds
        self.candidates = self.held_out if self.held_out is not None else np.ones(n_clients, dtype=bool)
        self.half = strategy.client(strategy_params(cfg), spec.shape, spec.dtype)
        if self.half.keeps_head:
            self.half.head = slice(spec.size - spec.head_size, spec.size)
        self.states = {name: np.zeros((len(clients), *spec.shape), dtype=spec.dtype) for name in self.half.state}
        self.restore(loop.checkpoints.local)
        # where a delta is made: its payload row, or scratch when a stage sends it in another form (a message, a mask)
        # or only its body travels
        self.update = spec.zeros() if chain.takes_delta or self.wire.shared is not None else None
        self.unused = np.empty(0)  # the receive side of a Gatherv, ignored off the root
        self.downlink = self.wire.downlink_buffer()
        self.down = self.wire.downlink_views(self.downlink)
        self.payload = self.wire.payload_buffer(len(clients))
        self.rows_out = [self.wire.payload.views(row) for row in self.payload]
        self.stats = self.wire.stats_buffer(len(clients))
        self.client_stats, self.own = self.wire.stats_views(self.stats, len(clients))
        self.theta = spec.zeros()
        self.timer = RoundTimer()
        self.gather_stats = collectives.GatherToRoot(loop.comm, self.wire.stats_counts, np.float64, SERVER)
        self.poll = False
        self.previous_comm = 0.0

    def run(self) -> None:
        for it in range(self.loop.checkpoints.start_round + 1, self.cfg.rounds + 2):
            if not self.round(it):
                break

    def local_state(self) -> dict[str, np.ndarray]:
        own = [t.carried for t in self.trainers if t.carried is not None]
        return {"velocity": np.stack([t.velocity for t in self.trainers]),
                **({"carried": np.stack(own)} if own else {}),
                **{f"state.{name}": value for name, value in self.states.items()},
                **self.chain.merged("client_state")}

    def restore(self, local: dict[str, np.ndarray]) -> None:
        """Per-client momentum, algorithm state and the stages' state from this rank's checkpoint file."""
        self.chain.restore("client_state", local)
        if "velocity" in local:
            for trainer, velocity in zip(self.trainers, local["velocity"]):
                trainer.velocity[:] = velocity
        if "carried" in local:  # each client's own model state (a torch module's local buffers)
            for trainer, carried in zip(self.trainers, local["carried"]):
                trainer.carried[:] = carried
        for name, value in self.states.items():
            if f"state.{name}" in local:
                value[...] = local[f"state.{name}"]

    def round(self, it: int) -> bool:
        """One round; False once the server has ended the run early (stop.patience)."""
        timer, own = self.timer, self.own
        timer.reset()
        collectives.bcast(self.loop.comm, self.downlink, timer, root=SERVER, poll=self.poll)
        self.poll = bool(self.down["poll"][0])
        if self.down["stop"][0] == EARLY_STOP:
            return False
        if self.down["stop"][0]:
            halt(self.loop, it, self.theta, int(self.down["stop"][0]), self.exchange, self.local_state())
        started = time.perf_counter()
        self.theta[...] = self.down["theta"]
        epochs = self.down["epochs"]
        self.stats[:] = 0.0
        sent = 0
        logged = is_logged(it - 1, self.cfg)
        judged = evaluation_sample(self.cfg.seed, it - 1, self.candidates, self.cfg.evaluate.fraction) if logged \
            else None
        for j, k in enumerate(self.clients):
            if logged:
                self.evaluate(j, k, judged[k])
            if epochs[k] > 0 and self.edge is None:
                self.train(j, k, it, int(epochs[k]), sent)
                sent += 1
        if self.edge is not None and epochs.any():  # every client trains; the edge's first rank sends its row
            server = self.cfg.server
            sent = hierarchy.train_edges(self.edge, self.trainers, self.clients, self.theta, it, epochs,
                                         server.kappa1, server.kappa2,
                                         lambda anchor: self.half.objective(anchor, self.down, {}), self.rows_out,
                                         self.client_stats)
        own["compute"][0] = time.perf_counter() - started
        own["stop"][0] = self.loop.stop.requested
        own["comm"][0] = self.previous_comm
        self.exchange.client_send(it, epochs, self.payload[:sent], timer, self.poll)
        for name, value in self.chain.merged("rank_stats").items():
            own[name][0] = value
        self.gather_stats(self.stats, self.unused, timer, self.poll)
        self.previous_comm = timer.comm_seconds
        if self.loop.checkpoints.due(it):
            self.loop.save(it, self.theta, self.local_state())
        return True

    def evaluate(self, j: int, k: int, judged: bool) -> None:
        """Client k's sums on the global model: its training rows (unless its fold is held out), its own test rows,
        and, when sampled to evaluate, its validation rows; with its personal model where it keeps one."""
        mine, trainer, tester, validator = self.client_stats[j], self.trainers[j], self.testers[j], self.validators[j]
        if self.held_out is None or not self.held_out[k]:
            mine["loss"][0], mine["correct"][0] = trainer.evaluate(self.theta)
            mine["rows"][0] = trainer.shard.n
        own = None
        if tester is not None or (validator is not None and judged):
            own = self.half.personal_model(self.theta, {name: value[j] for name, value in self.states.items()})
        if validator is not None and judged:
            mine["val_loss"][0], mine["val_correct"][0] = validator.evaluate(self.theta)
            mine["val_rows"][0] = validator.shard.n
            mine["val_personal_correct"][0] = (validator.evaluate(own)[1] if own is not None
                                               else mine["val_correct"][0])
        if tester is not None:
            mine["test_loss"][0], mine["test_correct"][0] = tester.evaluate(self.theta)
            mine["test_rows"][0] = tester.shard.n
            if own is not None:
                mine["personal_correct"][0] = tester.evaluate(own)[1]
            else:
                mine["personal_correct"][0] = (self.fine_tuned(trainer, tester) if self.cfg.train.finetune_epochs
                                               else mine["test_correct"][0])

    def fine_tuned(self, trainer, tester) -> int:
        """FedAvg+FT: the client's test rows predicted right by a copy of theta trained train.finetune_epochs on its
        training rows (its momentum left as it was, its batch orders those of a round no training uses)."""
        kept = trainer.velocity.copy()
        trainer.velocity[...] = 0
        copy = self.theta.copy()
        trainer.train(copy, 0, self.cfg.train.finetune_epochs)
        trainer.velocity[...] = kept
        return tester.evaluate(copy)[1]

    def train(self, j: int, k: int, it: int, epochs: int, slot: int) -> None:
        """Client k's local training from theta, its half's report, then the chain, into payload row ``slot``."""
        theta, trainer, mine, out = self.theta, self.trainers[j], self.client_stats[j], self.rows_out[slot]
        own_state = {name: value[j] for name, value in self.states.items()}
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
        self.half.report(delta, self.down, own_state, run, {**out, **mine})
        if self.chain.stages:
            self.chain.send(Outgoing(k, j, it, delta, self.down, out, mine, trainer.shard.n))
        mine["weight"][0] = trainer.shard.n
