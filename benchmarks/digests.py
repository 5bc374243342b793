"""Digests of the final model of a fixed list of jobs: a refactor that must keep results bitwise checks here.

    mpiexec -n 3 python benchmarks/digests.py > before.txt
    (change the code)
    mpiexec -n 3 python benchmarks/digests.py > after.txt && diff before.txt after.txt

Each line is a job's name and the sha256 of its final parameters' bytes.
The digests hold for one machine and one kernel variant only (the variant
is pinned here to the floor), so they are compared on the same machine and
never stored in a test.  Every strategy, a robust aggregator, each codec
with error feedback, DP with adaptive clipping, SecAgg+ with dropouts, the
integer Reduce (alone, with SCAFFOLD's summed fields, with DP and under
SecAgg), personalization, the MLP and the three distributed algorithms are
covered.
"""

from __future__ import annotations

import hashlib
import os
import sys

os.environ.setdefault("MPIFL_KERNEL_VARIANT", "plain")

import mpifl  # noqa: E402

STRATEGY_KEYS = {"fedavgm": {"server__momentum": 0.5}, "fedadam": {"server__lr": 0.05},
                 "fedyogi": {"server__lr": 0.05}, "fedadagrad": {"server__lr": 0.05}}
BASE = {"rounds": 4, "train__epochs": 1, "train__batch_size": 16, "train__lr": 0.2,
        "data__clients": 8, "server__fraction": 0.75}

JOBS: dict[str, dict] = {
    **{f"strategy={name}": {"server__strategy": name, **STRATEGY_KEYS.get(name, {})}
       for name in ("fedavg", "fedprox", "scaffold", "fednova", "fedavgm", "fedadagrad", "fedadam", "fedyogi")},
    "aggregator=multikrum": {"server__aggregator": "multikrum", "server__byzantine": 1},
    "aggregator=centered_clip": {"server__aggregator": "centered_clip", "server__radius": 0.5},
    "attack=sign_flip+median": {"attack__kind": "sign_flip", "attack__fraction": 0.25, "server__aggregator": "median"},
    **{f"compress={name}+ef": {"compress__uplink": name, "compress__error_feedback": True, "compress__ratio": 0.2}
       for name in ("topk", "randk", "qsgd", "int8")},
    "privacy=adaptive": {"privacy__noise_multiplier": 0.5, "privacy__adaptive": True, "privacy__clip": 0.5},
    "secagg+=dropouts": {"secagg__enabled": True, "secagg__plus": True, "secagg__dropout": 0.2},
    "secagg=reduce": {"secagg__enabled": True, "server__exchange": "reduce"},
    "exchange=reduce": {"server__exchange": "reduce"},
    "exchange=reduce+scaffold": {"server__exchange": "reduce", "server__strategy": "scaffold"},
    "exchange=reduce+privacy": {"server__exchange": "reduce", "privacy__noise_multiplier": 0.5},
    "strategy=fedper": {"server__strategy": "fedper", "model__kind": "mlp", "model__hidden": [16]},
    "strategy=ditto": {"server__strategy": "ditto"},
    "strategy=qfedavg": {"server__strategy": "qfedavg"},
    "model=mlp": {"model__kind": "mlp", "model__hidden": [16], "model__dtype": "float32",
                  "train__momentum": 0.9, "train__lr": 0.05},
    "distributed=gradient_averaging": {"mode": "distributed", "train__algorithm": "gradient_averaging",
                                       "train__batch_size": 0},
    "distributed=local_sgd": {"mode": "distributed", "train__algorithm": "local_sgd"},
    "distributed=lbfgs": {"mode": "distributed", "train__optimizer": "lbfgs", "train__batch_size": 0},
    "distributed=topk+ef": {"mode": "distributed", "compress__uplink": "topk", "compress__error_feedback": True},
}


def main() -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    for name, overrides in JOBS.items():
        settings = {**BASE, **overrides}
        if settings.get("mode") == "distributed":
            for key in ("data__clients", "server__fraction"):
                settings.pop(key)
        result = mpifl.run(None, comm, **settings)
        if comm.Get_rank() == 0:
            digest = hashlib.sha256(result.model.tobytes()).hexdigest()[:16]
            print(f"{name:36s} {digest}  loss {result.summary['final_loss']:.12g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
