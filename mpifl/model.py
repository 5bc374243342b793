"""The shape of a linear model's parameters, shared by kernels, comm and strategies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpifl.kernels.flags import KIND_CODES


@dataclass(frozen=True)
class ModelSpec:
    """A linear model: ``theta[c, :d]`` are the weights of output c, ``theta[c, d]`` its bias."""

    kind: str
    n_features: int
    n_classes: int
    dtype: np.dtype
    sparse: bool = False  # rows arrive as CSR (LIBSVM data): the CSR kernels are compiled too

    @property
    def code(self) -> int:
        return KIND_CODES[self.kind]

    @property
    def n_outputs(self) -> int:
        return self.n_classes if self.kind == "softmax" else 1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_outputs, self.n_features + 1)

    @property
    def size(self) -> int:
        return self.n_outputs * (self.n_features + 1)

    @property
    def is_classifier(self) -> bool:
        return self.kind != "linear"

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=self.dtype)
