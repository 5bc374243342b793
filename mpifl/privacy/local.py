"""Local differential privacy: each client randomises its own update, so the server need not be trusted.

A client clips its delta (L2 norm C for Gaussian noise, L1 norm C for
Laplace noise) and adds noise of scale z C before any other stage sees it:
N(0, (z C)^2) per value, or Laplace(0, z C) per value.  The mechanism
(privacy.mechanism, mpifl.privacy.mechanisms) says how it clips, draws and
is accounted; this module runs it and counts.  Whatever follows (a
codec, a mask, any aggregator at the server) is post-processing.

The guarantee is the local model's: any two updates a client could send
are neighbours, so the sensitivity is the clip ball's diameter, 2C, and one
release is a Gaussian (or Laplace) mechanism whose noise over sensitivity
is z / 2.  dp-accounting composes a client's releases over the rounds it
took part in; nothing is amplified by sampling (the server sees who sent).
Each client's epsilon therefore depends only on how many updates it
released, which the server counts (``Participation``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp

from mpifl.rng import Purpose, stream

LOCAL_NOISE = 3  # key of each client's noise stream, after (seed, PRIVACY, round); 0-2 are central DP's
SOURCES = ("job", "os")  # the noise's seed: (seed, round, client), reproducible; or the OS's entropy


@dataclass(frozen=True)
class LocalSettings:
    """privacy.* as local DP uses them; the same on every rank."""

    mechanism: type  # the privacy.mechanism class whose local form clips, draws and is accounted
    clip: float  # C: the L2 (Gaussian) or L1 (Laplace) bound of each released delta
    noise_multiplier: float  # z: the noise's std (Gaussian) or scale (Laplace) is z C
    delta: float
    accountant: str  # "rdp" | "pld"
    seed: int
    source: str  # "job" | "os"

    @property
    def distribution(self) -> str:
        return self.mechanism.name

    @property
    def scale(self) -> float:
        return self.noise_multiplier * self.clip

    @property
    def sensitivity(self) -> float:
        """Any two released updates differ by at most the clip ball's diameter."""
        return 2.0 * self.clip

    def epsilon_per_release(self) -> float:
        return epsilon_after(self.mechanism, self.noise_multiplier, 1, self.delta, self.accountant)

    def epsilon_after(self, releases: int) -> float:
        return epsilon_after(self.mechanism, self.noise_multiplier, releases, self.delta, self.accountant)


def release_event(mechanism: type, noise_multiplier: float) -> dp_accounting.DpEvent:
    """One client's release as dp-accounting's event: its noise over its sensitivity (2C) is z / 2."""
    return mechanism.local_event(noise_multiplier)


def accountant(kind: str):
    """A fresh accountant; local releases are not sampled, so add-or-remove and replace-one read alike."""
    return pld.PLDAccountant() if kind == "pld" else rdp.RdpAccountant()


@lru_cache(maxsize=4096)
def epsilon_after(mechanism: type, noise_multiplier: float, releases: int, delta: float, kind: str) -> float:
    """A client's epsilon at ``delta`` after ``releases`` noised updates (0 before any)."""
    if releases <= 0:
        return 0.0
    acc = accountant(kind)
    acc.compose(release_event(mechanism, noise_multiplier), releases)
    accounted = float(acc.get_epsilon(delta))
    pure = mechanism.pure_epsilon(noise_multiplier)
    if pure is not None:  # pure DP composes by adding; both bounds hold, take the tighter
        return min(accounted, releases * pure)
    return accounted


@lru_cache(maxsize=64)
def noise_for(mechanism: type, target_epsilon: float, delta: float, kind: str) -> float:
    """The noise multiplier z whose one release costs ``target_epsilon`` at ``delta``: the mechanism's formula where
    it is pure DP (2 / epsilon for Laplace), else dp-accounting's calibration (to 0.1% of z)."""
    pure = mechanism.pure_noise_for(target_epsilon)
    if pure is not None:
        return pure
    return float(dp_accounting.calibrate_dp_mechanism(
        lambda: accountant(kind), lambda z: release_event(mechanism, z), target_epsilon, delta,
        bracket_interval=dp_accounting.ExplicitBracketInterval(0.1, 1e4), tol=1e-3))


def noise_stream(settings: LocalSettings, rnd: int, client: int) -> np.random.Generator:
    """The client's noise generator: from (seed, round, client), which anyone holding the job's seed can
    regenerate, or from the OS's entropy, which nobody can."""
    if settings.source == "os":
        return np.random.Generator(np.random.PCG64(int.from_bytes(os.urandom(32), "little")))
    return stream(settings.seed, Purpose.PRIVACY, rnd, LOCAL_NOISE, client)


class LocalClientPrivacy:
    """The client's half: clip, then add the whole noise, before any other stage sees the update."""

    def __init__(self, settings: LocalSettings):
        self.settings = settings

    def apply(self, delta: np.ndarray, clip: float, rnd: int, client: int) -> float:
        """Clip delta in place and noise it; returns 1.0 if it was within the clip (kept on the rank)."""
        s = self.settings
        within = s.mechanism.local_clip(delta, s.clip)
        if s.noise_multiplier > 0.0:
            delta += s.mechanism.local_noise(noise_stream(s, rnd, client), s.scale, delta.shape).astype(delta.dtype)
        return float(within)


class Participation:
    """How many noised updates each client has released, kept as a histogram of those counts, so that a round
    costs its cohort and the spread of epsilon over the population costs the rounds, not the population."""

    def __init__(self, n_clients: int, rounds: int):
        self.counts = np.zeros(n_clients, dtype=np.int32)  # checkpointed
        self.histogram = np.zeros(rounds + 2, dtype=np.int64)  # clients by releases so far
        self.histogram[0] = n_clients

    def released(self, clients: np.ndarray) -> None:
        before = self.counts[clients]
        np.subtract.at(self.histogram, before, 1)
        np.add.at(self.histogram, before + 1, 1)
        self.counts[clients] = before + 1

    def spread(self, settings: LocalSettings) -> dict[str, float | int]:
        """The per-client epsilon over the clients that released at least once: worst, median, best, and how
        many released (empty before anyone did)."""
        reached = np.flatnonzero(self.histogram[1:]) + 1
        if not reached.size:
            return {"released_clients": 0}
        counts = self.histogram[reached]
        middle = reached[np.searchsorted(np.cumsum(counts), (counts.sum() + 1) // 2)]
        return {"epsilon_max": settings.epsilon_after(int(reached[-1])),
                "epsilon_median": settings.epsilon_after(int(middle)),
                "epsilon_min": settings.epsilon_after(int(reached[0])),
                "releases_max": int(reached[-1]), "released_clients": int(counts.sum())}


class LocalServerPrivacy:
    """The server's half: the clip it sends down (fixed), and each client's releases counted for its epsilon.
    It adds no noise and replaces no aggregator: the updates arrive noised."""

    def __init__(self, settings: LocalSettings, n_clients: int, rounds: int):
        self.settings = settings
        self.clip = np.array([settings.clip])
        self.participation = Participation(n_clients, rounds)

    def received(self, clients: np.ndarray) -> None:
        self.participation.released(np.asarray(clients, dtype=np.int64))

    def epsilon(self) -> float | None:
        """The worst client's epsilon so far (None before anyone released)."""
        return self.participation.spread(self.settings).get("epsilon_max")

    def spread(self) -> dict[str, float | int]:
        return self.participation.spread(self.settings)

    def state(self) -> dict[str, np.ndarray]:
        """Checkpointed, and restored in place: each client's releases, and their histogram."""
        return {"privacy_releases": self.participation.counts,
                "privacy_release_histogram": self.participation.histogram}
