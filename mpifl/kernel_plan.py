"""Which compiled kernels a job calls, read from its config, so that only those are compiled.

A softmax federated job runs the SGD epoch on its clients and evaluation
everywhere; it never calls the batch gradient, the threaded full gradient,
the CSR loops or another model kind's link.  Compiling those too tripled the
first run's start-up.  Anything left out still compiles on first call, so the
plan affects start-up time only, never results.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpifl.kernels.variants import GRADIENT, SGD


@dataclass(frozen=True)
class KernelPlan:
    """The entry points (mpifl.kernels.entries) a job calls, in its layout and thread count."""

    operations: frozenset  # of "full_gradient", "batch_gradient", "sgd_epoch", "evaluate", "cohort_sgd"
    threads: int
    passes: int  # passes of the training operation over a rank's rows in the whole job

    @property
    def tuned(self) -> tuple[str, ...]:
        """The variant operations (mpifl.kernels.variants) the training loop runs: the ones worth choosing."""
        ops = []
        if "full_gradient" in self.operations:
            ops.append(GRADIENT)
        if self.operations & {"sgd_epoch", "batch_gradient", "cohort_sgd"}:
            ops.append(SGD)
        return tuple(ops)

    @property
    def finishes_gradients(self) -> bool:
        """Whether the loop turns summed gradients into steps in Python (ModelKernels.finish_gradient)."""
        return bool(self.operations & {"full_gradient", "batch_gradient"})


def everything(threads: int = 1) -> KernelPlan:
    """Every entry point: for tools that call them all (benchmarks, `python -m mpifl info`)."""
    return KernelPlan(frozenset({"full_gradient", "batch_gradient", "sgd_epoch", "evaluate"}), threads, 1)


__all__ = ["KernelPlan", "everything"]
