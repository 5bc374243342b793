"""mpifl: distributed and federated learning on MPI, with Numba-compiled kernels."""

__version__ = "0.1.0"
