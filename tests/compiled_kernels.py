"""Run a job through mpifl.run and print, from rank 0, the kernels compiled before and during training.

Used by tests/test_compile_plan.py: ``python tests/compiled_kernels.py KEY=VALUE ...`` (under mpiexec
for federated jobs).  The specialisations are read from Numba's dispatchers, so a kernel that a job
compiled or loaded from the cache shows, and one it never touched does not.  Each report also says
whether the process loaded Numba's compiler registries (only a compile needs them: mpifl.numba_cache)
and hashes the final model, so that a run from the cache can be compared with the run that compiled.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numba
from mpi4py import MPI

import mpifl
from mpifl import compile as compiling
from mpifl import roles
from mpifl.kernels import (
    checks,
    drivers,
    entries,
    expo,
    fused,
    losses,
    prefetch,
    rowwise,
    sparse,
)

REGISTRIES = "numba.np.arraymath"  # one of the modules Numba's target refresh imports, and nothing else does


def specialisations() -> dict:
    """{module.function: signatures} for every kernel function with at least one, and the entry points."""
    found = {}
    for module in (losses, fused, sparse, rowwise, drivers, expo, checks, prefetch):
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.signatures and obj.__module__ == module.__name__:
                found[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] = len(obj.signatures)
    for name, walk in fused.walks().items():  # the single pass's walks, made per precision, kind and exp
        if walk.signatures:
            found[f"fused.{name}"] = len(walk.signatures)
    return {"functions": found, "entries": entries.compiled()}


def _value(text: str):
    """An override as TOML would read it: an int, a float, else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    overrides = {key.replace(".", "__"): _value(text) for key, text in (arg.split("=", 1) for arg in sys.argv[1:])}
    after_warm_up = []

    def recording_warm_up(*args, **kwargs):
        seconds = compiling.warm_up(*args, **kwargs)
        after_warm_up.append(specialisations())
        return seconds

    roles.warm_up = recording_warm_up
    result = mpifl.run(None, MPI.COMM_WORLD, verbose=False, **overrides)
    report = {"after_warm_up": after_warm_up[-1], "after_training": specialisations(),
              "registries_loaded": REGISTRIES in sys.modules,
              "model": hashlib.sha256(result.model.tobytes()).hexdigest()}
    everyone = MPI.COMM_WORLD.gather(report, root=0)
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(everyone))


if __name__ == "__main__":
    main()
