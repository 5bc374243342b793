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
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from mpifl.constraints import Constraint, Interval
from mpifl.kernels import codecs
from mpifl.registry import Registry, defaults
from mpifl.rng import Purpose, stream

INDEX = np.dtype(np.int32)  # topk's indices: models beyond 2^31 parameters are out of scope
NORM = np.dtype(np.float64)  # qsgd's norm and int8's scale
OFF = "none"  # compress.uplink's value when updates travel uncompressed


class Codec(ABC):
    """One method at one setting, for vectors of ``n`` values whose dtype is ``dtype`` on the wire.

    A subclass declares its ``name`` and its ``compress.<key>`` ``parameters``
    as (default, constraint); the message size must follow from n and the
    parameters alone.  ``shares_indices`` says that every rank that knows the
    key sends values at the same positions (randk), so that distributed mode
    can sum the values with one Allreduce instead of exchanging messages.
    """

    name: ClassVar[str] = ""
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}
    shares_indices: ClassVar[bool] = False

    def __init__(self, n: int, dtype: np.dtype, params: Mapping[str, Any] | None = None, damped: bool = False):
        self.n = int(n)
        self.dtype = np.dtype(dtype)
        self.params = {**defaults(type(self)), **(params or {})}
        self.damped = damped  # under error feedback: see ``damping``

    @property
    def damping(self) -> float:
        """The factor that makes the codec contractive under error feedback; 1 for a contractive one."""
        return 1.0

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """The message's size in bytes, from n and the parameters alone."""

    @abstractmethod
    def encode(self, x: np.ndarray, key: tuple[int, ...], message: np.ndarray) -> np.ndarray:
        """Write x's message into ``message`` (uint8, nbytes long); returns what decode will give back.

        ``key`` (seed, round, sender, ...) seeds any randomness, so a receiver
        that knows it can recreate it (randk's indices).
        """

    @abstractmethod
    def decode(self, message: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
        """The float64 vector a message stands for."""

    def accumulate(self, message: np.ndarray, key: tuple[int, ...], out: np.ndarray) -> None:
        """out += the vector a message stands for."""
        out += self.decode(message, key)

    def random_indices(self, key: tuple[int, ...]) -> np.ndarray:
        """The positions a codec that shares its indices sends for this key, the same on every rank."""
        raise TypeError(f"codec {self.name!r} does not share its indices.")


RATIO = {"ratio": (0.1, Interval(float, 0, 1, "right"))}  # topk, randk: share of the values sent


class Uncompressed(Codec):
    """The values themselves, in the wire dtype: what compress.uplink = "none" stands for."""

    name = OFF

    @property
    def nbytes(self):
        return self.n * self.dtype.itemsize

    def encode(self, x, key, message):
        values = x.astype(self.dtype)
        message[:] = values.view(np.uint8)
        return values.astype(np.float64)

    def decode(self, message, key):
        return message.view(self.dtype).astype(np.float64)


class TopK(Codec):
    """The k = ceil(ratio n) largest magnitudes, as int32 indices and values."""

    name = "topk"
    parameters = RATIO

    @property
    def k(self) -> int:
        return min(self.n, max(1, math.ceil(self.params["ratio"] * self.n)))

    @property
    def nbytes(self):
        return self.k * (INDEX.itemsize + self.dtype.itemsize)

    def encode(self, x, key, message):
        idx = np.sort(np.argpartition(np.abs(x), self.n - self.k)[self.n - self.k:]).astype(INDEX)
        values = x[idx].astype(self.dtype)
        split = self.k * INDEX.itemsize
        message[:split] = idx.view(np.uint8)
        message[split:] = values.view(np.uint8)
        return _scatter(self.n, idx, values)

    def decode(self, message, key):
        split = self.k * INDEX.itemsize
        return _scatter(self.n, message[:split].view(INDEX), message[split:].view(self.dtype))

    def accumulate(self, message, key, out):
        split = self.k * INDEX.itemsize
        out[message[:split].view(INDEX)] += message[split:].view(self.dtype)  # indices are distinct


class RandK(TopK):
    """k values at indices drawn from (key): only the values travel."""

    name = "randk"
    shares_indices = True

    @property
    def nbytes(self):
        return self.k * self.dtype.itemsize

    def encode(self, x, key, message):
        idx = self.random_indices(key)
        values = x[idx].astype(self.dtype)
        message[:] = values.view(np.uint8)
        return _scatter(self.n, idx, values)

    def decode(self, message, key):
        return _scatter(self.n, self.random_indices(key), message.view(self.dtype))

    def accumulate(self, message, key, out):
        out[self.random_indices(key)] += message.view(self.dtype)

    def random_indices(self, key):
        """randk's k indices for this key, sorted: the same on every rank that knows the key."""
        return np.sort(stream(key[0], Purpose.COMPRESSION, *key[1:]).choice(self.n, self.k, replace=False))


class QSGD(Codec):
    """Per bucket its norm, per value a sign and one of s = 2^(bits-1) - 1 levels, stochastically rounded."""

    name = "qsgd"
    parameters = {"bits": (4, Interval(int, 2, 8)),  # bits per value, sign included
                  "bucket": (128, Interval(int, 1, None))}  # values that share one norm

    @property
    def levels(self) -> int:
        """s: magnitude levels besides zero."""
        return 2 ** (self.params["bits"] - 1) - 1

    @property
    def buckets(self) -> int:
        return max(1, math.ceil(self.n / self.params["bucket"]))

    @property
    def damping(self) -> float:
        """qsgd's variance is at most omega |x|^2 with omega = min(d / s^2, sqrt(d) / s) for buckets of d values
        and s levels (Alistarh et al. 2017, Lemma 3.1); C(x) / (1 + omega) then satisfies the contraction
        that error feedback's analysis needs (Stich et al. 2018; Karimireddy et al. 2019).  Without error
        feedback it is 1."""
        if not self.damped:
            return 1.0
        d, s = min(self.params["bucket"], self.n), self.levels
        return 1.0 / (1.0 + min(d / s ** 2, math.sqrt(d) / s))

    @property
    def nbytes(self):
        return self.buckets * NORM.itemsize + math.ceil(self.n * self.params["bits"] / 8)

    def encode(self, x, key, message):
        """One kernel pass (mpifl.kernels.codecs): bucket norms, stochastic levels, packed codes; the vector
        returned is the message decoded, so sender and receiver agree to the bit."""
        split = self.buckets * NORM.itemsize
        norms = np.empty(self.buckets)
        packed = message[split:]
        packed[:] = 0
        uniforms = stream(key[0], Purpose.COMPRESSION, *key[1:]).random(self.n)
        codecs.qsgd_encode(np.ascontiguousarray(x, dtype=np.float64), uniforms, self.params["bucket"], self.levels,
                           self.params["bits"], norms, packed)
        message[:split] = norms.view(np.uint8)
        return self.decode(message, key)

    def decode(self, message, key):
        split = self.buckets * NORM.itemsize
        out = np.empty(self.n)
        codecs.qsgd_decode(message[split:], message[:split].view(NORM), self.params["bucket"], self.levels,
                           self.params["bits"], out)
        if self.damped:
            out *= self.damping
        return out


class Int8(Codec):
    """A scale max|x| / 127 and each value rounded to the nearest int8."""

    name = "int8"

    @property
    def nbytes(self):
        return NORM.itemsize + self.n

    def encode(self, x, key, message):
        largest = float(np.max(np.abs(x))) if self.n else 0.0
        scale = largest / 127.0 if largest > 0.0 else 1.0
        q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
        message[: NORM.itemsize] = np.array([scale], dtype=NORM).view(np.uint8)
        message[NORM.itemsize:] = q.view(np.uint8)
        return q.astype(np.float64) * scale

    def decode(self, message, key):
        scale = float(message[: NORM.itemsize].view(NORM)[0])
        return message[NORM.itemsize:].view(np.int8).astype(np.float64) * scale


CODECS: Registry = Registry("codec", "compress.uplink", Codec)
for _cls in (Uncompressed, TopK, RandK, QSGD, Int8):
    CODECS.register(_cls)
METHODS = tuple(CODECS)


def make_codec(method: str, n: int, dtype: np.dtype, damped: bool = False, **params: Any) -> Codec:
    """The codec a name or path stands for, for vectors of n values, with the given parameters."""
    cls = CODECS[method]
    unknown = set(params) - set(cls.parameters)
    if unknown:
        raise TypeError(f"codec {method!r} has no parameter(s) {sorted(unknown)}; it declares {list(cls.parameters)}.")
    return cls(n, dtype, params, damped)


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


def codec_from_config(cfg, n: int, dtype: np.dtype) -> Codec | None:
    """The job's [compress] uplink codec for vectors of n values in ``dtype``; None when updates travel whole."""
    if cfg.compress.uplink == OFF:
        return None
    cls = CODECS[cfg.compress.uplink]
    params = cfg.compress.pick(cls.parameters)
    return cls(n, np.dtype(dtype), params, damped=cfg.compress.error_feedback)
