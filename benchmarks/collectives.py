"""mpifl's collectives against raw mpi4py calls on the same buffers (run under mpiexec).

    mpiexec -n 8 python benchmarks/collectives.py [--iters 2000] [--json FILE]

The thread level follows mpifl's policy, or MPIFL_THREAD_LEVEL when set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mpifl.mpienv import prepare_process

prepare_process()

import mpi4py  # noqa: E402
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from mpifl import comm as collectives  # noqa: E402
from mpifl.metrics import RoundTimer  # noqa: E402

# 33: a logistic model on 32 features; 650: softmax on digits; 330,000: a 33k x 10 model
SIZES = (33, 650, 330_000)


BUDGET_SECONDS = 1.0  # per measurement, so slow configurations still finish


def per_call(comm, fn, iters):
    """Seconds per call (slowest rank), over at most ``iters`` calls or about BUDGET_SECONDS."""
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(10):
        fn()
    estimate = comm.allreduce((time.perf_counter() - t0) / 10, op=MPI.MAX)
    iters = max(10, min(iters, int(BUDGET_SECONDS / max(estimate, 1e-9))))
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    elapsed = time.perf_counter() - t0
    return comm.allreduce(elapsed, op=MPI.MAX) / iters


def measure(comm, iters):
    timer = RoundTimer()
    rank, size = comm.Get_rank(), comm.Get_size()
    out = {"Barrier": {"raw": per_call(comm, comm.Barrier, iters)}}
    for n in SIZES:
        k = iters
        a, b = np.ones(n), np.empty(n)
        rows = np.empty((size - 1, n))
        send = np.ones(n) if rank else np.empty(0)
        counts = [0] + [n] * (size - 1)
        displs = [0] + [n * r for r in range(size - 1)]
        gather = collectives.GatherFromOthers(comm, n, np.float64, root=0)
        out[f"Allreduce {n}"] = {
            "raw": per_call(comm, lambda: comm.Allreduce(a, b, op=MPI.SUM), k),
            "mpifl": per_call(comm, lambda: collectives.allreduce_sum(comm, a, b, timer), k),
        }
        out[f"Bcast {n}"] = {
            "raw": per_call(comm, lambda: comm.Bcast(a, root=0), k),
            "mpifl": per_call(comm, lambda: collectives.bcast(comm, a, timer), k),
        }
        out[f"Gatherv {n}"] = {
            "raw": per_call(comm, lambda: comm.Gatherv([send, len(send), MPI.DOUBLE], [rows, counts, displs, MPI.DOUBLE], root=0), k),
            "mpifl": per_call(comm, lambda: gather(send, rows, timer), k),
        }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    results = measure(comm, args.iters)
    if comm.Get_rank() != 0:
        return
    level = mpi4py.rc.thread_level
    print(f"{comm.Get_size()} ranks, MPI thread level {level}, {MPI.Get_library_version().splitlines()[0].strip()}")
    print("| operation | raw mpi4py (us) | mpifl (us) | mpifl / raw |")
    print("|---|---|---|---|")
    for name, t in results.items():
        raw, ours = t["raw"], t.get("mpifl")
        extra = "| |" if ours is None else f"| {ours * 1e6:.1f} | {ours / raw:.2f} |"
        print(f"| {name} | {raw * 1e6:.1f} {extra}")
    if args.json:
        args.json.write_text(json.dumps({"ranks": comm.Get_size(), "thread_level": level, "seconds": results}, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
