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
    events: list[tuple[float, int, int, int, int]] = []  # (time, seq, kind, client, version)
    seq = 0
    busy = np.zeros(k, dtype=bool)
    dispatched_at: dict[int, set[int]] = {}  # version -> clients dispatched at it
    pending: list[Arrival] = []
    schedule = Schedule()
    version, in_flight, dispatches, stale, offline = 0, 0, 0, 0, 0
    wake_pending = False

    def push(t, kind, client, v):
        nonlocal seq
        heapq.heappush(events, (t, seq, kind, client, v))
        seq += 1

    def fill(t):
        """Dispatch idle, online clients not yet dispatched at this version until concurrency are in flight."""
        nonlocal in_flight, dispatches, wake_pending
        while in_flight < concurrency:
            taken = dispatched_at.setdefault(version, set())
            idle = [c for c in range(k) if not busy[c] and c not in taken and profiles.online(c, t)]
            if not idle:
                later = [profiles.next_change(c, t) for c in range(k) if not busy[c] and c not in taken]
                soonest = min(later, default=float("inf"))
                if np.isfinite(soonest) and not wake_pending:
                    push(soonest + 1e-9, WAKE, -1, -1)
                    wake_pending = True
                elif not np.isfinite(soonest) and in_flight == 0:
                    raise ConfigError(f"the asynchronous schedule stalls at version {version}: every client was "
                                      "dispatched at this version and none is in flight; use more clients or a "
                                      "smaller server.buffer or server.concurrency.")
                return
            client = idle[int(stream(seed, Purpose.DISPATCH, dispatches).integers(len(idle)))]
            dispatches += 1
            busy[client] = True
            taken.add(client)
            in_flight += 1
            finish = t + profiles.duration(client, epochs)
            goes_off = profiles.next_change(client, t) if profiles.online_mean > 0 else float("inf")
            if goes_off < finish:
                push(goes_off, OFFLINE, client, version)
            else:
                push(finish, FINISH, client, version)

    fill(0.0)
    while len(schedule.buffers) < versions:
        if not events:
            raise ConfigError("the asynchronous schedule ran out of events (no client can ever come online).")
        t, _, kind, client, v = heapq.heappop(events)
        if kind == WAKE:
            wake_pending = False
        else:
            busy[client] = False
            in_flight -= 1
            if kind == OFFLINE:
                offline += 1
            elif max_staleness and version - v > max_staleness:
                stale += 1
            else:
                pending.append(Arrival(client, v, t))
                if len(pending) == buffer:
                    schedule.buffers.append(pending)
                    schedule.times.append(t)
                    schedule.stale.append(stale)
                    schedule.offline.append(offline)
                    pending, stale, offline = [], 0, 0
                    version += 1
        fill(t)
    jobs: list[list[int]] = [[] for _ in range(versions)]  # only the updates a buffer uses are trained
    for arrivals in schedule.buffers:
        for a in arrivals:
            jobs[a.version].append(a.client)
    schedule.train = [sorted(clients) for clients in jobs]
    return schedule
