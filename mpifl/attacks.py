"""Simulated Byzantine clients, to test robust aggregators against (``[attack]`` in a job).

The malicious clients are a fixed set for the whole run: ``attack.clients``
when given, else drawn from (seed, ATTACK).  Data and model poisoning run on the malicious client's own
rank, on its own data and its own update:

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
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from mpifl.errors import ConfigError
from mpifl.rng import Purpose, stream

KINDS = ("none", "label_flip", "sign_flip", "gaussian", "scaling", "alie", "ipm")
OMNISCIENT = ("alie", "ipm")
DEFAULT_SCALE = {"sign_flip": 1.0, "gaussian": 1.0, "scaling": 10.0, "ipm": 0.5}  # attack.scale = 0


@dataclass(frozen=True)
class Attack:
    """The configured attack and its malicious clients (sorted ids)."""

    kind: str
    malicious: tuple[int, ...]
    scale: float
    seed: int

    @classmethod
    def configured(cls, kind: str, fraction: float, scale: float, seed: int, n_clients: int,
                   clients: tuple[int, ...] = ()) -> Attack:
        """The run's attack: the given malicious ``clients``, or round(fraction n) of them drawn once from
        (seed, ATTACK)."""
        if kind == "none":
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
        return cls(kind, tuple(int(k) for k in chosen), scale or DEFAULT_SCALE.get(kind, 0.0), seed)

    def is_malicious(self, client: int) -> bool:
        return client in self.malicious

    def flip_labels(self, client: int, y: np.ndarray, n_classes: int) -> np.ndarray:
        """label_flip on a malicious client's labels: c -> C - 1 - c (a new array); others' come back as they are."""
        if self.kind != "label_flip" or not self.is_malicious(client):
            return y
        return (n_classes - 1 - y).astype(y.dtype)

    def poison(self, client: int, rnd: int, delta: np.ndarray) -> None:
        """Model poisoning of a malicious client's update, in place, on its own rank."""
        if not self.is_malicious(client) or self.kind not in ("sign_flip", "gaussian", "scaling"):
            return
        if self.kind == "sign_flip":
            delta *= -self.scale
        elif self.kind == "scaling":
            delta *= self.scale
        else:
            noise = stream(self.seed, Purpose.ATTACK, rnd, client).standard_normal(delta.shape)
            delta[...] = self.scale * noise

    def colluded(self, results):
        """A round's RoundResults with the omniscient attack applied to the malicious clients' deltas."""
        if self.kind not in OMNISCIENT:
            return results
        return replace(results, deltas=self.collude(results.clients, results.deltas))

    def collude(self, clients: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """The omniscient attacks at the server: the malicious rows of ``deltas`` replaced (a new array)."""
        bad = np.isin(clients, self.malicious)
        if self.kind not in OMNISCIENT or not bad.any() or bad.all():
            return deltas
        flat = deltas.reshape(deltas.shape[0], -1).astype(np.float64)
        benign = flat[~bad]
        if self.kind == "alie":
            n, f = flat.shape[0], int(bad.sum())
            hidden = math.floor(n / 2 + 1) - f  # benign clients the crafted update must seem closer to than the mean
            z = NormalDist().inv_cdf(min(max((n - hidden) / n, 0.5), 1 - 1e-12))
            crafted = benign.mean(axis=0) - z * benign.std(axis=0)
        else:
            crafted = -self.scale * benign.mean(axis=0)
        out = flat.copy()
        out[bad] = crafted
        return out.reshape(deltas.shape).astype(deltas.dtype)


def configured_attack(cfg, n_clients: int) -> Attack:
    """The job's [attack] for ``n_clients`` federated clients; attack.seed -1 means the job's seed."""
    seed = cfg.attack.seed if cfg.attack.seed >= 0 else cfg.seed
    return Attack.configured(cfg.attack.kind, cfg.attack.fraction, cfg.attack.scale, seed, n_clients,
                             tuple(cfg.attack.clients))
