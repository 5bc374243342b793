"""The CNN's kernels (mpifl.kernels.cnn) behind the ModelKernels calls, with one sample's buffers allocated once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mpifl.kernels import cnn
from mpifl.kernels.base import ModelKernels, is_csr
from mpifl.kernels.variants import Selection
from mpifl.links import KIND_CODES

if TYPE_CHECKING:
    from mpifl.model import ModelSpec


class CnnKernels(ModelKernels):
    """Buffers for one sample (activations, their gradients, the pooling's argmax) and the compiled calls."""

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
        size = int(self.aoff[-1])
        self.A = np.zeros(size, dtype=spec.dtype)
        self.D = np.zeros(size, dtype=spec.dtype)
        self.arg = np.zeros(size, dtype=np.int64)
        self._no_rows = np.empty(0, dtype=np.int64)
        self._no_correction = np.empty(0, dtype=spec.dtype)

    def _sums(self, X, y, theta, order, start, stop, grad, want_grad):
        if is_csr(X):
            raise TypeError("the CNN takes dense rows (images).")
        return cnn.rows_loss_grad(theta, X, y, order, start, stop, grad, self.A, self.D, self.arg, self.prog,
                                  self.poff, self.aoff, self.link, want_grad)

    def full_gradient_sum(self, X, y, theta, grad, want_loss=False) -> float:
        grad[:] = 0
        loss, _ = self._sums(X, y, theta, self._no_rows, 0, X.shape[0], grad, True)
        return float(loss) if want_loss else 0.0

    def batch_gradient_sum(self, X, y, theta, order, start, stop, grad, want_loss=False) -> float:
        grad[:] = 0
        loss, _ = self._sums(X, y, theta, order, start, stop, grad, True)
        return float(loss) if want_loss else 0.0

    def sgd_epoch(self, X, y, theta, velocity, grad, order, batch_size, lr, momentum, l2, hook=None):
        anchor, mu, correction = hook if hook is not None else (theta, 0.0, self._no_correction)
        if correction is None:
            correction = self._no_correction
        cnn.sgd_epoch(theta, velocity, grad, X, y, order, batch_size, lr, momentum, l2, self.mask, anchor, mu,
                      correction.reshape(-1), self.A, self.D, self.arg, self.prog, self.poff, self.aoff, self.link)

    def evaluate_sums(self, X, y, theta) -> tuple[float, int]:
        loss, correct = self._sums(X, y, theta, self._no_rows, 0, X.shape[0], self.D, False)
        return float(loss), int(correct)

    def finish_gradient(self, grad, theta, count, l2) -> None:
        grad *= 1.0 / count if count > 0 else 0.0
        grad += l2 * self.mask * theta

    def penalty(self, theta, l2) -> float:
        w = theta[self.mask > 0].astype(np.float64)
        return float(0.5 * l2 * (w @ w))
