"""Personal accuracy on each client's own test rows, on real ranks (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import pytest
from mpi4py import MPI

import mpifl

COMM = MPI.COMM_WORLD


@pytest.mark.mpi(min_size=3)
def test_personal_accuracy_with_held_out_client_rows_and_fine_tuning_is_the_same_on_fewer_ranks():
    common = dict(rounds=4, data__clients=6, data__alpha=0.1, data__client_test_fraction=0.25,
                  train__finetune_epochs=2)
    first = mpifl.run(None, COMM, **common)
    plain = mpifl.run(None, COMM, **{**common, "train__finetune_epochs": 0})
    assert first.model.tobytes() == plain.model.tobytes()  # evaluation leaves training alone
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(None, pair, **common)
        pair.Free()
        if COMM.rank == 0:
            assert fewer.history[-1]["personal"] == first.history[-1]["personal"]
    if COMM.rank == 0:
        tuned, untuned = first.history[-1]["personal"], plain.history[-1]["personal"]
        assert set(tuned) == {"mean", "p10", "worst", "jain"}
        assert tuned["mean"] > untuned["mean"]  # fine-tuning on label-skewed clients helps them
        assert first.summary["final_mean_personal_accuracy"] == tuned["mean"]
        assert first.summary["final_p10_personal_accuracy"] == tuned["p10"]
