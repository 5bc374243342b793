"""Masked histogram sums for federated trees: the server reads each node's sum over the round's clients and no
client rank's share of it, as secure aggregation promises (the pairwise masks of Bonawitz et al. 2017's
semi-honest protocol; the neighbour graph of SecAgg+, Bell et al. 2020, with ``secagg.plus``).

The parties are the client ranks.  A rank adds the histograms of the clients it hosts (one process holds their
rows anyway; in a deployment each client is its own rank), then masks that sum.  Once per boosting round, each
client rank draws an X25519 key pair; the server gathers the public keys and broadcasts the directory (it
routes keys it did not make: a server that swaps them is the active adversary this protocol does not stop).
Ranks r and q derive s_rq = HKDF(X25519(r, q), round), and histogram number c of the round is sent as
x_r + sum over q of +-ChaCha20(s_rq, nonce c) in Z_2^64 (+ when r < q), so the pads cancel in the server's
Reduce and the sum is the exact integers: the same bytes as without masks.  A rank draws one pad per neighbour
and histogram, whatever the clients it hosts.

Every client rank answers every histogram of every round, so the self-masks and secret shares that let the
full protocol survive dropouts are not needed; a tree job refuses ``secagg.dropout``.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpifl.ranks import ROOT, is_root
from mpifl.secagg import crypto
from mpifl.secagg.graph import default_degree, neighbours

LABEL = b"mpifl-trees histogram mask"


class RoundMasks:
    """One client rank's pads for one boosting round: one key per neighbouring client rank."""

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


def agree_round(comm: MPI.Comm, rnd: int, seed: int, plus: bool, degree: int) -> RoundMasks | None:
    """The round's key agreement among the client ranks, on every rank together; returns this rank's pads (None
    on the server)."""
    mine = crypto.new_private_key() if not is_root(comm) else None
    sent = np.frombuffer(crypto.public_bytes(mine) if mine is not None else b"", dtype=np.uint8)
    counts = np.array([0] + [crypto.KEY_BYTES] * (comm.Get_size() - 1), dtype=np.int64)
    directory = np.empty(int(counts.sum()), dtype=np.uint8)
    comm.Gatherv(sent, [directory, counts] if is_root(comm) else None, root=ROOT)
    comm.Bcast(directory, root=ROOT)  # the server routes the keys, in rank order
    if mine is None:
        return None
    parties = np.arange(1, comm.Get_size())
    keys = {int(r): directory[i * crypto.KEY_BYTES: (i + 1) * crypto.KEY_BYTES].tobytes() for i, r in enumerate(parties)}
    me = comm.Get_rank()
    graph = neighbours(parties, seed, rnd, (degree or default_degree(parties.size)) if plus else None)
    return RoundMasks([(crypto.agree(mine, keys[q], LABEL, rnd), 1 if me < q else -1) for q in graph[me]])
