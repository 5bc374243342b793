"""Compressed sums across ranks equal their serial equivalent, and compressed federated MLP runs work
(mpiexec -n 2, -n 4)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from mpifl import config
from mpifl.compressed_sum import CompressedSum
from mpifl.compression import ErrorFeedback, make_codec
from mpifl.metrics import RoundTimer
from mpifl.runner import run_job

COMM = MPI.COMM_WORLD
N = 300


def vector(rank: int, step: int) -> np.ndarray:
    return np.random.default_rng([rank, step]).standard_normal(N)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("method, kw", [("topk", {"ratio": 0.1}), ("randk", {"ratio": 0.2}),
                                        ("qsgd", {"bits": 4, "bucket": 64}), ("int8", {})])
@pytest.mark.parametrize("error_feedback", [False, True])
def test_the_compressed_sum_equals_the_serial_sum_of_every_ranks_decoded_message(method, kw, error_feedback):
    codec = make_codec(method, N, np.dtype(np.float32), **kw)
    timer = RoundTimer()
    summed = CompressedSum(COMM, codec, error_feedback, seed=5, timer=timer)
    size = COMM.Get_size()
    serial = [ErrorFeedback(codec, 1, error_feedback) for _ in range(size)]  # every rank's memory, replayed here
    out = np.empty(N)
    for step in range(3):
        summed(vector(COMM.rank, step), out, rnd=2, step=step)
        expected = np.zeros(N)
        for r in range(size):
            key = (5, 2, step) if method == "randk" else (5, 2, step, r)
            expected += serial[r].send(0, vector(r, step), key, np.zeros(codec.nbytes, dtype=np.uint8))
        # randk's values add up on the wire, in the model's float32; the others are summed in float64 after decoding
        tolerance = 1e-6 if method == "randk" else 1e-12
        np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(summed.feedback.residual, serial[COMM.rank].residual)
    gathered = method != "randk"
    assert timer.uplink_bytes == 3 * codec.nbytes
    assert timer.downlink_bytes == 3 * codec.nbytes * (size if gathered else 1)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["federated", "distributed"])
def test_a_compressed_mlp_trains_and_counts_fewer_uplink_bytes(mode, tmp_path):
    common = ["data.name=synthetic", "data.n_samples=400", "data.n_features=6", "data.n_classes=3",
              "model.kind=mlp", "model.hidden=[8]", "rounds=4", "train.lr=0.2", f"mode={mode}"]
    out = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    plain = run_job(COMM, config.load(overrides=common), out / "plain", verbose=False)
    packed = run_job(COMM, config.load(overrides=[*common, "compress.uplink=int8", "compress.error_feedback=true"]),
                     out / "int8", verbose=False)
    assert packed.summary["uplink_bytes"] < plain.summary["uplink_bytes"] / 3
    assert packed.summary["compression"]["achieved_ratio"] > 3
    assert abs(packed.summary["final_loss"] - plain.summary["final_loss"]) < 0.05 * plain.summary["final_loss"]
