"""Random streams derived from (seed, purpose, round, client, ...).

Every random draw in mpifl comes from a stream keyed by what it is for, so a
result never depends on the order in which ranks or clients consumed randomness,
and a stream can be recreated anywhere (for example after a restart).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.random.bit_generator import ISeedSequence


class Purpose(IntEnum):
    SPLIT = 1  # train/test split
    PARTITION = 2  # assignment of training rows to clients or workers
    SYNTHETIC = 3  # generation of synthetic data
    CLIENT_SAMPLING = 4  # which clients train in a round
    SHUFFLE = 5  # mini-batch orders of one client in one round, drawn epoch after epoch
    SYNTHETIC_MODEL = 6  # the true model behind synthetic rows generated per rank
    STRAGGLERS = 7  # which sampled clients straggle in a round, and their epochs
    FEDPROX_SYNTHETIC = 8  # the FedProx paper's Synthetic(alpha, beta) clients
    MODEL_INIT = 9  # a model's initial parameters (an MLP's He or Glorot weights)
    ATTACK = 10  # which clients are malicious, and the noise a Gaussian attacker sends
    COMPRESSION = 11  # randk's indices and qsgd's stochastic rounding, per (round, sender)
    PRIVACY = 12  # differential privacy's noise: the server's, the clipped count's, each client's share
    SECAGG = 13  # SecAgg+'s neighbour graph and the simulated dropouts, per round
    CLIENT_SPEED = 14  # a client's simulated compute and link speeds and its on/off periods (mpifl.client_speeds)
    DISPATCH = 15  # which idle client the asynchronous server dispatches next (mpifl.asynchrony)
    MODEL_NOISE = 16  # a model's own randomness in training (a torch module's dropout), per (round, client)
    VALIDATION = 17  # which rows or clients are held out for validation (mpifl.data.validation)
    EVALUATION = 18  # which clients evaluate on their validation rows in a round (federated evaluation)
    SEARCH = 19  # a sweep's random search and its sampler (mpifl.search)
    TREE_SAMPLING = 20  # the features a tree may split on (mpifl.trees); its rows are hashed from their global ids
    TREE_PRIVACY = 21  # the Gaussian noise the server adds to a tree job's released sums, per (release, histogram)


def stream(seed: int, purpose: Purpose, *keys: int) -> np.random.Generator:
    """An independent generator for (seed, purpose, *keys): ``Generator(PCG64(SeedSequence([seed, purpose,
    *keys])))``, with the seed sequence's state words computed by a compiled kernel (mpifl.kernels.seeding): the
    same numbers, in a fifth of the time, which a population-scale round pays per client."""
    from mpifl.kernels.seeding import pool_state

    state = np.empty(4, dtype=np.uint64)
    pool_state(np.array(entropy_words(seed, purpose, *keys), dtype=np.uint64), state)
    return np.random.Generator(np.random.PCG64(_Seeded(state)))


def entropy_words(seed: int, purpose: Purpose, *keys: int) -> list[int]:
    """The 32-bit entropy words of stream(seed, purpose, *keys), each key least significant word first, as
    SeedSequence splits an integer (compiled code seeds the same stream from them: mpifl.kernels.pcg64)."""
    words = []
    for key in (seed, int(purpose), *keys):
        key = int(key)
        if key < 0:
            raise ValueError(f"A stream key must be >= 0. Got {key}.")
        words.append(key & _MASK32)
        key >>= 32
        while key:
            words.append(key & _MASK32)
            key >>= 32
    return words


_MASK32 = 0xFFFFFFFF


class _Seeded(ISeedSequence):
    """A seed sequence whose state words are already known (PCG64 asks for four uint64 words)."""

    __slots__ = ("state",)

    def __init__(self, state: np.ndarray):
        self.state = state

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        if n_words != self.state.size or np.dtype(dtype) != np.uint64:
            raise ValueError("This seed sequence holds PCG64's four uint64 words only.")
        return self.state
