"""The linear models' kernels (linear, logistic and softmax regression) behind the ModelKernels calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mpifl.kernels.base import ModelKernels, is_csr, trained_range
from mpifl.kernels.drivers import add_l2_and_scale, l2_penalty
from mpifl.kernels.entries import entry_points
from mpifl.kernels.losses import CHUNK
from mpifl.kernels.variants import Selection, default_selection

if TYPE_CHECKING:
    from mpifl.model import ModelSpec


class LinearKernels(ModelKernels):
    """Scratch buffers for one model, allocated once, and the calls that use them.

    Every method takes and fills preallocated C-contiguous arrays of the
    model's dtype; nothing here allocates per call except the threaded path's
    fixed per-thread buffers made at construction.  X is a dense array or a
    mpifl.data.sparse.CSR (anything with data, indices and indptr).

    ``selection`` says which variant the full-batch calls (gradient,
    evaluation) and the mini-batch calls (SGD epochs, batch gradients) run;
    mpifl.tuning chooses it by measurement.  Left out, it is the variant
    pinned by MPIFL_KERNEL_VARIANT, else the default one.
    """

    def __init__(self, spec: ModelSpec, threads: int = 1, selection: Selection | None = None):
        self.spec = spec
        self.threads = threads
        self.selection = selection if selection is not None else default_selection()
        self._full = self.selection.gradient.code
        self._batch = self.selection.sgd.code
        # Entries compile on first call, for this kind and these variants only.
        self._dense_full = entry_points("dense", spec.code, self._full)
        self._dense_batch = entry_points("dense", spec.code, self._batch)
        self._csr_full = entry_points("csr", spec.code, self._full)
        self._csr_batch = entry_points("csr", spec.code, self._batch)
        width = CHUNK * spec.n_outputs
        self._Z = np.empty(width, dtype=spec.dtype)
        self._E = np.empty(width, dtype=spec.dtype)
        self._no_correction = np.empty((0, 0), dtype=spec.dtype)
        self._W: np.ndarray | None = None
        if threads > 1:
            self._partial = np.empty((threads, *spec.shape), dtype=spec.dtype)
            self._Zs = np.empty((threads, width), dtype=spec.dtype)
            self._Es = np.empty((threads, width), dtype=spec.dtype)

    def full_gradient_sum(self, X, y, theta, grad, want_loss=False) -> float:
        """Summed gradient over all rows into grad; the summed loss if asked (else 0)."""
        if is_csr(X):
            W = self._csr_working_arrays()
            if self.threads > 1:
                return self._csr_full.full_gradient_threaded(
                    X.data, X.indices, X.indptr, y, theta, grad, self._partial, self._Zs, self._Es, W, want_loss
                )
            return self._csr_full.full_gradient(X.data, X.indices, X.indptr, y, theta, grad, self._Z, self._E, W[0],
                                                want_loss)
        if self.threads > 1:
            return self._dense_full.full_gradient_threaded(X, y, theta, grad, self._partial, self._Zs, self._Es, want_loss)
        return self._dense_full.full_gradient(X, y, theta, grad, self._Z, self._E, want_loss)

    def _csr_working_arrays(self) -> np.ndarray:
        """One (d, 2C) array per thread for the single-pass CSR walk (mpifl.kernels.csr_single_pass), made on the
        first CSR full gradient that needs it: dense jobs and the other variants never pay for it."""
        if self._W is None:
            single = self.selection.gradient.single_pass
            shape = (self.threads, self.spec.n_features, 2 * self.spec.n_outputs) if single else (self.threads, 0, 0)
            self._W = np.empty(shape, dtype=self.spec.dtype)
        return self._W

    def batch_gradient_sum(self, X, y, theta, order, start, stop, grad, want_loss=False) -> float:
        """Summed gradient over rows order[start:stop] into grad."""
        if is_csr(X):
            return self._csr_batch.batch_gradient(
                X.data, X.indices, X.indptr, y, theta, order, start, stop, grad, self._Z, self._E, want_loss
            )
        return self._dense_batch.batch_gradient(X, y, theta, order, start, stop, grad, self._Z, self._E, want_loss)

    def sgd_epoch(self, X, y, theta, velocity, grad, order, batch_size, lr, momentum, l2, hook=None, trainable=None):
        """One local epoch of mini-batch SGD over rows in ``order``, updating theta in place.

        ``hook`` is the local objective's (anchor, mu, correction), or None for
        the plain loss; see mpifl.kernels.drivers.objective_hook.  A linear
        model is one layer, so it trains whole (``trainable`` is None).
        """
        if trained_range(trainable, theta.size) != (0, theta.size):
            raise ValueError("A linear model has one layer: it has no part to freeze.")
        anchor, mu, correction = hook if hook is not None else (theta, 0.0, self._no_correction)
        if correction is None:
            correction = self._no_correction
        if is_csr(X):
            self._csr_batch.sgd_epoch(
                X.data, X.indices, X.indptr, y, theta, velocity, grad, self._Z, self._E,
                order, batch_size, lr, momentum, l2, anchor, mu, correction,
            )
            return
        self._dense_batch.sgd_epoch(
            X, y, theta, velocity, grad, self._Z, self._E, order, batch_size, lr, momentum, l2, anchor, mu, correction
        )

    trains_cohorts = True

    def train_cohort(self, X, y, starts, entropy, ids, epochs, theta, deltas, batch_size, lr, momentum, l2) -> None:
        """A cohort of clients in one call of the dense cohort kernel (mpifl.cohort), in the SGD variant's loops."""
        spec = self.spec
        order = np.empty(int(np.diff(starts).max()), dtype=np.int64)
        self._dense_batch.cohort_sgd(X, y, starts, entropy, ids, epochs, theta, spec.zeros(), spec.zeros(),
                                     spec.zeros(), self._Z, self._E, order, deltas, batch_size, lr, momentum, l2,
                                     self._no_correction)

    def evaluate_sums(self, X, y, theta) -> tuple[float, int]:
        """(summed loss, correct predictions) of theta on X, y."""
        if is_csr(X):
            loss, correct = self._csr_full.evaluate(X.data, X.indices, X.indptr, y, theta, self._Z, self._E)
        else:
            loss, correct = self._dense_full.evaluate(X, y, theta, self._Z, self._E)
        return float(loss), int(correct)

    @staticmethod
    def finish_gradient(grad, theta, count, l2) -> None:
        """Summed data gradient -> mean gradient + l2 * W, in place."""
        add_l2_and_scale(grad, theta, count, l2)

    @staticmethod
    def penalty(theta, l2) -> float:
        return float(l2_penalty(theta, l2))
