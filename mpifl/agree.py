"""Collective validation: every rank learns whether any rank failed, and fails with it."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

from mpi4py import MPI

from mpifl.errors import ConfigError, DataError, MpiflError, RankCountError

# The error types a rank's failure is raised as on every rank (the failing rank's own type).
_TYPES = {cls.__name__: cls for cls in (MpiflError, ConfigError, DataError, RankCountError)}

T = TypeVar("T")
ABORT_GRACE_SECONDS = 0.5  # for the launcher to forward the message before MPI_Abort tears the job down


def abort(comm: MPI.Comm, message: str, code: int) -> None:
    """Print ``message`` with this rank on every line, then end the whole job: no rank is left in a collective."""
    rank = comm.Get_rank()
    print("".join(f"mpifl: rank {rank}: {line}\n" for line in message.splitlines()), file=sys.stderr, end="",
          flush=True)
    time.sleep(ABORT_GRACE_SECONDS)
    comm.Abort(code)


def or_abort(comm: MPI.Comm, step: Callable[[], T]) -> T:
    """Run ``step``; an error that not every rank raised together ends the job (abort) on a communicator of
    several ranks, where the others would wait for this one forever.  Alone, or collective, it is raised."""
    from mpifl.errors import EXIT_ABORTED

    try:
        return step()
    except MpiflError as exc:
        if exc.collective or comm.Get_size() == 1:
            raise
        abort(comm, f"error: {exc}", exc.exit_code)
    except Exception:  # noqa: BLE001 - any failure must end the job, not hang it
        if comm.Get_size() == 1:
            raise
        abort(comm, traceback.format_exc(), EXIT_ABORTED)
    raise AssertionError("MPI_Abort returned")


def collectively(comm: MPI.Comm, step: Callable[[], T]) -> T:
    """Run ``step`` on every rank; if it raised an MpiflError anywhere, raise on all ranks.

    The error is the first failing rank's own type (ConfigError, DataError,
    ...) and message, prefixed with the rank when only some ranks failed.  This is a small pickled allgather, used only during
    setup, never in the training loop.
    """
    result: T | None = None
    error: MpiflError | None = None
    try:
        result = step()
    except MpiflError as exc:
        error = exc
    reports = comm.allgather(None if error is None else (type(error).__name__, str(error)))
    failed = [(rank, report) for rank, report in enumerate(reports) if report is not None]
    if not failed:
        return result  # type: ignore[return-value]
    messages = {report[1] for _, report in failed}
    kind = _TYPES.get(failed[0][1][0], MpiflError)
    if len(failed) == comm.Get_size() and len(messages) == 1:
        text = failed[0][1][1]
    else:
        rank, (_, message) = failed[0]
        others = len(failed) - 1
        text = f"rank {rank}: {message}" + (f" ({others} other rank(s) failed too)" if others else "")
    raise kind(text, collective=True)
