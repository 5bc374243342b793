"""Server optimisers on the pseudo-gradient: FedAvgM (Hsu et al. 2019) and FedAdagrad, FedAdam, FedYogi
(Reddi et al. 2021, Algorithm 2).

Each round's pseudo-gradient is g = -Delta, with Delta the sample-weighted
mean of the clients' deltas (FedAvg's mean, so that FedAvgM with momentum 0
and lr 1 is FedAvg).  All state is float64 and checkpointed.

- FedAvgM:  v <- beta v + g;  theta <- theta - eta v.
- Adaptive: m <- beta1 m + (1 - beta1) Delta, then
    FedAdagrad  v <- v + Delta^2
    FedAdam     v <- beta2 v + (1 - beta2) Delta^2
    FedYogi     v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)
  and theta <- theta + eta m / (sqrt(v) + tau), with v starting at tau^2 and
  no bias correction, as in the paper.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from mpifl.constraints import Interval
from mpifl.strategies.base import RoundResults, Setup, Strategy, apply_step, norm

_LR = Interval(float, 0, None, "neither")
_DECAY = Interval(float, 0, 1, "left")
_TAU = Interval(float, 0, None, "neither")


class FedAvgM(Strategy):
    name = "fedavgm"
    averages_deltas = True
    parameters = {"lr": (1.0, _LR), "momentum": (0.9, _DECAY)}

    def __init__(self, setup: Setup):
        super().__init__(setup)
        self.velocity = np.zeros(setup.shape)

    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        delta, said = self.combine(results)
        self.velocity *= self.params["momentum"]
        self.velocity -= delta  # the pseudo-gradient is the negated combined delta
        step = -self.params["lr"] * self.velocity
        return apply_step(theta, step), {"update_norm": norm(step), **said}

    def state(self) -> dict[str, np.ndarray]:
        return {**super().state(), "velocity": self.velocity}


class AdaptiveServer(Strategy):
    """Reddi et al.'s Algorithm 2; subclasses say how the second moment is updated."""

    averages_deltas = True
    parameters = {"lr": (0.1, _LR), "beta1": (0.9, _DECAY), "beta2": (0.99, _DECAY), "tau": (1e-3, _TAU)}

    def __init__(self, setup: Setup):
        super().__init__(setup)
        self.m = np.zeros(setup.shape)
        self.v = np.full(setup.shape, self.params["tau"] ** 2)

    @abstractmethod
    def second_moment(self, delta_sq: np.ndarray) -> None:
        """Update self.v from the squared pseudo-update."""

    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        delta, said = self.combine(results)
        beta1 = self.params["beta1"]
        self.m *= beta1
        self.m += (1.0 - beta1) * delta
        self.second_moment(delta * delta)
        step = self.params["lr"] * self.m / (np.sqrt(self.v) + self.params["tau"])
        return apply_step(theta, step), {"update_norm": norm(step), "pseudo_gradient_norm": norm(delta), **said}

    def state(self) -> dict[str, np.ndarray]:
        return {**super().state(), "m": self.m, "v": self.v}


class FedAdagrad(AdaptiveServer):
    name = "fedadagrad"
    parameters = {k: v for k, v in AdaptiveServer.parameters.items() if k != "beta2"}

    def second_moment(self, delta_sq: np.ndarray) -> None:
        self.v += delta_sq


class FedAdam(AdaptiveServer):
    name = "fedadam"

    def second_moment(self, delta_sq: np.ndarray) -> None:
        beta2 = self.params["beta2"]
        self.v *= beta2
        self.v += (1.0 - beta2) * delta_sq


class FedYogi(AdaptiveServer):
    name = "fedyogi"

    def second_moment(self, delta_sq: np.ndarray) -> None:
        self.v -= (1.0 - self.params["beta2"]) * delta_sq * np.sign(self.v - delta_sq)
