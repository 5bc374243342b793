"""The collectives one training round issues, derived from the job config.

A federated round's sizes are read from the Wire the run itself builds
(mpifl.federated.make_wire, with the job's strategy and stage chain), so the
model cannot drift from the protocol; tests/test_wire_bytes.py compares it
with the bytes a real run counts at its collectives.  Distributed rounds
mirror mpifl.distributed.  This feeds the alpha-beta projection; evaluation
on logged rounds is not counted, nor secure aggregation's key agreement and
share messages (only its masked vectors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpifl.config import Config
from mpifl.data.catalog import model_spec, resolve
from mpifl.data.shards import balanced_blocks
from mpifl.federated import make_wire
from mpifl.modes import MODES
from mpifl.stages import build_chain
from mpifl.strategies import STRATEGIES

STOP_FLAG_BYTES = 8  # distributed mode's per-round stop agreement


@dataclass(frozen=True)
class Collective:
    name: str  # one of mpifl.scaling.alphabeta.COLLECTIVES
    nbytes: int  # per rank
    count: int  # per round


def train_rows(cfg: Config, ranks: int) -> int:
    """Training rows in the whole job (all workers together) at ``ranks`` ranks."""
    return resolve(cfg).train_rows(ranks, workers(cfg.mode, ranks))


def workers(mode: str, ranks: int) -> int:
    """Ranks that hold training data: all of them, or all but the server (the mode's own answer)."""
    return MODES[mode].trainers(ranks)


def per_round(cfg: Config, ranks: int, rows_per_worker: float, model_size: int | None = None) -> list[Collective]:
    """Collectives per round at ``ranks`` ranks; ``model_size`` overrides the job's parameter count."""
    return ROUNDS[cfg.mode](cfg, ranks, rows_per_worker, model_size)


def distributed_round(cfg: Config, ranks: int, rows_per_worker: float, model_size: int | None = None) -> list[Collective]:
    """Each step's gradient (or each round's model) Allreduce, and the per-round stop agreement."""
    spec = model_spec(cfg)
    size = model_size if model_size is not None else spec.size
    model_bytes = size * spec.dtype.itemsize
    if cfg.train.algorithm == "local_sgd":
        steps = 1
    elif cfg.train.batch_size == 0:
        steps = cfg.train.epochs
    else:
        steps = cfg.train.epochs * max(1, math.ceil(rows_per_worker / cfg.train.batch_size))
    return [Collective("Allreduce", model_bytes, steps), Collective("Allreduce", STOP_FLAG_BYTES, 1)]


def federated_round(cfg: Config, ranks: int, rows_per_worker: float, model_size: int | None = None) -> list[Collective]:
    """A federated round at ``ranks`` ranks, per client rank: the downlink Bcast, the exchange of the updates (the
    Gatherv of payload rows, or a summing exchange's vectors), and the Gatherv of the statistics.  Sizes are the
    Wire's; the updates are those of the most loaded client rank's expected cohort."""
    source = resolve(cfg)
    spec = model_spec(cfg, source)
    n_clients = source.n_clients(ranks)
    blocks = balanced_blocks(source.client_rows(n_clients), ranks - 1)
    strategy = STRATEGIES[cfg.server.strategy]
    chain = build_chain(MPI.COMM_SELF, cfg, spec, n_clients, strategy, 0, True)  # the server's chain
    shape = spec.shape if model_size is None else (model_size,)
    wire = make_wire(strategy, chain, spec, blocks, shape=shape, fraction=cfg.server.fraction)
    trained = int(np.ceil(cfg.server.fraction * max(len(b) for b in blocks)))  # on the most loaded client rank
    # a statistics row per client that trains (an unrecorded round: evaluation is not counted)
    stats = trained * wire.client_stats.width + len(wire.rank_stats)
    own = next((stage for stage in chain.stages if stage.brings_exchange), None)
    if own is None:
        updates = [Collective("Gather", trained * wire.payload.width * wire.dtype.itemsize, 1)]
    else:  # an exchange of its own says what it sends (mpifl.stages.summing)
        updates = [Collective(name, nbytes, 1) for name, nbytes in own.collectives(trained, int(np.prod(shape)))]
    return [Collective("Bcast", wire.downlink_buffer().nbytes, 1), *updates,
            Collective("Gather", stats * 8, 1)]


ROUNDS = {"federated": federated_round, "distributed": distributed_round}  # by mode (mpifl.modes.MODES)
