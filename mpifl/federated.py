"""Federated mode: rank 0 is the server; ranks 1..p-1 host the K clients, a contiguous block each.

A round, as seen by every rank:
1. Bcast   [theta_{r-1} | mask_r (K entries) | stop] from the server (one buffer);
2. each client rank evaluates theta_{r-1} on each of its clients (federated
   evaluation, on recorded rounds), and trains each sampled client from it,
   one after another; every client keeps its own momentum;
3. Gatherv of the sampled clients' theta_k (counts follow from the mask, so
   nothing but parameters travels), and Gatherv of the per-client stats
   [weight, loss, correct, rows] and the per-rank [compute, stop, comm];
4. the server aggregates with its strategy and tests theta_r on its test set.

The clients' evaluation of theta_r arrives with round r+1, so the row for
round r is written then, and a final evaluation-only round (empty mask)
closes the run.  The server holds the test split and nothing else.  This
module and mpifl.roles are the only places that know which rank plays which role.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl.config import Config
from mpifl.data.shards import Shard, hosted
from mpifl.kernels import ModelKernels
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.metrics import RoundTimer
from mpifl.progress import RoundRecord, is_logged, time_breakdown
from mpifl.strategies import Strategy

SERVER = 0
CLIENT_STATS = 4  # weight (rows trained on, 0 if not sampled), loss sum, correct, rows evaluated
RANK_STATS = 3  # compute seconds, stop requested, the rank's comm seconds of the previous round


class Layout:
    """Which rank hosts which clients, and the Gatherv counts that follow; the same on every rank."""

    def __init__(self, comm: MPI.Comm, n_clients: int, width: int):
        self.n_clients = n_clients
        self.hosts = comm.Get_size() - 1
        self.width = width
        self.blocks = [hosted(n_clients, self.hosts, h) for h in range(self.hosts)]
        self.stats_counts = [0] + [len(b) * CLIENT_STATS + RANK_STATS for b in self.blocks]
        offsets = np.cumsum([0, *self.stats_counts[1:]])
        self.client_rows = np.concatenate(
            [off + np.arange(len(b) * CLIENT_STATS) for off, b in zip(offsets, self.blocks)]
        ) if n_clients else np.empty(0, np.int64)
        self.rank_rows = np.concatenate([off + len(b) * CLIENT_STATS + np.arange(RANK_STATS)
                                         for off, b in zip(offsets, self.blocks)])

    def update_counts(self, mask: np.ndarray) -> list[int]:
        """Gatherv counts of the round's updates: width values per sampled client."""
        return [0] + [int(mask[b.start : b.stop].sum()) * self.width for b in self.blocks]

    def split_stats(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K x CLIENT_STATS, hosts x RANK_STATS) from the gathered stats."""
        return flat[self.client_rows].reshape(-1, CLIENT_STATS), flat[self.rank_rows].reshape(-1, RANK_STATS)


def _broadcast_buffer(kernels: ModelKernels, n_clients: int) -> np.ndarray:
    """[theta | mask (one entry per client) | stop]."""
    return np.empty(kernels.spec.size + n_clients + 1, dtype=kernels.spec.dtype)


def serve(
    comm: MPI.Comm,
    cfg: Config,
    test: Shard,
    n_clients: int,
    kernels: ModelKernels,
    strategy: Strategy,
    report: Callable[[RoundRecord], None],
    checkpoints,
) -> np.ndarray:
    """The server's loop; returns the final global parameters."""
    spec = kernels.spec
    layout = Layout(comm, n_clients, spec.size)
    tester = LocalTrainer(test, kernels, LocalSettings.from_config(cfg), cfg["seed"], SERVER)
    theta = checkpoints.theta.copy() if checkpoints.resumed else spec.zeros()
    strategy.load_state(checkpoints.server)
    shared = _broadcast_buffer(kernels, n_clients)
    nothing = np.empty(0, dtype=spec.dtype)
    updates = np.empty((n_clients, spec.size), dtype=spec.dtype)
    flat_stats = np.empty(sum(layout.stats_counts))
    timer = RoundTimer()
    gather_updates = collectives.GatherToRoot(comm, [0] * comm.Get_size(), spec.dtype, SERVER)
    gather_stats = collectives.GatherToRoot(comm, layout.stats_counts, np.float64, SERVER)
    # timings of the round that produced theta, reported with the next round's record
    last_seconds, last_compute, last_server = 0.0, 0.0, (0.0, 0.0)
    last_rank_compute = np.zeros(layout.hosts)
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
            gather_updates.set_counts(layout.update_counts(mask))
            gather_updates(nothing, updates, timer)
        gather_stats(np.empty(0), flat_stats, timer)
        stats, rank_stats = layout.split_stats(flat_stats)
        with timer.compute():
            record = None
            if is_logged(it - 1, cfg):
                record = _record(it - 1, theta, stats, tester, cfg["model.l2"], last_seconds, last_compute)
                if it > 1:
                    spread, slowest = time_breakdown(
                        np.concatenate(([last_server[0]], last_rank_compute)),
                        np.concatenate(([last_server[1]], rank_stats[:, 2])),
                    )
                    record = replace(record, breakdown=spread, slowest_rank=slowest)
            if mask.any():
                theta = strategy.aggregate(theta, updates[: int(mask.sum())], stats[mask, 0])
        if record is not None:
            report(record)
        last_seconds = timer.elapsed()
        last_compute = float(rank_stats[:, 0].max()) + timer.compute_seconds
        last_rank_compute = rank_stats[:, 0].copy()
        last_server = (timer.compute_seconds, timer.comm_seconds)
        if checkpoints.due(it):
            checkpoints.save(it, theta, {}, strategy.state())
        stop = checkpoints.stop.requested or bool(rank_stats[:, 1].max() > 0)
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


def participate(
    comm: MPI.Comm, cfg: Config, shards: list[Shard], clients: range, n_clients: int,
    kernels: ModelKernels, checkpoints,
) -> None:
    """A client rank's loop: for each of its clients, evaluate the global model, train when sampled."""
    spec = kernels.spec
    layout = Layout(comm, n_clients, spec.size)
    settings = LocalSettings.from_config(cfg)
    trainers = [LocalTrainer(shard, kernels, settings, cfg["seed"], k) for shard, k in zip(shards, clients)]
    if "velocity" in checkpoints.local:
        for trainer, velocity in zip(trainers, checkpoints.local["velocity"]):
            trainer.velocity[:] = velocity
    shared = _broadcast_buffer(kernels, n_clients)
    unused = np.empty(0)  # receive side of Gatherv, ignored off the root
    theta = spec.zeros()
    outgoing = np.empty((len(clients), spec.size), dtype=spec.dtype)
    stats = np.zeros(len(clients) * CLIENT_STATS + RANK_STATS)
    client_stats = stats[: len(clients) * CLIENT_STATS].reshape(len(clients), CLIENT_STATS)
    timer = RoundTimer()
    gather_updates = collectives.GatherToRoot(comm, [0] * comm.Get_size(), spec.dtype, SERVER)
    gather_stats = collectives.GatherToRoot(comm, layout.stats_counts, np.float64, SERVER)
    previous_comm = 0.0

    def local_state() -> dict[str, np.ndarray]:
        return {"velocity": np.stack([t.velocity for t in trainers])}

    for it in range(checkpoints.start_round + 1, cfg["rounds"] + 2):
        timer.reset()
        collectives.bcast(comm, shared, timer, root=SERVER)
        if shared[-1]:
            checkpoints.stop_after(it - 1, theta, local_state())
        t0 = time.perf_counter()
        mask = shared[spec.size : -1] != 0
        theta[:] = shared[: spec.size].reshape(spec.shape)
        stats[:] = 0.0
        sent = 0
        for j, (k, trainer) in enumerate(zip(clients, trainers)):
            if is_logged(it - 1, cfg):
                client_stats[j, 1], client_stats[j, 2] = trainer.evaluate(theta)
                client_stats[j, 3] = trainer.shard.n
            if mask[k]:
                mine = outgoing[sent].reshape(spec.shape)
                mine[:] = theta
                trainer.train(mine, it)
                client_stats[j, 0] = trainer.shard.n
                sent += 1
        stats[-3] = time.perf_counter() - t0
        stats[-2] = checkpoints.stop.requested
        stats[-1] = previous_comm
        if mask.any():
            gather_updates.set_counts(layout.update_counts(mask))
            gather_updates(outgoing[:sent].ravel(), unused, timer)
        gather_stats(stats, unused, timer)
        previous_comm = timer.comm_seconds
        if checkpoints.due(it):
            checkpoints.save(it, theta, local_state())
