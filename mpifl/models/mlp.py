"""The multilayer perceptron: hidden layers of one activation, then one of the linear models' output links."""

from __future__ import annotations

from mpifl.constraints import Choice, Widths
from mpifl.models.base import OUTPUT, NetworkKind


class Mlp(NetworkKind):
    name = "mlp"
    parameters = {
        "hidden": ([200, 200], Widths()),  # hidden layer widths
        "activation": ("relu", Choice(("relu", "tanh"))),
        **OUTPUT,
    }
    uses_blas = True  # its products are BLAS GEMMs
    one_variant = "the MLP has one variant (BLAS products, fused loops around them)"

    @classmethod
    def spec_fields(cls, cfg) -> dict:
        return {"output": cfg.model.output, "hidden": tuple(cfg.model.hidden),
                "activation": cfg.model.activation}

    @staticmethod
    def layout(spec):
        from mpifl.model import MlpParameters

        return MlpParameters(spec.layout, spec.activation)

    @staticmethod
    def kernels() -> type:
        from mpifl.kernels.mlp_model import MlpKernels

        return MlpKernels

    @classmethod
    def has_body(cls, cfg) -> bool:
        return len(cfg.model.hidden) > 0

    @classmethod
    def head_size(cls, spec) -> int:
        n, m = spec.layout.widths[-2:]
        return n * m + m  # the last layer's weights and biases, which close theta

    @classmethod
    def describe(cls, spec) -> str:
        return f"mlp {'-'.join(map(str, spec.layout.widths))} ({spec.activation}, {spec.link} output)"
