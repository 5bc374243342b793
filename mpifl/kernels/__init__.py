"""Numba loss-and-gradient kernels behind one small, allocation-free facade per model kind."""

from __future__ import annotations

from mpifl.kernels.base import ModelKernels
from mpifl.kernels.flags import KIND_CODES
from mpifl.kernels.linear_model import LinearKernels
from mpifl.kernels.mlp_model import MlpKernels


__all__ = ["KIND_CODES", "LinearKernels", "MlpKernels", "ModelKernels"]
