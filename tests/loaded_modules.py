"""Run mpifl's command line, then print from rank 0 which optional stacks the process loaded.

    mpiexec -n 2 python tests/loaded_modules.py [mpifl arguments...]
"""

import sys

from mpifl.__main__ import main

OPTIONAL = ("dp_accounting", "cryptography", "matplotlib", "scipy.signal", "torch", "sklearn", "tqdm")

code = main(sys.argv[1:])
from mpi4py import MPI  # noqa: E402 - initialised by main

if MPI.COMM_WORLD.Get_rank() == 0:
    print("loaded:", " ".join(m for m in OPTIONAL if m in sys.modules), flush=True)
sys.exit(code)
