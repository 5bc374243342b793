"""Measure Allreduce, Bcast, Gather and Allgather at several message sizes, for the alpha-beta fit.

    mpiexec -n P python -m mpifl.scaling.probe OUT.json

Raw mpi4py buffer calls on float64 arrays; each time is the slowest rank's
mean over as many calls as fit in a small budget.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SIZES_BYTES = (8, 64, 512, 4096, 32_768, 262_144, 2_097_152)
BUDGET_SECONDS = 0.15


def per_call(comm, fn, budget: float = BUDGET_SECONDS) -> float:
    """Seconds per call on the slowest rank; every rank runs the same number of calls."""
    from mpi4py import MPI

    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(3):
        fn()
    estimate = comm.allreduce((time.perf_counter() - t0) / 3, op=MPI.MAX)
    iters = max(3, min(2000, int(budget / max(estimate, 1e-9))))
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX) / iters


def measure(comm, sizes_bytes=SIZES_BYTES, budget: float = BUDGET_SECONDS) -> list[dict]:
    """One {collective, bytes, seconds} sample per collective and size, identical on every rank."""
    import numpy as np
    from mpi4py import MPI

    size = comm.Get_size()
    samples = []
    for nbytes in sizes_bytes:
        n = max(1, nbytes // 8)
        a, b = np.ones(n), np.empty(n)
        rows = np.empty(size * n) if comm.Get_rank() == 0 else None
        everyone = np.empty(size * n)
        calls = {
            "Allreduce": lambda a=a, b=b: comm.Allreduce(a, b, op=MPI.SUM),
            "Bcast": lambda a=a: comm.Bcast(a, root=0),
            "Gather": lambda a=a, rows=rows: comm.Gather(a, rows, root=0),
            "Allgather": lambda a=a, everyone=everyone: comm.Allgather(a, everyone),  # compressed exchanges
        }
        for name, fn in calls.items():
            samples.append({"collective": name, "bytes": n * 8, "seconds": per_call(comm, fn, budget)})
    return samples


def main(argv: list[str] | None = None) -> int:
    from mpifl.mpienv import prepare_process

    prepare_process()
    from mpi4py import MPI

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: mpiexec -n P python -m mpifl.scaling.probe OUT.json", file=sys.stderr)
        return 2
    from mpifl.comm import node_occupancy

    comm = MPI.COMM_WORLD
    ranks_per_node, cores_per_node = node_occupancy(comm)
    samples = measure(comm)
    if comm.Get_rank() == 0:
        out = Path(args[0])
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {"ranks": comm.Get_size(), "ranks_per_node": ranks_per_node, "cores_per_node": cores_per_node,
                  "samples": samples}
        out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
