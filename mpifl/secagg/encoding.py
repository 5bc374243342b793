"""Fixed point in Z_(2^bits): real vectors in, ring elements out, and sums back to reals.

Each value is clamped to [-R, R] (secagg.clip_range) and scaled by
2^(bits-2) / (R n), n the most summands, so that a sum of n encoded values
stays below 2^(bits-2) in magnitude and its two's-complement reading is
exact; one value's rounding error is at most 1 / (2 scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FixedPoint:
    bits: int  # 32 or 64
    clip_range: float
    summands: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint32 if self.bits == 32 else np.uint64)

    @property
    def scale(self) -> float:
        return 2.0 ** (self.bits - 2) / (self.clip_range * max(self.summands, 1))

    def encode(self, x: np.ndarray) -> np.ndarray:
        q = np.rint(np.clip(x, -self.clip_range, self.clip_range) * self.scale).astype(np.int64)
        return q.astype(self.dtype) if self.bits == 64 else (q & 0xFFFFFFFF).astype(np.uint32)

    def decode(self, total: np.ndarray) -> np.ndarray:
        signed = total.view(np.int64 if self.bits == 64 else np.int32)
        return signed.astype(np.float64) / self.scale
