"""Distributed mode: every rank is a worker on its own shard, synchronised by Allreduce.

Two algorithms:
- gradient_averaging: each step Allreduces the sample-weighted gradients and
  every rank applies the same update (SGD, or GD at batch_size 0, over the
  union of the shards);
- local_sgd: each rank runs train.epochs local epochs, then the sample-weighted
  parameters are Allreduced (periodic model averaging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.config import Config
from mpifl.data.shards import Shard
from mpifl.errors import Diverged
from mpifl.lbfgs import Lbfgs
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.loop import Loop
from mpifl.metrics import RoundTimer
from mpifl.stopping import divergence
from mpifl.progress import RoundRecord, is_logged, time_breakdown


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
    """Synchronous data-parallel SGD: one gradient Allreduce per step."""

    def __init__(self, comm: MPI.Comm, trainer: LocalTrainer, layout: ShardSizes, timer: RoundTimer):
        self.comm = comm
        self.trainer = trainer
        self.layout = layout
        self.timer = timer
        spec = trainer.kernels.spec
        self._local = spec.zeros()
        self._global = spec.zeros()

    def run_round(self, theta: np.ndarray, rnd: int) -> None:
        t = self.trainer
        s = t.settings
        batch = s.batch_size or int(self.layout.sizes.max())
        for order in t.orders(rnd, s.epochs):
            for step in range(self.layout.steps_per_epoch(batch)):
                with self.timer.compute():
                    if s.batch_size == 0:
                        t.kernels.full_gradient_sum(t.shard.X, t.shard.y, theta, self._local)
                    else:
                        lo = min(step * batch, t.shard.n)
                        hi = min(lo + batch, t.shard.n)
                        t.kernels.batch_gradient_sum(t.shard.X, t.shard.y, theta, order, lo, hi, self._local)
                collectives.allreduce_sum(self.comm, self._local, self._global, self.timer)
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
    """Local SGD: train.epochs local epochs, then one Allreduce of n_r * theta_r."""

    def __init__(self, comm: MPI.Comm, trainer: LocalTrainer, layout: ShardSizes, timer: RoundTimer):
        self.comm = comm
        self.trainer = trainer
        self.layout = layout
        self.timer = timer
        self._weighted = trainer.kernels.spec.zeros()

    def run_round(self, theta: np.ndarray, rnd: int) -> None:
        with self.timer.compute():
            self.trainer.train(theta, rnd)
            np.multiply(theta, self.trainer.shard.n, out=self._weighted)
        collectives.allreduce_sum(self.comm, self._weighted, theta, self.timer)
        with self.timer.compute():
            theta /= self.layout.total


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
    if cfg["train.optimizer"] == "lbfgs":
        return DistributedLbfgs(comm, trainer, layout, timer, cfg["train.history"], cfg["train.tol"])
    return ALGORITHMS[cfg["train.algorithm"]](comm, trainer, layout, timer)


def train_distributed(loop: Loop, train: Shard, test: Shard) -> np.ndarray:
    """Train on this rank's shard in step with every other rank; returns the final theta.

    ``loop.checkpoints`` gives the round to start from and saves the state
    every checkpoint.every rounds.
    """
    comm, cfg, kernels, checkpoints = loop.comm, loop.cfg, loop.kernels, loop.checkpoints
    settings = LocalSettings.from_config(cfg)
    trainer = LocalTrainer(train, kernels, settings, cfg["seed"], comm.Get_rank())
    tester = LocalTrainer(test, kernels, settings, cfg["seed"], comm.Get_rank())
    train_layout = exchange_sizes(comm, train.n)
    test_layout = exchange_sizes(comm, test.n)
    timer = RoundTimer()
    algorithm = make_algorithm(cfg, comm, trainer, train_layout, timer)
    theta = checkpoints.theta.copy() if checkpoints.resumed else kernels.spec.initial(cfg["seed"])
    if "velocity" in checkpoints.local:
        trainer.velocity[:] = checkpoints.local["velocity"]
    if hasattr(algorithm, "load_state"):
        algorithm.load_state(checkpoints.local)

    def local_state() -> dict[str, np.ndarray]:
        extra = algorithm.state() if hasattr(algorithm, "state") else {}
        return {"velocity": trainer.velocity, **extra}

    first = checkpoints.start_round + 1 if checkpoints.resumed else 0
    flag, anyone = np.zeros(2), np.zeros(2)  # [stop requested, divergence code]
    for rnd in range(first, cfg["rounds"] + 1):
        timer.reset()
        if rnd > 0:
            algorithm.run_round(theta, rnd)
        converged = getattr(algorithm, "converged", False)  # the same on every rank
        loss = 0.0  # only logged rounds compute the loss
        if is_logged(rnd, cfg) or converged:
            loss = _log_round(comm, rnd, theta, trainer, tester, train_layout, test_layout, timer, loop.report)
        if checkpoints.due(rnd) or (converged and checkpoints.every):
            loop.save(rnd, theta, local_state())  # a non-finite model is written but never committed
        flag[0] = loop.stop.requested
        flag[1] = divergence(theta, loss)
        collectives.allreduce_max(comm, flag, anyone, timer)  # a signal or a NaN may reach only some ranks
        if anyone[1]:
            raise Diverged(rnd, int(anyone[1]), cfg["train.lr"])
        if converged:
            break
        if anyone[0] and 0 < rnd < cfg["rounds"]:
            loop.stop_after(rnd, theta, local_state())
    return theta



def _log_round(comm, rnd, theta, trainer, tester, train_layout, test_layout, timer, report) -> float:
    """Evaluate theta on every shard and report the round (a collective); returns the training loss."""
    kernels = trainer.kernels
    sums = np.empty(4)
    totals = np.empty(4)
    mine = np.array([timer.compute_seconds, timer.comm_seconds, timer.elapsed()])
    everyone = np.empty((comm.Get_size(), 3))
    collectives.allgather(comm, mine, everyone, RoundTimer())
    breakdown, slowest_rank = time_breakdown(everyone[:, 0], everyone[:, 1])
    seconds, compute = float(everyone[:, 2].max()), float(everyone[:, 0].max())
    train_loss, train_correct = trainer.evaluate(theta)
    test_loss, test_correct = tester.evaluate(theta)
    sums[:] = (train_loss, train_correct, test_loss, test_correct)
    collectives.allreduce_sum(comm, sums, totals, RoundTimer())
    penalty = kernels.penalty(theta, trainer.settings.l2)
    loss = totals[0] / train_layout.total + penalty
    report(
        RoundRecord(
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
        )
    )
    return loss
