"""NumPy's SeedSequence, compiled: the state words of PCG64 for an entropy key, in half a microsecond.

Every random stream in mpifl is ``Generator(PCG64(SeedSequence(key)))``
(mpifl.rng).  NumPy builds the SeedSequence and its state words in about
18 us, which a population-scale round pays two or three times per client
(its rows, its batch orders).  This is the same algorithm (M. E. O'Neill's
seed_seq alternative, as NumPy implements it: a pool of four 32-bit words,
hashmix and mix, then the output hash), so the generator it seeds draws the
same numbers bit for bit; tests/test_seeding.py compares them over many keys.
"""

from __future__ import annotations

import numpy as np

from mpifl.jit import inline_kernel, kernel

POOL = 4
INIT_A, MULT_A = 0x43B0D7E5, 0x931E8875
INIT_B, MULT_B = 0x8B51F9DD, 0x58F38DED
MIX_L, MIX_R = 0xCA01F9DD, 0x4973F715
XSHIFT = 16
MASK = 0xFFFFFFFF


@inline_kernel
def _hashmix(value, hash_a):
    """O'Neill's hashmix of one 32-bit word (held in a uint64): (the hashed word, the next hash constant)."""
    value ^= hash_a
    hash_a = (hash_a * np.uint64(MULT_A)) & np.uint64(MASK)
    value = (value * hash_a) & np.uint64(MASK)
    return value ^ (value >> np.uint64(XSHIFT)), hash_a


@kernel
def pool_state(words: np.ndarray, out: np.ndarray) -> None:
    """The PCG64 seed (out: 4 uint64, as SeedSequence(words).generate_state(4, uint64)) of the uint32 entropy
    ``words`` (uint64 array holding 32-bit values)."""
    mask = np.uint64(MASK)
    mixer = np.zeros(POOL, dtype=np.uint64)
    hash_a = np.uint64(INIT_A)
    n = words.size
    for i in range(POOL):
        mixer[i], hash_a = _hashmix(words[i] if i < n else np.uint64(0), hash_a)
    # every pool word into every other, then each word of entropy beyond the pool into every pool word
    for i_src in range(max(n, POOL)):
        for i_dst in range(POOL):
            if i_src == i_dst:
                continue
            value, hash_a = _hashmix(mixer[i_src] if i_src < POOL else words[i_src], hash_a)
            mixed = (np.uint64(MIX_L) * mixer[i_dst] - np.uint64(MIX_R) * value) & mask
            mixer[i_dst] = mixed ^ (mixed >> np.uint64(XSHIFT))
    hash_b = np.uint64(INIT_B)
    for i in range(2 * out.size):  # 32-bit words, little-endian pairs per uint64
        value = mixer[i % POOL] ^ hash_b
        hash_b = (hash_b * np.uint64(MULT_B)) & mask
        value = (value * hash_b) & mask
        value ^= value >> np.uint64(XSHIFT)
        if i % 2 == 0:
            out[i // 2] = value
        else:
            out[i // 2] |= value << np.uint64(32)
