"""What a cohort kernel does per client beside its epochs: seed the client's batch-order stream, lay out an epoch's
rows.  Shared by every model kind's cohort loop (mpifl.cohort), so each draws the orders mpifl.rng.stream draws."""

from __future__ import annotations

import numpy as np

from mpifl.jit import inline_kernel
from mpifl.kernels import pcg64


@inline_kernel
def seed_client(key, entropy_words, client, g):
    """g = the stream of (the first entropy_words words of key, then client's 32-bit words, least significant
    first, as mpifl.rng.stream splits a key)."""
    rest = np.uint64(client)
    count = 0
    while True:
        key[entropy_words + count] = rest & np.uint64(0xFFFFFFFF)
        rest = rest >> np.uint64(32)
        count += 1
        if rest == 0:
            break
    pcg64.seeded(key[: entropy_words + count], g)


@inline_kernel
def epoch_rows(g, rows, first, shuffled):
    """One epoch's rows of a client whose rows start at ``first``: a permutation drawn from g (a mini-batch
    epoch, as Generator.permutation draws it) or the natural order (full batch)."""
    if shuffled:
        pcg64.permutation(g, rows)
    else:
        for r in range(rows.shape[0]):
            rows[r] = r
    for r in range(rows.shape[0]):
        rows[r] += first


@inline_kernel
def client_key(entropy):
    """(the stream key's words: the round's entropy, room for a client id; a generator's state) for a cohort."""
    key = np.empty(entropy.size + 2, dtype=np.uint64)
    key[: entropy.size] = entropy
    return key, np.empty(pcg64.WORDS, dtype=np.uint64)


@inline_kernel
def start_client(i, starts, ids, order, key, entropy_words, g, shuffled, theta, theta0, velocity):
    """Client i of a cohort, before its epochs: its stream seeded, theta from theta0, velocity from zero; returns
    (its first row, its rows' order buffer)."""
    if shuffled:
        seed_client(key, entropy_words, ids[i], g)
    theta[:] = theta0
    velocity[:] = 0
    return starts[i], order[: starts[i + 1] - starts[i]]
