"""A secure-aggregation round over MPI: the protocol's bytes, routed through the server as the paper routes them.

Every message is a buffer collective on uint8, with sizes every rank
computes from the round plan (the cohort, the neighbour graph, the
survivors), so nothing is pickled and no size travels:

1. Gatherv of the cohort's adverts, Bcast of the directory;
2. Gatherv of the sealed shares, and Scatterv of each client rank's inbox
   (the server routes ciphertexts it cannot open);
3. Gatherv of the survivors' masked inputs, or (``summed``) each client
   rank adds its survivors' masked inputs in Z_(2^bits) and one Reduce of
   unsigned integers (MPI's sum wraps modulo 2^bits, the ring's own
   addition) brings the masked sum to the server, which then holds one
   vector instead of one per survivor: the same sum, so the same bytes;
4. Bcast of [survived per cohort client | abort], then Gatherv of the
   survivors' unmasking shares, unless the round aborts.

Client ranks host many clients; each client's steps run one after another
on its rank, and every message of every client goes through the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.metrics import RoundTimer
from mpifl.rng import Purpose, stream
from mpifl.secagg import shamir
from mpifl.secagg.protocol import ADVERT_BYTES, SEALED_SHARES, ClientRound, RoundPlan, ServerRound

DROPOUT_KEY = 1  # (seed, SECAGG, round, DROPOUT_KEY, client): whether a client drops before its masked input


@dataclass
class PhaseSeconds:
    """Seconds a rank spent in each part of the round (the collectives' transfers included)."""

    agree: float = 0.0  # key generation, adverts and the directory
    share: float = 0.0  # Shamir sharing, sealing, routing, opening
    mask: float = 0.0  # key agreement per neighbour, mask expansion, masked inputs
    unmask: float = 0.0  # the unmasking shares, and at the server the reconstruction and the sum


@dataclass(frozen=True)
class RoundLayout:
    """Who is where in a round: the plan, which cohort clients each client rank hosts, and who drops out."""

    plan: RoundPlan
    hosted: list[list[int]]  # per client rank (rank r at index r - 1): its cohort clients, ascending
    dropped: frozenset[int] = field(default_factory=frozenset)
    summed: bool = False  # the masked inputs are added on the client ranks and reduced, not gathered

    @property
    def survivors(self) -> list[int]:
        return [u for u in self.plan.cohort if u not in self.dropped]

    def counts(self, per_client, only=None) -> list[int]:
        """Gatherv/Scatterv byte counts: rank 0 nothing, each client rank the sum over its clients (in ``only``)."""
        return [0] + [sum(per_client(u) for u in clients if only is None or u in only) for clients in self.hosted]


def dropouts(seed: int, rnd: int, cohort: tuple[int, ...], rate: float) -> frozenset[int]:
    """The simulated clients that drop after sharing their keys and before sending their masked input."""
    if rate <= 0:
        return frozenset()
    return frozenset(u for u in cohort if stream(seed, Purpose.SECAGG, rnd, DROPOUT_KEY, u).random() < rate)


def _gather(comm: MPI.Comm, send: bytes, counts: list[int], timer: RoundTimer, poll: bool) -> np.ndarray:
    gather = collectives.GatherToRoot(comm, counts, np.uint8)
    out = np.empty(sum(counts) if comm.Get_rank() == 0 else 0, dtype=np.uint8)
    gather(np.frombuffer(send, dtype=np.uint8) if send else np.empty(0, np.uint8), out, timer, poll)
    return out


def _reduce(comm: MPI.Comm, send: np.ndarray, recv: np.ndarray | None, timer: RoundTimer) -> None:
    """Sum unsigned ring elements over every rank into the server's ``recv`` (MPI's unsigned sum wraps)."""
    with timer.comm():
        comm.Reduce(send, recv, op=MPI.SUM, root=0)
    if recv is not None:  # what the client ranks sent
        timer.uplink_bytes += (comm.Get_size() - 1) * send.nbytes


def sum_masked(masked: list[np.ndarray], plan: RoundPlan) -> np.ndarray:
    """The ring sum of the survivors' masked inputs."""
    total = np.zeros(plan.length, dtype=plan.encoding.dtype)
    for y in masked:
        total += y
    return total


def _bcast(comm: MPI.Comm, data: bytes | None, size: int, timer: RoundTimer, poll: bool) -> bytes:
    buf = np.frombuffer(data, dtype=np.uint8).copy() if comm.Get_rank() == 0 else np.empty(size, dtype=np.uint8)
    collectives.bcast(comm, buf, timer, poll=poll)
    return buf.tobytes()


def client_round(comm: MPI.Comm, layout: RoundLayout, vectors: dict[int, np.ndarray], timer: RoundTimer,
                 poll: bool) -> PhaseSeconds:
    """A client rank's part of the round, for its cohort clients (``vectors`` holds each one's float64 vector)."""
    plan, seconds = layout.plan, PhaseSeconds()
    mine = layout.hosted[comm.Get_rank() - 1]
    t0 = time.perf_counter()
    sessions = {u: ClientRound(plan, u) for u in mine}
    _gather(comm, b"".join(sessions[u].advertise() for u in mine), layout.counts(lambda u: ADVERT_BYTES), timer,
            poll)
    raw = _bcast(comm, None, ADVERT_BYTES * len(plan.cohort), timer, poll)
    directory = {u: raw[i * ADVERT_BYTES: (i + 1) * ADVERT_BYTES] for i, u in enumerate(plan.cohort)}
    t1 = time.perf_counter()
    seconds.agree = t1 - t0
    sealed = b"".join(b"".join(sessions[u].share(directory)) for u in mine)
    degree = lambda u: SEALED_SHARES * len(plan.neighbours[u])  # noqa: E731
    _gather(comm, sealed, layout.counts(degree), timer, poll)
    inbox = np.empty(sum(degree(v) for v in mine), dtype=np.uint8)
    collectives.scatter_bytes(comm, np.empty(0, np.uint8), layout.counts(degree), inbox, timer, poll=poll)
    offset = 0
    for v in mine:
        received = {}
        for u in plan.neighbours[v]:
            received[u] = inbox[offset: offset + SEALED_SHARES].tobytes()
            offset += SEALED_SHARES
        sessions[v].receive(received)
    t2 = time.perf_counter()
    seconds.share = t2 - t1
    alive = [u for u in mine if u not in layout.dropped]
    if layout.summed:
        local = np.zeros(plan.length, dtype=plan.encoding.dtype)
        for u in alive:
            local += sessions[u].masked_input(vectors[u])  # wraps modulo 2^bits: the ring's addition
        _reduce(comm, local, None, timer)
    else:
        masked = b"".join(sessions[u].masked_input(vectors[u]).tobytes() for u in alive)
        row = plan.length * plan.encoding.dtype.itemsize
        _gather(comm, masked, layout.counts(lambda u: row, set(layout.survivors)), timer, poll)
    t3 = time.perf_counter()
    seconds.mask = t3 - t2
    verdict = _bcast(comm, None, len(plan.cohort) + 1, timer, poll)
    if verdict[-1]:  # the server aborts the round: too few survivors to unmask
        seconds.unmask = time.perf_counter() - t3
        return seconds
    survived = {u for u, flag in zip(plan.cohort, verdict) if flag}
    shares = b"".join(sessions[u].unmask_shares(survived) for u in alive)
    held = lambda u: shamir.SHARE_BYTES * len(plan.neighbours[u])  # noqa: E731
    _gather(comm, shares, layout.counts(held, survived), timer, poll)
    seconds.unmask = time.perf_counter() - t3
    return seconds


def server_round(comm: MPI.Comm, layout: RoundLayout, timer: RoundTimer, poll: bool
                 ) -> tuple[np.ndarray | None, PhaseSeconds]:
    """The server's part: (the float64 sum of the survivors' vectors, or None if the round aborted; seconds)."""
    plan, seconds = layout.plan, PhaseSeconds()
    server = ServerRound(plan)
    order = [u for clients in layout.hosted for u in clients]  # the order the Gatherv delivers clients in
    t0 = time.perf_counter()
    raw = _gather(comm, b"", layout.counts(lambda u: ADVERT_BYTES), timer, poll)
    adverts = {u: raw[i * ADVERT_BYTES: (i + 1) * ADVERT_BYTES].tobytes() for i, u in enumerate(order)}
    server.collect_adverts(adverts)
    _bcast(comm, b"".join(adverts[u] for u in plan.cohort), 0, timer, poll)
    t1 = time.perf_counter()
    seconds.agree = t1 - t0
    degree = lambda u: SEALED_SHARES * len(plan.neighbours[u])  # noqa: E731
    sealed = _gather(comm, b"", layout.counts(degree), timer, poll)
    outgoing, offset = {}, 0
    for u in order:
        for v in plan.neighbours[u]:
            outgoing[u, v] = sealed[offset: offset + SEALED_SHARES]
            offset += SEALED_SHARES
    routed = [outgoing[u, v] for clients in layout.hosted for v in clients for u in plan.neighbours[v]]
    collectives.scatter_bytes(comm, np.concatenate(routed) if routed else np.empty(0, np.uint8),
                              layout.counts(degree), np.empty(0, np.uint8), timer, poll=poll)
    t2 = time.perf_counter()
    seconds.share = t2 - t1
    survivors = [u for u in order if u not in layout.dropped]
    if layout.summed:
        masked_sum = np.zeros(plan.length, dtype=plan.encoding.dtype)
        _reduce(comm, np.zeros_like(masked_sum), masked_sum, timer)
    else:
        row = plan.length * plan.encoding.dtype.itemsize
        rows = _gather(comm, b"", layout.counts(lambda u: row, set(survivors)), timer, poll)
        masked_sum = sum_masked([rows[i * row: (i + 1) * row].view(plan.encoding.dtype)
                                 for i in range(len(survivors))], plan)
    t3 = time.perf_counter()
    seconds.mask = t3 - t2
    survived = set(survivors)
    abort = not server.enough_survive(survived)
    _bcast(comm, bytes([u in survived for u in plan.cohort]) + bytes([abort]), 0, timer, poll)
    if abort:
        seconds.unmask = time.perf_counter() - t3
        return None, seconds
    held = lambda u: shamir.SHARE_BYTES * len(plan.neighbours[u])  # noqa: E731
    raw = _gather(comm, b"", layout.counts(held, survived), timer, poll)
    shares, offset = {}, 0
    for u in survivors:
        shares[u] = raw[offset: offset + held(u)].tobytes()
        offset += held(u)
    total = server.unmask_sum(masked_sum, survived, shares)
    seconds.unmask = time.perf_counter() - t3
    return total, seconds
