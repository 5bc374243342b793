"""Simulated client speed and availability: how long each client's local work takes in virtual seconds.

Each client gets a compute speed (seconds per example) and a link speed
(bytes per second): ``clients.seconds_per_example`` and ``clients.link_mbps``
for every client ("uniform"), drawn lognormally around them with spreads
``clients.speed_sigma`` and ``clients.link_sigma`` ("lognormal"), or read
from a CSV trace (``clients.trace``: one row
per client, ``client,seconds_per_example,link_mbps``).  Availability is an
on/off process: alternating periods with exponential lengths of means
``clients.online_mean`` and ``clients.offline_mean`` (0: always on).  Every
draw comes from (seed, client), so a client's profile does not depend on the
rank count, the order of questions or the other clients.

A client's job of ``rows`` examples for ``epochs`` epochs takes: the model
down, rows x epochs x seconds_per_example of compute, the update up.  A
synchronous round lasts as long as its slowest client; the asynchronous
schedule (mpifl.asynchrony) is built on the same durations.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.errors import ConfigError
from mpifl.protocol import cohort
from mpifl.rng import Purpose, stream

SPEEDS = ("uniform", "lognormal", "trace")
FIRST_PERIODS = 64  # availability periods drawn at once; more are drawn as the clock passes them


class Drawn:
    """A per-client quantity drawn from (seed, client) when first asked for, so that a population of millions
    costs what its sampled clients ask; indexes like an array, and becomes one (np.asarray) when all are wanted."""

    def __init__(self, n: int, draw, part: int):
        self.n, self.draw, self.part = n, draw, part

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            if not -self.n <= key < self.n:
                raise IndexError(f"client {key} of {self.n}")
            return self.draw(int(key) % self.n)[self.part]
        return np.array([self.draw(k)[self.part] for k in range(self.n)[key]])

    def __array__(self, dtype=None, copy=None):
        return np.array([self.draw(k)[self.part] for k in range(self.n)], dtype=dtype)


@dataclass
class ClientProfiles:
    """Per-client speeds and on/off availability for K clients."""

    seconds_per_example: np.ndarray | Drawn  # (K,)
    link_bytes_per_second: np.ndarray | Drawn  # (K,)
    rows: np.ndarray  # (K,) training rows
    model_bytes: int
    online_mean: float = 0.0  # 0: always available
    offline_mean: float = 0.0
    seed: int = 0

    def __post_init__(self):
        self._switches: dict[int, list[float]] = {}  # client -> times at which it switches on/off (starts on)

    def duration(self, client: int, epochs: int) -> float:
        """Virtual seconds of one local job: the model down, the epochs, the update up."""
        link = 2 * self.model_bytes / self.link_bytes_per_second[client]
        return float(link + self.rows[client] * epochs * self.seconds_per_example[client])

    def round_time(self, epochs: np.ndarray) -> float:
        """A synchronous round's virtual seconds: its slowest trained client."""
        trained = cohort(epochs)
        return max((self.duration(int(k), int(epochs[k])) for k in trained), default=0.0)

    # -- availability ----------------------------------------------------------------------------------------

    def online(self, client: int, t: float) -> bool:
        if self.online_mean <= 0:
            return True
        switches = self._until(client, t)
        return bisect.bisect_right(switches, t) % 2 == 0  # even number of switches so far: on

    def next_change(self, client: int, t: float) -> float:
        """The first time after t at which the client switches on or off (inf when always on)."""
        if self.online_mean <= 0:
            return float("inf")
        switches = self._until(client, t)
        return switches[bisect.bisect_right(switches, t)]

    def _until(self, client: int, t: float) -> list[float]:
        """The client's switch times, drawn (in its own stream) until past t."""
        switches = self._switches.get(client)
        if switches is None:
            switches = self._switches[client] = []
        while not switches or switches[-1] <= t:
            rng = stream(self.seed, Purpose.CLIENT_SPEED, client, 1 + len(switches) // FIRST_PERIODS)
            at = switches[-1] if switches else 0.0
            for i in range(FIRST_PERIODS):
                # starts on: even periods are on, odd ones off
                on = (len(switches) % 2) == 0
                at += rng.exponential(self.online_mean if on else self.offline_mean)
                switches.append(at)
        return switches


def profiles(cfg, client_rows, model_bytes: int) -> ClientProfiles:
    """The job's client profiles: every client at the medians ("uniform"), lognormal around them, or a trace."""
    c = cfg.clients
    rows = np.asarray(client_rows, dtype=np.int64)
    k = rows.size
    if c.speed == "trace":
        spe, link = read_trace(c.trace, k)
    elif c.speed == "uniform":
        spe, link = np.full(k, float(c.seconds_per_example)), np.full(k, c.link_mbps * 1e6 / 8)
    else:
        drawn: dict[int, tuple[float, float]] = {}

        def draw(client: int) -> tuple[float, float]:
            pair = drawn.get(client)
            if pair is None:
                rng = stream(cfg.seed, Purpose.CLIENT_SPEED, client, 0)
                pair = drawn[client] = (
                    float(c.seconds_per_example * np.exp(c.speed_sigma * rng.standard_normal())),
                    float(c.link_mbps * 1e6 / 8 * np.exp(c.link_sigma * rng.standard_normal())))
            return pair

        spe, link = Drawn(k, draw, 0), Drawn(k, draw, 1)
    if c.online_mean > 0 and c.offline_mean <= 0:
        raise ConfigError("clients.online_mean is set, so clients.offline_mean must be > 0 (the mean length of an "
                          "offline period).")
    return ClientProfiles(spe, link, rows, model_bytes, c.online_mean, c.offline_mean, cfg.seed)


def read_trace(path: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """seconds per example and link bytes/s per client from a CSV with a header: client,seconds_per_example,link_mbps."""
    file = Path(path)
    try:
        with file.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(f"clients.trace {str(file)!r} cannot be read: {exc.strerror}.") from None
    need = ("client", "seconds_per_example", "link_mbps")
    if not rows or any(name not in rows[0] for name in need):
        raise ConfigError(f"clients.trace {str(file)!r} needs a header with {', '.join(need)}.")
    spe, link = np.full(k, np.nan), np.full(k, np.nan)
    for line, row in enumerate(rows, start=2):
        try:
            client, s, mbps = int(row["client"]), float(row["seconds_per_example"]), float(row["link_mbps"])
        except (TypeError, ValueError):
            raise ConfigError(f"clients.trace {str(file)!r}, line {line}: not numbers: {row}.") from None
        if not (0 <= client < k) or not (s > 0 and mbps > 0 and np.isfinite(s) and np.isfinite(mbps)):
            raise ConfigError(f"clients.trace {str(file)!r}, line {line}: client {client} must be in 0..{k - 1} with "
                              "positive, finite speeds.")
        spe[client], link[client] = s, mbps * 1e6 / 8
    missing = np.flatnonzero(np.isnan(spe))
    if missing.size:
        raise ConfigError(f"clients.trace {str(file)!r} has no row for {missing.size} client(s), the first "
                          f"{missing[:5].tolist()}.")
    return spe, link
