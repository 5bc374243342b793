"""Collective validation: every rank learns whether any rank failed, and fails with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mpi4py import MPI

from mpifl.errors import ConfigError, DataError, MpiflError, RankCountError

# The error types a rank's failure is raised as on every rank (the failing rank's own type).
_TYPES = {cls.__name__: cls for cls in (MpiflError, ConfigError, DataError, RankCountError)}

T = TypeVar("T")


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
