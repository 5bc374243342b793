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


@pytest.mark.mpi(min_size=2)
def test_model_init_starts_every_rank_from_the_files_bytes_and_a_bad_file_fails_every_rank(tmp_path):
    """The root reads model.init and broadcasts it: a federated run starts from it on any rank count (round 0 is
    the earlier run's final model), and a file of another model is refused on every rank with one message."""
    from mpifl.errors import DataError

    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    job = mpifl.job(None, data__clients=3)  # the same clients on any rank count
    first = mpifl.run(job, COMM, rounds=3, out=root / "first")
    loaded = mpifl.run(job, COMM, rounds=2, model__init=str(root / "first" / "model.npz"))
    assert loaded.history[0]["loss"] == first.history[-1]["loss"]
    assert loaded.history[0]["accuracy"] == first.history[-1]["accuracy"]
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(job, pair, rounds=2, model__init=str(root / "first" / "model.npz"))
        pair.Free()
        assert fewer.model.tobytes() == loaded.model.tobytes()
    with pytest.raises(DataError, match="this job's mlp"):
        mpifl.run(job, COMM, rounds=1, model__init=str(root / "first"), model__kind="mlp", model__hidden=[8])
