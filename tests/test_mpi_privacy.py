"""Private federated runs through mpifl.run on a server and two client ranks (the first three ranks under
mpiexec -n 4): dp_accounting's epsilon each round, a target epsilon reached and printed, and DP-FedAvg's clipped
mean without noise close to FedAvg's."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest
from mpi4py import MPI
from rank_counts import on_first_ranks

import mpifl
from mpifl.privacy.accounting import Sampling, fresh_accountant

COMM = MPI.COMM_WORLD
JOB = {"data__clients": 20, "rounds": 6}


@pytest.mark.mpi(min_size=3)
def test_a_private_run_records_dp_accountings_epsilon_each_round():
    def test(comm):
        result = mpifl.run(None, comm, **JOB, server__fraction=0.25, server__sampling="poisson",
                           privacy__noise_multiplier=0.4, privacy__adaptive=True, privacy__clip=0.5)
        rows = result.history
        for row in rows[1:]:
            direct = fresh_accountant("rdp", Sampling("poisson", 20, 0.25))
            direct.compose(dp_accounting.PoissonSampledDpEvent(0.25, dp_accounting.GaussianDpEvent(0.4)), row["round"])
            assert row["stages"]["privacy"]["epsilon"] == pytest.approx(direct.get_epsilon(1e-5), rel=1e-9)
        summary = result.summary["privacy"]
        assert summary["epsilon"] == rows[-1]["stages"]["privacy"]["epsilon"] and summary["accountant"] == "rdp"
        assert summary["sampling"] == "poisson" and summary["final_clip"] != 0.5  # the clip adapted
    on_first_ranks(COMM, 3, test)


@pytest.mark.mpi(min_size=3)
def test_a_target_epsilon_is_reached_printed_and_recorded(capsys):
    def test(comm):
        summary = mpifl.run(None, comm, **JOB, server__fraction=0.25, privacy__target_epsilon=5,
                            verbose=True).summary["privacy"]
        assert 0.99 * 5 <= summary["epsilon"] <= 5 * 1.0001
        printed = capsys.readouterr().out
        banner = f"privacy: noise multiplier {summary['noise_multiplier']:.4f} reaches epsilon 5"
        assert (banner in printed) == (comm.rank == 0)  # the banner is printed once, by the server
    on_first_ranks(COMM, 3, test)


@pytest.mark.mpi(min_size=3)
def test_without_noise_the_clipped_mean_over_the_cohort_is_what_the_server_applies():
    """z -> 0 with a clip no delta reaches (noise std 1e-7): DP-FedAvg's mean is the unweighted mean of the
    deltas, which on IID clients of (nearly) equal size is FedAvg's weighted mean: the models agree to a few
    percent."""
    def test(comm):
        tiny = mpifl.run(None, comm, **JOB, data__partition="iid", privacy__noise_multiplier=1e-9, privacy__clip=100)
        plain = mpifl.run(None, comm, **JOB, data__partition="iid")
        assert np.linalg.norm(tiny.model - plain.model) < 0.03 * np.linalg.norm(plain.model)
    on_first_ranks(COMM, 3, test)
