"""NumPy's PCG64 and its ``Generator.permutation``, compiled: a client's batch orders drawn inside a kernel.

A population-scale round trains thousands of tiny clients, each with its own
stream ``Generator(PCG64(SeedSequence(key)))`` (mpifl.rng).  Building that
generator in Python costs more than the client's training; these are the same
algorithms (O'Neill's PCG-XSL-RR 128/64 as NumPy seeds and steps it, the
32-bit draws buffered from 64-bit ones, and the Fisher-Yates shuffle with
NumPy's masked rejection for bounded integers), so a compiled loop over a
cohort draws the very orders each client would draw alone.
tests/test_seeding.py compares them with NumPy's, bit for bit.

A generator's state is six uint64 words: the 128-bit state (high, low), the
128-bit increment (high, low), whether a 32-bit half is buffered, and that half.
"""

from __future__ import annotations

import numpy as np

from mpifl.jit import inline_kernel, kernel
from mpifl.kernels.seeding import pool_state

WORDS = 6  # state hi, state lo, inc hi, inc lo, has a buffered 32-bit half, the half
MULT_HI, MULT_LO = 0x2360ED051FC65DA4, 0x4385DF649FCCF645  # PCG's 128-bit LCG multiplier
LOW32 = 0xFFFFFFFF


@inline_kernel
def _mul64(a, b):
    """The 128-bit product of two uint64 as (high, low), from 32-bit halves."""
    m = np.uint64(LOW32)
    a_lo, a_hi = a & m, a >> np.uint64(32)
    b_lo, b_hi = b & m, b >> np.uint64(32)
    lo_lo = a_lo * b_lo
    hi_lo = a_hi * b_lo
    lo_hi = a_lo * b_hi
    cross = (lo_lo >> np.uint64(32)) + (hi_lo & m) + lo_hi
    high = a_hi * b_hi + (hi_lo >> np.uint64(32)) + (cross >> np.uint64(32))
    low = (cross << np.uint64(32)) | (lo_lo & m)
    return high, low


@inline_kernel
def _step(g):
    """state = state * MULT + inc, modulo 2**128."""
    hi, lo = _mul64(g[1], np.uint64(MULT_LO))
    hi += g[0] * np.uint64(MULT_LO) + g[1] * np.uint64(MULT_HI)
    lo_sum = lo + g[3]
    carry = np.uint64(1) if lo_sum < lo else np.uint64(0)
    g[0] = hi + g[2] + carry
    g[1] = lo_sum


@inline_kernel
def _add_state(g, high, low):
    """state += (high, low), modulo 2**128."""
    lo_sum = g[1] + low
    carry = np.uint64(1) if lo_sum < low else np.uint64(0)
    g[0] = g[0] + high + carry
    g[1] = lo_sum


@kernel
def seed(words: np.ndarray, g: np.ndarray) -> None:
    """PCG64 seeded as NumPy seeds it from SeedSequence state words (4 uint64: initstate high, low, initseq high,
    low): inc = initseq * 2 + 1, a step, state += initstate, a step."""
    g[0] = np.uint64(0)
    g[1] = np.uint64(0)
    g[2] = (words[2] << np.uint64(1)) | (words[3] >> np.uint64(63))
    g[3] = (words[3] << np.uint64(1)) | np.uint64(1)
    _step(g)
    _add_state(g, words[0], words[1])
    _step(g)
    g[4] = np.uint64(0)
    g[5] = np.uint64(0)


@inline_kernel
def next64(g):
    """Step, then the XSL-RR output of the new state: rotate (high ^ low) right by the state's top 6 bits."""
    _step(g)
    value = g[0] ^ g[1]
    rot = g[0] >> np.uint64(58)
    return (value >> rot) | (value << ((np.uint64(64) - rot) & np.uint64(63)))


@inline_kernel
def next32(g):
    """NumPy's buffered 32-bit draw: the low half of a 64-bit draw, its high half kept for the next call."""
    if g[4] != 0:
        g[4] = np.uint64(0)
        return g[5]
    value = next64(g)
    g[4] = np.uint64(1)
    g[5] = value >> np.uint64(32)
    return value & np.uint64(LOW32)


@inline_kernel
def interval(g, most):
    """A uniform integer in [0, most], by masked rejection (NumPy's random_interval)."""
    if most == 0:
        return np.uint64(0)
    mask = most
    mask |= mask >> np.uint64(1)
    mask |= mask >> np.uint64(2)
    mask |= mask >> np.uint64(4)
    mask |= mask >> np.uint64(8)
    mask |= mask >> np.uint64(16)
    mask |= mask >> np.uint64(32)
    if most <= np.uint64(LOW32):
        value = next32(g) & mask
        while value > most:
            value = next32(g) & mask
    else:
        value = next64(g) & mask
        while value > most:
            value = next64(g) & mask
    return value


@inline_kernel
def permutation(g, out):
    """out = Generator.permutation(out.size): 0..n-1, then Fisher-Yates from the last position down."""
    n = out.shape[0]
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        j = np.int64(interval(g, np.uint64(i)))
        out[i], out[j] = out[j], out[i]


@kernel
def seeded(entropy: np.ndarray, g: np.ndarray) -> None:
    """g = the generator of mpifl.rng.stream for these entropy words (uint32 values held in uint64)."""
    state = np.empty(4, dtype=np.uint64)
    pool_state(entropy, state)
    seed(state, g)


@kernel
def draw64(g: np.ndarray) -> np.uint64:
    """The next 64-bit output (NumPy's ``bit_generator.random_raw()``), for the tests."""
    return next64(g)


@kernel
def permutations(entropy: np.ndarray, n: int, count: int, out: np.ndarray) -> None:
    """out[e] = the e-th of ``count`` permutations of n drawn from one stream (for the tests and the benchmarks)."""
    g = np.empty(WORDS, dtype=np.uint64)
    seeded(entropy, g)
    for e in range(count):
        permutation(g, out[e])
