"""The quick start's main job from a cold and from a warm JIT cache: compile time and wall time.

    python benchmarks/first_run.py [--ranks 8] [--warm 3] [--against GIT_REF] [--out benchmarks/results]

Runs `mpiexec -n RANKS python -m mpifl` (the quick start's first command after
the install) with an empty NUMBA_CACHE_DIR, then WARM times with the cache it
left, and the floor: the same ranks importing NumPy, mpi4py and Numba, with
no job.  "compile" is the job's own figure (summary.json: the slowest rank's
compiles or cache loads, the variant choice included); "wall" is the whole
command, interpreter start-up and MPI launch included.  Both phases of a
cold start are shown: compiling the planned kernels (mpifl.kernel_plan) and
the seconds per round once running.  ``--against REF`` runs the same
measurement on another commit (checked out in a temporary git worktree) in
the same run, for a side-by-side ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

# The quick start's wall time on 8 ranks and 2 cores: at most 6 s from an empty JIT cache, 3 s warm.
COLD_TARGET_SECONDS = 6.0
WARM_TARGET_SECONDS = 3.0
# What any Numba job on MPI pays before it does anything: Python, NumPy, mpi4py and Numba imported, and MPI
# initialised, on every rank.  Numba's compiler registries are not in it: a warm start loads its kernels without
# them (mpifl.numba_cache).
FLOOR = "import numpy, numba; from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"


REPO = Path(__file__).resolve().parents[1]


def run_once(mpiexec: str, ranks: int, cache: Path, out: Path, code: Path = REPO) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(code)}
    env.pop("MPIFL_KERNEL_VARIANT", None)
    started = time.perf_counter()
    proc = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "mpifl", "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, cwd=code)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"the job failed:\n{proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "compile": summary["compile_seconds"], "per_round": summary["seconds_per_round"],
            "variants": summary["kernel_variants"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--warm", type=int, default=3, help="warm runs; the median is reported")
    parser.add_argument("--against", help="a git ref to measure side by side, e.g. a release tag")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    mpiexec = shutil.which("mpiexec") or sys.exit("mpiexec not found: install the 'mpich' wheel")
    codes = {"this tree": REPO}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.against:
            codes[args.against] = work / "against"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(work / "against"),
                            args.against], check=True, capture_output=True)
        try:
            results = {label: measure(mpiexec, args.ranks, args.warm, work / label.replace(" ", "-"), code)
                       for label, code in codes.items()}
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / "against")],
                               capture_output=True)

    def verdict(seconds: float, target: float) -> str:
        return f"{'met' if seconds <= target else 'missed'} (target {target:.0f} s)"

    mine = results["this tree"]
    rows = []
    for label, r in results.items():
        rows += [
            f"| {label} | cold: empty NUMBA_CACHE_DIR | {r['cold']['compile']:.2f} s "
            f"| {r['cold']['wall']:.2f} s {verdict(r['cold']['wall'], COLD_TARGET_SECONDS)} "
            f"| {r['cold']['wall'] / mine['cold']['wall']:.2f}x | {r['cold']['per_round'] * 1e3:.2f} ms "
            f"| {r['cold']['variants']} |",
            f"| {label} | warm: median of {args.warm} | {r['warm_compile']:.2f} s | {r['warm_wall']:.2f} s "
            f"{verdict(r['warm_wall'], WARM_TARGET_SECONDS)} | {r['warm_wall'] / mine['warm_wall']:.2f}x "
            f"| {r['warm_per_round'] * 1e3:.2f} ms | {r['cold']['variants']} |",
        ]
    floor = statistics.median(import_floor(mpiexec, args.ranks) for _ in range(args.warm))
    rows.append(f"| the floor: NumPy, mpi4py and Numba imported, no job | median of {args.warm} | | {floor:.2f} s "
                f"| {floor / mine['warm_wall']:.2f}x | | |")
    table = markdown_table(
        f"mpiexec -n {args.ranks} python -m mpifl (the default job); {machine()}",
        ["code", "JIT cache", "compile (slowest rank)", "wall", "wall vs this tree", "per round", "variants"], rows,
    )
    print(table)
    write_results(args.out, "first_run", table, {"results": results, "ranks": args.ranks, "machine": machine(),
                                                 "import_floor_seconds": floor,
                                                 "target_seconds": {"cold": COLD_TARGET_SECONDS,
                                                                    "warm": WARM_TARGET_SECONDS}})


def import_floor(mpiexec: str, ranks: int) -> float:
    """Wall seconds of FLOOR on ``ranks`` ranks: the start-up no mpifl change can remove."""
    started = time.perf_counter()
    subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-c", FLOOR], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


def measure(mpiexec: str, ranks: int, warm_runs: int, work: Path, code: Path) -> dict:
    """One cold run on an empty JIT cache, then ``warm_runs`` on the cache it left; medians of the warm ones."""
    cold = run_once(mpiexec, ranks, work / "numba", work / "cold", code)
    warm = [run_once(mpiexec, ranks, work / "numba", work / f"warm-{i}", code) for i in range(warm_runs)]
    variants = cold["variants"]
    cold["variants"] = f"{variants['gradient']}/{variants['sgd']} ({variants['how']})"
    return {"cold": cold, "warm_wall": statistics.median(w["wall"] for w in warm),
            "warm_compile": statistics.median(w["compile"] for w in warm),
            "warm_per_round": statistics.median(w["per_round"] for w in warm)}


if __name__ == "__main__":
    main()
