"""Scaled sign compression (EF-SignSGD, Karimireddy et al. 2019): a user's codec.

A vector x travels as one float64 scale, |x|_1 / n, and one bit per value,
its sign: 1 bit instead of 32 or 64.  Scaled by |x|_1 / n the compressor is
contractive, so with ``compress.error_feedback = true`` it converges where
plain signSGD (Bernstein et al. 2018) may not.  ``compress.scaled = false``
sends the bare signs (scale 1).

A job names it as ``compress.uplink = "examples.signsgd:ScaledSign"``.
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.compression import Codec
from mpifl.constraints import Flag

SCALE = np.dtype(np.float64)


class ScaledSign(Codec):
    parameters = {"scaled": (True, Flag())}  # compress.scaled

    @property
    def nbytes(self):
        return SCALE.itemsize + math.ceil(self.n / 8)

    def encode(self, x, key, message):
        scale = float(np.abs(x).sum() / self.n) if self.params["scaled"] and self.n else 1.0
        message[: SCALE.itemsize] = np.array([scale], dtype=SCALE).view(np.uint8)
        message[SCALE.itemsize:] = np.packbits(x >= 0)
        return self.decode(message, key)

    def decode(self, message, key):
        scale = float(message[: SCALE.itemsize].view(SCALE)[0])
        bits = np.unpackbits(message[SCALE.itemsize:], count=self.n)
        return scale * (2.0 * bits - 1.0)
