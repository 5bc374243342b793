"""Where each layer of a flat parameter vector sits: the layout the MLP's kernels and the model spec share.

Pure NumPy views, no compiled code: mpifl.model describes a model with it,
and mpifl.kernels.mlp walks the same offsets inside its kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MlpLayout:
    """Where each layer's weights and biases sit in the flat theta, for widths (inputs, hidden..., outputs)."""

    widths: tuple[int, ...]

    def __post_init__(self):
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"An MLP needs at least an input and an output width, all positive; got {self.widths}.")

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    @property
    def offsets(self) -> np.ndarray:
        """int64 (layers, 2): the offset of each layer's weights and of its biases in theta."""
        out = np.empty((self.n_layers, 2), dtype=np.int64)
        at = 0
        for layer in range(self.n_layers):
            n, m = self.widths[layer], self.widths[layer + 1]
            out[layer] = (at, at + n * m)
            at += n * m + m
        return out

    @property
    def size(self) -> int:
        return sum(n * m + m for n, m in zip(self.widths[:-1], self.widths[1:]))

    def weights(self, theta: np.ndarray, layer: int) -> np.ndarray:
        n, m = self.widths[layer], self.widths[layer + 1]
        at = int(self.offsets[layer, 0])
        return theta[at:at + n * m].reshape(n, m)

    def bias(self, theta: np.ndarray, layer: int) -> np.ndarray:
        at = int(self.offsets[layer, 1])
        return theta[at:at + self.widths[layer + 1]]

    def penalised(self) -> np.ndarray:
        """True where model.l2 applies: the weights, not the biases."""
        mask = np.zeros(self.size, dtype=bool)
        for at, bias_at in self.offsets:
            mask[at:bias_at] = True
        return mask

    def initial(self, rng: np.random.Generator, activation: str, dtype) -> np.ndarray:
        """He-normal weights for ReLU, Glorot-uniform for tanh; zero biases."""
        theta = np.zeros(self.size, dtype=np.float64)
        for layer in range(self.n_layers):
            n, m = self.widths[layer], self.widths[layer + 1]
            W = self.weights(theta, layer)
            if activation == "relu":
                W[...] = rng.standard_normal((n, m)) * math.sqrt(2.0 / n)
            else:
                limit = math.sqrt(6.0 / (n + m))
                W[...] = rng.uniform(-limit, limit, (n, m))
        return theta.astype(dtype)
