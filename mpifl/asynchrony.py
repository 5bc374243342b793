"""The asynchronous server's event queue in virtual time, computed before any client trains.

In FedBuff and FedAsync the server keeps ``concurrency`` clients training.
A client dispatched while the model is at version u trains from theta_u;
its update arrives at its virtual finish time (mpifl.client_speeds), joins
the buffer with staleness s = v - u (v: the version at arrival), and when
the buffer holds K updates the server steps to version v + 1 and empties it.
Each arrival (or a client going offline mid-job, which loses its update) is
followed by a new dispatch at that moment, from the current version.

Who is dispatched when, with which version, and which updates fill which
buffer depends only on the clients' durations and availability, never on
the model's values.  So the whole schedule is computed up front, the same
on every rank and after a resume, and the ranks train ahead of the virtual
clock: at step v every client dispatched at version v trains from theta_v
(in parallel, on its own rank), and the server then applies buffer v, all of
whose updates were dispatched at a version <= v and so are already there.
Updates the server would drop (too stale, or lost offline) are never
trained.  A client is not dispatched twice at one version (it would repeat
the same work from the same theta).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from mpifl.client_speeds import ClientProfiles
from mpifl.errors import ConfigError
from mpifl.rng import Purpose, stream

FINISH, OFFLINE, WAKE = 0, 1, 2


@dataclass(frozen=True)
class Arrival:
    client: int
    version: int  # the version it trained from
    time: float  # virtual arrival time


@dataclass
class Schedule:
    """Per version v: the clients that train from theta_v (and are used), and buffer v's arrivals."""

    train: list[list[int]] = field(default_factory=list)
    buffers: list[list[Arrival]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # virtual time of each aggregation
    stale: list[int] = field(default_factory=list)  # updates dropped for staleness before aggregation v
    offline: list[int] = field(default_factory=list)  # jobs lost to a client going offline before aggregation v

    def staleness(self, version: int) -> np.ndarray:
        return np.array([version - a.version for a in self.buffers[version]], dtype=np.int64)


def build(profiles: ClientProfiles, epochs: int, concurrency: int, buffer: int, versions: int,
          max_staleness: int, seed: int) -> Schedule:
    """Simulate the server until ``versions`` aggregations have happened."""
    k = profiles.rows.size
    if concurrency > k:
        raise ConfigError(f"server.concurrency ({concurrency}) exceeds the {k} clients.")
    return _Simulation(profiles, epochs, concurrency, buffer, max_staleness, seed).run(versions)


class _Simulation:
    """The server's event loop: dispatches, arrivals, buffers, in virtual time."""

    def __init__(self, profiles: ClientProfiles, epochs: int, concurrency: int, buffer: int, max_staleness: int,
                 seed: int):
        self.profiles, self.epochs, self.concurrency, self.buffer = profiles, epochs, concurrency, buffer
        self.max_staleness, self.seed = max_staleness, seed
        self.k = profiles.rows.size
        self.events: list[tuple[float, int, int, int, int]] = []  # (time, seq, kind, client, version)
        self.seq = self.version = self.in_flight = self.dispatches = self.stale = self.offline = 0
        self.busy = np.zeros(self.k, dtype=bool)
        self.dispatched_at: dict[int, set[int]] = {}  # version -> clients dispatched at it
        self.pending: list[Arrival] = []
        self.wake_pending = False
        self.schedule = Schedule()

    def run(self, versions: int) -> Schedule:
        self.fill(0.0)
        while len(self.schedule.buffers) < versions:
            if not self.events:
                raise ConfigError("the asynchronous schedule ran out of events (no client can ever come online).")
            t, _, kind, client, v = heapq.heappop(self.events)
            if kind == WAKE:
                self.wake_pending = False
            else:
                self.arrive(t, kind, client, v)
            self.fill(t)
        jobs: list[list[int]] = [[] for _ in range(versions)]  # only the updates a buffer uses are trained
        for arrivals in self.schedule.buffers:
            for a in arrivals:
                jobs[a.version].append(a.client)
        self.schedule.train = [sorted(clients) for clients in jobs]
        return self.schedule

    def push(self, t: float, kind: int, client: int, version: int) -> None:
        heapq.heappush(self.events, (t, self.seq, kind, client, version))
        self.seq += 1

    def arrive(self, t: float, kind: int, client: int, v: int) -> None:
        """A job ends: its update joins the buffer, unless it was lost offline or is too stale."""
        self.busy[client] = False
        self.in_flight -= 1
        if kind == OFFLINE:
            self.offline += 1
        elif self.max_staleness and self.version - v > self.max_staleness:
            self.stale += 1
        else:
            self.pending.append(Arrival(client, v, t))
            if len(self.pending) == self.buffer:
                s = self.schedule
                s.buffers.append(self.pending)
                s.times.append(t)
                s.stale.append(self.stale)
                s.offline.append(self.offline)
                self.pending, self.stale, self.offline = [], 0, 0
                self.version += 1

    def fill(self, t: float) -> None:
        """Dispatch idle, online clients not yet dispatched at this version until concurrency are in flight."""
        while self.in_flight < self.concurrency:
            taken = self.dispatched_at.setdefault(self.version, set())
            free = [c for c in range(self.k) if not self.busy[c] and c not in taken]
            idle = [c for c in free if self.profiles.online(c, t)]
            if not idle:
                self.wait(t, free)
                return
            client = idle[int(stream(self.seed, Purpose.DISPATCH, self.dispatches).integers(len(idle)))]
            self.dispatches += 1
            self.busy[client] = True
            taken.add(client)
            self.in_flight += 1
            finish = t + self.profiles.duration(client, self.epochs)
            goes_off = self.profiles.next_change(client, t) if self.profiles.online_mean > 0 else float("inf")
            if goes_off < finish:
                self.push(goes_off, OFFLINE, client, self.version)
            else:
                self.push(finish, FINISH, client, self.version)

    def wait(self, t: float, free: list[int]) -> None:
        """No client can be dispatched now: wake when the first free one comes online (or stall, and say so)."""
        soonest = min((self.profiles.next_change(c, t) for c in free), default=float("inf"))
        if np.isfinite(soonest) and not self.wake_pending:
            self.push(soonest + 1e-9, WAKE, -1, -1)
            self.wake_pending = True
        elif not np.isfinite(soonest) and self.in_flight == 0:
            raise ConfigError(f"the asynchronous schedule stalls at version {self.version}: every client was "
                              "dispatched at this version and none is in flight; use more clients or a smaller "
                              "server.buffer or server.concurrency.")
