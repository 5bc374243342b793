"""Personal accuracy on each client's own test rows: FedAvg, FedAvg+FT, Ditto, q-FedAvg, FedPer and FedRep at
equal rounds.

    mpiexec -n 3 python benchmarks/personal_study.py [--rounds 100] [--quick] [--out benchmarks/results]

Setups: FedProx's Synthetic(1,1) (30 clients with their own test rows,
softmax, E = 5, B = 10, lr 0.01) and digits split over 30 clients by
Dirichlet(0.1), a quarter of each client's rows held out as its own test
rows (softmax, E = 1, B = 16, lr 0.05); 10 clients a round.  For each run it
reports the mean, 10th-percentile and worst personal accuracy and Jain's
fairness index after the last round, and the global model's test accuracy.
FedPer and FedRep need a body below the output layer, so they run on an MLP
with one hidden layer of 32 (ReLU), beside FedAvg and FedAvg+FT on the same
MLP; the other runs train the softmax model.  A third setup reads the same
kind of data through the LEAF path: digits under Dirichlet(0.1) over 30
users, written as a LEAF directory (each user's own train and test JSON,
3:1) and partitioned with ``mpifl partition``, as a user's FEMNIST or
Shakespeare download would be (LEAF's own sets need a download, which this
machine cannot make).
``--quick``: one setup and 5 rounds (the smoke test).  Runs in-process on the
ranks it is started on.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).parent))
from common import STUDY_SETUPS, machine, markdown_table, study_arguments, write_results  # noqa: E402

import mpifl  # noqa: E402

SETUPS = {**STUDY_SETUPS, "digits, Dirichlet(0.1)": {**STUDY_SETUPS["digits, Dirichlet(0.1)"],
                                                              "data__client_test_fraction": 0.25}}
RUNS = {
    "FedAvg": dict(server__strategy="fedavg"),
    "FedAvg+FT (2 epochs)": dict(server__strategy="fedavg", train__finetune_epochs=2),
    "Ditto (lambda 0.1)": dict(server__strategy="ditto", server__personal_lambda=0.1),
    "q-FedAvg (q 1)": dict(server__strategy="qfedavg", server__q=1.0),
}
MLP = dict(model__kind="mlp", model__hidden=[32])
RUNS.update({
    "FedAvg, MLP": dict(server__strategy="fedavg", **MLP),
    "FedAvg+FT (2 epochs), MLP": dict(server__strategy="fedavg", train__finetune_epochs=2, **MLP),
    "FedPer, MLP": dict(server__strategy="fedper", **MLP),
    "FedRep (head 5 epochs), MLP": dict(server__strategy="fedrep", server__head_epochs=5, **MLP),
})


def leaf_setup(comm, root: Path) -> dict:
    """Write digits under Dirichlet(0.1) over 30 users as a LEAF directory on rank 0, partition it, and return
    the setup that reads it (every rank gets the same path)."""
    from mpifl.data import partition_cli
    from mpifl.data.shards import with_client_tests
    from mpifl.data.catalog import resolve

    base = STUDY_SETUPS["digits, Dirichlet(0.1)"]
    parts = root / "parts"
    if comm.rank == 0:
        cfg = mpifl.job(None, seed=1, **base)
        users = range(cfg.data.clients)
        data = with_client_tests(resolve(cfg).clients(users, len(users)), users, 0.25, 1)
        kept = [(k, d) for k, d in zip(users, data) if d.test is not None]  # a user of 1 row has no test row
        for split in ("train", "test"):
            shards = {f"writer_{k:03d}": getattr(d, split) for k, d in kept}
            (root / "leaf" / split).mkdir(parents=True)
            doc = {"users": list(shards), "num_samples": [s.n for s in shards.values()],
                   "user_data": {u: {"x": s.X.tolist(), "y": s.y.astype(int).tolist()} for u, s in shards.items()}}
            (root / "leaf" / split / "all_data.json").write_text(json.dumps(doc))
        assert partition_cli.main([str(root / "leaf"), "--out", str(parts)]) == 0
    comm.Barrier()
    return {key: value for key, value in base.items() if key in ("model__kind", "train__epochs", "train__batch_size",
                                                                  "train__lr")} | {"data__path": str(parts)}


def main() -> None:
    args = study_arguments(__doc__, 100)
    comm = MPI.COMM_WORLD
    rounds = 5 if args.quick else args.rounds
    scratch = Path(comm.bcast(tempfile.mkdtemp(prefix="mpifl-leaf-") if comm.rank == 0 else None))
    setups = dict(list(SETUPS.items())[1:]) if args.quick else {
        **SETUPS, "digits as a LEAF set, Dirichlet(0.1)": leaf_setup(comm, scratch)}
    rows, data = [], {"machine": machine(), "rounds": rounds, "cases": []}
    for setup, base in setups.items():
        for name, extra in RUNS.items():
            result = mpifl.run(None, comm, seed=0, rounds=rounds, log_every=rounds, server__fraction=1 / 3,
                               **{**base, **extra})
            if comm.rank:
                continue
            p, acc = result.history[-1]["personal"], result.history[-1]["accuracy"]
            rows.append(f"| {setup} | {name} | {p['mean']:.3f} | {p['p10']:.3f} | {p['worst']:.3f} | "
                        f"{p['jain']:.4f} | {acc:.3f} |")
            data["cases"].append({"setup": setup, "run": name, "personal": p, "global_accuracy": acc})
    if comm.rank == 0:
        table = markdown_table(
            f"Personal accuracy on each client's own test rows after {rounds} rounds, 10 of 30 clients a round; "
            f"{comm.Get_size()} ranks; {machine()}",
            ["setup", "run", "mean", "10th percentile", "worst", "Jain's index", "global model, server test set"],
            rows)
        print(table)
        write_results(args.out, "personal_study", table, data)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    from mpifl.agree import or_abort

    or_abort(MPI.COMM_WORLD, main)  # a failure on one rank ends the job rather than leaving the others waiting
