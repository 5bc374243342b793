"""The calls every model kind's kernels offer, and the registry that picks them by kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mpifl.kernels.variants import Selection
    from mpifl.model import ModelSpec

class ModelKernels:
    """Scratch for one model, allocated once, and the calls that use it.

    ``ModelKernels(spec, threads, selection)`` returns the kernels of
    ``spec.kind`` (as ``pathlib.Path`` returns a platform's path): the model
    kind the spec carries names its subclass.  Every subclass
    offers full_gradient_sum, batch_gradient_sum, sgd_epoch, evaluate_sums,
    finish_gradient and penalty on arrays of the model's shape and dtype.
    """

    def __new__(cls, spec: ModelSpec, threads: int = 1, selection: Selection | None = None):
        if cls is ModelKernels:
            cls = spec.kind.kernels()
        return super().__new__(cls)

    central_evaluation = True  # the model can be judged without a client's own state (False: FedBN's buffers)
    trains_cohorts = False  # offers train_cohort: a round's clients trained in one compiled call (mpifl.cohort)

    def optimizer_state(self, optimizer: str = "sgd") -> np.ndarray:
        """What one trainer's optimizer keeps between steps: the momentum buffer, theta's shape."""
        return self.spec.zeros()

    def carried_state(self) -> np.ndarray | None:
        """Model state a client keeps as its own beside theta (a torch module's local buffers); None: none."""
        return None

    def carry(self, state: np.ndarray | None) -> None:
        """Use this client's own state (carried_state()) in the calls that follow."""

    def seed_round(self, seed: int, rnd: int, owner: int) -> None:
        """Seed the model's own randomness (dropout) for one client's round; the compiled kinds have none."""

    def train_cohort(self, X, y, starts, entropy, ids, epochs, theta, deltas, batch_size, lr, momentum, l2) -> None:
        """Clients ids[i] (rows starts[i]:starts[i + 1] of X) each trained epochs[i] epochs of plain SGD from theta,
        their flat deltas into deltas[i]; batch orders from the stream of (entropy words..., ids[i])."""
        raise NotImplementedError(f"{type(self).__name__} trains each client alone (trains_cohorts is False).")

    def export(self, theta: np.ndarray, directory) -> None:
        """Write the trained model in its framework's own format beside model.npz (a torch module's model.pt);
        the compiled kinds have none beyond model.npz."""

    def fix(self, tensors: dict) -> None:
        """Set parameters that stay out of theta (a torch module's frozen ones) from model.init's named tensors; a
        kind whose parameters are all theta has none."""


def is_csr(X) -> bool:
    return hasattr(X, "indptr")


def trained_range(trainable: slice | None, size: int) -> tuple[int, int]:
    """(lo, hi) of the values an SGD step trains: all of theta, or the contiguous slice ``trainable`` (the rest is
    frozen: FedRep trains its head and its body in turn)."""
    lo, hi, stride = (trainable or slice(None)).indices(size)
    if stride != 1:
        raise ValueError(f"A trained part of theta is one contiguous slice; got {trainable}.")
    return lo, hi
