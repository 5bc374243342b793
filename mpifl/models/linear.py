"""The linear models: linear (squared loss), logistic and softmax regression, one kind each."""

from __future__ import annotations

from mpifl.models.base import ModelKind


class Linear(ModelKind):
    name = "linear"


class Logistic(ModelKind):
    name = "logistic"


class Softmax(ModelKind):
    name = "softmax"
