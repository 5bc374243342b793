"""Simulated Byzantine clients, to test robust aggregators against (``[attack]`` in a job).

The malicious clients are a fixed set for the whole run: ``attack.clients``
when given, else drawn from (seed, ATTACK).  Each kind of attack is a class
in the ATTACKS registry (``attack.kind``; a user's own as ``module:Class``).
Data and model poisoning run on the malicious client's own rank, on its own
data and its own update:

- ``label_flip``: its labels c become C - 1 - c (data poisoning);
- ``sign_flip``: it sends -scale times its update;
- ``gaussian``: it sends noise N(0, scale^2), from (seed, ATTACK, round, client);
- ``scaling``: it sends scale times its update (boosted model replacement, Bagdasaryan et al. 2020).

The omniscient attacks need the benign updates' statistics, which no real
client has, so they are simulated at the server just before aggregation, as
a colluding adversary that sees every update: the malicious clients' rows are
replaced, every one by the same vector.

- ``alie`` ("A little is enough", Baruch et al. 2019): mean - z std per
  coordinate, z the largest that still hides among the benign majority;
- ``ipm`` (inner-product manipulation, Xie et al. 2020): -scale times the benign mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np

from mpifl.constraints import Constraint
from mpifl.errors import ConfigError
from mpifl.registry import Registry
from mpifl.rng import Purpose, stream

OFF = "none"  # attack.kind's value when no client is malicious


class AttackKind:
    """One kind of attack: what a malicious client does to its labels or its update, or what the simulated
    colluding adversary sends in the malicious clients' place.  Every hook leaves things as they are unless a
    kind overrides it."""

    name: ClassVar[str] = ""
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}  # its own attack.<key> keys
    default_scale: ClassVar[float] = 0.0  # the scale attack.scale = 0 stands for
    omniscient: ClassVar[bool] = False  # simulated at the server from every client's update
    needs_labels: ClassVar[bool] = False  # poisons class labels (a regression task has none)

    def labels(self, y: np.ndarray, n_classes: int) -> np.ndarray:
        """A malicious client's labels (a new array, or y itself)."""
        return y

    def poison(self, delta: np.ndarray, scale: float, noise: Callable[[], np.ndarray]) -> None:
        """A malicious client's update, changed in place on its own rank; ``noise()`` draws N(0, 1) of its shape
        from (seed, ATTACK, round, client)."""

    def craft(self, benign: np.ndarray, n: int, f: int, scale: float) -> np.ndarray:
        """The vector every malicious row becomes (omniscient kinds), from the benign rows (float64, flat)."""
        raise TypeError(f"attack {self.name!r} is not simulated at the server.")


class NoAttack(AttackKind):
    name = OFF


class LabelFlip(AttackKind):
    name = "label_flip"
    needs_labels = True

    def labels(self, y, n_classes):
        return (n_classes - 1 - y).astype(y.dtype)


class SignFlip(AttackKind):
    name = "sign_flip"
    default_scale = 1.0

    def poison(self, delta, scale, noise):
        delta *= -scale


class Gaussian(AttackKind):
    name = "gaussian"
    default_scale = 1.0

    def poison(self, delta, scale, noise):
        delta[...] = scale * noise()


class Scaling(AttackKind):
    name = "scaling"
    default_scale = 10.0

    def poison(self, delta, scale, noise):
        delta *= scale


class Alie(AttackKind):
    name = "alie"
    omniscient = True

    def craft(self, benign, n, f, scale):
        hidden = math.floor(n / 2 + 1) - f  # benign clients the crafted update must seem closer to than the mean
        z = NormalDist().inv_cdf(min(max((n - hidden) / n, 0.5), 1 - 1e-12))
        return benign.mean(axis=0) - z * benign.std(axis=0)


class Ipm(AttackKind):
    name = "ipm"
    default_scale = 0.5
    omniscient = True

    def craft(self, benign, n, f, scale):
        return -scale * benign.mean(axis=0)


ATTACKS: Registry = Registry("attack", "attack.kind", AttackKind)
for _cls in (NoAttack, LabelFlip, SignFlip, Gaussian, Scaling, Alie, Ipm):
    ATTACKS.register(_cls)
KINDS = tuple(ATTACKS)


@dataclass(frozen=True)
class Attack:
    """The configured attack and its malicious clients (sorted ids)."""

    kind: str
    malicious: tuple[int, ...]
    scale: float
    seed: int

    @property
    def how(self) -> AttackKind:
        return ATTACKS[self.kind]()

    @classmethod
    def configured(cls, kind: str, fraction: float, scale: float, seed: int, n_clients: int,
                   clients: tuple[int, ...] = ()) -> Attack:
        """The run's attack: the given malicious ``clients``, or round(fraction n) of them drawn once from
        (seed, ATTACK)."""
        if kind == OFF:
            return cls(kind, (), 0.0, seed)
        outside = [k for k in clients if k >= n_clients]
        if outside:
            raise ConfigError(f"attack.clients names client {outside[0]}, but this job has {n_clients} clients "
                              f"(ids 0 to {n_clients - 1}).")
        if clients:
            chosen = np.sort(np.asarray(clients, dtype=np.int64))
        else:
            count = int(round(fraction * n_clients))
            chosen = np.sort(stream(seed, Purpose.ATTACK).choice(n_clients, size=count, replace=False))
        return cls(kind, tuple(int(k) for k in chosen), scale or ATTACKS[kind].default_scale, seed)

    def is_malicious(self, client: int) -> bool:
        return client in self.malicious

    def flip_labels(self, client: int, y: np.ndarray, n_classes: int) -> np.ndarray:
        """A malicious client's poisoned labels (a new array); others' come back as they are."""
        if not self.is_malicious(client):
            return y
        return self.how.labels(y, n_classes)

    def poison(self, client: int, rnd: int, delta: np.ndarray) -> None:
        """Model poisoning of a malicious client's update, in place, on its own rank."""
        if self.is_malicious(client):
            self.how.poison(delta, self.scale,
                            lambda: stream(self.seed, Purpose.ATTACK, rnd, client).standard_normal(delta.shape))

    def colluded(self, results):
        """A round's RoundResults with the omniscient attack applied to the malicious clients' deltas."""
        if not ATTACKS[self.kind].omniscient:
            return results
        return replace(results, deltas=self.collude(results.clients, results.deltas))

    def collude(self, clients: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """The omniscient attacks at the server: the malicious rows of ``deltas`` replaced (a new array)."""
        bad = np.isin(clients, self.malicious)
        if not ATTACKS[self.kind].omniscient or not bad.any() or bad.all():
            return deltas
        flat = deltas.reshape(deltas.shape[0], -1).astype(np.float64)
        crafted = self.how.craft(flat[~bad], flat.shape[0], int(bad.sum()), self.scale)
        out = flat.copy()
        out[bad] = crafted
        return out.reshape(deltas.shape).astype(deltas.dtype)


def configured_attack(cfg, n_clients: int) -> Attack:
    """The job's [attack] for ``n_clients`` federated clients; attack.seed -1 means the job's seed."""
    a = cfg.attack
    seed = a.seed if a.seed >= 0 else cfg.seed
    return Attack.configured(a.kind, a.fraction, a.scale, seed, n_clients, tuple(a.clients))
