"""A CNN with BatchNorm, as a PyTorch user writes it, for the 8x8 digits (examples/batchnorm_*.toml).

Its BatchNorm layers hold running statistics (buffers).  batchnorm_fedavg.toml
averages them with the weights (model.buffers = "average", as a state_dict
round does); batchnorm_fedbn.toml keeps each client's own (model.buffers =
"local": FedBN, Li et al., ICLR 2021), and judges the model on each client's
own test rows with its own statistics.
"""

from torch import nn


def build(n_features: int, n_outputs: int) -> nn.Module:
    """Two 3x3 convolutions with BatchNorm and ReLU, 2x2 pooling, a linear head (input: model.input_shape)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, n_outputs),
    )
