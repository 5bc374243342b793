"""A convolutional network: 5x5 or 3x3 convolutions with ReLU, 2x2 max-pooling, dense layers, an output link.

``model.architecture`` names the field's reference networks, or "custom"
takes ``model.layers``, a list such as ``["conv 5 32 same", "pool",
"conv 5 64 same", "pool", "dense 512"]`` (the output layer is added: one
unit per class, or one for the logistic and linear links):

- ``fedavg``: McMahan et al. 2017's MNIST CNN (two 5x5 convolutions of 32
  and 64 channels, each followed by 2x2 max-pooling, a 512-unit dense layer);
- ``femnist``: LEAF's FEMNIST CNN (the same, with a 2048-unit dense layer);
- ``niid``: the NIID-Bench CNN (Li et al. 2022): 5x5 "valid" convolutions of
  6 and 16 channels with pooling, then dense layers of 120 and 84 units.

The input's shape is ``model.input_shape`` ([channels, height, width]), or
by default one channel of a square image (digits: 8x8, MNIST and FEMNIST:
28x28).  Dense rows only.
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.constraints import Choice, Widths
from mpifl.errors import ConfigError
from mpifl.models.base import OUTPUT, NetworkKind

ARCHITECTURES = {
    "fedavg": ("conv 5 32 same", "pool", "conv 5 64 same", "pool", "dense 512"),
    "femnist": ("conv 5 32 same", "pool", "conv 5 64 same", "pool", "dense 2048"),
    "niid": ("conv 5 6 valid", "pool", "conv 5 16 valid", "pool", "dense 120", "dense 84"),
}


class Layers:
    """The constraint of model.layers: a list of "conv K C same|valid", "pool" and "dense N"."""

    def accepts(self, value) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) and _parse(v) is not None for v in value)

    def describe(self) -> str:
        return 'a list of "conv K C same|valid", "pool" and "dense N", such as ["conv 5 32 same", "pool", "dense 512"]'

    def __eq__(self, other) -> bool:
        return isinstance(other, Layers)

    def __hash__(self) -> int:
        return hash("Layers")


def _parse(text: str):
    parts = text.split()
    try:
        if parts[0] == "conv" and len(parts) == 4 and parts[3] in ("same", "valid"):
            k, c = int(parts[1]), int(parts[2])
            return ("conv", k, c, k // 2 if parts[3] == "same" else 0) if k >= 1 and k % 2 and c >= 1 else None
        if parts == ["pool"]:
            return ("pool",)
        if parts[0] == "dense" and len(parts) == 2 and int(parts[1]) >= 1:
            return ("dense", int(parts[1]))
    except (ValueError, IndexError):
        return None
    return None


class Cnn(NetworkKind):
    name = "cnn"
    parameters = {
        "architecture": ("fedavg", Choice(("fedavg", "femnist", "niid", "custom"))),
        "layers": ([], Layers()),  # with architecture = "custom"
        "input_shape": ([], Widths()),  # [channels, height, width]; empty: one channel of a square image
        **OUTPUT,
    }
    uses_blas = True  # its convolutions and dense layers are GEMMs through np.dot
    one_variant = "the CNN has one variant (im2col and BLAS GEMMs)"

    @classmethod
    def spec_fields(cls, cfg) -> dict:
        m = cfg.model
        layers = ARCHITECTURES[m.architecture] if m.architecture != "custom" else tuple(m.layers)
        return {"output": m.output, "input_shape": tuple(m.input_shape), "layers": tuple(layers)}

    @staticmethod
    def layout(spec):
        return CnnLayout(spec)

    @staticmethod
    def kernels() -> type:
        from mpifl.kernels.cnn_model import CnnKernels

        return CnnKernels

    @classmethod
    def has_body(cls, cfg) -> bool:
        return cfg.model.architecture != "custom" or len(cfg.model.layers) > 0  # layers below the output layer

    @classmethod
    def head_size(cls, spec) -> int:
        layout = CnnLayout(spec)
        return layout.shape[0] - int(layout.poff[-1, 0])  # the output layer's weights and biases close theta

    @classmethod
    def describe(cls, spec) -> str:
        return f"cnn {CnnLayout(spec).shape_in} {', '.join(spec.layers)} ({spec.link} output)"


class CnnLayout:
    """The flat parameters of the network a ModelSpec describes: program, offsets, start and l2 mask."""

    def __init__(self, spec):
        from mpifl.kernels.cnn import layer_program

        self.shape_in = input_shape(spec.input_shape, spec.n_features)
        layers = [_parse(text) for text in spec.layers]
        self.prog, self.poff, self.aoff, size, self.mask = layer_program(self.shape_in, layers, spec.n_outputs)
        self.shape = (size,)
        if (self.prog[:, 5] < 1).any() or (self.prog[:, 6] < 1).any():
            raise ConfigError(f"The network {', '.join(spec.layers)} shrinks a {self.shape_in} input to "
                              "nothing; use 'same' padding, fewer pooling layers or a larger input.")

    def initial(self, seed: int, dtype: np.dtype) -> np.ndarray:
        """He-normal weights (fan-in of each unit), zero biases, from (seed, MODEL_INIT)."""
        from mpifl.rng import Purpose, stream

        rng = stream(seed, Purpose.MODEL_INIT)
        theta = np.zeros(self.shape, dtype=np.float64)
        for (kind, ci, hi, wi, co, _, _, k, _), (w, b) in zip(self.prog, self.poff):
            fan_in = ci * k * k if kind == 0 else ci * hi * wi
            theta[w:b] = rng.standard_normal(b - w) * math.sqrt(2.0 / max(fan_in, 1))
        return theta.astype(dtype)

    def penalised(self) -> np.ndarray:
        return self.mask.astype(bool)


def input_shape(declared: tuple[int, ...], n_features: int) -> tuple[int, int, int]:
    """[c, h, w] as declared, or one channel of a square image; every other case is refused with the numbers."""
    if declared:
        if len(declared) != 3 or int(np.prod(declared)) != n_features:
            raise ConfigError(f"model.input_shape {list(declared)} must be [channels, height, width] with "
                              f"{n_features} values in all (the data's features).")
        return tuple(int(v) for v in declared)
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ConfigError(f"The data has {n_features} features, not a square image; give model.input_shape = "
                          "[channels, height, width].")
    return (1, side, side)
