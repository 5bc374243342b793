"""Full-batch logistic regression with PyTorch DistributedDataParallel (gloo, CPU, one thread per rank).

    python benchmarks/peers/ddp_logistic.py RANKS ROWS_PER_RANK FEATURES STEPS LR OUT.json

Each rank generates the same rows mpifl's data.rows_per_rank makes (from
(seed 0, rank)), so both systems train on identical data from a zero start.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time


def worker(rank, world, rows, features, steps, lr, init_file, out):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mpifl.data.builtin import synthetic_part

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    X, y = synthetic_part(rows, features, 2, 0.5, False, 0, 1 + rank)
    X = torch.from_numpy(X.astype("float32"))
    y = torch.from_numpy(y.astype("float32"))
    model = torch.nn.Linear(features, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    step_times = []
    for _ in range(steps):
        dist.barrier()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(ddp(X).squeeze(1), y)
        loss.backward()  # DDP allreduces the gradient buckets here
        optimizer.step()
        step_times.append(time.perf_counter() - t0)
    compute_times = []
    for _ in range(5):  # the same work without the gradient Allreduce
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        with ddp.no_sync():
            loss_fn(ddp(X).squeeze(1), y).backward()
        compute_times.append(time.perf_counter() - t0)
    with torch.no_grad():
        final = torch.tensor([loss_fn(model(X).squeeze(1), y).item()], dtype=torch.float64)
    dist.all_reduce(final)
    if rank == 0:
        step = statistics.median(step_times[1:])
        compute = statistics.median(compute_times)
        json.dump({"seconds_per_step": step, "compute_seconds": compute, "comm_seconds": max(step - compute, 0.0),
                   "final_loss": final.item() / world}, open(out, "w"))
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


def main(world: int, rows: int, features: int, steps: int, lr: float, out: str) -> None:
    import torch.multiprocessing as mp

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(world, rows, features, steps, lr, os.path.join(tmp, "init"), out), nprocs=world)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
