"""A federated round of a CNN with BatchNorm: mpifl's torch adapter against Flower's simulation, same module.

    python benchmarks/cnn_federated.py [--clients 64] [--rows 20000] [--rounds 3] [--out benchmarks/results]

Synthetic MNIST-sized images (benchmarks/mlp_federated.py's teacher task,
28x28 pixels), split IID over the clients and written once as an mpifl
partition directory, which both systems read.  Both train
peers/flower_cnn.py's ``network`` (two convolutions with BatchNorm):
mpifl on cores + 1 ranks with ``model.buffers = "average"`` (the
statistics travel and are averaged, as Flower's state_dict round does),
Flower with one PyTorch client per partition.  One local epoch at B = 10,
plain SGD, float32.  The table gives the median seconds per round, the
wall time with start-up, the peak memory of the process tree (PSS) and the
accuracy, side by side in one run.  mpifl runs twice: recording every round
(each client then also evaluates the global model on its training rows, the
records' training loss and accuracy, which Flower does not compute), and
recording only the last round.
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
from mlp_federated import synthetic_mnist  # noqa: E402
from procmem import run as measure  # noqa: E402

from mpifl.data.partition_cli import write_partition  # noqa: E402

LR = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    ranks = len(os.sched_getaffinity(0)) + 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        X, y = synthetic_mnist(args.rows)
        test = np.arange(args.rows - args.rows // 7, args.rows)
        write_partition(work / "parts", X, y, np.array_split(np.arange(test[0]), args.clients), test,
                        np.dtype("float32"), list(range(10)), {"source": "synthetic MNIST-sized", "method": "iid"})
        # every round recorded (each client also evaluates the model on its training rows, as mpifl's records
        # hold), and only the last (the clients' evaluation skipped in the rounds between)
        for label, every in (("every round recorded", 1), ("last round recorded", args.rounds)):
            m = measure([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpifl", "run",
                         "--set", f"data.path={work / 'parts'}", "--set", "model.kind=torch",
                         "--set", "model.module=flower_cnn:network", "--set", "model.buffers=average",
                         "--set", "model.dtype=float32", "--set", "train.batch_size=10", "--set", f"train.lr={LR}",
                         "--set", f"rounds={args.rounds}", "--set", f"log_every={every}",
                         "--out", str(work / f"mpifl{every}"), "--quiet"], env={"PYTHONPATH": str(HERE / "peers")})
            if m.returncode != 0:
                sys.exit(f"mpifl failed:\n{m.stderr[-3000:]}")
            summary = json.loads((work / f"mpifl{every}" / "summary.json").read_text())
            results[f"mpifl torch adapter, {ranks} ranks, {label}"] = {
                "seconds_per_round": summary["seconds_per_round"], "wall": m.wall_seconds,
                "peak_mib": m.peak_pss_mib, "accuracy": summary["final_accuracy"]}
        f = measure([sys.executable, str(HERE / "peers" / "flower_cnn.py"), str(work / "parts"), str(args.rounds),
                     str(LR), str(work / "flower.json")])
        if f.returncode != 0:
            sys.exit(f"Flower failed:\n{f.stderr[-3000:]}")
        flower = json.loads((work / "flower.json").read_text())
        results["Flower + PyTorch"] = {"seconds_per_round": flower["seconds_per_round"], "wall": f.wall_seconds,
                                       "peak_mib": f.peak_pss_mib, "accuracy": flower["accuracy"]}
    base = next(iter(results.values()))
    rows = [f"| {system} | {r['seconds_per_round']:.2f} s | {r['seconds_per_round'] / base['seconds_per_round']:.2f}x "
            f"| {r['wall']:.1f} s | {r['peak_mib']:.0f} MiB | {r['accuracy']:.4f} |" for system, r in results.items()]
    table = markdown_table(
        f"FedAvg, a CNN with BatchNorm (statistics averaged), {args.clients} clients, {args.rows:,} synthetic 28x28 "
        f"images, E = 1, B = 10, float32, {args.rounds} rounds; {machine()}",
        ["system", "per round", "vs mpifl", "wall (with start-up)", "peak memory (PSS)", "accuracy"], rows)
    print(table)
    write_results(args.out, "cnn_federated", table, {"results": results, "clients": args.clients, "rows": args.rows,
                                                     "rounds": args.rounds, "machine": machine()})


if __name__ == "__main__":
    main()
