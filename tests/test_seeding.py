"""The compiled seed sequence against NumPy's own: the same state words, so every stream draws the same numbers."""

import numpy as np
import pytest

from mpifl.kernels.seeding import pool_state
from mpifl.rng import Purpose, stream


def numpy_state(key):
    return np.random.SeedSequence(list(key)).generate_state(4, np.uint64)


def words_of(key):
    words = []
    for k in key:
        words.append(k & 0xFFFFFFFF)
        k >>= 32
        while k:
            words.append(k & 0xFFFFFFFF)
            k >>= 32
    return np.array(words, dtype=np.uint64)


KEYS = [(0,), (0, 5), (7, 3, 1), (0, 5, 3, 7), (1, 2, 3, 4, 5, 6, 7), (2**63 - 1, 18, 0), (2**32, 1, 2**32 - 1),
        (2**32 - 1,), (2**64 - 1, 2**40 + 3)]


@pytest.mark.parametrize("key", KEYS + [tuple(int(v) for v in np.random.default_rng(s).integers(0, 2**62, 1 + s % 6))
                                        for s in range(200)])
def test_the_kernel_gives_numpys_seed_sequence_state(key):
    out = np.empty(4, dtype=np.uint64)
    pool_state(words_of(key), out)
    assert out.tolist() == numpy_state(key).tolist()


def test_a_stream_draws_what_numpys_generator_draws_and_refuses_a_negative_key():
    for key in [(0, Purpose.SHUFFLE, 3, 11), (2**40, Purpose.SYNTHETIC, 1)]:
        ours = stream(*key)
        theirs = np.random.Generator(np.random.PCG64(np.random.SeedSequence([key[0], int(key[1]), *key[2:]])))
        assert ours.permutation(50).tolist() == theirs.permutation(50).tolist()
        assert ours.standard_normal(7).tobytes() == theirs.standard_normal(7).tobytes()
    with pytest.raises(ValueError, match=">= 0"):
        stream(0, Purpose.SHUFFLE, -1)
