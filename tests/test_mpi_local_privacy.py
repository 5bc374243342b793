"""Privacy that does not trust the server, on real ranks: local DP's per-client epsilon and its records, and no
client's own figures on the wire under local DP or secure aggregation (the protocol's own checks:
tests/test_local_privacy.py, tests/test_secagg.py)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from rank_counts import same_bytes_again_and_on_two_ranks

import mpifl
from mpifl.privacy import local
from mpifl.privacy.mechanisms import PRIVACY_MECHANISMS
from mpifl.strategies.sampling import sample_clients


def epsilon_after(name, z, releases, delta, kind):
    return local.epsilon_after(PRIVACY_MECHANISMS[name], z, releases, delta, kind)

COMM = MPI.COMM_WORLD
JOB = dict(data__clients=12, rounds=6, server__fraction=0.5)
LOCAL = dict(privacy__where="local", privacy__noise_multiplier=2.0, privacy__clip=1.0)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mechanism", ["gaussian", "laplace"])
def test_each_clients_epsilon_composes_the_rounds_it_released_in(mechanism):
    result = same_bytes_again_and_on_two_ranks(COMM, **JOB, **LOCAL, privacy__mechanism=mechanism)
    releases = np.zeros(12, dtype=int)
    for row in result.history[1:]:
        releases += sample_clients(0, row["round"], 12, 0.5)  # the plan's cohort: every sampled client sends
        took_part = releases[releases > 0]
        by_hand = [epsilon_after(mechanism, 2.0, int(r), 1e-5, "rdp") for r in np.sort(took_part)]
        privacy = row["stages"]["privacy"]
        assert privacy["epsilon_max"] == by_hand[-1] == privacy["epsilon"]
        assert privacy["epsilon_min"] == by_hand[0]
        assert privacy["epsilon_median"] == by_hand[(len(by_hand) - 1) // 2]
        assert privacy["released_clients"] == took_part.size
    summary = result.summary["privacy"]
    assert summary["where"] == "local" and summary["mechanism"] == mechanism
    assert summary["epsilon_max"] == result.history[-1]["stages"]["privacy"]["epsilon_max"]
    assert summary["epsilon_per_release"] == epsilon_after(mechanism, 2.0, 1, 1e-5, "rdp")


@pytest.mark.mpi(min_size=2)
def test_local_noise_changes_the_model_and_no_client_figure_leaves_its_rank():
    plain = mpifl.run(None, COMM, **JOB)
    noised = mpifl.run(None, COMM, **JOB, **LOCAL)
    assert not np.array_equal(plain.model, noised.model)
    for row in noised.history:
        assert row["loss"] is None and row["train_accuracy"] is None and row["clients"] is None
        assert row["evaluated_clients"] == 0 and row["accuracy"] is not None  # the server's own test rows
    if COMM.size > 1 and COMM.rank == 0:  # the statistics Gatherv carries the ranks' timings, no client's row
        assert noised.history[-1]["uplink_bytes"] < plain.history[-1]["uplink_bytes"]


@pytest.mark.mpi(min_size=2)
def test_under_secure_aggregation_the_clients_figures_arrive_only_as_their_sum():
    job = dict(JOB, data__validation_fraction=0.25)
    plain = mpifl.run(None, COMM, **job)
    masked = mpifl.run(None, COMM, **job, secagg__enabled=True)
    np.testing.assert_allclose(masked.model, plain.model, rtol=0, atol=1e-9)  # the ring's fixed point
    for clear, hidden in zip(plain.history, masked.history):
        for key in ("val_loss", "val_accuracy"):  # every client sampled to validate joins the masked sum
            assert hidden[key] == pytest.approx(clear[key], rel=1e-9)
        assert set(hidden["clients"]["accuracy"]) == {"weighted_mean"}  # no count, percentile or worst client
        assert hidden["val_spread"] is None and hidden["personal"] is None
    # a training round's secure sum spans its cohort, so its clients score the model on their training rows; the
    # last record's round trains nobody, and every sampled client scores it, as in the clear
    for key in ("loss", "train_accuracy"):
        assert masked.history[-1][key] == pytest.approx(plain.history[-1][key], rel=1e-9)
    assert masked.history[-1]["clients"]["accuracy"]["weighted_mean"] == pytest.approx(
        plain.history[-1]["clients"]["accuracy"]["weighted_mean"], rel=1e-9)


@pytest.mark.mpi(min_size=2)
def test_local_dp_under_secure_aggregation_sums_the_same_noised_updates():
    alone = mpifl.run(None, COMM, **JOB, **LOCAL)
    masked = mpifl.run(None, COMM, **JOB, **LOCAL, secagg__enabled=True)
    np.testing.assert_allclose(masked.model, alone.model, rtol=0, atol=1e-9)  # the ring's fixed point
    assert masked.history[-1]["loss"] is not None  # the masked sum carries the clients' figures
