"""Model kinds by their config name (model.kind): the one registry of them (see mpifl.models.base).

A new kind is one module with its ModelKind subclass and one registration
here; a user's own is named as ``model.kind = "my_fl.models:MyKind"``.
"""

from __future__ import annotations

from mpifl.models.base import ModelKind
from mpifl.models.cnn import Cnn
from mpifl.models.forest import Forest
from mpifl.models.gbdt import Gbdt
from mpifl.models.linear import Linear, Logistic, Softmax
from mpifl.models.mlp import Mlp
from mpifl.models.torch_model import TorchModel
from mpifl.registry import Registry


def _check(cls: type) -> str | None:
    from mpifl.models.function import check_function_model

    return check_function_model(cls)


MODELS: Registry = Registry("model", "model.kind", ModelKind, _check)
for _cls in (Linear, Logistic, Softmax, Mlp, Cnn, Gbdt, Forest, TorchModel):
    MODELS.register(_cls)

__all__ = ["MODELS", "ModelKind", "output_link", "output_link_key"]  # GradientModel: mpifl.models.function


def output_link(cfg) -> str:
    """The model's output link, which is also the task: linear, logistic or softmax."""
    return MODELS[cfg.model.kind].link(cfg)


def output_link_key(cfg) -> str:
    """The key that chose the output link, for messages (model.kind, or an MLP's model.output)."""
    return MODELS[cfg.model.kind].link_key(cfg)
