"""Distributed mode's sum over ranks with compressed contributions ([compress] with mode = "distributed").

How the compressed vectors travel depends on what their arithmetic allows:

- ``randk``: every rank draws the same k indices from (seed, round, step), so
  the k values add up position by position: one ``Allreduce`` of k values;
- ``topk``: each rank's indices differ, so the (index, value) pairs of every
  rank are exchanged and each rank adds them up.  k is the same on every rank
  (it follows from the model's size), so the exchange is an ``Allgather`` of
  fixed-size messages, which is ``Allgatherv`` with equal counts;
- ``qsgd`` and ``int8``: each rank's values are integers under its own
  scale (its bucket norms, its max |x|), and integers under different scales
  cannot be summed on the wire; an ``Allreduce`` with a common scale would have
  to carry wider integers to hold the sum (int32 for 8 bits), as many bytes as
  float32 saves nothing.  So their messages are allgathered too.

An Allgather's receive volume grows with the rank count while an Allreduce's
does not, which is why sparse and quantised exchanges pay off only below a
ratio that shrinks as ranks are added (benchmarks/compression.py projects it).
"""

from __future__ import annotations

from time import perf_counter

import numpy as np
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.compression import Codec, ErrorFeedback
from mpifl.metrics import RoundTimer


class CompressedSum:
    """The sum over ranks of one flat vector per rank, each sent through ``codec`` with optional error feedback."""

    def __init__(self, comm: MPI.Comm, codec: Codec, error_feedback: bool, seed: int, timer: RoundTimer):
        self.comm = comm
        self.codec = codec
        self.seed = seed
        self.timer = timer
        self.feedback = ErrorFeedback(codec, 1, error_feedback)
        self.shared_indices = codec.shares_indices
        self._message = np.zeros(codec.nbytes, dtype=np.uint8)
        if self.shared_indices:
            self._values = self._message.view(codec.dtype)
            self._summed = np.empty_like(self._values)
        else:
            self._gathered = np.empty((comm.Get_size(), codec.nbytes), dtype=np.uint8)
        self.uncompressed_bytes = codec.n * np.dtype(codec.dtype).itemsize  # what one uncompressed contribution is
        self.encode_seconds = 0.0  # since the last reset_timing(), also counted as the timer's compute
        self.decode_seconds = 0.0

    def reset_timing(self) -> None:
        self.encode_seconds = self.decode_seconds = 0.0

    def __call__(self, local: np.ndarray, out: np.ndarray, rnd: int, step: int) -> None:
        """out (float64, flat) = the sum over ranks of each rank's decoded compressed ``local``."""
        rank = self.comm.Get_rank()
        t0 = perf_counter()
        with self.timer.compute():
            key = (self.seed, rnd, step) if self.shared_indices else (self.seed, rnd, step, rank)
            self.feedback.send(0, local, key, self._message)
        self.encode_seconds += perf_counter() - t0
        self.timer.uplink_bytes_saved += self.uncompressed_bytes - self.codec.nbytes
        if self.shared_indices:
            collectives.allreduce_sum(self.comm, self._values, self._summed, self.timer)
        else:
            collectives.allgather(self.comm, self._message, self._gathered, self.timer)
        t0 = perf_counter()
        with self.timer.compute():
            out[:] = 0.0
            if self.shared_indices:
                out[self.codec.random_indices(key)] = self._summed
            else:
                for r, message in enumerate(self._gathered):
                    self.codec.accumulate(message, (self.seed, rnd, step, r), out)
        self.decode_seconds += perf_counter() - t0

    def state(self) -> dict[str, np.ndarray]:
        return {"compress.residual": self.feedback.residual} if self.feedback.enabled else {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if self.feedback.enabled and "compress.residual" in state:
            self.feedback.residual[...] = state["compress.residual"]
