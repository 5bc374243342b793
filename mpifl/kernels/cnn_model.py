"""The CNN's kernels (mpifl.kernels.cnn) behind the ModelKernels calls, with one sample's buffers allocated once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mpifl.kernels import cnn
from mpifl.kernels.base import ModelKernels, is_csr, trained_range
from mpifl.kernels.variants import Selection
from mpifl.links import KIND_CODES

if TYPE_CHECKING:
    from mpifl.model import ModelSpec


ALIGNMENT = 64  # bytes: a cache line, and the widest vector register


def aligned(size: int, dtype: np.dtype) -> np.ndarray:
    """Zeros whose first element sits on an ALIGNMENT-byte boundary."""
    item = np.dtype(dtype).itemsize
    raw = np.zeros(size + ALIGNMENT // item, dtype=dtype)
    skip = (-raw.ctypes.data % ALIGNMENT) // item
    return raw[skip:skip + size]


CHUNK = 64  # rows a batch's buffers hold: a larger mini-batch runs in pieces of this many (its gradient summed)


class CnnKernels(ModelKernels):
    """Buffers for batches of up to CHUNK rows (activations, their gradients, the pooling's argmax, im2col columns,
    GEMM outputs, weight gradients) and the compiled calls."""

    def __init__(self, spec: ModelSpec, threads: int = 1, selection: Selection | None = None):
        if spec.sparse:
            raise TypeError("the CNN takes dense rows (images); this data is CSR.")
        layout = spec.parameters
        self.spec = spec
        self.threads = threads
        self.selection = selection if selection is not None else Selection(how="default")  # one variant
        self.prog, self.poff, self.aoff = layout.prog, layout.poff, layout.aoff
        self.mask = layout.mask.astype(spec.dtype)
        self.link = KIND_CODES[spec.link]
        self.chunk = CHUNK
        acts, cols, mat, wbuf = cnn.workspace(self.prog, self.aoff, self.chunk)
        # Aligned alike in every process: BLAS takes the same code path (and so the same rounding) every run.
        self.A, self.D, self.cols, self.mat, self.wbuf = (aligned(size, spec.dtype) for size in
                                                          (acts, acts, cols, mat, wbuf))
        self.arg = np.zeros(acts, dtype=np.int64)
        self._no_rows = np.empty(0, dtype=np.int64)
        self._no_correction = np.empty(0, dtype=spec.dtype)

    def _sums(self, X, y, theta, order, start, stop, grad, want_grad):
        if is_csr(X):
            raise TypeError("the CNN takes dense rows (images).")
        return cnn.rows_loss_grad(theta, X, y, order, start, stop, grad, self.A, self.D, self.arg, self.cols,
                                  self.mat, self.wbuf, self.prog, self.poff, self.aoff, self.link, want_grad,
                                  self.chunk)

    def full_gradient_sum(self, X, y, theta, grad, want_loss=False) -> float:
        grad[:] = 0
        loss, _ = self._sums(X, y, theta, self._no_rows, 0, X.shape[0], grad, True)
        return float(loss) if want_loss else 0.0

    def batch_gradient_sum(self, X, y, theta, order, start, stop, grad, want_loss=False) -> float:
        grad[:] = 0
        loss, _ = self._sums(X, y, theta, order, start, stop, grad, True)
        return float(loss) if want_loss else 0.0

    def sgd_epoch(self, X, y, theta, velocity, grad, order, batch_size, lr, momentum, l2, hook=None, trainable=None):
        anchor, mu, correction = hook if hook is not None else (theta, 0.0, self._no_correction)
        if correction is None:
            correction = self._no_correction
        cnn.sgd_epoch(theta, velocity, grad, X, y, order, batch_size, lr, momentum, l2, self.mask, anchor, mu,
                      correction.reshape(-1), self.A, self.D, self.arg, self.cols, self.mat, self.wbuf, self.prog,
                      self.poff, self.aoff, self.link, self.chunk, *trained_range(trainable, theta.size))

    def evaluate_sums(self, X, y, theta) -> tuple[float, int]:
        loss, correct = self._sums(X, y, theta, self._no_rows, 0, X.shape[0], self.D, False)
        return float(loss), int(correct)

    def finish_gradient(self, grad, theta, count, l2) -> None:
        grad *= 1.0 / count if count > 0 else 0.0
        grad += l2 * self.mask * theta

    def penalty(self, theta, l2) -> float:
        w = theta[self.mask > 0].astype(np.float64)
        return float(0.5 * l2 * (w @ w))
