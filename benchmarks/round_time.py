"""Round time of two source trees, side by side: a refactor must not be slower.

    python benchmarks/round_time.py --trees /path/to/old/checkout . --repeat 5

For each case (the default job on 8 ranks, and a 64-client round), runs the
trees alternately (old, new, old, new, ...) under ``mpiexec``, each with its
own PYTHONPATH, and reads ``seconds_per_round`` (the rounds' wall time,
compile and start-up excluded) from summary.json.  It prints the median per
tree, the ratio new/old, and the CPU.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CASES = {
    "default job (8 ranks, 7 clients)": ["--set", "rounds=50"],
    "64 clients a round (8 ranks)": ["--set", "rounds=50", "--set", "data.clients=64"],
}


def one_run(tree: Path, ranks: int, overrides: list[str], out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "MPIFL_KERNEL_VARIANT": "plain"}
    proc = subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                           *overrides, "--out", str(out), "--quiet"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tree)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {proc.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())["seconds_per_round"]


def main() -> int:
    from mpifl import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs=2, type=Path, required=True, metavar=("OLD", "NEW"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=8)
    args = parser.parse_args()
    print(f"CPU: {machine.describe()}; {args.ranks} ranks; median of {args.repeat} alternating runs per tree")
    print("| case | old ms/round | new ms/round | new / old |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in CASES.items():
            times: dict[int, list[float]] = {0: [], 1: []}
            for r in range(args.repeat + 1):  # the first pass warms each tree's JIT cache and is not counted
                for i, tree in enumerate(args.trees):
                    seconds = one_run(tree, args.ranks, overrides, Path(tmp) / f"{name[:7]}-{i}-{r}")
                    if r:
                        times[i].append(seconds)
            old, new = (statistics.median(times[i]) * 1e3 for i in (0, 1))
            print(f"| {name} | {old:.2f} | {new:.2f} | {new / old:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
