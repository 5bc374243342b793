"""A model kind from one loss-and-gradient function in NumPy or Numba: the quickest way to bring a model.

Subclass ``GradientModel``, give the parameters' ``shape``, the output
``link_name`` (the loss the function computes: "linear", "logistic" or
"softmax", which also decides the task, the metrics and the data checks)
and ``loss_and_gradient``; name the class in a job as
``model.kind = "my_fl.models:MyModel"``.  mpifl then runs it in both modes,
with every strategy, stage, checkpoint and resume, through ``FunctionKernels``:
the same mini-batch SGD step as the compiled kernels (mean gradient, l2 on
the penalised entries, the local objective's hook, heavy-ball momentum), in
NumPy around the user's function.  A Numba ``@njit`` function is called the
same way; it is compiled in the warm-up, so compile time stays out of the
rounds.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mpifl.kernels.base import ModelKernels, is_csr, trained_range
from mpifl.kernels.variants import Selection
from mpifl.models.base import ModelKind

NOTE = "a user's gradient function (one variant, NumPy around it)"


class GradientModel(ModelKind):
    """Subclass and override ``shape`` and ``loss_and_gradient`` (and ``initial``, ``penalised`` if needed)."""

    link_name: ClassVar[str] = "softmax"
    uses_blas = True  # the user's compiled code may call np.dot
    one_variant = NOTE

    @staticmethod
    def shape(n_features: int, n_outputs: int) -> tuple[int, ...]:
        """The parameters' shape."""
        raise TypeError("a GradientModel declares its parameters' shape")

    @staticmethod
    def loss_and_gradient(theta: np.ndarray, X: np.ndarray, y: np.ndarray, grad: np.ndarray) -> tuple[float, int]:
        """Add the gradient of the loss summed over the rows of X to ``grad`` (theta's shape); return the summed
        loss and the number of correct predictions (0 for regression)."""
        raise TypeError("a GradientModel declares its loss_and_gradient")

    @staticmethod
    def initial(shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        """The starting parameters (zeros; a non-convex model draws them from ``rng``, seeded from the job)."""
        return np.zeros(shape, dtype=dtype)

    @staticmethod
    def penalised(shape: tuple[int, ...]) -> np.ndarray:
        """Where model.l2 applies (every entry unless a subclass spares its biases)."""
        return np.ones(shape, dtype=bool)

    @classmethod
    def link(cls, cfg) -> str:
        return cls.link_name

    @classmethod
    def spec_fields(cls, cfg) -> dict:
        return {"output": cls.link_name}

    @classmethod
    def layout(cls, spec):
        return FunctionLayout(cls, spec.n_features, spec.n_outputs)

    @staticmethod
    def kernels() -> type:
        return FunctionKernels


def check_function_model(cls: type) -> str | None:
    """What a GradientModel must declare: its shape and its function, and a link mpifl knows."""
    if not issubclass(cls, GradientModel):
        return None
    for name in ("shape", "loss_and_gradient"):
        if getattr(cls, name) is getattr(GradientModel, name):
            return f"it does not declare {name} (a GradientModel needs its shape and its loss_and_gradient)."
    if cls.link_name not in ("linear", "logistic", "softmax"):
        return f"its link_name must be 'linear', 'logistic' or 'softmax'; got {cls.link_name!r}."
    return None


class FunctionLayout:
    """A function model's parameters: shape, seeded start and l2 mask, from its class."""

    def __init__(self, kind: type[GradientModel], n_features: int, n_outputs: int):
        self.kind = kind
        self.shape = tuple(kind.shape(n_features, n_outputs))

    def initial(self, seed: int, dtype: np.dtype) -> np.ndarray:
        from mpifl.rng import Purpose, stream

        return np.ascontiguousarray(self.kind.initial(self.shape, stream(seed, Purpose.MODEL_INIT), dtype),
                                    dtype=dtype)

    def penalised(self) -> np.ndarray:
        return np.asarray(self.kind.penalised(self.shape), dtype=bool)


class FunctionKernels(ModelKernels):
    """The ModelKernels calls around a user's loss-and-gradient function (dense rows only)."""

    def __init__(self, spec, threads: int = 1, selection: Selection | None = None):
        if spec.sparse:
            raise TypeError("a GradientModel takes dense rows; this data is CSR.")
        self.spec = spec
        self.threads = threads
        self.selection = selection if selection is not None else Selection(how="default",
                                                                           note=spec.kind.one_variant)
        self.function = getattr(spec.kind, "loss_and_gradient", None)
        self.mask = spec.penalised()
        self._scratch = spec.zeros()

    def _rows(self, X, y, order, start, stop):
        rows = order[start:stop] if order.size else np.arange(start, stop)
        return X[rows], y[rows]

    def full_gradient_sum(self, X, y, theta, grad, want_loss=False) -> float:
        grad[...] = 0
        loss, _ = self.function(theta, X, y, grad)
        return float(loss) if want_loss else 0.0

    def batch_gradient_sum(self, X, y, theta, order, start, stop, grad, want_loss=False) -> float:
        grad[...] = 0
        loss, _ = self.function(theta, *self._rows(X, y, order, start, stop), grad)
        return float(loss) if want_loss else 0.0

    def sgd_epoch(self, X, y, theta, velocity, grad, order, batch_size, lr, momentum, l2, hook=None, trainable=None):
        """The compiled kernels' step, in NumPy: mean gradient + l2 W, then mu (theta - anchor) + correction,
        then velocity = momentum velocity + grad and theta -= lr velocity (plain SGD at momentum 0), on the
        ``trainable`` slice of the flat parameters only (None: all of them)."""
        anchor, mu, correction = hook if hook is not None else (theta, 0.0, None)
        part = slice(*trained_range(trainable, theta.size))
        flat_theta, flat_grad, flat_velocity = theta.reshape(-1), grad.reshape(-1), velocity.reshape(-1)
        n = order.shape[0]
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            grad[...] = 0
            self.function(theta, *self._rows(X, y, order, s, e), grad)
            self.finish_gradient(grad, theta, e - s, l2)
            if mu != 0.0:
                grad += mu * (theta - anchor)
            if correction is not None and correction.size:
                grad += correction
            if momentum != 0.0:
                flat_velocity[part] *= momentum
                flat_velocity[part] += flat_grad[part]
                np.multiply(flat_velocity[part], lr, out=flat_grad[part])  # grad is scratch now: no temporary
            else:
                flat_grad[part] *= lr
            flat_theta[part] -= flat_grad[part]

    def evaluate_sums(self, X, y, theta) -> tuple[float, int]:
        if is_csr(X):
            raise TypeError("a GradientModel takes dense rows.")
        loss, correct = self.function(theta, X, y, self._scratch)
        return float(loss), int(correct)

    def finish_gradient(self, grad, theta, count, l2) -> None:
        grad *= 1.0 / count if count > 0 else 0.0
        if l2:
            grad += np.where(self.mask, l2 * theta, 0.0).astype(grad.dtype)

    def penalty(self, theta, l2) -> float:
        w = theta[self.mask].astype(np.float64)
        return float(0.5 * l2 * (w @ w))
