"""PyTorch modules for the adapter's tests, built as model.module = "torch_nets:NAME" (tests/ is on sys.path)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mpifl.model import ModelSpec
from mpifl.models import MODELS


def two_nn(n_features: int, n_outputs: int) -> nn.Module:
    """The FedAvg paper's 2NN: two hidden layers of 200 ReLU units."""
    return nn.Sequential(nn.Linear(n_features, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                         nn.Linear(200, n_outputs))


def from_mlp_theta(theta: np.ndarray, widths: tuple[int, ...]) -> np.ndarray:
    """A Numba MLP's flat theta (each layer: W input-major, then biases) in torch's order (W as (out, in), b)."""
    out, at = [], 0
    for n, m in zip(widths[:-1], widths[1:]):
        out += [theta[at:at + n * m].reshape(n, m).T.reshape(-1), theta[at + n * m: at + n * m + m]]
        at += n * m + m
    return np.concatenate(out)


def two_nn_from_the_mlps_start(n_features: int, n_outputs: int) -> nn.Module:
    """The 2NN whose initial parameters are the Numba MLP's for seed 0 (for the cross-check)."""
    module = two_nn(n_features, n_outputs)
    spec = ModelSpec(MODELS["mlp"], n_features, n_outputs, np.dtype(np.float64), output="softmax", hidden=(200, 200))
    flat = from_mlp_theta(spec.initial(0), spec.layout.widths)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(flat), module.parameters())
    return module


def frozen_body(n_features: int, n_outputs: int) -> nn.Module:
    """A pretrained body that stays fixed and a new head that trains: the first layer has requires_grad = False."""
    module = nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, n_outputs))
    module[0].requires_grad_(False)
    return module


def batch_norm_net(n_features: int, n_outputs: int) -> nn.Module:
    """The issue's module: a BatchNorm between two layers (running mean, variance and a counter as buffers)."""
    return nn.Sequential(nn.Linear(n_features, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, n_outputs))


def batch_norm_cnn(n_features: int, n_outputs: int) -> nn.Module:
    """A small CNN with BatchNorm for 8x8 digits (model.input_shape = [1, 8, 8])."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, n_outputs))


def dropout_net(n_features: int, n_outputs: int) -> nn.Module:
    """A net whose training draws random numbers (dropout): repeats must still be bitwise."""
    return nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, n_outputs))


class Headed(nn.Module):
    """A body and a head named "head" (model.head = "head"), the head defined first to test the reordering."""

    def __init__(self, n_features: int, n_outputs: int):
        super().__init__()
        self.head = nn.Linear(16, n_outputs)
        self.body = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU())

    def forward(self, x):
        return self.head(self.body(x))


def headed(n_features: int, n_outputs: int) -> nn.Module:
    return Headed(n_features, n_outputs)


def smoothed_cross_entropy(outputs, targets):
    """A user's loss (model.loss): label-smoothed cross-entropy, summed over the batch."""
    return nn.functional.cross_entropy(outputs, targets, label_smoothing=0.1, reduction="sum")
