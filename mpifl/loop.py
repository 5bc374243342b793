"""What every training loop is handed: the communicator, the job, the kernels, and where results go."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from mpifl.checkpointing import Checkpoints
from mpifl.config import Config
from mpifl.stages import Chain
from mpifl.kernels import ModelKernels
from mpifl.progress import Recorder, RoundRecord
from mpifl.selection import BestRound
from mpifl.stopping import StopFlag


@dataclass
class Loop:
    """One rank's view of a training run.

    The loops report rounds to ``recorder``, read ``stop`` once per round and
    save through ``checkpoints``; the checkpoint holds the records so far.
    ``patient`` is set where a node has more ranks than cores: ranks that
    wait long in a collective then poll with sleeps instead of spinning
    (mpifl.comm.Waiting).
    """

    comm: MPI.Comm
    cfg: Config
    kernels: ModelKernels
    recorder: Recorder
    checkpoints: Checkpoints
    stop: StopFlag
    patient: bool = False
    chain: Chain | None = None  # the stages of a federated round (mpifl.stages); None in distributed mode
    start: np.ndarray | None = None  # model.init's parameters, the same on every rank; None: the seeded start
    best: BestRound | None = None  # the best round on stop.metric and early stopping; set from cfg if None
    # where a recorded round's per-client figures go (rank 0's writer: clients/round_NNNNNN.npz); None: nowhere
    details: Callable[[int, dict], None] | None = None

    def __post_init__(self):
        if self.best is None:
            self.best = BestRound.from_config(self.cfg)

    def initial(self) -> np.ndarray:
        """The parameters a fresh run starts from: model.init's, or the model kind's seeded start."""
        return self.start.copy() if self.start is not None else self.kernels.spec.initial(self.cfg.seed)

    def report(self, record: RoundRecord) -> None:
        self.recorder.report(record)

    def save(self, rnd: int, theta: np.ndarray, local: Mapping[str, np.ndarray],
             server: Mapping[str, np.ndarray] | None = None) -> None:
        self.checkpoints.save(rnd, theta, local, server or {}, self.recorder.records)

    def stop_after(self, rnd: int, theta: np.ndarray, local: Mapping[str, np.ndarray],
                   server: Mapping[str, np.ndarray] | None = None) -> None:
        """Checkpoint round rnd and raise Stopped on this rank (every rank calls it together)."""
        self.checkpoints.stop_after(rnd, theta, local, server or {}, self.recorder.records)
