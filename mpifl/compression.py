"""Update compression (``[compress]`` in a job): what a client or worker sends instead of its full update.

A codec turns a float64 vector of n values into a message of a fixed number
of bytes, known from n alone, so that every rank can lay out the collective's
buffers without a size exchange, and back:

- ``topk``: the k = ceil(ratio n) largest magnitudes, as int32 indices and
  values in the model's dtype;
- ``randk``: k values at indices drawn from a stream every rank can recreate,
  so only the values travel (Stich et al. 2018 use both as contractive
  compressors with memory; neither is rescaled by n/k);
- ``qsgd``: per bucket of ``bucket`` values its norm and, per value, a sign and
  one of s = 2^(bits-1) - 1 levels chosen by unbiased stochastic rounding
  (Alistarh et al. 2017, with the paper's bucketing: one norm for a whole
  model makes the variance grow with n), bit-packed;
- ``int8``: a scale max|x| / 127 and each value rounded to the nearest int8.

Error feedback (Seide et al. 2014; Stich et al. 2018) lives with the caller:
it compresses update + residual and keeps what the message missed
(``ErrorFeedback``).  Codecs are pure: no MPI, no I/O, no state between calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpifl.kernels import codecs
from mpifl.rng import Purpose, stream

METHODS = ("none", "topk", "randk", "qsgd", "int8")
INDEX = np.dtype(np.int32)  # topk's indices: models beyond 2^31 parameters are out of scope
NORM = np.dtype(np.float64)  # qsgd's norm and int8's scale


@dataclass(frozen=True)
class Codec:
    """One method at one setting, for vectors of ``n`` values whose dtype is ``dtype`` on the wire."""

    method: str
    n: int
    dtype: np.dtype
    ratio: float = 1.0  # topk, randk: share of the values sent
    bits: int = 8  # qsgd: bits per value, sign included
    bucket: int = 512  # qsgd: values sharing one norm
    damped: bool = False  # qsgd under error feedback: scale by 1 / (1 + omega) on both ends (see ``damping``)

    @property
    def damping(self) -> float:
        """The factor that makes an unbiased quantiser contractive, so that error feedback converges.

        qsgd's variance is at most omega |x|^2 with omega = min(d / s^2, sqrt(d) / s) for buckets of d values
        and s levels (Alistarh et al. 2017, Lemma 3.1); C(x) / (1 + omega) then satisfies the contraction
        that error feedback's analysis needs (Stich et al. 2018; Karimireddy et al. 2019).  Without error
        feedback, or for topk, randk and int8 (contractive already), it is 1."""
        if not (self.damped and self.method == "qsgd"):
            return 1.0
        d, s = min(self.bucket, self.n), self.levels
        return 1.0 / (1.0 + min(d / s ** 2, math.sqrt(d) / s))

    @property
    def k(self) -> int:
        """Values a topk or randk message carries."""
        return min(self.n, max(1, math.ceil(self.ratio * self.n)))

    @property
    def levels(self) -> int:
        """qsgd's s: magnitude levels besides zero."""
        return 2 ** (self.bits - 1) - 1

    @property
    def buckets(self) -> int:
        return max(1, math.ceil(self.n / self.bucket))

    @property
    def nbytes(self) -> int:
        """The message's size in bytes, from n alone."""
        item = np.dtype(self.dtype).itemsize
        if self.method == "none":
            return self.n * item
        if self.method == "topk":
            return self.k * (INDEX.itemsize + item)
        if self.method == "randk":
            return self.k * item
        if self.method == "qsgd":
            return self.buckets * NORM.itemsize + math.ceil(self.n * self.bits / 8)
        if self.method == "int8":
            return NORM.itemsize + self.n
        raise ValueError(f"Unknown compression method {self.method!r}; expected one of {METHODS}.")

    def encode(self, x: np.ndarray, key: tuple[int, ...], message: np.ndarray) -> np.ndarray:
        """Write x's message into ``message`` (uint8, nbytes long); returns what decode will give back.

        ``key`` (seed, round, sender, ...) seeds randk's indices and qsgd's
        rounding, so a receiver that knows it recreates randk's indices.
        """
        item = np.dtype(self.dtype)
        if self.method == "none":
            values = x.astype(item)
            message[:] = values.view(np.uint8)
            return values.astype(np.float64)
        if self.method == "topk":
            idx = np.sort(np.argpartition(np.abs(x), self.n - self.k)[self.n - self.k:]).astype(INDEX)
            values = x[idx].astype(item)
            split = self.k * INDEX.itemsize
            message[:split] = idx.view(np.uint8)
            message[split:] = values.view(np.uint8)
            return _scatter(self.n, idx, values)
        if self.method == "randk":
            idx = self.random_indices(key)
            values = x[idx].astype(item)
            message[:] = values.view(np.uint8)
            return _scatter(self.n, idx, values)
        if self.method == "qsgd":
            return self._encode_qsgd(x, key, message)
        return self._encode_int8(x, message)

    def decode(self, message: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
        """The float64 vector a message stands for."""
        item = np.dtype(self.dtype)
        if self.method == "none":
            return message.view(item).astype(np.float64)
        if self.method == "topk":
            split = self.k * INDEX.itemsize
            return _scatter(self.n, message[:split].view(INDEX), message[split:].view(item))
        if self.method == "randk":
            return _scatter(self.n, self.random_indices(key), message.view(item))
        if self.method == "qsgd":
            split = self.buckets * NORM.itemsize
            out = np.empty(self.n)
            codecs.qsgd_decode(message[split:], message[:split].view(NORM), self.bucket, self.levels, self.bits, out)
            if self.damped:
                out *= self.damping
            return out
        scale = float(message[: NORM.itemsize].view(NORM)[0])
        return message[NORM.itemsize:].view(np.int8).astype(np.float64) * scale

    def accumulate(self, message: np.ndarray, key: tuple[int, ...], out: np.ndarray) -> None:
        """out += the vector a message stands for; a sparse message touches only its k positions."""
        item = np.dtype(self.dtype)
        if self.method == "topk":
            split = self.k * INDEX.itemsize
            out[message[:split].view(INDEX)] += message[split:].view(item)  # indices are distinct
        elif self.method == "randk":
            out[self.random_indices(key)] += message.view(item)
        else:
            out += self.decode(message, key)

    def random_indices(self, key: tuple[int, ...]) -> np.ndarray:
        """randk's k indices for this key, sorted: the same on every rank that knows the key."""
        return np.sort(stream(key[0], Purpose.COMPRESSION, *key[1:]).choice(self.n, self.k, replace=False))

    def _encode_qsgd(self, x: np.ndarray, key: tuple[int, ...], message: np.ndarray) -> np.ndarray:
        """One kernel pass (mpifl.kernels.codecs): bucket norms, stochastic levels, packed codes; the vector
        returned is the message decoded, so sender and receiver agree to the bit."""
        split = self.buckets * NORM.itemsize
        norms = np.empty(self.buckets)
        packed = message[split:]
        packed[:] = 0
        uniforms = stream(key[0], Purpose.COMPRESSION, *key[1:]).random(self.n)
        codecs.qsgd_encode(np.ascontiguousarray(x, dtype=np.float64), uniforms, self.bucket, self.levels, self.bits,
                           norms, packed)
        message[:split] = norms.view(np.uint8)
        return self.decode(message, key)

    def _encode_int8(self, x: np.ndarray, message: np.ndarray) -> np.ndarray:
        largest = float(np.max(np.abs(x))) if self.n else 0.0
        scale = largest / 127.0 if largest > 0.0 else 1.0
        q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
        message[: NORM.itemsize] = np.array([scale], dtype=NORM).view(np.uint8)
        message[NORM.itemsize:] = q.view(np.uint8)
        return q.astype(np.float64) * scale


def _scatter(n: int, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(n)
    out[idx] = values
    return out


class ErrorFeedback:
    """Per-sender memory of what compression dropped: send C(update + e), keep e = update + e - C(update + e).

    ``residual`` is float64, one row per sender hosted on this rank; it is
    the state a checkpoint saves.  Without error feedback the residual stays
    zero and the codec sees the bare update.
    """

    def __init__(self, codec: Codec, senders: int, enabled: bool):
        self.codec = codec
        self.enabled = enabled
        self.residual = np.zeros((senders, codec.n))

    def send(self, j: int, update: np.ndarray, key: tuple[int, ...], message: np.ndarray) -> np.ndarray:
        """Encode sender j's flat update into ``message``; returns the float64 vector the receiver decodes."""
        corrected = update.astype(np.float64).reshape(-1)
        if self.enabled:
            corrected = corrected + self.residual[j]
        sent = self.codec.encode(corrected, key, message)
        if self.enabled:
            np.subtract(corrected, sent, out=self.residual[j])
        return sent


def codec_from_config(cfg, n: int, dtype: np.dtype) -> Codec:
    """The job's [compress] uplink codec for vectors of n values in ``dtype``."""
    return Codec(cfg["compress.uplink"], n, np.dtype(dtype), ratio=cfg["compress.ratio"], bits=cfg["compress.bits"],
                 bucket=cfg["compress.bucket"], damped=cfg["compress.error_feedback"])
