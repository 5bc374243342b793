"""mpifl: distributed and federated learning on MPI, with Numba-compiled kernels.

    import mpifl
    result = mpifl.run("jobs/fedprox_synthetic.toml", rounds=20, server__strategy="scaffold")

Run under ``mpiexec -n N python script.py``; see mpifl.api.
"""

__version__ = "0.2.0"

from mpifl.api import Job, Result, job, run  # noqa: E402
from mpifl.errors import MpiflError  # noqa: E402

__all__ = ["Job", "MpiflError", "Result", "job", "run", "__version__"]
