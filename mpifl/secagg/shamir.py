"""Shamir's t-of-n secret sharing of 32-byte secrets, vectorised over GF(2^31 - 1).

A secret is cut into 16 chunks of 16 bits, each shared with its own random
polynomial of degree t - 1 over the prime field GF(p), p = 2^31 - 1 (products
of two field elements fit in int64).  Any t shares give every chunk back by
Lagrange interpolation at 0; fewer reveal nothing about it.
"""

from __future__ import annotations

import os

import numpy as np

PRIME = 2**31 - 1
CHUNKS = 16  # 16-bit chunks of a 32-byte secret
SHARE_BYTES = CHUNKS * 4  # one share: 16 field elements as uint32


class CorruptShares(Exception):
    """Shares that interpolate to something no secret of 32 bytes could be."""


def split(secret: bytes, xs: np.ndarray, t: int) -> np.ndarray:
    """Shares of ``secret`` at the points ``xs`` (distinct, 1..p-1): (len(xs), CHUNKS) uint32."""
    chunks = np.frombuffer(secret, dtype="<u2").astype(np.int64)
    coeffs = np.frombuffer(os.urandom(8 * (t - 1) * CHUNKS), dtype=np.uint64).reshape(t - 1, CHUNKS) % PRIME
    x = np.asarray(xs, dtype=np.int64)[:, None]
    y = np.zeros((x.shape[0], CHUNKS), dtype=np.int64)
    for c in coeffs.astype(np.int64)[::-1]:  # Horner, highest degree first
        y = (y + c) % PRIME
        y = (y * x) % PRIME
    return ((y + chunks) % PRIME).astype(np.uint32)


def reconstruct(xs: list[int], shares: np.ndarray) -> bytes:
    """The secret from t shares (rows of ``shares``) at points ``xs``."""
    total = np.zeros(CHUNKS, dtype=np.int64)
    ys = shares.astype(np.int64)
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        weight = num * pow(den, PRIME - 2, PRIME) % PRIME
        total = (total + ys[i] * weight % PRIME) % PRIME
    if (total >= 1 << 16).any():
        raise CorruptShares
    return total.astype("<u2").tobytes()


def pack(shares: np.ndarray) -> bytes:
    return shares.astype("<u4").tobytes()


def unpack(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<u4")
