"""The variant choice across ranks: one measurement per node, the same variants on every rank."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mpi4py import MPI

from mpifl import config, tuning
from mpifl.kernels.variants import BY_NAME, GRADIENT, PIN_VARIABLE, SGD, TUNING_VARIABLE
from mpifl.runner import run_job

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=2)
def test_every_rank_runs_the_node_choice_and_a_second_run_reuses_it(tmp_path, monkeypatch):
    monkeypatch.delenv(PIN_VARIABLE, raising=False)
    monkeypatch.setenv(TUNING_VARIABLE, "always")
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    monkeypatch.setattr(tuning, "cache_directory", lambda: root / "cache")
    cfg = config.load(overrides=["mode=distributed", "data.name=synthetic", "model.kind=logistic", "rounds=3"])
    first = run_job(COMM, cfg, root / "first", verbose=False)
    second = run_job(COMM, cfg, root / "second", verbose=False)
    recorded = first.summary["kernel_variants"], second.summary["kernel_variants"]
    assert [r["how"] for r in recorded] == ["measured", "cached"]
    assert "by_rank" not in recorded[0]  # one node: every rank took its first rank's choice
    assert recorded[0][GRADIENT] in BY_NAME and recorded[0][SGD] in BY_NAME
    assert (recorded[0][GRADIENT], recorded[0][SGD]) == (recorded[1][GRADIENT], recorded[1][SGD])
    assert np.array_equal(first.theta, second.theta)
    if COMM.rank == 0:
        files = list((root / "cache").glob("kernel-variants-*.json"))
        assert len(files) == 1
        assert len(json.loads(files[0].read_text())["choices"]) == 1
