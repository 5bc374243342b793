"""Errors a user can fix, with the exit codes the entry point uses."""

from __future__ import annotations

EXIT_USAGE = 2  # bad config, bad arguments, bad data: fix the input and rerun
EXIT_ABORTED = 1  # an unexpected failure on some rank; the job was aborted
EXIT_DIVERGED = 3  # the loss or the parameters stopped being finite; a smaller learning rate may help
EXIT_SWEEP_FAILED = 4  # a sweep ran every point, and some failed (sweep.csv and the closing line list them)
EXIT_STOPPED = 75  # stopped by SIGTERM/SIGUSR1 after checkpointing (EX_TEMPFAIL: requeue me)


class MpiflError(Exception):
    """An error in the user's input; printed without a traceback.

    ``collective`` is set once every rank is known to raise the same error, so
    the job can exit cleanly instead of aborting.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, collective: bool = False):
        super().__init__(message)
        self.collective = collective


class ConfigError(MpiflError):
    """A job file or --set value that breaks a declared constraint."""


class DataError(MpiflError):
    """Data that cannot be trained on: empty shards, NaN, shape mismatches."""


class RankCountError(MpiflError):
    """A job that cannot run on this number of ranks."""


class Diverged(MpiflError):
    """Raised on every rank when training produced a non-finite loss or parameters."""

    exit_code = EXIT_DIVERGED
    PARAMETERS, LOSS = 2, 1  # codes the ranks agree on; the larger one wins

    def __init__(self, after_round: int, code: int, lr: float):
        what = "the parameters" if code == self.PARAMETERS else "the training loss"
        super().__init__(
            f"training diverged: {what} stopped being finite by round {after_round}. "
            f"Try a smaller train.lr (this run used {lr:g}); no model.npz was written, "
            f"and any checkpoint holds the last finite round.",
            collective=True,
        )
        self.after_round = after_round


class SecAggAborted(MpiflError):
    """Raised on every rank when secure aggregation could not unmask (too few survivors, or clients that caught the
    server lying) and secagg.abort = "stop"."""

    def __init__(self, rnd: int):
        super().__init__(
            f"secure aggregation: round {rnd} ended without an update, because fewer clients revealed their shares "
            "than its threshold needs: they dropped out, or caught the server lying (nothing was revealed; a client "
            "that caught it says so on its rank). secagg.abort = \"stop\" stops the job here; \"skip\" goes on to "
            "the next round.",
            collective=True,
        )
