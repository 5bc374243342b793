"""Process-wide settings that must be fixed before MPI and NumPy start.

The MPI thread level has to be chosen before MPI_Init, and the BLAS thread
pools before NumPy is imported, so ``prepare_process`` runs first in
``mpifl.__main__``.
"""

from __future__ import annotations

import os

THREAD_LEVELS = ("single", "funneled", "serialized", "multiple")
DEFAULT_THREAD_LEVEL = "multiple"
_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def choose_thread_level(env: dict[str, str] | None = None) -> str:
    """The MPI thread level to request: MPIFL_THREAD_LEVEL, else ``multiple``.

    Measured with MPICH 5.0.2 on 2 cores (benchmarks/thread_levels.py):
    ``single`` saves about 1.4 us on a tiny Allreduce when every rank has a
    core, but is 2x slower on a 330k-element Allreduce, and when ranks
    outnumber cores its busy-polling makes collectives 100 to 1,800 times
    slower (8 ranks: 17 ms per Barrier against 45 us).  ``multiple`` is never
    far from the best, so it is the default; set MPIFL_THREAD_LEVEL=single for
    latency-bound jobs with one core per rank.
    """
    env = os.environ if env is None else env
    chosen = env.get("MPIFL_THREAD_LEVEL", "").strip().lower()
    return chosen if chosen in THREAD_LEVELS else DEFAULT_THREAD_LEVEL


def threads_per_rank(setting: int = 0, env: dict[str, str] | None = None) -> int:
    """Kernel threads for this rank: the job's setting, else SLURM_CPUS_PER_TASK, else 1."""
    env = os.environ if env is None else env
    if setting > 0:
        return setting
    slurm = env.get("SLURM_CPUS_PER_TASK", "")
    return int(slurm) if slurm.isdigit() and int(slurm) > 0 else 1


def prepare_process() -> None:
    """Pin BLAS pools to one thread and set mpi4py's thread level, before either starts."""
    for name in _BLAS_VARS:
        os.environ.setdefault(name, "1")
    import mpi4py

    mpi4py.rc.thread_level = choose_thread_level()
