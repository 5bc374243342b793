"""mpifl.run on real ranks (mpiexec -n 2, -n 4): the same result on every rank as the command line's path, and
errors raised as the same typed exception everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import ConfigError
from mpifl.runner import run_job

COMM = MPI.COMM_WORLD
ROOT = Path(__file__).parent.parent


@pytest.mark.mpi(min_size=2)
def test_run_returns_the_same_result_on_every_rank_as_the_command_line_path(tmp_path):
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    result = mpifl.run(ROOT / "jobs" / "fedprox_synthetic.toml", comm=COMM, rounds=4, log_every=2, out=root / "api")
    everyone = COMM.allgather((result.model.tobytes(), result.history, result.summary))
    assert all(e == everyone[0] for e in everyone)
    cfg = mpifl.job(ROOT / "jobs" / "fedprox_synthetic.toml", rounds=4, log_every=2)
    direct = run_job(COMM, cfg, root / "direct", verbose=False)
    assert np.array_equal(result.model, direct.theta)
    timings = {"seconds", "compute_seconds", "comm_seconds", "breakdown", "slowest_rank"}
    assert [{k: v for k, v in r.items() if k not in timings} for r in result.history] == [
        {k: v for k, v in r.as_json().items() if k not in timings} for r in direct.records]
    if COMM.rank == 0:  # rank 0 writes the files; the others may return before it has
        assert (root / "api" / "model.npz").read_bytes() == (root / "direct" / "model.npz").read_bytes()


@pytest.mark.mpi(min_size=2)
def test_errors_raise_the_same_typed_exception_on_every_rank():
    with pytest.raises(ConfigError) as caught:
        mpifl.run(None, comm=COMM, server__fraction=1.5)
    assert len(set(COMM.allgather(str(caught.value)))) == 1
