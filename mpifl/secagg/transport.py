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

Against an active server (``signed``), the round adds what Bonawitz et al.
§4 add: the round's long-term public keys (the PKI, modelled by one
Allgatherv that the server cannot alter), signed adverts, and the
consistency round.  The survivor list then reaches each client in its own
Scatterv row (so that a simulated lying server, ``lie``, can tell clients
different things), each survivor's signature on it comes back in a
Gatherv, the server forwards each client its neighbours' signatures in a
Scatterv, and each unmasking message leads with a byte that says whether
the client reveals its shares (0: it caught the server, and sends zeros).

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
from mpifl.secagg import crypto
from mpifl.secagg.protocol import (ADVERT_BYTES, SEALED_SHARES, SIGNED_ADVERT_BYTES, ClientRound, RoundPlan,
                                   SecAggError, ServerCaught, ServerRound)

DROPOUT_KEY = 1  # (seed, SECAGG, round, DROPOUT_KEY, client): whether a client drops before its masked input
LIES = ("none", "forge", "replay", "drop", "split")  # what a simulated malicious server does (secagg.server_lies)
SIGNATURE = crypto.SIGNATURE_BYTES


@dataclass
class PhaseSeconds:
    """Seconds a rank spent in each part of the round (the collectives' transfers included)."""

    agree: float = 0.0  # key generation, adverts and the directory
    share: float = 0.0  # Shamir sharing, sealing, routing, opening
    mask: float = 0.0  # key agreement per neighbour, mask expansion, masked inputs
    unmask: float = 0.0  # the unmasking shares, and at the server the reconstruction and the sum
    caught: list = field(default_factory=list)  # a client rank's: why each of its clients that caught the server did
    refused: int = 0  # the server's: clients that revealed nothing (they caught it)


@dataclass(frozen=True)
class RoundLayout:
    """Who is where in a round: the plan, which cohort clients each client rank hosts, and who drops out."""

    plan: RoundPlan
    hosted: list[list[int]]  # per client rank (rank r at index r - 1): its cohort clients, ascending
    dropped: frozenset[int] = field(default_factory=frozenset)
    summed: bool = False  # the masked inputs are added on the client ranks and reduced, not gathered
    signed: bool = False  # the active-adversary protocol: signed adverts and the consistency round
    lie: str = "none"  # simulated: how the server lies (LIES), against the signed protocol

    @property
    def advert_bytes(self) -> int:
        return SIGNED_ADVERT_BYTES if self.signed else ADVERT_BYTES

    @property
    def victim(self) -> int:
        """The client a lying server targets: the first of the cohort that did not drop."""
        return self.survivors[0]

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


def _allgather(comm: MPI.Comm, send: bytes, counts: list[int], timer: RoundTimer) -> bytes:
    """Every rank's bytes on every rank (the PKI's public keys: no party relays them, so none can alter them)."""
    recv = np.empty(sum(counts), dtype=np.uint8)
    displs = np.concatenate(([0], np.cumsum(counts)[:-1])).tolist()
    with timer.comm():
        comm.Allgatherv(np.frombuffer(send, dtype=np.uint8) if send else np.empty(0, np.uint8),
                        [recv, counts, displs, MPI.BYTE])
    return recv.tobytes()


def public_keys(comm: MPI.Comm, layout: RoundLayout, identities: dict, timer: RoundTimer) -> dict[int, bytes]:
    """The round's members' long-term public keys on every rank: what a PKI gives each client at set-up."""
    mine = layout.hosted[comm.Get_rank() - 1] if comm.Get_rank() else []
    keys = b"".join(crypto.verify_key_bytes(identities[u]) for u in mine)
    raw = _allgather(comm, keys, layout.counts(lambda u: crypto.KEY_BYTES), timer)
    order = [u for clients in layout.hosted for u in clients]
    return {u: raw[i * crypto.KEY_BYTES: (i + 1) * crypto.KEY_BYTES] for i, u in enumerate(order)}


def client_round(comm: MPI.Comm, layout: RoundLayout, vectors: dict[int, np.ndarray], timer: RoundTimer,
                 poll: bool, identities: dict | None = None) -> PhaseSeconds:
    """A client rank's part of the round, for its cohort clients (``vectors`` holds each one's float64 vector;
    ``identities`` each one's long-term signing key, for the signed protocol)."""
    plan, seconds, signed = layout.plan, PhaseSeconds(), layout.signed
    mine = layout.hosted[comm.Get_rank() - 1]
    caught: dict[int, str] = {}  # a client that caught the server sends zeros from then on and reveals nothing
    t0 = time.perf_counter()
    pki = public_keys(comm, layout, identities, timer) if signed else None
    sessions = {u: ClientRound(plan, u, identities[u] if signed else None, pki) for u in mine}
    size = layout.advert_bytes
    _gather(comm, b"".join(sessions[u].advertise() for u in mine), layout.counts(lambda u: size), timer, poll)
    raw = _bcast(comm, None, size * len(plan.cohort), timer, poll)
    directory = {u: raw[i * size: (i + 1) * size] for i, u in enumerate(plan.cohort)}
    t1 = time.perf_counter()
    seconds.agree = t1 - t0
    _client_shares(comm, layout, sessions, directory, caught, timer, poll)
    t2 = time.perf_counter()
    seconds.share = t2 - t1
    alive = [u for u in mine if u not in layout.dropped]
    _client_masked_inputs(comm, layout, sessions, vectors, alive, caught, timer, poll)
    t3 = time.perf_counter()
    seconds.mask = t3 - t2
    if signed:
        _client_consistency(comm, layout, sessions, alive, caught, timer, poll)
        seconds.caught = [caught[u] for u in sorted(caught)]
    else:
        _client_unmask(comm, layout, sessions, alive, timer, poll)
    seconds.unmask = time.perf_counter() - t3
    return seconds


def _client_shares(comm, layout: RoundLayout, sessions: dict, directory: dict[int, bytes], caught: dict[int, str],
                   timer: RoundTimer, poll: bool) -> None:
    """Step 2 on a client rank: seal each client's shares for its neighbours, and open those sealed for it."""
    plan, mine = layout.plan, list(sessions)
    sealed = []
    for u in mine:
        try:
            sealed += sessions[u].share(directory)
        except ServerCaught as exc:
            caught[u] = str(exc)
            sealed += [bytes(SEALED_SHARES)] * len(plan.neighbours[u])
    degree = lambda u: SEALED_SHARES * len(plan.neighbours[u])  # noqa: E731
    _gather(comm, b"".join(sealed), layout.counts(degree), timer, poll)
    inbox = np.empty(sum(degree(v) for v in mine), dtype=np.uint8)
    collectives.scatter_bytes(comm, np.empty(0, np.uint8), layout.counts(degree), inbox, timer, poll=poll)
    offset = 0
    for v in mine:
        received = {}
        for u in plan.neighbours[v]:
            received[u] = inbox[offset: offset + SEALED_SHARES].tobytes()
            offset += SEALED_SHARES
        if v in caught:
            continue
        try:
            sessions[v].receive(received)
        except SecAggError as exc:
            if not layout.signed:
                raise
            caught[v] = str(exc)  # a neighbour that caught the server sealed nothing: refuse with it


def _client_masked_inputs(comm, layout: RoundLayout, sessions: dict, vectors: dict[int, np.ndarray],
                          alive: list[int], caught: dict[int, str], timer: RoundTimer, poll: bool) -> None:
    """Step 3 on a client rank: its surviving clients' masked inputs (zeros from one that caught the server),
    gathered, or added here and reduced."""
    plan = layout.plan
    zeros = np.zeros(plan.length, dtype=plan.encoding.dtype)
    masked = {u: zeros if u in caught else sessions[u].masked_input(vectors[u]) for u in alive}
    if layout.summed:
        local = np.zeros(plan.length, dtype=plan.encoding.dtype)
        for u in alive:
            local += masked[u]  # wraps modulo 2^bits: the ring's addition
        _reduce(comm, local, None, timer)
    else:
        row = plan.length * plan.encoding.dtype.itemsize
        _gather(comm, b"".join(masked[u].tobytes() for u in alive),
                layout.counts(lambda u: row, set(layout.survivors)), timer, poll)


def _client_unmask(comm, layout: RoundLayout, sessions: dict, alive: list[int], timer: RoundTimer,
                   poll: bool) -> None:
    """Step 4 of the semi-honest protocol on a client rank: the survivors, then each survivor's shares."""
    plan = layout.plan
    verdict = _bcast(comm, None, len(plan.cohort) + 1, timer, poll)
    if verdict[-1]:  # the server aborts the round: too few survivors to unmask
        return
    survived = {u for u, flag in zip(plan.cohort, verdict) if flag}
    shares = b"".join(sessions[u].unmask_shares(survived) for u in alive)
    held = lambda u: shamir.SHARE_BYTES * len(plan.neighbours[u])  # noqa: E731
    _gather(comm, shares, layout.counts(held, survived), timer, poll)


def _client_consistency(comm, layout: RoundLayout, sessions: dict, alive: list[int], caught: dict[int, str],
                        timer: RoundTimer, poll: bool) -> None:
    """The signed protocol's end on a client rank: each survivor's own survivor list, its signature on it, the
    neighbours' signatures the server forwards, their check, then its shares, or a refusal."""
    plan = layout.plan
    n, survivors = len(plan.cohort), set(layout.survivors)
    if _bcast(comm, None, 1, timer, poll)[0]:  # the server aborts the round: too few survivors to unmask
        return
    lists = np.empty(len(alive) * n, dtype=np.uint8)
    collectives.scatter_bytes(comm, np.empty(0, np.uint8), layout.counts(lambda u: n, survivors), lists, timer,
                              poll=poll)
    survived = {u: {v for v, flag in zip(plan.cohort, lists[i * n: (i + 1) * n]) if flag}
                for i, u in enumerate(alive)}
    signatures = []
    for u in alive:
        if u in caught:
            signatures.append(bytes(SIGNATURE))
            continue
        try:
            signatures.append(sessions[u].sign_survivors(survived[u]))
        except ServerCaught as exc:
            caught[u] = str(exc)
            signatures.append(bytes(SIGNATURE))
    _gather(comm, b"".join(signatures), layout.counts(lambda u: SIGNATURE, survivors), timer, poll)
    forwarded_size = lambda u: SIGNATURE * len(plan.neighbours[u])  # noqa: E731
    forwarded = np.empty(sum(forwarded_size(u) for u in alive), dtype=np.uint8)
    collectives.scatter_bytes(comm, np.empty(0, np.uint8), layout.counts(forwarded_size, survivors), forwarded,
                              timer, poll=poll)
    offset, out = 0, []
    held = lambda u: 1 + shamir.SHARE_BYTES * len(plan.neighbours[u])  # noqa: E731
    for u in alive:
        got = {}
        for v in plan.neighbours[u]:
            signature = forwarded[offset: offset + SIGNATURE].tobytes()
            offset += SIGNATURE
            if any(signature):
                got[v] = signature
        if u not in caught:
            try:
                sessions[u].check_survivors(survived[u], got)
            except ServerCaught as exc:
                caught[u] = str(exc)
        out.append(bytes(held(u)) if u in caught else b"\x01" + sessions[u].unmask_shares(survived[u]))
    _gather(comm, b"".join(out), layout.counts(held, survivors), timer, poll)


def server_round(comm: MPI.Comm, layout: RoundLayout, timer: RoundTimer, poll: bool,
                 earlier: dict[int, bytes] | None = None) -> tuple[np.ndarray | None, PhaseSeconds]:
    """The server's part: (the float64 sum of the survivors' vectors, or None if the round aborted; seconds).
    ``earlier``: the adverts of the server's last signed round, which a replaying liar reuses (updated here)."""
    plan, seconds, signed = layout.plan, PhaseSeconds(), layout.signed
    server = ServerRound(plan)
    order = [u for clients in layout.hosted for u in clients]  # the order the Gatherv delivers clients in
    t0 = time.perf_counter()
    if signed:
        public_keys(comm, layout, {}, timer)
    size = layout.advert_bytes
    raw = _gather(comm, b"", layout.counts(lambda u: size), timer, poll)
    adverts = {u: raw[i * size: (i + 1) * size].tobytes() for i, u in enumerate(order)}
    if signed and earlier is not None:
        honest, adverts = adverts, lie_about_adverts(layout, adverts, earlier)
        earlier.clear()
        earlier.update(honest)
    server.collect_adverts(adverts)
    _bcast(comm, b"".join(adverts[u] for u in plan.cohort), 0, timer, poll)
    t1 = time.perf_counter()
    seconds.agree = t1 - t0
    _route_shares(comm, layout, order, timer, poll)
    t2 = time.perf_counter()
    seconds.share = t2 - t1
    survivors = [u for u in order if u not in layout.dropped]
    masked_sum = _masked_sum(comm, layout, survivors, timer, poll)
    t3 = time.perf_counter()
    seconds.mask = t3 - t2
    survived = set(survivors)
    abort = not server.enough_survive(survived)
    if signed:
        shares, seconds.refused = _server_consistency(comm, layout, survivors, abort, timer, poll)
    else:
        shares = _server_unmask_shares(comm, layout, survivors, abort, timer, poll)
    if abort or seconds.refused:
        seconds.unmask = time.perf_counter() - t3
        return None, seconds
    total = server.unmask_sum(masked_sum, survived, shares)
    seconds.unmask = time.perf_counter() - t3
    return total, seconds


def _route_shares(comm, layout: RoundLayout, order: list[int], timer: RoundTimer, poll: bool) -> None:
    """Step 2 at the server: gather the sealed shares it cannot open and route each client rank its inbox."""
    plan = layout.plan
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


def _masked_sum(comm, layout: RoundLayout, survivors: list[int], timer: RoundTimer, poll: bool) -> np.ndarray:
    """Step 3 at the server: the ring sum of the survivors' masked inputs, reduced or from gathered rows."""
    plan = layout.plan
    if layout.summed:
        masked_sum = np.zeros(plan.length, dtype=plan.encoding.dtype)
        _reduce(comm, np.zeros_like(masked_sum), masked_sum, timer)
        return masked_sum
    row = plan.length * plan.encoding.dtype.itemsize
    rows = _gather(comm, b"", layout.counts(lambda u: row, set(survivors)), timer, poll)
    return sum_masked([rows[i * row: (i + 1) * row].view(plan.encoding.dtype) for i in range(len(survivors))], plan)


def _server_unmask_shares(comm, layout: RoundLayout, survivors: list[int], abort: bool, timer: RoundTimer,
                          poll: bool) -> dict[int, bytes]:
    """Step 4 of the semi-honest protocol at the server: tell who survived, then gather their shares."""
    plan, survived = layout.plan, set(survivors)
    _bcast(comm, bytes([u in survived for u in plan.cohort]) + bytes([abort]), 0, timer, poll)
    if abort:
        return {}
    held = lambda u: shamir.SHARE_BYTES * len(plan.neighbours[u])  # noqa: E731
    raw = _gather(comm, b"", layout.counts(held, survived), timer, poll)
    shares, offset = {}, 0
    for u in survivors:
        shares[u] = raw[offset: offset + held(u)].tobytes()
        offset += held(u)
    return shares


def lie_about_adverts(layout: RoundLayout, adverts: dict[int, bytes], earlier: dict[int, bytes]) -> dict[int, bytes]:
    """The directory a lying server relays: ``forge`` puts its own mask key into the victim's advert (to unmask
    the victim alone later); ``replay`` relays the victim's advert of its last round, or in its first round the
    victim's advert under another client's id."""
    victim, out = layout.victim, dict(adverts)
    if layout.lie == "forge":
        advert = adverts[victim]
        own = crypto.public_bytes(crypto.new_private_key())
        out[victim] = advert[: crypto.KEY_BYTES] + own + advert[2 * crypto.KEY_BYTES:]
    elif layout.lie == "replay":
        if victim in earlier:
            out[victim] = earlier[victim]
        else:
            other = next(u for u in layout.plan.cohort if u != victim)
            out[other] = adverts[victim]
    return out


def told_survivors(layout: RoundLayout, survivors: list[int]) -> dict[int, set[int]]:
    """The survivor list the server gives each survivor: the truth, or a lie (``drop``: the victim dropped, told
    to all; ``split``: told to every other survivor after the victim, the truth to the rest)."""
    truth = set(survivors)
    if layout.lie == "drop":
        return {u: truth - {layout.victim} for u in survivors}
    if layout.lie == "split":
        others = [u for u in survivors if u != layout.victim]
        lied = set(others[1::2])
        return {u: truth - {layout.victim} if u in lied else truth for u in survivors}
    return {u: truth for u in survivors}


def _server_consistency(comm, layout: RoundLayout, survivors: list[int], abort: bool, timer: RoundTimer,
                        poll: bool) -> tuple[dict[int, bytes], int]:
    """The signed protocol's end at the server: the survivor lists, the signatures gathered and forwarded (a
    lying server forwards each client only the signatures on the list it told that client), then the shares;
    (each survivor's shares, how many clients refused)."""
    plan = layout.plan
    n, alive = len(plan.cohort), set(survivors)
    order = [u for clients in layout.hosted for u in clients if u in alive]
    _bcast(comm, bytes([abort]), 0, timer, poll)
    if abort:
        return {}, 0
    told = told_survivors(layout, order)
    as_bytes: dict[int, np.ndarray] = {}  # one bitmap per distinct list (an honest server has one)
    lists = [as_bytes.setdefault(id(told[u]), np.array([v in told[u] for v in plan.cohort], dtype=np.uint8))
             for u in order]
    collectives.scatter_bytes(comm, np.concatenate(lists) if lists else np.empty(0, np.uint8),
                              layout.counts(lambda u: n, alive), np.empty(0, np.uint8), timer, poll=poll)
    raw = _gather(comm, b"", layout.counts(lambda u: SIGNATURE, alive), timer, poll)
    signed = {u: raw[i * SIGNATURE: (i + 1) * SIGNATURE].tobytes() for i, u in enumerate(order)}
    blank = bytes(SIGNATURE)
    forwarded = [signed[v] if v in signed and (told[v] is told[u] or told[v] == told[u]) else blank
                 for u in order for v in plan.neighbours[u]]
    collectives.scatter_bytes(comm, np.frombuffer(b"".join(forwarded), dtype=np.uint8).copy() if forwarded
                              else np.empty(0, np.uint8),
                              layout.counts(lambda u: SIGNATURE * len(plan.neighbours[u]), alive),
                              np.empty(0, np.uint8), timer, poll=poll)
    held = lambda u: 1 + shamir.SHARE_BYTES * len(plan.neighbours[u])  # noqa: E731
    raw = _gather(comm, b"", layout.counts(held, alive), timer, poll)
    shares, offset, refused = {}, 0, 0
    for u in order:
        message = raw[offset: offset + held(u)].tobytes()
        offset += held(u)
        if message[0]:
            shares[u] = message[1:]
        else:
            refused += 1
    return shares, refused
