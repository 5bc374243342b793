"""A sweep inside one allocation against the same points as separate mpiexec launches.

    python benchmarks/sweep.py [--ranks 8] [--ranks-per-job 2] [--points 16] [--rounds 10] [--out DIR]

Both run the same grid (seeds x learning rates) of jobs/distributed_synthetic.toml
on ranks_per_job ranks a point: the sweep as one `mpiexec -n RANKS python -m
mpifl sweep`, the launches one `mpiexec -n RANKS_PER_JOB python -m mpifl run`
after another, as a user without sweeps would script it.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "jobs" / "distributed_synthetic.toml"


def grid(points: int) -> list[tuple[int, float]]:
    seeds = range(1, max(points // 4, 1) + 1)
    lrs = [0.1, 0.2, 0.3, 0.5]
    return list(itertools.islice(itertools.product(seeds, lrs), points))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--ranks-per-job", type=int, default=2)
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    mpiexec = shutil.which("mpiexec")
    points = grid(args.points)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seeds = sorted({s for s, _ in points})
        lrs = sorted({lr for _, lr in points})
        (work / "sweep.toml").write_text(
            f'job = "{JOB}"\nranks_per_job = {args.ranks_per_job}\nout = "sweep"\n'
            f"[grid]\nseed = {seeds}\n\"train.lr\" = {lrs}\n[set]\nrounds = {args.rounds}\n"
        )
        started = time.perf_counter()
        sweep = subprocess.run([mpiexec, "-n", str(args.ranks), sys.executable, "-m", "mpifl", "sweep", "sweep.toml",
                                "--quiet"], cwd=work, capture_output=True, text=True)
        sweep_seconds = time.perf_counter() - started
        if sweep.returncode != 0:
            sys.exit(f"the sweep failed:\n{sweep.stderr}")
        started = time.perf_counter()
        for i, (seed, lr) in enumerate(points):
            solo = subprocess.run([mpiexec, "-n", str(args.ranks_per_job), sys.executable, "-m", "mpifl", "run",
                                   str(JOB), "--set", f"seed={seed}", "--set", f"train.lr={lr}", "--set",
                                   f"rounds={args.rounds}", "--out", f"solo-{i}", "--quiet"],
                                  cwd=work, capture_output=True, text=True)
            if solo.returncode != 0:
                sys.exit(f"launch {i} failed:\n{solo.stderr}")
        launches_seconds = time.perf_counter() - started
    rows = [
        f"| one sweep: mpiexec -n {args.ranks}, groups of {args.ranks_per_job} | {sweep_seconds:.1f} s | "
        f"{sweep_seconds / len(points):.2f} s | 1.00x |",
        f"| {len(points)} launches of mpiexec -n {args.ranks_per_job}, one after another | {launches_seconds:.1f} s | "
        f"{launches_seconds / len(points):.2f} s | {launches_seconds / sweep_seconds:.2f}x |",
    ]
    table = markdown_table(
        f"{len(points)} points of {JOB.name} ({args.rounds} rounds each); {machine()}",
        ["how", "wall", "per point", "time vs the sweep"], rows,
    )
    print(table)
    write_results(args.out, "sweep", table, {"sweep_seconds": sweep_seconds, "launches_seconds": launches_seconds,
                                             "points": len(points), "ranks": args.ranks,
                                             "ranks_per_job": args.ranks_per_job, "machine": machine()})


if __name__ == "__main__":
    main()
