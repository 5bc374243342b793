"""Distributed mode: every rank is a worker on its own shard, synchronised by Allreduce.

Two algorithms:
- gradient_averaging: each step Allreduces the sample-weighted gradients and
  every rank applies the same update (SGD, or GD at batch_size 0, over the
  union of the shards);
- local_sgd: each rank runs train.epochs local epochs, then the sample-weighted
  parameters are Allreduced (periodic model averaging).

With [compress], what is summed travels compressed (mpifl.compressed_sum):
gradient averaging's gradient sums, and local SGD's sample-weighted model
change since the round began (a model's parameters are not small, its change is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.compressed_sum import CompressedSum
from mpifl.compression import codec_from_config
from mpifl.config import Config
from mpifl.data.shards import Shard
from mpifl.errors import Diverged
from mpifl.lbfgs import Lbfgs
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.loop import Loop
from mpifl.metrics import RoundTimer
from mpifl.stopping import divergence
from mpifl.progress import RoundRecord, is_logged, time_breakdown
from mpifl.stages.compress import CompressStage

BYTES = "wire_bytes"  # local state: this rank's byte totals (see train_distributed)


@dataclass(frozen=True)
class ShardSizes:
    """Every worker's shard size, known to all ranks after one Allgather."""

    sizes: np.ndarray

    @property
    def total(self) -> int:
        return int(self.sizes.sum())

    def step_count(self, step: int, batch: int) -> int:
        """Rows that all workers together contribute to mini-batch ``step``."""
        return int(np.clip(self.sizes - step * batch, 0, batch).sum())

    def steps_per_epoch(self, batch: int) -> int:
        return math.ceil(int(self.sizes.max()) / batch)


def exchange_sizes(comm: MPI.Comm, n_local: int) -> ShardSizes:
    sizes = np.empty(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([n_local], dtype=np.int64), sizes)
    return ShardSizes(sizes)


class GradientAveraging:
    """Synchronous data-parallel SGD: one gradient Allreduce (or compressed sum) per step."""

    def __init__(self, comm: MPI.Comm, trainer: LocalTrainer, layout: ShardSizes, timer: RoundTimer,
                 compressed: CompressedSum | None = None):
        self.comm = comm
        self.trainer = trainer
        self.layout = layout
        self.timer = timer
        self.compressed = compressed
        spec = trainer.kernels.spec
        self._local = spec.zeros()
        self._global = spec.zeros()
        self._summed = np.zeros(spec.size) if compressed else None

    def run_round(self, theta: np.ndarray, rnd: int) -> None:
        t = self.trainer
        s = t.settings
        batch = s.batch_size or int(self.layout.sizes.max())
        steps_taken = 0  # this round's steps so far: with the round, the key of a compressed step's randomness
        for order in t.orders(rnd, s.epochs):
            for step in range(self.layout.steps_per_epoch(batch)):
                with self.timer.compute():
                    if s.batch_size == 0:
                        t.kernels.full_gradient_sum(t.shard.X, t.shard.y, theta, self._local)
                    else:
                        lo = min(step * batch, t.shard.n)
                        hi = min(lo + batch, t.shard.n)
                        t.kernels.batch_gradient_sum(t.shard.X, t.shard.y, theta, order, lo, hi, self._local)
                if self.compressed is None:
                    collectives.allreduce_sum(self.comm, self._local, self._global, self.timer)
                else:
                    self.compressed(self._local.reshape(-1), self._summed, rnd, steps_taken)
                    self._global[...] = self._summed.reshape(self._global.shape)
                    steps_taken += 1
                with self.timer.compute():
                    count = self.layout.total if s.batch_size == 0 else self.layout.step_count(step, batch)
                    t.kernels.finish_gradient(self._global, theta, count, s.l2)
                    if s.momentum:
                        np.multiply(t.velocity, s.momentum, out=t.velocity)
                        t.velocity += self._global
                        theta -= s.lr * t.velocity
                    else:
                        theta -= s.lr * self._global


class ModelAveraging:
    """Local SGD: train.epochs local epochs, then one Allreduce of n_r * theta_r (compressed: of n_r times
    the change of theta_r this round)."""

    def __init__(self, comm: MPI.Comm, trainer: LocalTrainer, layout: ShardSizes, timer: RoundTimer,
                 compressed: CompressedSum | None = None):
        self.comm = comm
        self.trainer = trainer
        self.layout = layout
        self.timer = timer
        self.compressed = compressed
        self._weighted = trainer.kernels.spec.zeros()
        self._summed = np.zeros(trainer.kernels.spec.size) if compressed else None

    def run_round(self, theta: np.ndarray, rnd: int) -> None:
        if self.compressed is not None:
            self._run_compressed(theta, rnd)
            return
        with self.timer.compute():
            self.trainer.train(theta, rnd)
            np.multiply(theta, self.trainer.shard.n, out=self._weighted)
        collectives.allreduce_sum(self.comm, self._weighted, theta, self.timer)
        with self.timer.compute():
            theta /= self.layout.total

    def _run_compressed(self, theta: np.ndarray, rnd: int) -> None:
        start = theta.astype(np.float64).reshape(-1)
        with self.timer.compute():
            self.trainer.train(theta, rnd)
            change = (theta.reshape(-1) - start) * self.trainer.shard.n
        self.compressed(change, self._summed, rnd, 0)
        with self.timer.compute():
            theta[...] = (start + self._summed / self.layout.total).reshape(theta.shape)


class DistributedLbfgs:
    """Full-batch L-BFGS: each evaluation is one Allreduce of [summed gradient | summed loss].

    Every rank holds the same float64 iterate and L-BFGS state and takes the
    same steps, so nothing but the gradient travels.  A round is one L-BFGS
    iteration (one or more evaluations, as the line search needs).
    """

    def __init__(self, comm: MPI.Comm, trainer: LocalTrainer, layout: ShardSizes, timer: RoundTimer,
                 history: int, tol: float):
        self.comm = comm
        self.trainer = trainer
        self.layout = layout
        self.timer = timer
        spec = trainer.kernels.spec
        self.optimizer = Lbfgs(spec.size, history, tol)
        self.x: np.ndarray | None = None  # the float64 iterate
        self._theta = spec.zeros()
        self._grad = spec.zeros()
        self._send = np.empty(spec.size + 1)
        self._recv = np.empty(spec.size + 1)
        self._penalised = spec.penalised().ravel()  # the weights; model.l2 never touches a bias

    @property
    def converged(self) -> bool:
        return self.optimizer.converged

    def objective(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        t = self.trainer
        shape = self._theta.shape
        with self.timer.compute():
            self._theta[:] = x.reshape(shape)
            loss = t.kernels.full_gradient_sum(t.shard.X, t.shard.y, self._theta, self._grad, want_loss=True)
            self._send[:-1] = self._grad.ravel()
            self._send[-1] = loss
        collectives.allreduce_sum(self.comm, self._send, self._recv, self.timer)
        with self.timer.compute():
            n, l2 = self.layout.total, t.settings.l2
            grad = self._recv[:-1] / n
            weights = x[self._penalised]
            grad[self._penalised] += l2 * weights
            return float(self._recv[-1] / n + 0.5 * l2 * np.sum(weights * weights)), grad

    def run_round(self, theta: np.ndarray, rnd: int) -> None:
        if self.x is None:
            self.x = theta.astype(np.float64).ravel()
        self.optimizer.step(self.x, self.objective)
        theta[:] = self.x.reshape(theta.shape)

    def state(self) -> dict[str, np.ndarray]:
        x = self.x if self.x is not None else np.full(self._theta.size, np.nan)
        return {**self.optimizer.state(), "lbfgs.x": x}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if "lbfgs.x" in state and not np.isnan(state["lbfgs.x"]).any():
            self.optimizer.load_state(state)
            self.x = state["lbfgs.x"].copy()


ALGORITHMS = {"gradient_averaging": GradientAveraging, "local_sgd": ModelAveraging}


def make_algorithm(cfg: Config, comm: MPI.Comm, trainer: LocalTrainer, layout: ShardSizes, timer: RoundTimer):
    if cfg.train.optimizer == "lbfgs":
        return DistributedLbfgs(comm, trainer, layout, timer, cfg.train.history, cfg.train.tol)
    spec = trainer.kernels.spec
    codec = codec_from_config(cfg, spec.size, spec.dtype)
    compressed = None
    if codec is not None:
        compressed = CompressedSum(comm, codec, cfg.compress.error_feedback, cfg.seed, timer)
    return ALGORITHMS[cfg.train.algorithm](comm, trainer, layout, timer, compressed)


def train_distributed(loop: Loop, train: Shard, test: Shard, validation: Shard | None = None) -> np.ndarray:
    """Train on this rank's shard in step with every other rank; returns the final theta.

    ``loop.checkpoints`` gives the round to start from and saves the state
    every checkpoint.every rounds; ``validation``, this worker's validation
    rows, is evaluated on every recorded round and judges the best round
    and early stopping (mpifl.selection), on every rank alike.
    """
    comm, cfg, kernels, checkpoints = loop.comm, loop.cfg, loop.kernels, loop.checkpoints
    settings = LocalSettings.from_config(cfg)
    trainer = LocalTrainer(train, kernels, settings, cfg.seed, comm.Get_rank())
    train_layout = exchange_sizes(comm, train.n)
    judges = Judges.of(comm, trainer, test, validation)
    timer = RoundTimer()
    algorithm = make_algorithm(cfg, comm, trainer, train_layout, timer)
    theta = checkpoints.theta.copy() if checkpoints.resumed else loop.initial()
    compressed = getattr(algorithm, "compressed", None)
    _restore(loop, trainer, algorithm, compressed)
    # this rank's (downlink, uplink, uplink had nothing been compressed) byte totals over the rounds so far
    totals = checkpoints.local.get(BYTES, np.zeros(3)).astype(np.int64)

    def local_state() -> dict[str, np.ndarray]:
        extra = algorithm.state() if hasattr(algorithm, "state") else {}
        if compressed is not None:
            extra.update(compressed.state())
        own = {} if trainer.carried is None else {"carried": trainer.carried}
        return {"velocity": trainer.velocity, **own, **extra, **loop.best.state(), BYTES: totals.astype(np.float64)}

    first = checkpoints.start_round + 1 if checkpoints.resumed else 0
    flag, anyone = np.zeros(3), np.zeros(3)  # [stop requested, divergence code, early stop]
    for rnd in range(first, cfg.rounds + 1):
        timer.reset()
        if compressed is not None:
            compressed.reset_timing()
        if rnd > 0:
            algorithm.run_round(theta, rnd)
        totals += (timer.downlink_bytes, timer.uplink_bytes, timer.uplink_bytes + timer.uplink_bytes_saved)
        converged = getattr(algorithm, "converged", False)  # the same on every rank
        loss, early = 0.0, False  # only logged rounds compute the loss
        if is_logged(rnd, cfg) or converged:
            record = _log_round(comm, rnd, theta, trainer, judges, train_layout, timer, totals, compressed)
            loop.report(record)
            loss = record.loss
            early = loop.best.judge(record, theta, can_stop=rnd < cfg.rounds)
        if checkpoints.due(rnd) or (converged and checkpoints.every):
            loop.save(rnd, theta, local_state())  # a non-finite model is written but never committed
        flag[0] = loop.stop.requested
        flag[1] = divergence(theta, loss)
        flag[2] = early
        collectives.allreduce_max(comm, flag, anyone, timer)  # a signal or a NaN may reach only some ranks
        if anyone[1]:
            raise Diverged(rnd, int(anyone[1]), cfg.train.lr)
        if converged or anyone[2]:
            break
        if anyone[0] and 0 < rnd < cfg.rounds:
            loop.stop_after(rnd, theta, local_state())
    return theta


def _restore(loop: Loop, trainer: LocalTrainer, algorithm, compressed) -> None:
    """A resumed run's state on this rank: momentum, the model's own state, the algorithm's, the best round's."""
    local = loop.checkpoints.local
    if "velocity" in local:
        trainer.velocity[:] = local["velocity"]
    if "carried" in local:
        trainer.carried[:] = local["carried"]
    if hasattr(algorithm, "load_state"):
        algorithm.load_state(local)
    loop.best.load_state(local)
    if compressed is not None:
        compressed.load_state(local)


@dataclass(frozen=True)
class Judges:
    """The rows a round's model is evaluated on besides the training rows: the test rows and the validation rows
    (None: none), each with every worker's count."""

    tester: LocalTrainer
    test_layout: ShardSizes
    validator: LocalTrainer | None
    validation_layout: ShardSizes | None

    @classmethod
    def of(cls, comm: MPI.Comm, trainer: LocalTrainer, test: Shard, validation: Shard | None) -> Judges:
        """Collective: every worker's test and validation row counts."""
        held = validation is not None
        return cls(trainer.judge(test), exchange_sizes(comm, test.n), trainer.judge(validation) if held else None,
                   exchange_sizes(comm, validation.n) if held else None)


def _log_round(comm, rnd, theta, trainer, judges: Judges, train_layout, timer, byte_totals,
               compressed) -> RoundRecord:
    """Evaluate theta on every shard (a collective); returns the round's record."""
    kernels = trainer.kernels
    test_layout = judges.test_layout
    sums = np.zeros(6)
    totals = np.empty(6)
    codec_seconds = (compressed.encode_seconds, compressed.decode_seconds) if compressed else (0.0, 0.0)
    mine = np.array([timer.compute_seconds, timer.comm_seconds, timer.elapsed(), *codec_seconds,
                     timer.downlink_bytes, timer.uplink_bytes, *byte_totals])
    everyone = np.empty((comm.Get_size(), mine.size))
    collectives.allgather(comm, mine, everyone, RoundTimer())
    slowest_codec = everyone[:, 3:5].max(axis=0)
    moved = everyone[:, 5:].sum(axis=0).astype(np.int64)  # summed over ranks
    breakdown, slowest_rank = time_breakdown(everyone[:, 0], everyone[:, 1])
    seconds, compute = float(everyone[:, 2].max()), float(everyone[:, 0].max())
    train_loss, train_correct = trainer.evaluate(theta)
    test_loss, test_correct = judges.tester.evaluate(theta)
    sums[:4] = (train_loss, train_correct, test_loss, test_correct)
    if judges.validator is not None:
        sums[4:] = judges.validator.evaluate(theta)
    collectives.allreduce_sum(comm, sums, totals, RoundTimer())
    penalty = kernels.penalty(theta, trainer.settings.l2)
    loss = totals[0] / train_layout.total + penalty
    n_val = judges.validation_layout.total if judges.validation_layout is not None else 0
    return RoundRecord(
        round=rnd,
        loss=loss,
        train_accuracy=totals[1] / train_layout.total,
        test_loss=totals[2] / test_layout.total if test_layout.total else math.nan,
        accuracy=totals[3] / test_layout.total if test_layout.total else math.nan,
        seconds=seconds,
        compute_seconds=compute,
        comm_seconds=max(0.0, seconds - compute),
        breakdown=breakdown,
        slowest_rank=slowest_rank,
        downlink_bytes=int(moved[0]),
        uplink_bytes=int(moved[1]),
        downlink_bytes_total=int(moved[2]),
        uplink_bytes_total=int(moved[3]),
        uplink_bytes_uncompressed_total=int(moved[4]) if compressed else None,
        # the slowest rank's codec time, under the compress stage's name as in federated records
        stages={CompressStage.name: {"encode_seconds": float(slowest_codec[0]),
                                     "decode_seconds": float(slowest_codec[1])}} if compressed else None,
        val_loss=float(totals[4] / n_val) if n_val else None,
        val_accuracy=float(totals[5] / n_val) if n_val else None,
    )
