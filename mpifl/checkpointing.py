"""The checkpoint protocol of a run: when to save, what each rank saves, and how every rank resumes.

The files themselves (atomic writes, the fingerprint) are mpifl.checkpoint's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpifl import checkpoint as ckpt_files
from mpifl.agree import collectively
from mpifl.config import Config
from mpifl.kernels.checks import all_finite
from mpifl.model import ModelSpec
from mpifl.progress import RoundRecord
from mpifl.ranks import ROOT, is_root
from mpifl.stopping import Stopped


class Checkpoints:
    """The checkpoint protocol of one run, as seen by this rank (files: mpifl.checkpoint).

    Every rank saves its own state; rank 0 alone saves the global state, the
    records so far and the pointer.  After resume(), ``start_round``,
    ``theta``, ``local`` and ``server`` hold what the loops start from.
    """

    def __init__(self, comm: MPI.Comm, run_dir: Path | None, cfg: Config):
        self.comm = comm
        self.saved_round = -1
        self.directory = Path(run_dir) / "checkpoint" if run_dir is not None else None  # None: nothing is saved
        self.every: int = cfg.checkpoint.every
        self.rounds: int = cfg.rounds
        self.cfg = cfg
        self.start_round = 0
        self.theta: np.ndarray | None = None
        self.local: dict[str, np.ndarray] = {}
        self.server: dict[str, np.ndarray] = {}

    @property
    def resumed(self) -> bool:
        return self.theta is not None

    def prepare(self) -> None:
        """Create the directory (rank 0), also for a stop-on-signal checkpoint; call collectively."""
        if is_root(self.comm) and self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def due(self, rnd: int) -> bool:
        return self.every > 0 and 0 < rnd <= self.rounds and rnd % self.every == 0

    def save(self, rnd: int, theta: np.ndarray, local: Mapping[str, np.ndarray], server: Mapping[str, np.ndarray],
             records: list[RoundRecord]) -> None:
        """Save round rnd: this rank's file, a barrier, then rank 0's state and pointer."""
        if rnd == self.saved_round or self.directory is None:
            return
        self.saved_round = rnd
        rank = self.comm.Get_rank()
        ckpt_files.write_npz(ckpt_files.rank_file(self.directory, rank, rnd), dict(local))
        self.comm.Barrier()  # every rank's file of this round is on disk
        if is_root(self.comm) and all_finite(theta.reshape(-1)):  # never commit a diverged model
            rows = json.dumps([r.as_json() for r in records])
            arrays = {"theta": theta, "records": np.array(rows)}
            arrays.update({f"server.{k}": v for k, v in server.items()})
            ckpt_files.write_npz(ckpt_files.state_file(self.directory, rnd), arrays)
            ckpt_files.write_latest(self.directory, {
                "format": ckpt_files.FORMAT_VERSION, "round": rnd, "ranks": self.comm.Get_size(),
                "fingerprint": ckpt_files.fingerprint(self.cfg),
            })
            ckpt_files.remove_older(self.directory, "state_round_*.npz", rnd)
        ckpt_files.remove_older(self.directory, f"rank_{rank:05d}_round_*.npz", rnd - max(self.every, 1))

    def stop_after(self, rnd: int, theta: np.ndarray, local: Mapping[str, np.ndarray],
                   server: Mapping[str, np.ndarray], records: list[RoundRecord]) -> None:
        """Checkpoint round rnd and raise Stopped on this rank (every rank calls it together)."""
        self.save(rnd, theta, local, server, records)
        raise Stopped(rnd, self.directory.parent if self.directory is not None else None, self.comm.Get_size())

    def resume(self, spec: ModelSpec) -> list[RoundRecord]:
        """Load the latest checkpoint on every rank; returns the metrics recorded before it."""
        root = is_root(self.comm)
        pointer = collectively(self.comm, lambda: ckpt_files.read_latest(self.directory) if root else None)
        meta = self.comm.bcast(pointer, root=ROOT)
        collectively(
            self.comm,
            lambda: ckpt_files.check_compatible(meta, self.cfg, self.comm.Get_size(), self.directory.parent),
        )
        rnd = meta["round"]
        rank = self.comm.Get_rank()
        self.local = collectively(
            self.comm, lambda: ckpt_files.read_npz(ckpt_files.rank_file(self.directory, rank, rnd))
        )
        state = collectively(
            self.comm, lambda: ckpt_files.read_npz(ckpt_files.state_file(self.directory, rnd)) if root else {}
        )
        theta = state["theta"] if root else spec.zeros()
        self.comm.Bcast(theta, root=ROOT)
        self.theta = theta
        self.start_round = rnd
        self.server = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("server.")}
        rows = json.loads(str(state["records"][()])) if root else []
        return [RoundRecord(**row) for row in rows]
