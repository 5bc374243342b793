"""Federated mode: rank 0 is the server, every other rank is one client.

A round, as seen by every rank:
1. Bcast   [theta_{r-1} | mask_r] from the server (one buffer);
2. clients evaluate theta_{r-1} on their own data (federated evaluation),
   and the sampled ones train locally from it;
3. Gatherv [theta_k] and [weight_k, loss_k, correct_k, compute_k] at the server;
4. the server aggregates with its strategy and tests theta_r on its test set.

The clients' evaluation of theta_r arrives with round r+1, so the row for
round r is written then, and a final evaluation-only round (empty mask)
closes the run.  The server holds the
test split and nothing else.  This module and mpifl.roles are the only places
that know which rank plays which role.
"""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.config import Config
from mpifl.data.shards import Shard
from mpifl.kernels import ModelKernels
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.metrics import RoundTimer
from mpifl.progress import RoundRecord, is_logged, time_breakdown
from mpifl.strategies import Strategy

SERVER = 0
# weight, loss sum, correct, rows evaluated, compute seconds, stop requested,
# and the client's communication seconds of the previous round (known only after its Gatherv)
STATS = 7


def _broadcast_buffer(kernels: ModelKernels, n_clients: int) -> np.ndarray:
    """[theta | mask (one entry per client) | stop]."""
    return np.empty(kernels.spec.size + n_clients + 1, dtype=kernels.spec.dtype)


def serve(
    comm: MPI.Comm,
    cfg: Config,
    test: Shard,
    kernels: ModelKernels,
    strategy: Strategy,
    report: Callable[[RoundRecord], None],
    checkpoints,
) -> np.ndarray:
    """The server's loop; returns the final global parameters."""
    spec = kernels.spec
    n_clients = comm.Get_size() - 1
    tester = LocalTrainer(test, kernels, LocalSettings.from_config(cfg), cfg["seed"], SERVER)
    theta = checkpoints.theta.copy() if checkpoints.resumed else spec.zeros()
    strategy.load_state(checkpoints.server)
    shared = _broadcast_buffer(kernels, n_clients)
    nothing = np.empty(0, dtype=spec.dtype)
    updates = np.empty((n_clients, spec.size), dtype=spec.dtype)
    stats = np.empty((n_clients, STATS))
    timer = RoundTimer()
    gather_updates = collectives.GatherFromOthers(comm, spec.size, spec.dtype, SERVER)
    gather_stats = collectives.GatherFromOthers(comm, STATS, np.float64, SERVER)
    # timings of the round that produced theta, reported with the next round's record
    last_seconds, last_compute, last_server = 0.0, 0.0, (0.0, 0.0)
    last_client_compute = np.zeros(n_clients)
    stop = False
    for it in range(checkpoints.start_round + 1, cfg["rounds"] + 2):
        timer.reset()
        stop = stop and it <= cfg["rounds"]
        training = it <= cfg["rounds"] and not stop
        mask = strategy.sample_clients(it, n_clients) if training else np.zeros(n_clients, bool)
        shared[: spec.size] = theta.ravel()
        shared[spec.size : -1] = mask
        shared[-1] = stop
        collectives.bcast(comm, shared, timer, root=SERVER)
        if stop:
            checkpoints.stop_after(it - 1, theta, {}, strategy.state())
        if mask.any():
            gather_updates(nothing, updates, timer)
        gather_stats(np.empty(0), stats, timer)
        with timer.compute():
            record = None
            if is_logged(it - 1, cfg):
                record = _record(it - 1, theta, stats, tester, cfg["model.l2"], last_seconds, last_compute)
                if it > 1:
                    spread, slowest = time_breakdown(
                        np.concatenate(([last_server[0]], last_client_compute)),
                        np.concatenate(([last_server[1]], stats[:, 6])),
                    )
                    record = replace(record, breakdown=spread, slowest_rank=slowest)
            if mask.any():
                theta = strategy.aggregate(theta, updates, stats[:, 0] * mask)
        if record is not None:
            report(record)
        last_seconds = timer.elapsed()
        last_compute = float(stats[:, 4].max()) + timer.compute_seconds
        last_client_compute = stats[:, 4].copy()
        last_server = (timer.compute_seconds, timer.comm_seconds)
        if checkpoints.due(it):
            checkpoints.save(it, theta, {}, strategy.state())
        stop = checkpoints.stop.requested or bool(stats[:, 5].max() > 0)
    return theta


def _record(
    rnd: int, theta: np.ndarray, stats: np.ndarray, tester: LocalTrainer, l2: float,
    seconds: float, compute: float,
) -> RoundRecord:
    rows = stats[:, 3].sum()
    test_loss, test_correct = tester.evaluate(theta)
    n_test = tester.shard.n
    return RoundRecord(
        round=rnd,
        loss=float(stats[:, 1].sum() / rows) + tester.kernels.penalty(theta, l2),
        train_accuracy=float(stats[:, 2].sum() / rows),
        test_loss=test_loss / n_test if n_test else float("nan"),
        accuracy=test_correct / n_test if n_test else float("nan"),
        seconds=seconds,
        compute_seconds=compute,
        comm_seconds=max(0.0, seconds - compute),
        client_loss=(stats[:, 1] / stats[:, 3]).tolist(),
        client_accuracy=(stats[:, 2] / stats[:, 3]).tolist(),
    )


def participate(comm: MPI.Comm, cfg: Config, shard: Shard, kernels: ModelKernels, checkpoints) -> None:
    """A client's loop: evaluate the global model, train when sampled, send the result."""
    spec = kernels.spec
    client = comm.Get_rank() - 1
    n_clients = comm.Get_size() - 1
    trainer = LocalTrainer(shard, kernels, LocalSettings.from_config(cfg), cfg["seed"], client)
    if "velocity" in checkpoints.local:
        trainer.velocity[:] = checkpoints.local["velocity"]
    shared = _broadcast_buffer(kernels, n_clients)
    unused = np.empty(0)  # receive side of Gatherv, ignored off the root
    theta = spec.zeros()
    stats = np.zeros(STATS)
    timer = RoundTimer()
    gather_updates = collectives.GatherFromOthers(comm, spec.size, spec.dtype, SERVER)
    gather_stats = collectives.GatherFromOthers(comm, STATS, np.float64, SERVER)
    previous_comm = 0.0
    for it in range(checkpoints.start_round + 1, cfg["rounds"] + 2):
        timer.reset()
        collectives.bcast(comm, shared, timer, root=SERVER)
        if shared[-1]:
            checkpoints.stop_after(it - 1, theta, {"velocity": trainer.velocity})
        t0 = time.perf_counter()
        mask = shared[spec.size : -1] != 0
        theta[:] = shared[: spec.size].reshape(spec.shape)
        stats[:] = 0.0
        if is_logged(it - 1, cfg):
            stats[1], stats[2] = trainer.evaluate(theta)
            stats[3] = shard.n
        if mask[client]:
            trainer.train(theta, it)
            stats[0] = shard.n
        stats[4] = time.perf_counter() - t0
        stats[5] = checkpoints.stop.requested
        stats[6] = previous_comm
        if mask.any():
            gather_updates(theta.ravel(), unused, timer)
        gather_stats(stats, unused, timer)
        previous_comm = timer.comm_seconds
        if checkpoints.due(it):
            checkpoints.save(it, theta, {"velocity": trainer.velocity})
