"""Divergence on real ranks (mpiexec -n 2, -n 4): every rank stops with one message and status diverged, and
the files stay strict JSON with no model written."""

from __future__ import annotations

import pytest
from mpi4py import MPI
from test_divergence import LINEAR_BLOWUP, strict

from mpifl import config
from mpifl.errors import Diverged
from mpifl.runner import run_job

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["distributed", "federated"])
def test_divergence_stops_every_rank_with_status_diverged(tmp_path, mode):
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    cfg = config.load(overrides=[f"mode={mode}", *LINEAR_BLOWUP])
    with pytest.raises(Diverged, match="stopped being finite by round 1. Try a smaller train.lr") as caught:
        run_job(COMM, cfg, root / "run", verbose=False)
    assert caught.value.collective and caught.value.after_round == 1
    everyone = COMM.allgather(str(caught.value))
    assert len(set(everyone)) == 1  # one message, the same on every rank
    if COMM.rank == 0:
        summary = strict((root / "run" / "summary.json").read_text())
        assert summary["status"] == "diverged" and summary["after_round"] == 1
        assert not (root / "run" / "model.npz").exists()
        for line in (root / "run" / "metrics.jsonl").read_text().splitlines():
            strict(line)
