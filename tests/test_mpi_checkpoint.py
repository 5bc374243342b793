"""Checkpoints through mpifl.run on real ranks (mpiexec -n 2, -n 4): a finished run continues bitwise, old
checkpoints are pruned, and a resume that cannot be right is refused on every rank with one message.  Killing
and signalling a job are about the launcher: tests/test_checkpoint.py starts those under mpiexec."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import MpiflError

COMM = MPI.COMM_WORLD


def shared(tmp_path: Path) -> Path:
    return COMM.bcast(tmp_path if COMM.rank == 0 else None)


@pytest.mark.mpi(min_size=2)
def test_a_finished_run_continues_for_more_rounds_to_the_long_runs_bytes(tmp_path):
    out = shared(tmp_path)
    settings = dict(checkpoint__every=5, train__momentum=0.9)
    long = mpifl.run(None, COMM, rounds=15, out=out / "long", **settings)
    mpifl.run(None, COMM, rounds=10, out=out / "short", **settings)
    more = mpifl.run(None, COMM, rounds=15, out=out / "short", resume=True, **settings)
    assert more.model.tobytes() == long.model.tobytes()
    assert more.summary["rounds_run"] == 5


@pytest.mark.mpi(min_size=2)
def test_old_checkpoints_are_pruned(tmp_path):
    out = shared(tmp_path)
    mpifl.run(None, COMM, rounds=20, checkpoint__every=5, out=out / "r")
    names = sorted(p.name for p in (out / "r" / "checkpoint").iterdir())
    assert "state_round_00000020.npz" in names and "state_round_00000015.npz" not in names
    assert {n for n in names if n.startswith("rank_00001")} == {
        "rank_00001_round_00000015.npz", "rank_00001_round_00000020.npz"}


@pytest.mark.mpi(min_size=3)
def test_a_checkpoint_from_another_rank_count_is_refused_on_every_rank(tmp_path):
    out = shared(tmp_path)
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        mpifl.run(None, pair, rounds=5, checkpoint__every=5, out=out / "r")
        pair.Free()
    COMM.Barrier()
    with pytest.raises(MpiflError, match=f"written by 2 ranks; this job has {COMM.size}"):
        mpifl.run(None, COMM, rounds=10, out=out / "r", resume=True)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("first, again, message", [
    (dict(rounds=5, checkpoint__every=5), dict(rounds=10, train__lr=0.1), "written with a different config"),
    (dict(rounds=2), dict(rounds=4), "No checkpoint to resume from"),
    (dict(rounds=5, checkpoint__every=5), dict(rounds=5, checkpoint__every=5), "nothing is left to run"),
])
def test_a_resume_that_cannot_be_right_is_refused_on_every_rank(tmp_path, first, again, message):
    out = shared(tmp_path)
    mpifl.run(None, COMM, out=out / "r", **first)
    with pytest.raises(MpiflError, match=message):
        mpifl.run(None, COMM, out=out / "r", resume=True, **again)
