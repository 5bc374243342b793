"""Asynchronous federated learning on a virtual clock: FedBuff (Nguyen et al. 2022) and FedAsync (Xie et al. 2019).

``server.mode = "async"``.  The server keeps ``server.concurrency`` clients
training; their updates arrive at virtual times from the clients' speeds
(mpifl.client_speeds), and the event order is computed up front
(mpifl.asynchrony).  A "round" of the protocol is one server version: the
clients dispatched at version v train from theta_v, and the server applies
buffer v.  Updates wait on the server (checkpointed with it) until their
buffer is applied.

- FedBuff: once K updates are buffered,
  theta <- theta + eta_g (1/K) sum_k w(s_k) delta_k   (server.lr = eta_g).
- FedAsync: every update is applied as it arrives,
  theta <- (1 - alpha_s) theta + alpha_s x_k, alpha_s = alpha w(s)   (server.mixing = alpha),
  where x_k = theta_u + delta_k is the client's model, trained from version u.

Staleness s = v - u weighs an update by w(s) (``server.staleness``):
constant 1; polynomial (1 + s)^-a; hinge 1 for s <= b, else 1 / (a (s - b) + 1)
(``server.staleness_a``, ``server.staleness_b``); updates staler than
``server.max_staleness`` (0: no limit) are dropped unused.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np

from mpifl.constraints import Choice, Interval
from mpifl.strategies.base import RoundResults, Setup, Strategy, apply_step, norm

STALENESS = ("constant", "polynomial", "hinge")
COMMON = {
    "concurrency": (10, Interval(int, 1, None)),
    "staleness": ("polynomial", Choice(STALENESS)),
    "staleness_a": (0.5, Interval(float, 0, None)),
    "staleness_b": (4, Interval(int, 0, None)),
    "max_staleness": (0, Interval(int, 0, None)),
}


def staleness_weight(s: np.ndarray, kind: str, a: float, b: int) -> np.ndarray:
    """w(s) for the staleness function ``kind`` (constant, polynomial (1 + s)^-a, or hinge at b with slope a)."""
    s = np.asarray(s, dtype=np.float64)
    if kind == "constant":
        return np.ones_like(s)
    if kind == "polynomial":
        return (1.0 + s) ** -a
    return np.where(s <= b, 1.0, 1.0 / (a * (s - b) + 1.0))


class AsyncStrategy(Strategy):
    """The shared machinery: the schedule, the buffered updates, the versions stale updates trained from."""

    asynchronous: ClassVar[bool] = True
    steps_without_clients = True  # buffer v may hold only updates trained from earlier versions
    buffer_size: ClassVar[int | None] = None  # a fixed K (FedAsync: 1); None: server.buffer

    def __init__(self, setup: Setup):
        super().__init__(setup)
        from mpifl.asynchrony import build

        if setup.profiles is None or setup.rounds < 1:
            raise ValueError("an asynchronous strategy needs the clients' profiles and the number of rounds")
        self.k = self.buffer_size or int(self.params["buffer"])
        self.schedule = build(setup.profiles, setup.epochs, int(self.params["concurrency"]), self.k, setup.rounds,
                              int(self.params["max_staleness"]), setup.seed)
        self.waiting: dict[tuple[int, int], np.ndarray] = {}  # (client, version) -> delta, until its buffer
        self.history: dict[int, np.ndarray] = {}  # version -> theta, while an update trained from it waits

    @classmethod
    def check(cls, params, n_clients: int) -> str | None:
        if params["concurrency"] > n_clients:
            return f"server.concurrency ({params['concurrency']}) exceeds the {n_clients} clients."
        return None

    def plan(self, rnd: int) -> np.ndarray:
        epochs = np.zeros(self.setup.n_clients, dtype=np.int64)
        if rnd <= len(self.schedule.train):
            epochs[self.schedule.train[rnd - 1]] = self.setup.epochs
        return epochs

    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        version = rnd - 1
        for j, client in enumerate(results.clients):
            self.waiting[(int(client), version)] = results.deltas[j].copy()
        if self.needs_history:
            self.history[version] = theta.copy()
        arrivals = self.schedule.buffers[version]
        stale = self.schedule.staleness(version)
        weights = staleness_weight(stale, self.params["staleness"], self.params["staleness_a"],
                                   self.params["staleness_b"])
        deltas = [self.waiting.pop((a.client, a.version)) for a in arrivals]
        new = self.step(theta, arrivals, deltas, weights)
        self._forget(version)
        step = new.astype(np.float64) - theta
        return new, {"update_norm": norm(step), "virtual_time": self.schedule.times[version], "version": rnd,
                     "buffer_fill": len(arrivals) / self.k, "staleness_mean": float(stale.mean()),
                     "staleness_max": int(stale.max()), "staleness": stale.tolist(),
                     "stale_dropped": self.schedule.stale[version], "offline_lost": self.schedule.offline[version]}

    needs_history: ClassVar[bool] = False

    @abstractmethod
    def step(self, theta, arrivals, deltas, weights) -> np.ndarray:
        """The new model from the buffer's arrivals, their deltas and their staleness weights."""

    def _forget(self, version: int) -> None:
        """Drop the versions no waiting or future update trained from."""
        later = [a.version for buffer in self.schedule.buffers[version + 1:] for a in buffer]
        oldest = min(later, default=version + 1)
        for v in [v for v in self.history if v < oldest]:
            del self.history[v]

    # -- checkpoints: the waiting updates and the kept versions, whatever their number -----------------------

    def state(self) -> dict[str, np.ndarray]:
        out = super().state()
        keys = sorted(self.waiting)
        out["waiting_keys"] = np.array(keys, dtype=np.int64).reshape(-1, 2)
        out["waiting"] = np.array([self.waiting[k] for k in keys]).reshape(len(keys), *self.setup.shape)
        versions = sorted(self.history)
        out["history_versions"] = np.array(versions, dtype=np.int64)
        out["history"] = np.array([self.history[v] for v in versions]).reshape(len(versions), *self.setup.shape)
        return out

    def load_state(self, state) -> None:
        if "waiting_keys" in state:
            self.waiting = {(int(c), int(v)): d.copy() for (c, v), d in zip(state["waiting_keys"], state["waiting"])}
            self.history = {int(v): t.copy() for v, t in zip(state["history_versions"], state["history"])}


class FedBuff(AsyncStrategy):
    name = "fedbuff"
    parameters = {**COMMON, "buffer": (10, Interval(int, 1, None)), "lr": (1.0, Interval(float, 0, None, "neither"))}

    def step(self, theta, arrivals, deltas, weights) -> np.ndarray:
        total = np.zeros(theta.shape)
        for w, delta in zip(weights, deltas):
            total += w * delta.astype(np.float64)
        return apply_step(theta, self.params["lr"] * total / self.k)


class FedAsync(AsyncStrategy):
    name = "fedasync"
    parameters = {**COMMON, "mixing": (0.6, Interval(float, 0, 1, "right"))}
    buffer_size = 1
    needs_history = True

    def step(self, theta, arrivals, deltas, weights) -> np.ndarray:
        (arrival,), (delta,), (w,) = arrivals, deltas, weights
        alpha = self.params["mixing"] * w
        start = self.history[arrival.version].astype(np.float64)
        client_model = start + delta
        mixed = (1.0 - alpha) * theta.astype(np.float64) + alpha * client_model
        return mixed.astype(theta.dtype)
