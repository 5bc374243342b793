"""Raw collective latency at each MPI thread level, for several rank counts.

    python benchmarks/thread_levels.py [--ranks 2,4,8] [--out benchmarks/results]

This is the measurement behind mpifl's thread-level policy (mpifl/mpienv.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

HERE = Path(__file__).parent
LEVELS = ("single", "multiple")
OPS = ("Barrier", "Allreduce 33", "Allreduce 650", "Gatherv 650", "Allreduce 330000")


def run(ranks: int, level: str, iters: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        env = {**os.environ, "MPIFL_THREAD_LEVEL": level}
        subprocess.run(
            ["mpiexec", "-n", str(ranks), sys.executable, str(HERE / "collectives.py"), "--iters", str(iters), "--json", str(out)],
            env=env, check=True, capture_output=True, timeout=600,
        )
        return json.loads(out.read_text())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ranks", default="2,4,8")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows, data = [], {"machine": machine()}
    for ranks in (int(r) for r in args.ranks.split(",")):
        measured = {level: run(ranks, level, args.iters) for level in LEVELS}
        data[ranks] = measured
        for op in OPS:
            s, m = measured["single"][op]["raw"], measured["multiple"][op]["raw"]
            rows.append(f"| {ranks} | {op} | {s * 1e6:.1f} | {m * 1e6:.1f} | {m / s:.2f} |")
    table = markdown_table(
        f"Raw mpi4py collectives by MPI thread level; {machine()}",
        ["ranks", "operation", "single (us)", "multiple (us)", "multiple / single"],
        rows,
    )
    print(table)
    write_results(args.out, "thread_levels", table, data)


if __name__ == "__main__":
    main()
