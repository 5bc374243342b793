"""Why a run ends early: a signal (finish the round, checkpoint, exit 75) or divergence (exit 3).

Slurm sends SIGTERM at preemption and the signal of ``--signal`` before the
time limit.  The handler only sets a flag; the training loops agree on it at
the end of a round (a signal may reach only some ranks), save a checkpoint
and raise Stopped on every rank.  A non-finite loss or model is agreed on
the same way, in the same messages, and raises Diverged on every rank.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mpifl.errors import EXIT_STOPPED, Diverged, MpiflError
from mpifl.kernels.checks import all_finite

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopFlag:
    """Set by a signal handler; read once per round."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, _frame) -> None:
        self.signal = signum

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class Stopped(MpiflError):
    """Raised on every rank after a requested stop was checkpointed."""

    exit_code = EXIT_STOPPED

    def __init__(self, after_round: int, run_dir, ranks: int):
        where = (f"the checkpoint is in {run_dir}/checkpoint. Resume with: {resume_command(run_dir, ranks)}"
                 if run_dir is not None else "there was no run directory, so nothing was saved")
        super().__init__(f"stopped by a signal after round {after_round}; {where}", collective=True)
        self.after_round = after_round


def divergence(theta: np.ndarray, loss: float) -> int:
    """Diverged.PARAMETERS or Diverged.LOSS when that quantity is not finite, else 0."""
    if not all_finite(theta.reshape(-1)):
        return Diverged.PARAMETERS
    return Diverged.LOSS if not math.isfinite(loss) else 0


def watched_loss(record, unknown: bool) -> float:
    """The loss that tells divergence: the clients' training loss; where no client's figures reached the server
    (local DP alone), the server's own test loss, if it has test rows (theta's finiteness is checked anyway)."""
    if record is None:
        return 0.0
    if unknown:
        return record.test_loss if record.test_loss is not None and record.test_loss == record.test_loss else 0.0
    return record.loss


def resume_command(run_dir, ranks: int) -> str:
    """The whole command that continues run_dir: launcher, rank count, job file and directory."""
    launcher = "srun" if "SLURM_JOB_ID" in os.environ else "mpiexec"
    return f"{launcher} -n {ranks} python -m mpifl run {Path(run_dir) / 'config.toml'} --resume {run_dir}"
