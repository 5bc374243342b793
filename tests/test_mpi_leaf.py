"""LEAF data on real ranks: each user a client with its own test rows, and no rank opens another's files."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from test_leaf import write_leaf

from mpifl import audit, config
from mpifl.data import partition_cli, store
from mpifl.data.shards import balanced_blocks
from mpifl.runner import run_job
from mpifl.metrics import read_client_figures

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=2)
def test_a_leaf_partition_trains_each_user_as_a_client_and_tests_it_on_its_own_rows(tmp_path):
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    users = {f"u{k:03d}": (30 + 5 * k, 6 + k % 4) for k in range(2 * (COMM.size - 1) + 1)}
    if COMM.rank == 0:
        write_leaf(root / "leaf", users, features=12, classes=4)
        assert partition_cli.main([str(root / "leaf"), "--out", str(root / "parts")]) == 0
    COMM.Barrier()
    cfg = config.load(overrides=[f"data.path={root / 'parts'}", "rounds=4", "train.lr=0.2", "evaluate.per_client=true"])
    result = run_job(COMM, cfg, root / "run", verbose=False, audit=True)
    last = result.records[-1]
    if COMM.rank == 0:
        accuracy = read_client_figures(root / "run")["test_accuracy"]
        assert accuracy.size == len(users) and ((0.0 <= accuracy) & (accuracy <= 1.0)).all()
        assert last.mean_client_accuracy == pytest.approx(np.mean(accuracy))

    manifest = store.read_manifest(root / "parts")
    opened = set(audit.read(root / "run", COMM.rank))

    def files(entry):
        return {str((root / "parts" / rel).resolve()) for rel in entry["files"]}

    blocks = balanced_blocks([int(c["rows"]) for c in manifest.doc["clients"]], COMM.size - 1)
    mine = blocks[COMM.rank - 1] if COMM.rank else range(0)
    own = set().union(*[files(manifest.client(k)) | files(manifest.client(k)["test"]) for k in mine])
    parts = str((root / "parts").resolve())
    assert {path for path in opened if path.startswith(parts) and "/client_" in path} == own  # its own, no other's
    assert (files(manifest.doc["test"]) <= opened) == (COMM.rank == 0)
