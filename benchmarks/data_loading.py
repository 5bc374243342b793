"""Opening data: a memory-mapped shard against reading it whole, and the time to the first round.

    python benchmarks/data_loading.py [--gigabytes 1] [--clients 512] [--ranks 8] [--out DIR]

1. A dense float64 shard of about 1 GB (X.npy): np.load reading it whole,
   against mpifl's memory-mapped open (mpifl.data.store.load_part), alone
   and followed by reading one eighth of the rows (a worker's share), with
   and without the sha256 check.  The page cache is dropped before each cold
   measurement when this process may write /proc/sys/vm/drop_caches.
2. A synthetic partition of --clients clients, trained on --ranks ranks with
   mpiexec: the wall time from launch to the end of round 1, split into start-up
   (interpreter, imports, MPI_Init), data loading and checks, and compile.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, write_results  # noqa: E402

from mpifl.data import store  # noqa: E402
from mpifl.kernels.checks import all_finite, labels_in_range  # noqa: E402

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        DROP_CACHES.write_text("3\n")
        return True
    except OSError:
        return False


def timed(fn, cold: bool) -> tuple[float, bool]:
    dropped = drop_caches() if cold else False
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, dropped


def shard_case(root: Path, gigabytes: float) -> tuple[list[str], int]:
    rows = int(gigabytes * 1e9 / (32 * 8))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 32))
    y = (rng.random(rows) < 0.5).astype(np.float64)
    files = store.write_part(root, "client_00000", X, y, np.dtype("float64"))
    del X
    manifest = store.Manifest(root, {"n_features": 32, "n_classes": 2, "task": "classification", "sparse": False,
                                     "clients": [], "test": {}})
    entry = {"dir": "client_00000", "rows": rows, "files": files}
    path = root / "client_00000" / "X.npy"
    size = path.stat().st_size

    def read_whole():
        np.load(path, allow_pickle=False)

    def map_only():
        np.load(path, mmap_mode="c", allow_pickle=False)

    def map_and_read_share():
        X = np.load(path, mmap_mode="c", allow_pickle=False)
        np.asarray(X[: rows // 8]).sum()

    def mpifl_checked():
        store.load_part(manifest, entry, "bench", np.dtype("float64"), verify=False)

    def mpifl_verified():
        store.load_part(manifest, entry, "bench", np.dtype("float64"), verify=True)

    all_finite(np.zeros(4))  # compile (or load) the check kernels outside the timings
    labels_in_range(np.zeros(4), 2)
    out = []
    for label, fn in [("np.load, reading the whole file", read_whole),
                      ("np.load with a memory map: open only", map_only),
                      ("memory map, then read a worker's 1/8 of the rows", map_and_read_share),
                      ("mpifl load_part: map + NaN and label scan (data.verify = false)", mpifl_checked),
                      ("mpifl load_part: map + sha256 + scan (data.verify = true)", mpifl_verified)]:
        cold, dropped = timed(fn, cold=True)
        warm, _ = timed(fn, cold=False)
        cold_text = f"{cold * 1e3:.1f} ms" if dropped else "n/a (cannot drop the page cache)"
        out.append(f"| {label} | {cold_text} | {warm * 1e3:.1f} ms |")
    return out, size


def first_round_case(root: Path, clients: int, ranks: int, warm_only: bool) -> tuple[list[str], dict]:
    parts = root / "parts"
    subprocess.run([sys.executable, "-m", "mpifl", "partition", "synthetic", "--n-samples", str(clients * 250),
                    "--n-features", "32", "--clients", str(clients), "--method", "dirichlet", "--alpha", "0.5",
                    "--out", str(parts)], check=True, capture_output=True)
    mpiexec = shutil.which("mpiexec")
    rows, results = [], {}
    cache = root / "numba-cache"  # a fresh JIT cache: the first run compiles, the second loads
    for verify in ("true", "false"):
        for attempt in ("warm JIT cache",) if warm_only else ("first (compile)", "warm JIT cache"):
            if attempt.startswith("first"):
                shutil.rmtree(cache, ignore_errors=True)
            run = root / f"run-{verify}-{attempt[:5]}"
            t0 = time.perf_counter()
            env = [] if warm_only else ["env", f"NUMBA_CACHE_DIR={cache}"]
            subprocess.run([*env, mpiexec, "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                            "--set", f"data.path={parts}", "--set", "model.kind=logistic", "--set", "rounds=2",
                            "--set", "log_every=1", "--set", "server.fraction=0.1",
                            "--set", f"data.verify={verify}", "--out", str(run), "--quiet"], check=True)
            wall = time.perf_counter() - t0
            summary = json.loads((run / "summary.json").read_text())
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            round1 = next(r["seconds"] for r in records if r["round"] == 1)
            startup = wall - summary["wall_seconds"]
            first = startup + summary["setup_seconds"] + round1
            results[f"{verify}/{attempt}"] = {"startup": startup, "load": summary["load_seconds"],
                                              "compile": summary["compile_seconds"], "setup": summary["setup_seconds"],
                                              "round1": round1, "first_round": first}
            rows.append(f"| {verify} | {attempt} | {first:.2f} s | {startup:.2f} s | {summary['load_seconds']:.2f} s "
                        f"| {summary['compile_seconds']:.2f} s | {round1 * 1e3:.1f} ms |")
    return rows, results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=512)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--warm-only", action="store_true", help="skip the runs that compile into a fresh JIT cache")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        shard_rows, size = shard_case(Path(tmp), args.gigabytes)
        first_rows, first = first_round_case(Path(tmp), args.clients, args.ranks, args.warm_only)
    table = "\n\n".join([
        markdown_table(f"Opening one shard ({size / 1e9:.2f} GB, 32 float64 features); {machine()}",
                       ["how", "cold page cache", "warm page cache"], shard_rows),
        markdown_table(f"Time to the end of round 1: {args.clients} clients on {args.ranks} ranks "
                       f"({args.ranks - 1} client ranks, about {args.clients // (args.ranks - 1)} clients each)",
                       ["data.verify", "run", "to round 1", "start-up", "data load + checks", "compile",
                        "round 1"], first_rows),
    ])
    print(table)
    if args.out:
        write_results(args.out, "data_loading", table, {"first_round": first, "machine": machine()})


if __name__ == "__main__":
    main()
