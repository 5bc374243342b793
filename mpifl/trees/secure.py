"""Masked histogram sums for federated trees: the server reads each node's sum over the round's clients and no
client's own histogram, as secure aggregation promises (Bonawitz et al. 2017, the pairwise masks of its
semi-honest protocol; the neighbour graph of SecAgg+, Bell et al. 2020, with ``secagg.plus``).

Once per boosting round, each sampled client draws an X25519 key pair; the server gathers the public keys and
broadcasts the directory (it routes keys it did not make: a server that swaps them is the active adversary this
protocol does not stop).  Client u and each neighbour v derive s_uv = HKDF(X25519(u, v), round).  Histogram
number c of the round is then sent as x_u + sum over v of +-ChaCha20(s_uv, nonce c) in Z_2^64 (+ when u < v), so
the masks cancel in the sum and the server's Reduce gives the exact integers, the same bytes as without masks.
A client rank hosts many clients: it adds its clients' masked inputs, and a pair hosted on one rank cancels
there, so only the pads of pairs across ranks are drawn.

Every sampled client answers every histogram of its round's trees (no dropouts inside a tree), so the
self-masks and secret shares that let Bonawitz's protocol survive dropouts are not needed; a tree job refuses
``secagg.dropout``.  Pure of MPI except ``agree_round``'s two collectives.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpifl.secagg import crypto
from mpifl.secagg.graph import default_degree, neighbours

LABEL = b"mpifl-trees histogram mask"


class RoundMasks:
    """One client rank's pads for one boosting round: pairs (its client u, a neighbour v on another rank)."""

    def __init__(self, pairs: list[tuple[bytes, int]]):
        self.pairs = pairs  # (s_uv, +1 or -1)
        self.counter = 0

    def mask(self, values: np.ndarray) -> np.ndarray:
        """The next histogram of the round, masked: values (int64) as uint64 plus this rank's pads."""
        out = values.reshape(-1).view(np.uint64).copy()
        for key, sign in self.pairs:
            pad = crypto.expand_at(key, self.counter, out.size, np.uint64)
            if sign > 0:
                out += pad
            else:
                out -= pad
        self.counter += 1
        return out


def agree_round(comm: MPI.Comm, rnd: int, cohort: np.ndarray, hosted: np.ndarray, seed: int,
                plus: bool, degree: int) -> RoundMasks | None:
    """The round's key agreement, on every rank together: ``cohort`` the sampled client ids (ascending, the same
    everywhere), ``hosted`` the cohort clients on this rank (none on the server).  Returns this rank's pads (None on
    the server)."""
    own = {int(u): crypto.new_private_key() for u in hosted}
    sent = np.frombuffer(b"".join(crypto.public_bytes(own[int(u)]) for u in hosted), dtype=np.uint8)
    counts = np.empty(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([sent.size], dtype=np.int64), counts)
    directory = np.empty(int(counts.sum()), dtype=np.uint8)
    comm.Gatherv(sent, [directory, counts] if comm.Get_rank() == 0 else None, root=0)
    comm.Bcast(directory, root=0)  # the server routes the keys, in the hosts' order: the cohort's, ascending
    if directory.size != cohort.size * crypto.KEY_BYTES:
        raise RuntimeError(f"tree masks, round {rnd}: {directory.size // crypto.KEY_BYTES} keys for a cohort of "
                           f"{cohort.size}")
    if comm.Get_rank() == 0:
        return None
    keys = {int(u): directory[i * crypto.KEY_BYTES: (i + 1) * crypto.KEY_BYTES].tobytes()
            for i, u in enumerate(cohort)}
    graph = neighbours(cohort, seed, rnd, (degree or default_degree(cohort.size)) if plus else None)
    mine = set(keys) & set(int(u) for u in hosted)
    pairs = [(crypto.agree(own[u], keys[v], LABEL, rnd), 1 if u < v else -1)
             for u in sorted(mine) for v in graph[u] if v not in mine]
    return RoundMasks(pairs)
