"""Whole runs under secure aggregation through mpifl.run on real ranks (mpiexec -n 2, -n 4): the masked sum
gives FedAvg's model, SCAFFOLD's controls ride as a second field, dropouts recover, too many end the round or the
job on every rank, and distributed DP noise is accounted."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import SecAggAborted

COMM = MPI.COMM_WORLD
JOB = {"data__clients": 12, "rounds": 4, "log_every": 1}
SECURE = {"secagg__enabled": True}


def run(**settings):
    return mpifl.run(None, COMM, **JOB, **settings)


@pytest.mark.mpi(min_size=2)
def test_a_secure_run_gives_fedavgs_model_and_secagg_plus_too():
    plain = run()
    secure = run(**SECURE)
    plus = run(**SECURE, secagg__plus=True, secagg__neighbours=4)
    np.testing.assert_allclose(secure.model, plain.model, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plus.model, plain.model, rtol=0, atol=1e-12)
    parts = secure.history[-1]["stages"]["secagg"]["seconds"]
    assert set(parts) >= {"agree", "share", "mask", "unmask", "server_unmask"} and all(v >= 0 for v in parts.values())


@pytest.mark.mpi(min_size=2)
def test_scaffold_under_secure_aggregation_sums_its_control_deltas_as_a_second_field():
    scaffold = {"server__strategy": "scaffold", "server__fraction": 0.5}
    plain = run(**scaffold)
    secure = run(**scaffold, **SECURE, secagg__plus=True)
    np.testing.assert_allclose(secure.model, plain.model, rtol=0, atol=1e-12)


@pytest.mark.mpi(min_size=2)
def test_dropouts_recover_and_too_many_end_the_round_cleanly_or_stop_the_job():
    rows = run(**SECURE, secagg__dropout=0.25).history[1:]
    assert any(r["server"]["secagg_dropped"] > 0 for r in rows)
    assert all(r["participants"] == 12 - r["server"]["secagg_dropped"] for r in rows)
    too_many = {**SECURE, "secagg__dropout": 0.7, "secagg__threshold": 0.9}
    skipped = run(**too_many)
    # nothing but the abort and the virtual clock, which runs on whether or not a round releases anything
    assert all(r["server"].pop("virtual_time") > 0 and r["server"] == {"secagg_aborted": 1.0} and r["participants"] == 0
               for r in skipped.history[1:])
    np.testing.assert_array_equal(skipped.model, 0.0)  # no round released anything
    with pytest.raises(SecAggAborted, match="round 1 ended without an update"):
        run(**too_many, secagg__abort="stop")


@pytest.mark.mpi(min_size=2)
def test_distributed_dp_noise_through_secure_aggregation_is_accounted():
    summary = run(**SECURE, privacy__noise_multiplier=0.8, privacy__noise="distributed", server__fraction=0.5).summary
    assert summary["privacy"]["noise"] == "distributed" and summary["privacy"]["epsilon"] > 0


@pytest.mark.mpi(min_size=2)
def test_the_signed_protocol_gives_the_semi_honest_bytes_when_nobody_lies():
    from rank_counts import same_bytes_again_and_on_two_ranks

    semi = run(**SECURE, secagg__plus=True, secagg__neighbours=4)
    signed = same_bytes_again_and_on_two_ranks(COMM, **JOB, **SECURE, secagg__plus=True, secagg__neighbours=4,
                                               secagg__malicious=True)
    assert signed.model.tobytes() == semi.model.tobytes()
    if COMM.rank == 0 and COMM.size > 1:  # signatures and per-client survivor lists cost bytes both ways
        assert signed.history[-1]["uplink_bytes"] > semi.history[-1]["uplink_bytes"]
        assert signed.history[-1]["downlink_bytes"] > semi.history[-1]["downlink_bytes"]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("lie", ["forge", "replay", "drop", "split"])
def test_a_lying_server_is_caught_and_no_round_completes(lie, capfd):
    lying = {**SECURE, "secagg__malicious": True, "secagg__server_lies": lie}
    result = run(**lying)
    np.testing.assert_array_equal(result.model, np.zeros_like(result.model))  # no round gave the server a sum
    with pytest.raises(SecAggAborted, match="caught the server lying"):
        run(**lying, secagg__abort="stop")
    for row in result.history[1:]:
        assert row["server"]["secagg_aborted"] == 1.0 and row["server"]["secagg_caught"] >= 1
    said = capfd.readouterr().err
    # the victim (client 0, on rank 1) catches every lie; under the others, every client rank has clients that do
    if COMM.rank == 1 or (COMM.rank > 1 and lie != "drop"):
        assert f"rank {COMM.rank}: secure aggregation, round 1: client" in said and "caught the server" in said
    elif COMM.rank > 1:
        assert "caught the server" not in said
