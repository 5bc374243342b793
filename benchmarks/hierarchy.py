"""Two-level averaging (HierFAVG) against flat FedAvg: accuracy, time and the bytes that reach rank 0.

    mpiexec -n 8 python benchmarks/hierarchy.py [--rounds 50] [--quick] [--out benchmarks/results]

The default job (digits, 7 clients on 7 client ranks, softmax), flat FedAvg
for ``--rounds`` rounds against edges of ``server.edge_ranks = 2`` client
ranks: at kappa1 = kappa2 = 1 for the same rounds (it equals FedAvg), and
at kappa2 = 5 for a fifth of the cloud rounds (the same local training).
Each edge sends one row, from its first rank, so rank 0 receives one row an
edge instead of one a client.  Runs in-process on the ranks it is started
on; ``--quick``: 5 rounds (the smoke test).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, study_arguments, write_results  # noqa: E402

import mpifl  # noqa: E402


def main() -> None:
    args = study_arguments(__doc__, 50)
    comm = MPI.COMM_WORLD
    rounds = 5 if args.quick else args.rounds
    edges = dict(server__hierarchy="groups", server__edge_ranks=2)
    runs = {
        f"flat FedAvg, {rounds} rounds": dict(rounds=rounds),
        f"edges, kappa1 = kappa2 = 1, {rounds} rounds": dict(rounds=rounds, **edges),
        f"edges, kappa2 = 5, {max(rounds // 5, 1)} cloud rounds": dict(rounds=max(rounds // 5, 1), server__kappa2=5,
                                                                       **edges),
    }
    rows, data = [], {"machine": machine(), "ranks": comm.Get_size(), "cases": []}
    for name, job in runs.items():
        result = mpifl.run(None, comm, mode="federated", data__clients=comm.Get_size() - 1, **job)
        if comm.rank:
            continue
        s = result.summary
        rows.append(f"| {name} | {s['final_accuracy']:.4f} | {s['seconds_per_round'] * 1e3:.2f} ms | "
                    f"{s['train_seconds']:.3f} s | {s['uplink_bytes'] / 1e6:.2f} MB |")
        data["cases"].append({"run": name, "final_accuracy": s["final_accuracy"],
                              "seconds_per_round": s["seconds_per_round"], "train_seconds": s["train_seconds"],
                              "uplink_bytes": s["uplink_bytes"]})
    if comm.rank == 0:
        table = markdown_table(
            f"Two-level averaging against flat FedAvg, the default job ({comm.Get_size() - 1} clients, edges of 2 "
            f"client ranks); {comm.Get_size()} ranks; {machine()}",
            ["run", "final accuracy", "per round", "training", "uplink to rank 0"], rows)
        print(table)
        write_results(args.out, "hierarchy", table, data)


if __name__ == "__main__":
    from mpifl.agree import or_abort

    or_abort(MPI.COMM_WORLD, main)
