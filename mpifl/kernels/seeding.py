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

from mpifl.jit import kernel

POOL = 4
INIT_A, MULT_A = 0x43B0D7E5, 0x931E8875
INIT_B, MULT_B = 0x8B51F9DD, 0x58F38DED
MIX_L, MIX_R = 0xCA01F9DD, 0x4973F715
XSHIFT = 16
MASK = 0xFFFFFFFF


@kernel
def pool_state(words: np.ndarray, out: np.ndarray) -> None:
    """The PCG64 seed (out: 4 uint64, as SeedSequence(words).generate_state(4, uint64)) of the uint32 entropy
    ``words`` (uint64 array holding 32-bit values)."""
    mask = np.uint64(MASK)
    mixer = np.zeros(POOL, dtype=np.uint64)
    hash_a = np.uint64(INIT_A)
    n = words.size
    for i in range(POOL):
        value = words[i] if i < n else np.uint64(0)
        value ^= hash_a
        hash_a = (hash_a * np.uint64(MULT_A)) & mask
        value = (value * hash_a) & mask
        mixer[i] = value ^ (value >> np.uint64(XSHIFT))
    for i_src in range(POOL):
        for i_dst in range(POOL):
            if i_src != i_dst:
                value = mixer[i_src] ^ hash_a
                hash_a = (hash_a * np.uint64(MULT_A)) & mask
                value = (value * hash_a) & mask
                value ^= value >> np.uint64(XSHIFT)
                mixed = (np.uint64(MIX_L) * mixer[i_dst] - np.uint64(MIX_R) * value) & mask
                mixer[i_dst] = mixed ^ (mixed >> np.uint64(XSHIFT))
    for i_src in range(POOL, n):
        for i_dst in range(POOL):
            value = words[i_src] ^ hash_a
            hash_a = (hash_a * np.uint64(MULT_A)) & mask
            value = (value * hash_a) & mask
            value ^= value >> np.uint64(XSHIFT)
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
