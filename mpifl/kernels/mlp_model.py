"""The MLP's kernels behind the ModelKernels calls, on its flat parameter vector."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from mpifl.kernels.base import ModelKernels, is_csr, trained_range
from mpifl.kernels.mlp import (
    ACTIVATIONS, CHUNK_ROWS, MlpBuffers, finish_flat_gradient, mlp_entries, weight_penalty,
)
from mpifl.kernels.variants import DEFAULT, Selection

if TYPE_CHECKING:
    from mpifl.model import ModelSpec



@functools.cache
def _entries(kind: int, activation: int):
    return mlp_entries(kind, activation, DEFAULT.code)


class MlpKernels(ModelKernels):
    """Buffers for batches of up to the largest batch seen (at least CHUNK_ROWS rows), grown once if a
    larger batch comes, and the fused calls.  With ``threads`` above 1 the full-batch gradient runs on
    that many fixed row ranges, each with its own buffers made here."""

    def __init__(self, spec: ModelSpec, threads: int = 1, selection: Selection | None = None):
        self.spec = spec
        self.threads = threads
        self.selection = selection if selection is not None else Selection(how="default")  # one variant
        layout = spec.layout
        self._offsets = layout.offsets
        self._widths = np.array(layout.widths, dtype=np.int64)
        self._sgd, self._full, self._full_threaded, self._batch, self._evaluate, self._cohort = _entries(
            spec.code, ACTIVATIONS[spec.activation])
        self._buffers = MlpBuffers.allocate(layout, CHUNK_ROWS, spec.dtype, spec.sparse)
        if threads > 1:
            each = [MlpBuffers.allocate(layout, CHUNK_ROWS, spec.dtype, spec.sparse) for _ in range(threads)]
            self._per_thread = tuple(np.stack([getattr(b, name) for b in each]) for name in ("A", "D", "G", "E"))
            self._partial = np.empty((threads, layout.size), dtype=spec.dtype)
        self._rows = CHUNK_ROWS
        self._no_correction = np.empty(0, dtype=spec.dtype)

    def _room(self, rows: int) -> MlpBuffers:
        if rows > self._rows:
            self._buffers = MlpBuffers.allocate(self.spec.layout, rows, self.spec.dtype, self.spec.sparse)
            self._rows = rows
        return self._buffers

    def full_gradient_sum(self, X, y, theta, grad, want_loss=False) -> float:
        X = _rows(X)
        if self.threads > 1:
            As, Ds, Gs, Es = self._per_thread
            return self._full_threaded(theta, self._offsets, self._widths, X, y, grad, self._partial, As, Ds, Gs, Es,
                                       want_loss)
        b = self._buffers
        return self._full(theta, self._offsets, self._widths, X, y, grad, b.A, b.D, b.G, b.E, want_loss)

    def batch_gradient_sum(self, X, y, theta, order, start, stop, grad, want_loss=False) -> float:
        X = _rows(X)
        b = self._room(stop - start)
        return self._batch(theta, self._offsets, self._widths, X, y, order, start, stop, grad, b.A, b.D, b.G, b.E,
                           want_loss)

    def sgd_epoch(self, X, y, theta, velocity, grad, order, batch_size, lr, momentum, l2, hook=None, trainable=None):
        """One local epoch of mini-batch SGD over rows in ``order``; ``hook`` as in LinearKernels.sgd_epoch;
        ``trainable`` a slice of theta to train, the rest frozen (None: all of it)."""
        X = _rows(X)
        anchor, mu, correction = hook if hook is not None else (theta, 0.0, self._no_correction)
        correction = self._no_correction if correction is None else correction.reshape(-1)
        b = self._room(batch_size)
        self._sgd(theta, self._offsets, self._widths, X, y, velocity, grad, b.A, b.D, b.G, b.E, order, batch_size, lr,
                  momentum, l2, anchor.reshape(-1), mu, correction, *trained_range(trainable, theta.size))

    trains_cohorts = True

    def train_cohort(self, X, y, starts, entropy, ids, epochs, theta, deltas, batch_size, lr, momentum, l2) -> None:
        """A cohort of clients in one call (mpifl.cohort): dense rows, the buffers sized for its largest batch."""
        spec = self.spec
        most = int(np.diff(starts).max())
        b = self._room(batch_size if batch_size > 0 else most)
        self._cohort(theta, self._offsets, self._widths, X, y, starts, entropy, ids, epochs, spec.zeros(),
                     spec.zeros(), spec.zeros(), b.A, b.D, b.G, b.E, np.empty(most, dtype=np.int64), deltas,
                     batch_size, lr, momentum, l2, self._no_correction)

    def evaluate_sums(self, X, y, theta) -> tuple[float, int]:
        X = _rows(X)
        b = self._buffers
        loss, correct = self._evaluate(theta, self._offsets, self._widths, X, y, b.A, b.D, b.E)
        return float(loss), int(correct)

    def finish_gradient(self, grad, theta, count, l2) -> None:
        finish_flat_gradient(grad, theta, count, l2, self._offsets)

    def penalty(self, theta, l2) -> float:
        return float(weight_penalty(theta, self._offsets, l2))


def _rows(X):
    """X as the kernels take it: a dense 2-D array, or CSR as the tuple (data, indices, indptr)."""
    return (X.data, X.indices, X.indptr) if is_csr(X) else X
