"""What a model is, for everything outside the kernels: its kind, sizes and parameter vector.

A linear model (linear, logistic or softmax regression) keeps its parameters
as one ``(outputs, features + 1)`` matrix, each row's last entry the bias.
An MLP keeps them as one flat vector whose layers are views
(mpifl.kernels.mlp.MlpLayout).  The collectives, strategies and checkpoints
see ``shape``, ``size``, ``zeros()`` and ``initial()`` only, so a model kind is
one entry in mpifl.kernels' registry and one case here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpifl.kernels.flags import KIND_CODES
from mpifl.kernels.mlp import MlpLayout
from mpifl.rng import Purpose, stream

LINEAR_KINDS = ("linear", "logistic", "softmax")


@dataclass(frozen=True)
class ModelSpec:
    """A model: for the linear kinds ``theta[c, :d]`` are output c's weights and ``theta[c, d]`` its bias."""

    kind: str
    n_features: int
    n_classes: int
    dtype: np.dtype
    sparse: bool = False  # rows arrive as CSR (LIBSVM data)
    output: str = ""  # an MLP's output link (linear, logistic or softmax); a linear kind's is itself
    hidden: tuple[int, ...] = ()  # an MLP's hidden layer widths
    activation: str = "relu"  # an MLP's hidden activation

    @property
    def link(self) -> str:
        """The output link, which is also the task's loss: squared, log-loss or cross-entropy."""
        return self.output if self.kind == "mlp" else self.kind

    @property
    def code(self) -> int:
        return KIND_CODES[self.link]

    @property
    def n_outputs(self) -> int:
        return self.n_classes if self.link == "softmax" else 1

    @property
    def layout(self) -> MlpLayout:
        """An MLP's layers in its flat parameter vector."""
        return MlpLayout((self.n_features, *self.hidden, self.n_outputs))

    @property
    def shape(self) -> tuple[int, ...]:
        if self.kind == "mlp":
            return (self.layout.size,)
        return (self.n_outputs, self.n_features + 1)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def is_classifier(self) -> bool:
        return self.link != "linear"

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)

    def initial(self, seed: int) -> np.ndarray:
        """The starting model: zeros for a linear model (a convex problem), seeded He or Glorot weights for an
        MLP (zeros would keep every hidden unit identical)."""
        if self.kind != "mlp":
            return self.zeros()
        return self.layout.initial(stream(seed, Purpose.MODEL_INIT), self.activation, self.dtype)

    def penalised(self) -> np.ndarray:
        """True where model.l2 applies: the weights, never a bias."""
        if self.kind == "mlp":
            return self.layout.penalised()
        mask = np.ones(self.shape, dtype=bool)
        mask[:, -1] = False
        return mask
