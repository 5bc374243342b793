"""A federated round of the FedAvg 2NN with 64 clients: mpifl against Flower's simulation with a PyTorch client.

    python benchmarks/mlp_federated.py [--clients 64] [--rows 70000] [--rounds 3] [--out benchmarks/results]

Synthetic data of MNIST's size (70,000 rows of 784 pixels in [0, 1), labels
from a random two-layer teacher; 10,000 are the test set), split IID over
the clients and written once as an mpifl partition directory, which every
system reads: mpifl on cores + 1 ranks, with its Numba MLP and with the same
nn.Sequential as Flower's clients through the torch adapter (model.kind =
"torch") (a server and one client rank per
core, each hosting several clients, as Flower runs one worker per core), and
Flower with one PyTorch client per partition.  Every client trains one local
epoch at B = 10 with plain SGD (lr 0.05), float32.  The table gives the
median seconds per round (mpifl: its rounds; Flower: between its central
evaluations), the wall time with start-up, and the peak memory of the whole
process tree (PSS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import machine, markdown_table, write_results  # noqa: E402
from procmem import run as measure  # noqa: E402

from mpifl.data.partition_cli import write_partition  # noqa: E402

LR = 0.05


def synthetic_mnist(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels in [0, 1) and ten classes from a random 784-64-10 tanh teacher, so the task is learnable."""
    rng = np.random.default_rng(seed)
    X = rng.random((rows, 784), dtype=np.float32)
    hidden = np.tanh((X - 0.5) @ rng.standard_normal((784, 64)).astype(np.float32) / 8)
    y = np.argmax(hidden @ rng.standard_normal((64, 10)).astype(np.float32), axis=1)
    return X, y.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rows", type=int, default=70_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mpifl-only", action="store_true", help="skip Flower (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    ranks = len(os.sched_getaffinity(0)) + 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        X, y = synthetic_mnist(args.rows)
        test = np.arange(args.rows - args.rows // 7, args.rows)
        clients = np.array_split(np.arange(test[0]), args.clients)
        write_partition(work / "parts", X, y, clients, test, np.dtype("float32"), list(range(10)),
                        {"source": "synthetic MNIST-sized", "method": "iid"})
        results = {}
        kinds = {f"mpifl, {ranks} ranks": ["--set", "model.kind=mlp", "--set", "model.hidden=[200, 200]"]}
        if _installed("torch") and not args.mpifl_only:  # the same 2NN as Flower's clients train, through model.kind = "torch"
            adapter = ["--set", "model.kind=torch", "--set", "model.module=flower_mlp:network"]
            kinds[f"mpifl torch adapter, {ranks} ranks"] = adapter
            # recorded at start and end only: the clients' evaluation of their training rows skipped in between
            kinds[f"mpifl torch adapter, {ranks} ranks, last round recorded"] = adapter
        for system, model in kinds.items():
            run_dir = work / system.replace(",", "").replace(" ", "_")
            m = measure([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                         "--set", f"data.path={work / 'parts'}", *model,
                         "--set", "model.dtype=float32", "--set", "train.batch_size=10", "--set", f"train.lr={LR}",
                         "--set", f"rounds={args.rounds}", "--set", f"log_every={args.rounds if 'last' in system else 1}",
                         "--out", str(run_dir), "--quiet"],
                        env={"PYTHONPATH": str(HERE / "peers")})
            if m.returncode != 0:
                sys.exit(f"{system} failed:\n{m.stderr}")
            summary = json.loads((run_dir / "summary.json").read_text())
            results[system] = {"seconds_per_round": summary["seconds_per_round"], "wall": m.wall_seconds,
                               "peak_mib": m.peak_pss_mib, "accuracy": summary["final_accuracy"]}
        if _installed("flwr") and _installed("torch") and not args.mpifl_only:
            out = work / "flower.json"
            f = measure([sys.executable, str(HERE / "peers" / "flower_mlp.py"), str(work / "parts"), str(args.rounds),
                         str(LR), str(out)])
            if f.returncode != 0:
                sys.exit(f"Flower failed:\n{f.stderr[-2000:]}")
            flower = json.loads(out.read_text())
            results["Flower + PyTorch"] = {"seconds_per_round": flower["seconds_per_round"], "wall": f.wall_seconds,
                                           "peak_mib": f.peak_pss_mib, "accuracy": flower["accuracy"]}
    base = next(iter(results.values()))
    for system, r in results.items():
        rows.append(f"| {system} | {r['seconds_per_round']:.2f} s | {r['seconds_per_round'] / base['seconds_per_round']:.2f}x "
                    f"| {r['wall']:.1f} s | {r['peak_mib']:.0f} MiB | {r['peak_mib'] / base['peak_mib']:.2f}x "
                    f"| {r['accuracy']:.4f} |")
    if "Flower + PyTorch" not in results:
        rows.append(f"| Flower + PyTorch | not run ({'--mpifl-only' if args.mpifl_only else 'pip install flwr torch'})"
                    " | | | | | |")
    table = markdown_table(
        f"FedAvg 2NN (784-200-200-10), {args.clients} clients, {args.rows:,} synthetic rows of 784 pixels, E = 1, "
        f"B = 10, float32, {args.rounds} rounds; {machine()}",
        ["system", "per round", "vs mpifl", "wall (with start-up)", "peak memory (PSS)", "vs mpifl", "accuracy"], rows)
    print(table)
    write_results(args.out, "mlp_federated", table, {"results": results, "clients": args.clients, "rows": args.rows,
                                                     "rounds": args.rounds, "machine": machine()})


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
