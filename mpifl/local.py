"""Local training on one shard: the work a client or worker does between syncs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mpifl.config import Config
from mpifl.data.shards import Shard
from mpifl.kernels import ModelKernels
from mpifl.rng import Purpose, stream


@dataclass(frozen=True)
class LocalSettings:
    epochs: int
    batch_size: int  # 0 = full batch
    lr: float
    momentum: float
    l2: float
    optimizer: str = "sgd"  # sgd, adam or adamw (the kinds that declare them)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's moment decays
    eps: float = 1e-8  # Adam's denominator floor
    reset_state: bool = False  # the optimizer's state starts afresh each round (train.optimizer_state = "reset")

    @classmethod
    def from_config(cls, cfg: Config) -> LocalSettings:
        t = cfg.train
        optimizer = t.optimizer if t.optimizer != "lbfgs" else "sgd"
        return cls(t.epochs, t.batch_size, t.lr, t.momentum, cfg.model.l2, optimizer, (t.beta1, t.beta2), t.eps,
                   t.optimizer_state == "reset")

    def optimizer_args(self) -> dict:
        """The sgd_epoch keyword that names an adaptive optimizer; none for SGD (every kind takes that)."""
        if self.optimizer == "sgd":
            return {}
        return {"optimizer": (self.optimizer, *self.betas, self.eps)}


class LocalTrainer:
    """Runs SGD epochs on one shard and keeps that shard's optimizer state.

    The optimizer's state (momentum, or Adam's moments) and the model state a
    client keeps as its own (a torch module's local buffers) live here, on the
    rank that owns the shard, and are never sent anywhere.  Mini-batch orders come from one stream per
    (seed, round, owner), drawn epoch after epoch: building a generator costs
    about 14 us, which small federated clients would otherwise pay every epoch.
    """

    def __init__(self, shard: Shard, kernels: ModelKernels, settings: LocalSettings, seed: int, owner: int,
                 carried: np.ndarray | None = None, velocity: np.ndarray | None = None,
                 grad: np.ndarray | None = None):
        self.shard = shard
        self.kernels = kernels
        self.settings = settings
        self.seed = seed
        self.owner = owner
        # the optimizer's state: the owner's row of a client store (kept between rounds), or fresh
        self.velocity = velocity if velocity is not None else kernels.optimizer_state(settings.optimizer)
        # the owner's own model state; a tester shares its trainer's (the same client's statistics)
        self.carried = carried if carried is not None else kernels.carried_state()
        self._round = -1  # the round the optimizer's state was last reset for (train.optimizer_state = "reset")
        self._grad = grad if grad is not None else kernels.spec.zeros()  # scratch: shareable by one rank's trainers

    def batch_size(self) -> int:
        return self.settings.batch_size or self.shard.n

    def orders(self, rnd: int, epochs: int) -> Iterator[np.ndarray]:
        """Row order of each of ``epochs`` epochs of round ``rnd``: shuffled for mini-batches, natural for full batch."""
        if self.settings.batch_size == 0:
            identity = np.arange(self.shard.n, dtype=np.int64)
            for _ in range(epochs):
                yield identity
            return
        rng = stream(self.seed, Purpose.SHUFFLE, rnd, self.owner)
        for _ in range(epochs):
            yield rng.permutation(self.shard.n)

    def order(self, rnd: int, epoch: int) -> np.ndarray:
        """Row order of one epoch of round ``rnd`` (the epoch-th of orders())."""
        for e, rows in enumerate(self.orders(rnd, epoch + 1)):
            if e == epoch:
                return rows
        raise ValueError(f"epoch must be >= 0. Got {epoch}.")

    def steps(self, epochs: int) -> int:
        """Local SGD steps taken in ``epochs`` epochs (the last batch of an epoch may be short)."""
        return epochs * -(-self.shard.n // self.batch_size())

    def train(self, theta: np.ndarray, rnd: int, epochs: int | None = None, hook=None,
              trainable: slice | None = None) -> int:
        """Run local epochs (the configured number by default) on theta in place; returns the steps taken.

        ``hook`` is the local objective's (anchor, mu, correction); see
        mpifl.kernels.drivers.objective_hook.  ``trainable`` is the slice of
        the flat theta that trains (None: all of it); the rest stays frozen.
        """
        s = self.settings
        epochs = s.epochs if epochs is None else epochs
        part = {} if trainable is None else {"trainable": trainable}  # a kind's own kernels may train only whole
        part.update(s.optimizer_args())
        if s.reset_state and rnd != self._round:
            self.velocity[...] = 0
        self._round = rnd
        self.kernels.carry(self.carried)
        self.kernels.seed_round(self.seed, rnd, self.owner)
        for rows in self.orders(rnd, epochs):
            self.kernels.sgd_epoch(
                self.shard.X, self.shard.y, theta, self.velocity, self._grad,
                rows, self.batch_size(), s.lr, s.momentum, s.l2, hook, **part,
            )
        return self.steps(epochs)

    def judge(self, shard: Shard) -> LocalTrainer:
        """A trainer for this owner's other rows (its test or validation rows) that shares its own model state."""
        return LocalTrainer(shard, self.kernels, self.settings, self.seed, self.owner, self.carried, self.velocity,
                            self._grad)

    def evaluate(self, theta: np.ndarray) -> tuple[float, int]:
        """(summed loss, correct) of theta on this shard."""
        self.kernels.carry(self.carried)
        return self.kernels.evaluate_sums(self.shard.X, self.shard.y, theta)


def keeps_optimizer_state(settings: LocalSettings) -> bool:
    """Momentum or Adam's moments, kept across rounds (train.optimizer_state = "keep"): a client's own state."""
    return (settings.momentum != 0.0 or settings.optimizer != "sgd") and not settings.reset_state
