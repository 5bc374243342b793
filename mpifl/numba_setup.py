"""Numba's one-time set-up in a CLI process, without SciPy's BLAS.

The first compile in a process makes Numba load its NumPy support (a cache
load does not: mpifl.numba_cache), and with it ``scipy.linalg`` (when SciPy is installed), to find a
BLAS for ``np.dot`` and ``np.linalg`` in jitted code.  mpifl's kernels use
neither, and the import costs about 0.2 s of CPU per process: 1.7 s for 8
ranks, a fifth of a warm run of the default job on 2 cores.  A CLI process
running a linear model compiles mpifl's kernels only, so it asks
(``compile_without_blas``) that Numba be set up with ``scipy.linalg``
hidden when it first compiles; SciPy imports normally afterwards.  The
MLP's products are BLAS calls, so its jobs keep it, and so do sweeps (their
points may mix kinds) and library use (mpifl.run in a user's script: the
user's own jitted code may need BLAS).
"""

from __future__ import annotations

import sys

BLAS_MODULE = "scipy.linalg"
_without_blas = False  # this process's choice, made by the CLI before any kernel loads


def set_up_numba_without_blas() -> None:
    """Load Numba's CPU target registries with ``scipy.linalg`` unimportable, then make it importable again."""
    if "numba.np.arraymath" in sys.modules:  # already set up, BLAS or not: leave it
        return
    from numba.core.registry import cpu_target

    hidden = BLAS_MODULE not in sys.modules
    if hidden:
        sys.modules[BLAS_MODULE] = None  # an import of it, or of anything under it, raises ImportError
    try:
        cpu_target.target_context.refresh()
    finally:
        if hidden:
            del sys.modules[BLAS_MODULE]


def compile_without_blas() -> None:
    """Set Numba up without ``scipy.linalg`` when this process first needs its registries (to compile)."""
    global _without_blas
    _without_blas = True


def refresh_registries(target_context) -> None:
    """Load Numba's typing and lowering registries, as compiling needs them; without BLAS if asked."""
    if _without_blas:
        set_up_numba_without_blas()
    target_context.refresh()
