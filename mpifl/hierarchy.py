"""Two-level federated averaging (HierFAVG, Liu et al. 2020): clients -> edge aggregators -> the server.

``server.hierarchy = "groups"`` (``server.edge_ranks`` client ranks to an
edge) or ``"node"`` (the client ranks of one node).  Each edge is a
sub-communicator of client ranks.  One protocol round is one cloud round:
starting from the server's theta, every client of an edge trains
``server.kappa1`` local rounds (each ``train.epochs`` epochs) from the edge
model, the edge averages its clients' models by their rows (an ``Allreduce``
on the edge's communicator), and after ``server.kappa2`` such edge rounds
each client sends its edge's delta.  The server's sample-weighted mean of the
clients' deltas is then the edges' mean weighted by their rows: the cloud
step of the paper.  With kappa1 = kappa2 = 1 this is FedAvg, to rounding
(the sums are grouped by edge).

Every client trains every round (server.fraction = 1), under a strategy
that steps on the mean of the deltas and keeps no client state (FedAvg and
FedProx; FedAvgM and the FedOpt family then step on the edges' mean); stages that change updates on the way (privacy, compression,
secure aggregation, attacks) are refused.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpifl.errors import ConfigError
from mpifl.ranks import ROOT
from mpifl.strategies.aggregators import AGGREGATORS


def check(cfg, strategy: type, stages_on: bool) -> None:
    """Refuse what two-level averaging does not cover, naming the key."""
    if cfg.server.hierarchy == "none":
        return
    why = None
    if not strategy.averages_deltas or strategy.client.state or strategy.uplink or strategy.downlink \
            or strategy.asynchronous:
        why = (f"needs a strategy that steps on the mean of the clients' deltas and whose clients keep no state "
               f"(fedavg, fedprox, fedavgm, fedadagrad, fedadam, fedyogi); server.strategy is {cfg.server.strategy!r}")
    elif cfg.server.fraction != 1.0 or cfg.train.stragglers:
        why = "trains every client every round: set server.fraction = 1 and train.stragglers = 0"
    elif AGGREGATORS[cfg.server.aggregator].needs_rows:
        why = "averages at the edges, so the server's aggregator must take sums (\"mean\"), not each client's row"
    elif stages_on:
        why = "does not pass updates through privacy, compression, secure aggregation or attacks"
    elif cfg.server.exchange == "reduce":
        why = "sends each client's row of its edge's delta (set server.exchange = \"gather\" or \"auto\")"
    if why:
        raise ConfigError(f"server.hierarchy = {cfg.server.hierarchy!r} {why}.")


def edges(comm: MPI.Comm, cfg, blocks: list[range]) -> tuple[MPI.Comm | None, np.ndarray | None]:
    """(this client rank's edge communicator or None, which clients send a row: each edge's first client).

    Collective on every rank; (None, None) without edges.
    """
    if cfg.server.hierarchy == "none":
        return None, None
    rank = comm.Get_rank()
    clients = comm.Split(MPI.UNDEFINED if rank == ROOT else 0, rank)
    edge = None
    if rank != ROOT:
        if cfg.server.hierarchy == "node":
            edge = clients.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
        else:
            edge = clients.Split((rank - 1) // cfg.server.edge_ranks, rank)
        clients.Free()
    leads = comm.allgather(edge is not None and edge.Get_rank() == 0)  # set-up only: one flag a rank
    senders = np.zeros(sum(len(b) for b in blocks), dtype=bool)
    for host, block in enumerate(blocks, start=1):
        if leads[host] and len(block):
            senders[block.start] = True
    return edge, senders


def train_edges(edge: MPI.Comm, trainers, clients: range, theta: np.ndarray, it: int, epochs: np.ndarray,
                kappa1: int, kappa2: int, hook_of, rows_out, client_stats) -> int:
    """kappa2 edge rounds of kappa1 local rounds for this rank's clients; on the edge's first rank, the first
    payload row gets the edge's delta and its first client the edge's rows as its weight.  Returns the payload
    rows this rank sends (1 or 0).

    ``hook_of(anchor)`` is the local objective's hook around an anchor (FedProx pulls toward the edge model).
    """
    model = theta.astype(np.float64)
    work = np.empty_like(theta)
    total = np.empty(model.size + 1)
    for e in range(kappa2):
        total[:] = 0.0
        anchor = model.astype(theta.dtype)
        for j, k in enumerate(clients):
            trainer = trainers[j]
            work[...] = anchor
            for r in range(kappa1):
                # rounds of the streams: distinct for every (cloud round, edge round, local round)
                trainer.train(work, (it * kappa2 + e) * kappa1 + r, int(epochs[k]), hook_of(anchor))
            n = trainer.shard.n
            total[:-1] += n * work.reshape(-1).astype(np.float64)
            total[-1] += n
        edge.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
        model = (total[:-1] / total[-1]).reshape(theta.shape)
    for j in range(len(clients)):
        client_stats[j]["weight"][0] = trainers[j].shard.n
    if edge.Get_rank() != 0:
        return 0
    rows_out[0]["delta"][...] = model - theta.astype(np.float64)
    client_stats[0]["weight"][0] = total[-1]  # the edge's rows: its row weighs for the whole edge
    return 1
