"""Differentially private boosted trees: test accuracy against epsilon, beside the same trees without noise.

    mpiexec -n 3 python benchmarks/private_trees.py [--quick] [--out DIR]

Federated gbdt on a synthetic table (200,000 x 20 rows, IID over 8 clients; 3 ranks: a server and 2 client
ranks), 20 rounds of trees of depth 3 (8 leaves), 32 bins between the public bounds [-5, 5], learning rate 0.3,
delta = 1e-5: privacy.target_epsilon in {1, 4, 16}, and no noise.  Written to private_trees.md and .json under
--out (default benchmarks/results, which also publishes the table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, markdown_table, write_results  # noqa: E402


def main() -> None:
    import mpifl

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 4 rounds (the smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rows, rounds = (20_000, 4) if args.quick else (200_000, 20)
    job = {"mode": "federated", "data.name": "synthetic", "data.n_samples": rows, "data.n_features": 20,
           "data.clients": 8, "data.partition": "iid", "model.kind": "gbdt", "model.output": "logistic",
           "model.max_leaves": 8, "model.max_depth": 3, "model.bins": 32, "model.min_child_rows": 50,
           "rounds": rounds, "log_every": rounds, "train.lr": 0.3}
    table, data = [], {"machine": machine(), "rows": rows, "rounds": rounds, "runs": []}
    for target in (1.0, 4.0, 16.0, None):
        private = {} if target is None else {"privacy.target_epsilon": target, "model.feature_low": -5.0,
                                             "model.feature_high": 5.0}
        result = mpifl.run(None, comm, **job, **private)
        said = result.summary["privacy"]
        data["runs"].append({"target_epsilon": target, "accuracy": result.summary["final_accuracy"],
                             "privacy": said, "seconds_per_tree": result.summary["seconds_per_tree"]})
        cells = ["no noise", "", ""] if said is None else [
            f"{said['epsilon']:.2f}", f"{said['noise_multiplier']:.2f}", str(said["releases"])]
        table.append(f"| {' | '.join(cells)} | {result.summary['final_accuracy']:.4f} |")
    if comm.rank == 0:
        text = markdown_table(
            f"Private federated trees: {rows:,} x 20 synthetic rows over 8 clients, {rounds} rounds of depth-3 trees, "
            f"32 bins, delta 1e-5, 3 ranks ({machine()})",
            ["epsilon", "noise multiplier z", "releases counted", "test accuracy"], table)
        print(text)
        write_results(args.out, "private_trees", text, data)


if __name__ == "__main__":
    main()
