"""What a model is, for everything outside the kernels: its kind, sizes and parameter vector.

A linear model (linear, logistic or softmax regression) keeps its parameters
as one ``(outputs, features + 1)`` matrix, each row's last entry the bias.
An MLP keeps them as one flat vector whose layers are views
(mpifl.layout.MlpLayout).  The collectives, strategies and checkpoints
see ``shape``, ``size``, ``zeros()`` and ``initial()`` only; the spec carries
its model kind (mpifl.models), which lays the parameters out and names the
kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mpifl.layout import MlpLayout
from mpifl.links import KIND_CODES
from mpifl.rng import Purpose, stream

@dataclass(frozen=True)
class LinearParameters:
    """A linear model's ``(outputs, features + 1)`` matrix: row c holds output c's weights, then its bias."""

    n_features: int
    n_outputs: int

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_outputs, self.n_features + 1)

    def initial(self, seed: int, dtype: np.dtype) -> np.ndarray:
        """Zeros: the problem is convex, so any start reaches the same optimum."""
        return np.zeros(self.shape, dtype=dtype)

    def penalised(self) -> np.ndarray:
        mask = np.ones(self.shape, dtype=bool)
        mask[:, -1] = False
        return mask


@dataclass(frozen=True)
class MlpParameters:
    """An MLP's flat vector, its layers views into it (mpifl.layout.MlpLayout)."""

    layout: MlpLayout
    activation: str

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.layout.size,)

    def initial(self, seed: int, dtype: np.dtype) -> np.ndarray:
        """Seeded He (ReLU) or Glorot (tanh) weights: zeros would keep every hidden unit identical."""
        return self.layout.initial(stream(seed, Purpose.MODEL_INIT), self.activation, dtype)

    def penalised(self) -> np.ndarray:
        return self.layout.penalised()


@dataclass(frozen=True)
class ModelSpec:
    """A model: its kind, data sizes and dtype; its parameters' shape, start and l2 mask come from
    the kind's layout.

    ``kind`` is the model kind's class itself (a mpifl.models.ModelKind, ``MODELS["mlp"]``), so that the spec
    answers for its layout and kernels without looking its own kind up in the registry."""

    kind: Any  # the ModelKind subclass
    n_features: int
    n_classes: int
    dtype: np.dtype
    sparse: bool = False  # rows arrive as CSR (LIBSVM data)
    output: str = ""  # the output link (linear, logistic or softmax) when the kind has one apart from its name
    hidden: tuple[int, ...] = ()  # an MLP's hidden layer widths
    activation: str = "relu"  # an MLP's hidden activation
    layers: tuple[str, ...] = ()  # a CNN's layers, as model.layers writes them
    input_shape: tuple[int, ...] = ()  # a CNN's [channels, height, width]; empty: one channel of a square image
    module: str = ""  # a torch model's "package.module:build"
    init_seed: int = 0  # the seed a kind's own initialisation draws from on every rank (a torch module's build)
    options: tuple[tuple[str, Any], ...] = ()  # a kind's own settings as (key, value) pairs (spec.option(key))

    def option(self, key: str, default: Any = "") -> Any:
        """One of the kind's own settings (a torch module's buffer policy, head, loss)."""
        return dict(self.options).get(key, default)

    @property
    def name(self) -> str:
        """The kind's name, as model.kind writes it: a registered name, or a user's kind's module:Class path."""
        return self.kind.name or f"{self.kind.__module__}:{self.kind.__qualname__}"

    @property
    def link(self) -> str:
        """The output link, which is also the task's loss: squared, log-loss or cross-entropy."""
        return self.output or self.kind.name

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
    def parameters(self) -> LinearParameters | MlpParameters:
        return self.kind.layout(self)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.parameters.shape

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def is_classifier(self) -> bool:
        return self.link != "linear"

    @property
    def head_size(self) -> int:
        """Values at the end of theta that form the output layer (the head FedRep and FedPer keep per client)."""
        return self.kind.head_size(self)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)

    def initial(self, seed: int) -> np.ndarray:
        """The starting model."""
        return self.parameters.initial(seed, self.dtype)

    def penalised(self) -> np.ndarray:
        """True where model.l2 applies: the weights, never a bias."""
        return self.parameters.penalised()
